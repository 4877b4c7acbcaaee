import { captchaWanted, precheckSendRisk, type RiskPrecheckInput } from "./abuse/risk-precheck.js";
import { createAccountService } from "./accounts/account-service.js";
import {
  type AccountStepDeps,
  type ChangeContactInput,
  changeContact,
  type EditAccountInput,
  editAccount,
  type ResetPasswordInput,
  type ReverifyInput,
  resetPassword,
  reverify,
  type SignUpInput,
  signInWithCode,
  signUp,
} from "./accounts/account-steps.js";
import type { OtpError } from "./errors.js";
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
import {
  type AccountLookupInput,
  countAccountLookup,
  type SendCodeInput,
  sendCode,
} from "./verification/send-code.js";

/** The verification use cases bound to their dependencies: the one object every API face calls. */
export function createEngine(deps: EngineDeps) {
  const stepDeps: AccountStepDeps = {
    accounts: createAccountService({
      accounts: deps.accounts,
      counters: deps.counters,
      clock: deps.clock,
      logger: deps.logger,
      secrets: deps.secrets,
    }),
    checkCode: (input: CheckCodeInput) => checkCode(deps, input),
    redeemToken: (input: RedeemTokenInput) => redeemToken(deps, input),
  };
  return {
    deps,
    apps: deps.apps,
    accounts: stepDeps.accounts,
    sendCode: (input: SendCodeInput) => sendCode(deps, input),
    countAccountLookup: (lookup: AccountLookupInput, refusal: OtpError) =>
      countAccountLookup(deps, lookup, refusal),
    checkCode: stepDeps.checkCode,
    peekAnyCode: (input: PeekAnyCodeInput) => peekAnyCode(deps, input),
    getVerification: (app: App, id: string) => getVerification(deps, app, id),
    cancelVerification: (app: App, id: string) => cancelVerification(deps, app, id),
    redeemToken: stepDeps.redeemToken,
    signUp: (input: SignUpInput) => signUp(stepDeps, input),
    signInWithCode: (code: CheckCodeInput) => signInWithCode(stepDeps, code),
    resetPassword: (input: ResetPasswordInput) => resetPassword(stepDeps, input),
    changeContact: (input: ChangeContactInput) => changeContact(stepDeps, input),
    editAccount: (input: EditAccountInput) => editAccount(stepDeps, input),
    reverify: (input: ReverifyInput) => reverify(stepDeps, input),
    precheckSendRisk: (input: RiskPrecheckInput) => precheckSendRisk(deps, input),
    captchaWanted: (input: Parameters<typeof captchaWanted>[1]) => captchaWanted(deps, input),
    captcha: deps.captcha,
    sendLog: deps.sendLog,
  };
}

export type Engine = ReturnType<typeof createEngine>;
