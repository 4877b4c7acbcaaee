import { precheckSendRisk, type RiskPrecheckInput } from "./abuse/risk-precheck.js";
import { createAccountService } from "./accounts/account-service.js";
import { type SignUpDeps, type SignUpInput, signInWithCode, signUp } from "./accounts/sign-up.js";
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
  const signUpDeps: SignUpDeps = {
    accounts: createAccountService({ accounts: deps.accounts, counters: deps.counters, clock: deps.clock }),
    checkCode: (input: CheckCodeInput) => checkCode(deps, input),
    redeemToken: (input: RedeemTokenInput) => redeemToken(deps, input),
  };
  return {
    deps,
    apps: deps.apps,
    accounts: signUpDeps.accounts,
    sendCode: (input: SendCodeInput) => sendCode(deps, input),
    checkCode: signUpDeps.checkCode,
    peekAnyCode: (input: PeekAnyCodeInput) => peekAnyCode(deps, input),
    getVerification: (app: App, id: string) => getVerification(deps, app, id),
    cancelVerification: (app: App, id: string) => cancelVerification(deps, app, id),
    redeemToken: signUpDeps.redeemToken,
    signUp: (input: SignUpInput) => signUp(signUpDeps, input),
    signInWithCode: (code: CheckCodeInput) => signInWithCode(signUpDeps, code),
    precheckSendRisk: (input: RiskPrecheckInput) => precheckSendRisk(deps, input),
    captcha: deps.captcha,
    sendLog: deps.sendLog,
  };
}

export type Engine = ReturnType<typeof createEngine>;
