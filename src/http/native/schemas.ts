import Type from "typebox";
import { CHANNELS, PURPOSES, VERIFICATION_STATUSES } from "../../core/types.js";

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

export const SendReply = Type.Object({
  id: Type.String(),
  channel: Type.String(),
  to: Type.String(),
  purpose: Type.String(),
  status: Type.Literal("pending"),
  expires_in: Type.Integer(),
  resend_after: Type.Integer(),
});

export const CheckBody = Type.Object(
  {
    id: Type.String({ minLength: 1, maxLength: 64 }),
    code: Type.String({ minLength: 1, maxLength: 32 }),
  },
  { additionalProperties: false },
);

export const CheckReply = Type.Object({
  id: Type.String(),
  status: Type.Literal("approved"),
  token: Type.String(),
  token_expires_in: Type.Integer(),
});

export const IdParams = Type.Object({ id: Type.String({ minLength: 1, maxLength: 64 }) });

export const VerificationReply = Type.Object({
  id: Type.String(),
  channel: Type.String(),
  to: Type.String(),
  purpose: Type.String(),
  status: literalUnion(VERIFICATION_STATUSES),
  attempts_remaining: Type.Integer(),
  expires_in: Type.Integer(),
  deliveries: Type.Array(
    Type.Object({
      provider: Type.String(),
      status: Type.String(),
      at: Type.String(),
      error: Type.Optional(Type.String()),
      provider_message_id: Type.Optional(Type.String()),
    }),
  ),
});

export const CancelReply = Type.Object({ id: Type.String(), status: Type.Literal("canceled") });

export const RedeemBody = Type.Object(
  {
    token: Type.String({ minLength: 1, maxLength: 128 }),
    purposes: Type.Optional(Type.Array(literalUnion(PURPOSES), { minItems: 1, maxItems: PURPOSES.length })),
  },
  { additionalProperties: false },
);

export const RedeemReply = Type.Object({
  channel: Type.String(),
  to: Type.String(),
  purpose: Type.String(),
  app: Type.String(),
});

export const Problem = Type.Object({
  type: Type.String(),
  title: Type.String(),
  status: Type.Integer(),
  code: Type.String(),
  detail: Type.String(),
  field: Type.Optional(Type.String()),
  attempts_remaining: Type.Optional(Type.Integer()),
  retry_after: Type.Optional(Type.Integer()),
  request_id: Type.Optional(Type.String()),
});

export const CaptchaBody = Type.Object(
  { type: literalUnion(["image", "slider"]), client_ip: ClientIpField },
  { additionalProperties: false },
);

export const CaptchaReply = Type.Object({
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
});

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

export const CaptchaVerifyReply = Type.Object({ captcha_token: Type.String(), expires_in: Type.Integer() });
