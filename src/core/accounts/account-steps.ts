import { isOtpError, OtpError } from "../errors.js";
import type { Account, App, Channel, Purpose, TokenRecord } from "../types.js";
import type { CheckCodeInput, CheckCodeResult } from "../verification/check-code.js";
import type { RedeemTokenInput } from "../verification/redeem-token.js";
import type { AccountService } from "./account-service.js";

/** The engine calls the account steps are made of. */
export interface AccountStepDeps {
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

export interface ResetPasswordInput {
  app: App;
  proof: ContactProof;
  /** plaintext; stored as an scrypt hash */
  password: string;
}

export interface ChangeContactInput {
  app: App;
  /** the logged-in account */
  account: Account;
  /** proves the new contact */
  proof: ContactProof;
  /** the caller's name for the new contact, so a refusal names it */
  field: string;
}

export interface ReverifyInput {
  app: App;
  /** the logged-in account */
  account: Account;
  proof: { password: string } | { token: ReverifyToken };
}

/**
 * Creates the account of a proven contact; ACCOUNT_EXISTS, naming the field, when its contact or
 * username is taken. The account is made before the proof is spent (`proveThen`), so only who
 * holds a proof learns what is taken, and a refused sign-up keeps the proof: for a retry with
 * another username, or for signing in instead. The store's uniqueness keeps one proof from making
 * two accounts.
 */
export async function signUp(deps: AccountStepDeps, input: SignUpInput): Promise<Account> {
  return proveThen(deps, input.proof, (channel, address) => createAccount(deps, input, channel, address));
}

/**
 * Sets a new password on the account a reset code or token proves. ACCOUNT_NOT_FOUND (the
 * account went after the code was sent) keeps the proof. The password is written once the proof
 * is spent, so one proof never writes two passwords.
 */
export async function resetPassword(deps: AccountStepDeps, input: ResetPasswordInput): Promise<Account> {
  const account = await proveThen(deps, input.proof, async (channel, address) => {
    const found = await deps.accounts.findByContact(input.app, channel, address);
    if (!found) throw new OtpError("ACCOUNT_NOT_FOUND");
    return found;
  });
  return deps.accounts.update(account, { password: input.password });
}

/**
 * Moves a logged-in account to the contact a code or token proves (a first one, or a change).
 * ACCOUNT_EXISTS when another account has it, and the proof is kept; the contact is written
 * before the proof is spent, as the store's uniqueness keeps it to one account.
 */
export async function changeContact(deps: AccountStepDeps, input: ChangeContactInput): Promise<Account> {
  const { app, account } = input;
  return proveThen(deps, input.proof, async (channel, address) => {
    const holder = await deps.accounts.findByContact(app, channel, address);
    if (holder && holder.id !== account.id) {
      throw new OtpError("ACCOUNT_EXISTS", { details: { field: input.field } });
    }
    return deps.accounts.update(account, contactField(channel, address));
  });
}

/**
 * Proves again that a logged-in person holds the account, before a sensitive change: by its
 * password (with the login lockout), or by a verification token of one of the account's own
 * contacts (a code sent there, with CloudBase's `CUR_USER`). A token of another contact is
 * TOKEN_INVALID and stays unspent.
 */
export async function reverify(deps: AccountStepDeps, input: ReverifyInput): Promise<void> {
  const { app, account, proof } = input;
  if ("password" in proof) return deps.accounts.verifyPasswordLogin(app, account, proof.password);
  const tokenField = proof.token.tokenField ?? "verification_token";
  await deps.redeemToken({
    ...proof.token,
    app,
    purposes: REVERIFY_TOKEN_PURPOSES,
    tokenField,
    beforeSpending: async (verified) => {
      const own = verified.channel === "email" ? account.email : account.phone;
      if (own !== verified.to) throw new OtpError("TOKEN_INVALID", { details: { field: tokenField } });
    },
  });
}

/** A re-verification's token: what a code sent to the account's own contact earned. */
export type ReverifyToken = Pick<RedeemTokenInput, "token" | "tokenField">;

/** A code sent to a logged-in person's own contact is for signing in (CloudBase) or re-verifying. */
const REVERIFY_TOKEN_PURPOSES: Purpose[] = ["sign_in", "reverify"];

/**
 * Checks a proof without spending it, runs `step` on the contact it proves, then spends it. A
 * refusal of the step keeps the proof; a code's right peek costs it nothing.
 */
async function proveThen<T>(
  deps: AccountStepDeps,
  proof: ContactProof,
  step: (channel: Channel, address: string) => Promise<T>,
): Promise<T> {
  if ("code" in proof) {
    const { record } = await deps.checkCode({ ...proof.code, mode: "peek" });
    const result = await step(record.channel, record.to);
    await deps.checkCode({ ...proof.code, mode: "consume" });
    return result;
  }
  let result: { value: T } | undefined;
  await deps.redeemToken({
    ...proof.token,
    beforeSpending: async (verified) => {
      result = { value: await step(verified.channel, verified.to) };
    },
  });
  return (result as { value: T }).value;
}

async function createAccount(
  deps: AccountStepDeps,
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
export async function signInWithCode(deps: AccountStepDeps, code: CheckCodeInput): Promise<Account> {
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
