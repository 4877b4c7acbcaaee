// The floor of the HTTP stack alone: bare Fastify, no plugins, no store, no logger; only its replies
// are written the way verifyd writes its own (together at the end of each event-loop turn).
// `bench/floor.mjs` loads it the way `bench/run.mjs` loads verifyd, so the ratios say how close to
// a POST with a body any refusal can come on this machine, whatever verifyd does behind it.
import Fastify from "fastify";
import { writeRepliesTogether } from "../dist/http/shared/replies-together.js";

const problem = {
  type: "urn:verifyd:error:resend-too-soon",
  title: "Too Many Requests",
  status: 429,
  code: "RESEND_TOO_SOON",
  detail: "Please wait before requesting another code",
  retry_after: 60,
};
const body = {
  type: "object",
  required: ["channel", "to", "purpose"],
  properties: {
    channel: { enum: ["email", "sms"] },
    to: { type: "string", minLength: 1, maxLength: 320 },
    purpose: { type: "string", maxLength: 64 },
  },
};

const fastify = Fastify({ logger: false });
writeRepliesTogether(fastify);
fastify.get("/healthz", async () => ({ status: "ok" }));
// Refused after its body is read, parsed and validated: the shape of a rate-limit refusal.
fastify.post("/refuse-after-body", { schema: { body } }, async (_request, reply) => {
  reply.code(429).header("retry-after", "60").type("application/problem+json");
  return problem;
});
// Refused before its body is read: the shape of a captcha refusal.
fastify.post(
  "/refuse-before-body",
  {
    schema: { body },
    onRequest: (_request, reply, _done) => {
      reply.code(428).header("retry-after", "60").type("application/problem+json").send(problem);
    },
  },
  async () => ({}),
);
await fastify.listen({ host: "127.0.0.1", port: Number(process.env.VERIFYD_PORT) });
