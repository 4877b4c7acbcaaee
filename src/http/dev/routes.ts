import type { TypeBoxTypeProvider } from "@fastify/type-provider-typebox";
import type { FastifyInstance } from "fastify";
import Type from "typebox";
import type { CaptchaService } from "../../core/abuse/captcha-service.js";
import { OtpError } from "../../core/errors.js";
import type { DevInbox } from "../../core/ports.js";
import { parseRecipient } from "../../core/recipients.js";
import { renderProblem } from "../native/routes.js";
import { answerErrorsWith } from "../problem.js";
import { refuseMalformedText } from "../shared/malformed-text.js";

export interface DevApiOptions {
  inbox: DevInbox;
  captcha: CaptchaService;
  defaultCountry: string;
}

const InboxQuery = Type.Object({ to: Type.String({ minLength: 1, maxLength: 254 }) });
const INBOX_LIMIT = 50;

/** Dev API (dev mode only; not registered in production, so its routes answer 404 there). */
export async function devApi(fastify: FastifyInstance, options: DevApiOptions): Promise<void> {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>();
  app.setErrorHandler(answerErrorsWith(renderProblem));
  refuseMalformedText(app);

  app.get("/v1/dev/inbox", { schema: { querystring: InboxQuery } }, async (request) => {
    const raw = request.query.to;
    // An unencoded "+" in a query string arrives as a space; read it as the "+" the caller meant:
    // a phone's leading one (its other spaces are separators), and any in an email address, which
    // holds no spaces (`ann+tag@…`; one pasted with spaces around it is trimmed first).
    const channel = raw.includes("@") ? "email" : "sms";
    const to =
      channel === "email" ? raw.trim().replaceAll(" ", "+") : raw.startsWith(" ") ? `+${raw.slice(1)}` : raw;
    let address: string;
    try {
      address = parseRecipient(channel, to, { defaultCountry: options.defaultCountry }).address;
    } catch (error) {
      if (error instanceof OtpError)
        throw new OtpError("VALIDATION_FAILED", { message: error.message, details: { field: "to" } });
      throw error;
    }
    const messages = await options.inbox.list(address, INBOX_LIMIT);
    return {
      messages: messages.map((message) => ({
        id: message.id,
        channel: message.channel,
        to: message.to,
        subject: message.subject,
        text: message.text,
        code: message.code,
        created_at: new Date(message.createdAtMs).toISOString(),
      })),
    };
  });

  app.get(
    "/v1/dev/captcha/:token",
    { schema: { params: Type.Object({ token: Type.String({ minLength: 1, maxLength: 128 }) }) } },
    async (request) => {
      const answer = await options.captcha.devAnswer(request.params.token);
      if (answer === null)
        throw new OtpError("CAPTCHA_FAILED", {
          message: "Unknown or expired captcha",
          details: { field: "token" },
        });
      return { answer };
    },
  );
}
