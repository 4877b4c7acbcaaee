import { OtpError } from "../errors.js";
import type { App, Face } from "../types.js";
import type { EngineDeps } from "../verification/engine-deps.js";
import { riskCounters } from "./abuse-rules.js";

export interface RiskPrecheckInput {
  app: App;
  face: Face;
  clientIp: string | undefined;
  /** a pass token presented with the request: the full send judges it */
  captchaToken: string | undefined;
}

/**
 * Decides, before the request body is read, the refusal a bot gets most: "solve a captcha first".
 * It uses only what the full send would (the app's captcha mode and the client's risk counters,
 * as last committed, from memory), so it never refuses a send the full path would accept; it
 * only answers that refusal for a fraction of the cost. Returns null to go on with the send.
 */
export function precheckSendRisk(deps: EngineDeps, input: RiskPrecheckInput): OtpError | null {
  const { app, face } = input;
  const mode = app.abuse.captcha[face];
  if (input.captchaToken !== undefined || mode === "never" || app.disabled) return null;
  const now = deps.clock.nowMs();
  let refusal: OtpError | null = null;
  if (mode === "always") {
    refusal = new OtpError("CAPTCHA_REQUIRED", { details: { rule: "captcha_always" } });
  } else {
    const committedCount = deps.store.committedCount?.bind(deps.store);
    if (!committedCount) return null;
    for (const counter of riskCounters(app, { ip: input.clientIp }, false)) {
      const state = committedCount(app.id, counter.key, now);
      if (state && state.count + 1 > counter.limit) {
        const retryAfterSeconds = Math.max(1, Math.ceil((state.resetAtMs - now) / 1000));
        refusal = new OtpError("CAPTCHA_REQUIRED", { details: { rule: counter.rule, retryAfterSeconds } });
        break;
      }
    }
  }
  if (refusal) {
    deps.sendLog.record({
      atMs: now,
      appId: app.id,
      face,
      ...(input.clientIp ? { ip: input.clientIp } : {}),
      decision: "captcha_required",
      reason: refusal.details.rule ?? "captcha",
    });
  }
  return refusal;
}
