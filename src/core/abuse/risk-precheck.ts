import { OtpError } from "../errors.js";
import type { VerificationStore } from "../ports.js";
import type { App, Face, RateRule } from "../types.js";
import type { EngineDeps } from "../verification/engine-deps.js";
import {
  clientAddressOf,
  type RiskScope,
  riskCounters,
  riskKey,
  riskRuleName,
  siteOf,
  subnetOf,
} from "./abuse-rules.js";

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
 * An app with test recipients is never pre-checked: their sends skip every defence, and which
 * recipient a request names is known only from its body.
 */
export function precheckSendRisk(deps: EngineDeps, input: RiskPrecheckInput): OtpError | null {
  const { app, face, clientIp } = input;
  const mode = app.abuse.captcha[face];
  if (input.captchaToken !== undefined || mode === "never" || app.disabled || app.testRecipients.length > 0)
    return null;
  const now = deps.clock.nowMs();
  let refusal: OtpError | null = null;
  if (mode === "always") {
    refusal = new OtpError("CAPTCHA_REQUIRED", { details: { rule: "captcha_always" } });
  } else if (clientIp !== undefined && deps.store.committedCount) {
    // Only a store that keeps committed counts in memory can answer before the body (embedded);
    // others leave the decision to the send. The IP's counter first, its subnet's only if that
    // passes, and an IPv6 client's site's last: a flood from one address is refused after one
    // lookup. The keys and rule names are those `riskCounters` gives the send.
    const { risk } = app.abuse;
    refusal = overRisk(deps.store, app.id, "ip", clientAddressOf(clientIp), risk.perIp, now);
    const subnet = refusal ? undefined : subnetOf(clientIp);
    if (subnet !== undefined) refusal = overRisk(deps.store, app.id, "subnet", subnet, risk.perSubnet, now);
    const site = refusal || subnet === undefined ? undefined : siteOf(clientIp);
    if (site !== undefined) refusal = overRisk(deps.store, app.id, "site", site, risk.perSite, now);
  }
  if (refusal) {
    deps.sendLog.record({
      atMs: now,
      appId: app.id,
      face,
      ip: clientIp,
      decision: "captcha_required",
      reason: refusal.details.rule ?? "captcha",
    });
  }
  return refusal;
}

/** The refusal when one more send would pass the rule's limit, by the committed count. */
function overRisk(
  store: VerificationStore,
  appId: string,
  scope: Exclude<RiskScope, "device">,
  subject: string,
  rule: RateRule,
  now: number,
): OtpError | null {
  const state = store.committedCount?.(appId, riskKey(scope, subject, rule.windowSeconds), now);
  if (!state || state.count + 1 <= rule.limit) return null;
  const retryAfterSeconds = Math.max(1, Math.ceil((state.resetAtMs - now) / 1000));
  return new OtpError("CAPTCHA_REQUIRED", {
    details: { rule: riskRuleName(scope, rule), retryAfterSeconds },
  });
}

/**
 * Whether a send from this client would be asked for a captcha now, by the face's mode and, in
 * risk mode, the client's risk counters as they stand (read from the store, in any mode): for a
 * face that offers a pass before the send (CloudBase's 2022 `captcha/init`), so that it shows a
 * challenge only to a client that would need one. A client that crosses its threshold after this
 * is still asked at the send.
 */
export async function captchaWanted(
  deps: EngineDeps,
  input: { app: App; face: Face; clientIp: string | undefined; deviceId?: string | undefined },
): Promise<boolean> {
  const { app, face } = input;
  const mode = app.abuse.captcha[face];
  if (mode !== "risk") return mode === "always";
  const now = deps.clock.nowMs();
  for (const counter of riskCounters(app, { ip: input.clientIp, deviceId: input.deviceId }, false)) {
    const state = await deps.counters.peek(app.id, counter.key, now);
    if (state.count + 1 > counter.limit) return true;
  }
  return false;
}
