import Type from "typebox";
import { OTP_ERROR_CODES, type OtpErrorCode } from "../../core/errors.js";
import { CHANNELS, type DeliveryStatus, PURPOSES, VERIFICATION_STATUSES } from "../../core/types.js";

// `enum` keeps each value's literal type for handlers and makes ajv's error name the field.
const literalUnion = <const Values extends string[]>(values: readonly [...Values], description?: string) =>
  Type.Enum(values, description ? { description } : {});

/** The end user's address, for the per-IP rules of a backend that calls for many users. */
const ClientIpField = Type.Optional(
  Type.String({ minLength: 2, maxLength: 45, description: "believed only from an API-key caller" }),
);

export const SendBody = Type.Object(
  {
    channel: literalUnion(CHANNELS, "email or sms"),
    to: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: 254,
        description:
          "email, E.164 number, '+<cc> <number>' or a national number with `country`; omit to send to the logged-in account's own contact",
      }),
    ),
    purpose: literalUnion(PURPOSES),
    locale: Type.Optional(Type.String({ minLength: 2, maxLength: 35, pattern: "^[A-Za-z0-9_-]+$" })),
    country: Type.Optional(Type.String({ pattern: "^[A-Za-z]{2}$", description: "ISO 3166 alpha-2" })),
    target: Type.Optional(literalUnion(["any", "user", "not_user"], "account precondition (default any)")),
    account_id: Type.Optional(Type.String({ minLength: 1, maxLength: 128 })),
    client_ip: ClientIpField,
    device_id: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
  },
  { additionalProperties: false },
);

/**
 * A string among `values`, typed so, for replies: the schema names the type as well as the values
 * (request schemas keep `literalUnion`, whose refusal of a non-string is worded as before).
 */
const oneOf = <const Values extends string[]>(values: readonly [...Values], description?: string) =>
  Type.Unsafe<Values[number]>({
    type: "string",
    enum: [...values],
    ...(description ? { description } : {}),
  });

// Total over the core's type: a status added there fails the type-check until it is listed here.
const DELIVERY_STATUS_NAMES: Record<DeliveryStatus, true> = {
  queued: true,
  sent: true,
  delivered: true,
  failed: true,
  unconfirmed: true,
};

export const SendReply = Type.Object(
  {
    id: Type.String(),
    channel: oneOf(CHANNELS),
    to: Type.String(),
    purpose: oneOf(PURPOSES),
    status: Type.Literal("pending"),
    expires_in: Type.Integer(),
    resend_after: Type.Integer(),
  },
  { description: "the verification, pending: its code is on its way" },
);

export const CheckBody = Type.Object(
  {
    id: Type.String({ minLength: 1, maxLength: 64 }),
    code: Type.String({ minLength: 1, maxLength: 32 }),
  },
  { additionalProperties: false },
);

export const CheckReply = Type.Object(
  {
    id: Type.String(),
    status: Type.Literal("approved"),
    token: Type.String(),
    token_expires_in: Type.Integer(),
  },
  { description: "the code was right: a verification token to redeem" },
);

export const IdParams = Type.Object({ id: Type.String({ minLength: 1, maxLength: 64 }) });

export const VerificationReply = Type.Object(
  {
    id: Type.String(),
    channel: oneOf(CHANNELS),
    to: Type.String(),
    purpose: oneOf(PURPOSES),
    status: oneOf(VERIFICATION_STATUSES),
    attempts_remaining: Type.Integer(),
    expires_in: Type.Integer(),
    deliveries: Type.Array(
      Type.Object({
        provider: Type.String(),
        status: oneOf(
          Object.keys(DELIVERY_STATUS_NAMES) as DeliveryStatus[],
          "unconfirmed: the provider had the message but never answered, so it may not have gone out; it is not tried again (send again to get a new code)",
        ),
        at: Type.String({ format: "date-time" }),
        error: Type.Optional(Type.String()),
        provider_message_id: Type.Optional(Type.String()),
      }),
    ),
  },
  { description: "the verification's status and its delivery attempts" },
);

export const CancelReply = Type.Object(
  { id: Type.String(), status: Type.Literal("canceled") },
  { description: "the verification is canceled" },
);

export const RedeemBody = Type.Object(
  {
    token: Type.String({ minLength: 1, maxLength: 128 }),
    purposes: Type.Optional(Type.Array(literalUnion(PURPOSES), { minItems: 1, maxItems: PURPOSES.length })),
  },
  { additionalProperties: false },
);

export const RedeemReply = Type.Object(
  {
    channel: oneOf(CHANNELS),
    to: Type.String(),
    purpose: oneOf(PURPOSES),
    app: Type.String(),
  },
  { description: "what was verified (the token is spent)" },
);

/** A problem's members in the order they are served, `code` as `codes` allow. */
const problemOf = <const Codes extends string[]>(codes: readonly [...Codes], requestId?: string) =>
  Type.Object({
    type: Type.String({ description: "urn:verifyd:error:<code in kebab case>" }),
    title: Type.String(),
    status: Type.Integer(),
    code: oneOf(codes),
    detail: Type.String(),
    field: Type.Optional(Type.String({ description: "the input at fault" })),
    attempts_remaining: Type.Optional(Type.Integer()),
    retry_after: Type.Optional(Type.Integer({ description: "seconds to wait, as Retry-After says" })),
    ...(requestId ? { request_id: Type.Optional(Type.String({ description: requestId })) } : {}),
  });

/** A native refusal (RFC 9457): `code` is one of the error registry's. */
export const Problem = problemOf(Object.keys(OTP_ERROR_CODES) as OtpErrorCode[]);

/** The 500: a bug (`INTERNAL`, with the request id to quote) or a code the native map answers 500. */
export const InternalProblem = (codes: readonly OtpErrorCode[]) =>
  problemOf(["INTERNAL", ...codes], "INTERNAL only: the request id, to quote when reporting the fault");

export const CaptchaBody = Type.Object(
  { type: literalUnion(["image", "slider"]), client_ip: ClientIpField },
  { additionalProperties: false },
);

export const CaptchaReply = Type.Object(
  {
    token: Type.String(),
    type: literalUnion(["image", "slider"]),
    expires_in: Type.Integer(),
    image: Type.Optional(Type.String({ description: "image challenge: data:image/gif;base64,..." })),
    background: Type.Optional(Type.String({ description: "slider: background PNG data URI" })),
    piece: Type.Optional(
      Type.String({ description: "slider: piece PNG data URI (as tall as the background)" }),
    ),
    width: Type.Optional(Type.Integer()),
    height: Type.Optional(Type.Integer()),
    y: Type.Optional(Type.Integer()),
  },
  { description: "the challenge to show" },
);

export const CaptchaVerifyBody = Type.Object(
  {
    token: Type.String({ minLength: 1, maxLength: 128 }),
    answer: Type.Union(
      [Type.String({ minLength: 1, maxLength: 2048 }), Type.Number({ minimum: 0, maximum: 10_000 })],
      {
        description: "image: the characters; slider: the x offset",
      },
    ),
    to: Type.Optional(
      Type.String({ minLength: 1, maxLength: 254, description: "bind the pass to this recipient" }),
    ),
    client_ip: ClientIpField,
  },
  { additionalProperties: false },
);

export const CaptchaVerifyReply = Type.Object(
  { captcha_token: Type.String(), expires_in: Type.Integer() },
  { description: "the pass to send as X-Captcha-Token" },
);
