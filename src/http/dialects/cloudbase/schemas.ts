import Type from "typebox";
import { MAX_PASSWORD_CHARACTERS } from "../../../core/accounts/passwords.js";

// CloudBase bodies are parsed leniently: the SDK adds fields verifyd does not use (`client_secret`,
// `destination`, `email_redirect_to`, ...), and a drop-in server must not refuse them. Unknown
// fields are ignored; known ones are checked.

/** `target`: the account rule of a send (DESIGN.md "Purposes and account rules"). */
export const TARGETS = ["ANY", "USER", "NOT_USER", "CUR_USER"] as const;
export type Target = (typeof TARGETS)[number];

/** `usage`: the purpose of a send (the SDK's VerificationUsages). */
export const USAGES = [
  "REGISTER",
  "SIGN_IN",
  "PASSWORD_RESET",
  "EMAIL_ADDRESS_CHANGE",
  "PHONE_NUMBER_CHANGE",
] as const;
export type Usage = (typeof USAGES)[number];

const ClientId = Type.String({
  minLength: 1,
  maxLength: 128,
  description: "the app's client id (also accepted as query parameter or x-client-id header)",
});
// A body names one contact; the other may be left out, empty or null (a form bound to both
// fields sends it so): each is read as absent (`contactOf`).
const PhoneNumber = Type.Union([
  Type.String({ maxLength: 32, description: '"+<country code> <number>", e.g. "+86 13800138000"' }),
  Type.Null(),
]);
const Email = Type.Union([Type.String({ maxLength: 254 }), Type.Null()]);
const Locale = Type.String({ minLength: 2, maxLength: 35, pattern: "^[A-Za-z0-9_-]+$" });

export const ClientQuery = Type.Object({
  client_id: Type.Optional(ClientId),
  captcha_token: Type.Optional(
    Type.String({ minLength: 1, maxLength: 256, description: "older SDKs pass the captcha pass token here" }),
  ),
});

export const SendBody = Type.Object({
  phone_number: Type.Optional(PhoneNumber),
  email: Type.Optional(Email),
  target: Type.Optional(Type.Enum(TARGETS, { description: "account precondition (default ANY)" })),
  usage: Type.Optional(Type.Enum(USAGES, { description: "what the code is for (default: sign in or up)" })),
  locale: Type.Optional(Locale),
  client_id: Type.Optional(ClientId),
});

export const SendReply = Type.Object({
  verification_id: Type.String(),
  expires_in: Type.Integer(),
  is_user: Type.Optional(Type.Boolean({ description: "omitted when the app switches the disclosure off" })),
});

export const VerifyBody = Type.Object({
  verification_id: Type.String({ minLength: 1, maxLength: 128 }),
  verification_code: Type.String({ minLength: 1, maxLength: 32 }),
  client_id: Type.Optional(ClientId),
});

export const VerifyReply = Type.Object({ verification_token: Type.String(), expires_in: Type.Integer() });

const VerificationToken = Type.String({ minLength: 1, maxLength: 128 });
/** A password set here (sign-up, reset, a new one). */
const Password = Type.String({ minLength: 6, maxLength: 64 });
/**
 * A password checked here (sign-in, sudo): as long as any face lets one be set, so that a
 * password set through Fresns (up to 256 characters) signs in here too.
 */
const PasswordToCheck = Type.String({ minLength: 1, maxLength: MAX_PASSWORD_CHARACTERS });

export const SignUpBody = Type.Object({
  phone_number: Type.Optional(PhoneNumber),
  email: Type.Optional(Email),
  verification_token: Type.Optional(VerificationToken),
  verification_code: Type.Optional(
    Type.String({
      minLength: 1,
      maxLength: 32,
      description:
        "instead of verification_token: the code sent to the contact with usage REGISTER (ignored beside a verification_token)",
    }),
  ),
  username: Type.Optional(
    Type.String({
      pattern: "^[A-Za-z0-9_-]{5,24}$",
      description: "5-24 letters, digits, _ or -",
    }),
  ),
  password: Type.Optional(Password),
  name: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
  gender: Type.Optional(Type.String({ minLength: 1, maxLength: 16 })),
  picture: Type.Optional(Type.String({ minLength: 1, maxLength: 1024 })),
  locale: Type.Optional(Locale),
  client_id: Type.Optional(ClientId),
});

const SudoToken = Type.String({ minLength: 1, maxLength: 4096, description: "from /auth/v1/user/sudo" });

/**
 * The SDK's ResetPasswordRequest: a contact, the PASSWORD_RESET verification_token, the new
 * password. Its type declares both contacts as strings, so an empty one is read as absent.
 */
export const ResetBody = Type.Object({
  phone_number: Type.Optional(PhoneNumber),
  email: Type.Optional(Email),
  verification_token: VerificationToken,
  new_password: Password,
  client_id: Type.Optional(ClientId),
});

