import { OtpError } from "../errors.js";
import { timeOrderedSecretKey } from "../ids.js";
import type { App, Channel, Purpose, TokenRecord } from "../types.js";
import type { EngineDeps } from "./engine-deps.js";

export interface RedeemTokenInput {
  app: App;
  token: string;
  /** the redeeming step's purposes; the token must have been issued for one of them */
  purposes?: Purpose[] | undefined;
  /** when the redeeming step names a recipient, it must be the verified one */
  recipient?: { channel: Channel; address: string } | undefined;
  tokenField?: string;
  /**
   * A refusal of the redeeming step's own, decided from what was verified (sign-in: an account
   * must hold the contact). It runs before the token is spent, so it keeps the verification as
   * the refusals above do.
   */
  beforeSpending?: ((token: TokenRecord) => Promise<void>) | undefined;
}

/**
 * Redeems a verification token once: sign-up, sign-in and backends learn what was verified. A
 * token that does not fit (other app, purpose or recipient, or the step's own `beforeSpending`) is
 * refused without being spent, so a client's mistake does not burn the user's verification.
 */
export async function redeemToken(deps: EngineDeps, input: RedeemTokenInput): Promise<TokenRecord> {
  const { app } = input;
  const invalid = () => new OtpError("TOKEN_INVALID", { details: { field: input.tokenField ?? "token" } });
  const tokenHash = timeOrderedSecretKey(input.token);
  const now = deps.clock.nowMs();
  const token = await deps.store.findToken(app.id, tokenHash, now);
  if (!token) throw invalid();
  const purposes = input.purposes;
  if (purposes && !purposes.some((purpose) => token.purposes.includes(purpose))) throw invalid();
  const recipient = input.recipient;
  if (recipient && (recipient.channel !== token.channel || recipient.address !== token.to)) throw invalid();
  await input.beforeSpending?.(token);
  if (!(await deps.store.consumeToken(app.id, tokenHash, now))) throw invalid();
  return token;
}
