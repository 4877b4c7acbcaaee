import type { FastifyBaseLogger, FastifyInstance } from "fastify";
import type { ReceiptRecorder, StatusCallbackHandler } from "../../core/delivery/delivery-receipts.js";
import { OtpError } from "../../core/errors.js";
import type { Clock } from "../../core/ports.js";
import { createLogThrottle } from "../../observability/log-throttle.js";
import { renderProblem } from "../native/routes.js";
import { answerErrorsWith } from "../problem.js";
import { refuseMalformedText } from "../shared/malformed-text.js";

export interface DeliveryCallbacksOptions {
  /** one per provider that posts status callbacks, by provider id */
  handlers: StatusCallbackHandler[];
  recorder: ReceiptRecorder;
  clock: Clock;
}

const PROVIDER_PATTERN = /^[a-z0-9][a-z0-9_-]{0,62}$/;
// A forged callback costs its sender one small request; a log line for each would let anyone
// write the disk full from one client. Refusals are counted and told once a minute per provider.
const REFUSAL_LOG_INTERVAL_MS = 60_000;

/**
 * `POST /v1/callbacks/{provider}`: delivery status reports from providers (Twilio's StatusCallback,
 * the generic webhook's). Each handler verifies its provider's signature over the raw body before
 * anything in it is believed; a missing or wrong signature, or a provider without callbacks, is a
 * 401 problem+json. Receipts update the verification's delivery records.
 */
export async function deliveryCallbacks(
  fastify: FastifyInstance,
  options: DeliveryCallbacksOptions,
): Promise<void> {
  const handlers = new Map(options.handlers.map((handler) => [handler.provider, handler]));
  // Keyed by the configured providers only: an unknown one is refused without a line.
  const refusals = createLogThrottle<FastifyBaseLogger, { provider: string; reason: string }>({
    clock: options.clock,
    intervalMs: REFUSAL_LOG_INTERVAL_MS,
    maxKeys: Math.max(1, handlers.size),
    laterLog: fastify.log,
    tell: ({ log, count, detail }) =>
      log.warn(
        { provider: detail.provider, refused: count, reason: detail.reason },
        "status callbacks refused: missing or wrong signature",
      ),
  });
  // What the minute had not told yet is told at shutdown, not lost with its timer.
  fastify.addHook("onClose", async () => refusals.close());

  // Signatures cover the bytes as sent, so this plugin reads every body as a string, JSON included.
  fastify.removeAllContentTypeParsers();
  fastify.addContentTypeParser("*", { parseAs: "string" }, (_request, body, done) => done(null, body));
  fastify.setErrorHandler(answerErrorsWith(renderProblem));
  refuseMalformedText(fastify);

  fastify.post<{ Params: { provider: string } }>(
    "/v1/callbacks/:provider",
    { schema: { hide: true } },
    async (request, reply) => {
      const { provider } = request.params;
      const handler = PROVIDER_PATTERN.test(provider) ? handlers.get(provider) : undefined;
      // Unknown providers get the same answer as bad signatures: nothing here can be verified.
      if (!handler)
        throw new OtpError("SIGNATURE_INVALID", {
          message: "No status callbacks are accepted for this provider",
        });
      const outcome = handler.handle({
        url: `${request.protocol}://${request.host}${request.url}`,
        headers: request.headers,
        rawBody: typeof request.body === "string" ? request.body : "",
        nowMs: options.clock.nowMs(),
      });
      if (outcome.kind === "unauthenticated") {
        refusals.occurred(request.log, provider, { provider, reason: outcome.reason });
        throw new OtpError("SIGNATURE_INVALID", { message: outcome.reason });
      }
      if (outcome.kind === "invalid") {
        throw new OtpError("VALIDATION_FAILED", { message: outcome.reason, details: { field: "body" } });
      }
      // The provider needs a quick 2xx, not our store's retries for a receipt that raced its send.
      for (const receipt of outcome.receipts) void options.recorder.record(receipt);
      return reply.code(200).send({ received: outcome.receipts.length });
    },
  );
}