/** The SDK's SudoRequest: the password, or a verification_token of the user's own contact. */
export const SudoBody = Type.Object({
  password: Type.Optional(PasswordToCheck),
  verification_token: Type.Optional(VerificationToken),
  client_id: Type.Optional(ClientId),
});

export const SudoReply = Type.Object({ sudo_token: Type.String(), expires_in: Type.Integer() });

/** The SDK's BindPhoneRequest / BindEmailRequest: the new contact and its verification_token. */
export const ContactBody = Type.Object({
  phone_number: Type.Optional(PhoneNumber),
  email: Type.Optional(Email),
  verification_token: VerificationToken,
  sudo_token: SudoToken,
  client_id: Type.Optional(ClientId),
});

/** The SDK's SetPasswordRequest. */
export const SetPasswordBody = Type.Object({
  new_password: Password,
  sudo_token: SudoToken,
  client_id: Type.Optional(ClientId),
});

export const SignInBody = Type.Object({
  username: Type.Optional(
    Type.String({ minLength: 1, maxLength: 254, description: "a username, an email or a +phone number" }),
  ),
  password: Type.Optional(PasswordToCheck),
  verification_token: Type.Optional(VerificationToken),
  client_id: Type.Optional(ClientId),
});

export const TokenBody = Type.Object({
  grant_type: Type.Enum(["refresh_token"], { description: "only the refresh grant is offered" }),
  refresh_token: Type.String({ minLength: 1, maxLength: 256 }),
  client_id: Type.Optional(ClientId),
});

export const RevokeBody = Type.Object({
  token: Type.String({ minLength: 1, maxLength: 4096, description: "an access or a refresh token" }),
  client_id: Type.Optional(ClientId),
});

export const Credentials = Type.Object({
  token_type: Type.Literal("Bearer"),
  access_token: Type.String(),
  refresh_token: Type.String(),
  expires_in: Type.Integer(),
  scope: Type.String(),
  sub: Type.String(),
  groups: Type.Array(Type.String()),
});

export const UserReply = Type.Object({
  sub: Type.String(),
  name: Type.Optional(Type.String()),
  picture: Type.Optional(Type.String()),
  username: Type.Optional(Type.String()),
  email: Type.Optional(Type.String()),
  email_verified: Type.Optional(Type.Boolean()),
  phone_number: Type.Optional(Type.String({ description: '"+<country code> <number>"' })),
  phone_number_verified: Type.Optional(Type.Boolean()),
  gender: Type.Optional(Type.String()),
  locale: Type.Optional(Type.String()),
  created_at: Type.Optional(Type.String({ description: "ISO 8601" })),
});

export const EmptyReply = Type.Object({});

export const CaptchaDataReply = Type.Object({
  data: Type.String({ description: "data:image/gif;base64,..." }),
  type: Type.Literal("image"),
  token: Type.String(),
  expires_in: Type.Integer(),
});

export const CaptchaVerifyBody = Type.Object({
  token: Type.String({ minLength: 1, maxLength: 128 }),
  key: Type.String({ minLength: 1, maxLength: 64, description: "the characters read from the image" }),
  client_id: Type.Optional(ClientId),
});

export const CaptchaVerifyReply = Type.Object({ captcha_token: Type.String(), expires_in: Type.Integer() });

const RedirectUri = Type.String({
  minLength: 1,
  maxLength: 2048,
  description: "where the page sends the browser back, on one of the app's CORS origins",
});
const State = Type.String({ maxLength: 512, description: "echoed back to redirect_uri" });

/** The 2022 SDK's `POST /auth/v1/captcha/init` (COMPANION-APIS.md 2.5). */
export const CaptchaInitBody = Type.Object({
  client_id: Type.Optional(ClientId),
  redirect_uri: RedirectUri,
  state: Type.Optional(State),
});

export const CaptchaInitReply = Type.Object({
  captcha_token: Type.Optional(
    Type.String({ description: "given instead of `url` when no captcha is needed: send it as is" }),
  ),
  url: Type.Optional(Type.String({ description: "the challenge page to open" })),
  expires_in: Type.Integer(),
});

export const CaptchaPageQuery = Type.Object({
  client_id: Type.Optional(ClientId),
  redirect_uri: RedirectUri,
  state: Type.Optional(State),
});

/** The challenge page's form post. */
export const CaptchaPageForm = Type.Object({
  token: Type.String({ minLength: 1, maxLength: 128 }),
  key: Type.String({ minLength: 1, maxLength: 64 }),
  client_id: Type.Optional(ClientId),
  redirect_uri: RedirectUri,
  state: Type.Optional(State),
});

export const ErrorBody = Type.Object({
  error: Type.String(),
  error_code: Type.Integer(),
  error_description: Type.String(),
});

/** Every status the CloudBase error map can answer. */
export const errorResponses = {
  400: ErrorBody,
  401: ErrorBody,
  403: ErrorBody,
  404: ErrorBody,
  409: ErrorBody,
  413: ErrorBody,
  428: ErrorBody,
  429: ErrorBody,
  500: ErrorBody,
  503: ErrorBody,
};
