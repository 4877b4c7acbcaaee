import { precheckSendRisk, type RiskPrecheckInput } from "./abuse/risk-precheck.js";
import { createAccountService } from "./accounts/account-service.js";
import type { App } from "./types.js";
import {
  type CheckCodeInput,
  checkCode,
  type PeekAnyCodeInput,
  peekAnyCode,
} from "./verification/check-code.js";
import type { EngineDeps } from "./verification/engine-deps.js";
import { cancelVerification, getVerification } from "./verification/manage-verification.js";
import { type RedeemTokenInput, redeemToken } from "./verification/redeem-token.js";
import { type SendCodeInput, sendCode } from "./verification/send-code.js";

/** The verification use cases bound to their dependencies: the one object every API face calls. */
export function createEngine(deps: EngineDeps) {
  return {
    deps,
    apps: deps.apps,
    accounts: createAccountService({ accounts: deps.accounts, counters: deps.counters, clock: deps.clock }),
    sendCode: (input: SendCodeInput) => sendCode(deps, input),
    checkCode: (input: CheckCodeInput) => checkCode(deps, input),
    peekAnyCode: (input: PeekAnyCodeInput) => peekAnyCode(deps, input),
    getVerification: (app: App, id: string) => getVerification(deps, app, id),
    cancelVerification: (app: App, id: string) => cancelVerification(deps, app, id),
    redeemToken: (input: RedeemTokenInput) => redeemToken(deps, input),
    precheckSendRisk: (input: RiskPrecheckInput) => precheckSendRisk(deps, input),
    captcha: deps.captcha,
    sendLog: deps.sendLog,
  };
}

export type Engine = ReturnType<typeof createEngine>;
