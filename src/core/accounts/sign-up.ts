import { isOtpError, OtpError } from "../errors.js";
import type { Account, App, Channel, TokenRecord } from "../types.js";
import type { CheckCodeInput, CheckCodeResult } from "../verification/check-code.js";
import type { RedeemTokenInput } from "../verification/redeem-token.js";
import type { AccountService } from "./account-service.js";

/** The engine calls signing up and in is made of. */
export interface SignUpDeps {
  accounts: AccountService;
  checkCode(input: CheckCodeInput): Promise<CheckCodeResult>;
  redeemToken(input: RedeemTokenInput): Promise<TokenRecord>;
}

/** What proves a new account's contact: its sign-up code, or the token such a code earned. */
export type ContactProof = { code: CheckCodeInput } | { token: Omit<RedeemTokenInput, "beforeSpending"> };

export interface SignUpInput {
  app: App;
  proof: ContactProof;
  username?: string | undefined;
  /** plaintext; stored as an scrypt hash */
  password?: string | undefined;
  profile?: Record<string, string>;
  /** the caller's names for the contact and the username, so a refusal names the one taken */
  fields: { contact: string; username?: string };
}

/**
 * Creates the account of a proven contact. In this order: the proof is checked but not spent (a
 * right peek costs a code nothing); the account is created, refused with ACCOUNT_EXISTS naming the
 * field when its contact or username is taken; then the proof is spent. So only who holds a proof
 * learns what is taken, and a refused sign-up keeps the proof: for a retry with another username,
 * or for signing in instead.
 */
export async function signUp(deps: SignUpDeps, input: SignUpInput): Promise<Account> {
  const { proof } = input;
  if ("code" in proof) {
    const { record } = await deps.checkCode({ ...proof.code, mode: "peek" });
    const account = await createAccount(deps, input, record.channel, record.to);
    await deps.checkCode({ ...proof.code, mode: "consume" });
    return account;
  }
  let account: Account | undefined;
  await deps.redeemToken({
    ...proof.token,
    beforeSpending: async (verified) => {
      account = await createAccount(deps, input, verified.channel, verified.to);
    },
  });
  return account as Account;
}

async function createAccount(
  deps: SignUpDeps,
  input: SignUpInput,
  channel: Channel,
  address: string,
): Promise<Account> {
  const { accounts } = deps;
  const { app, username, fields } = input;
  const refuseTaken = async () => {
    if (await accounts.findByContact(app, channel, address)) {
      throw new OtpError("ACCOUNT_EXISTS", {
        message: `A user with this ${fields.contact} already exists; sign in instead`,
        details: { field: fields.contact },
      });
    }
    if (username !== undefined && (await accounts.findByUsername(app, username))) {
      throw new OtpError("ACCOUNT_EXISTS", {
        message: "This username is taken",
        details: { field: fields.username ?? "username" },
      });
    }
  };
  // Looked up first, as a taken one is told without hashing the password.
  await refuseTaken();
  try {
    return await accounts.create({
      app,
      ...contactField(channel, address),
      username,
      password: input.password,
      ...(input.profile ? { profile: input.profile } : {}),
    });
  } catch (error) {
    // A concurrent sign-up took the contact or the username after the look-up and the store's
    // uniqueness refused this one: look again to say which.
    if (isOtpError(error) && error.code === "ACCOUNT_EXISTS") await refuseTaken();
    throw error;
  }
}

/**
 * The account a sign-in code proves, spent first so that only who holds it learns whether an
 * account has the contact. None is ACCOUNT_NOT_FOUND (a sign-in code goes only to a contact an
 * account had when it was sent), unless the app registers on code login (`loginOrRegister`):
 * then the account is created.
 */
export async function signInWithCode(deps: SignUpDeps, code: CheckCodeInput): Promise<Account> {
  const { app } = code;
  const { record } = await deps.checkCode({ ...code, mode: "consume" });
  const known = await deps.accounts.findByContact(app, record.channel, record.to);
  if (known) return known;
  if (!app.loginOrRegister) throw new OtpError("ACCOUNT_NOT_FOUND");
  try {
    return await deps.accounts.create({ app, ...contactField(record.channel, record.to) });
  } catch (error) {
    if (!isOtpError(error) || error.code !== "ACCOUNT_EXISTS") throw error;
    // Two first logins at once: the one that lost the race signs in to the account the other made.
    const made = await deps.accounts.findByContact(app, record.channel, record.to);
    if (!made) throw error;
    return made;
  }
}

function contactField(channel: Channel, address: string): { email: string } | { phone: string } {
  return channel === "email" ? { email: address } : { phone: address };
}
