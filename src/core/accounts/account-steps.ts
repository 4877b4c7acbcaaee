import { isOtpError, OtpError } from "../errors.js";
import type { Account, App, Channel, Purpose, TokenRecord } from "../types.js";
import type { CheckCodeInput, CheckCodeResult } from "../verification/check-code.js";
import type { RedeemTokenInput } from "../verification/redeem-token.js";
import type { AccountService, NewAccountInput } from "./account-service.js";

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

export interface EditAccountInput {
  app: App;
  /** the logged-in account */
  account: Account;
  /**
   * Every code the edit needs, in the order they are compared: codes that prove the person (sent to
   * the account's own contact), and codes that prove a new contact, which name the field it came in.
   */
  codes: { code: CheckCodeInput; newContactField?: string }[];
  /** plaintext; stored as an scrypt hash */
  password?: string | undefined;
  /** the session ids a new password leaves open: the caller's own */
  keepSessions?: string[];
}

export interface ReverifyInput {
  app: App;
  /** the logged-in account */
  account: Account;
  proof: { password: string } | { token: ReverifyToken };
  /** the request's client address: a password proof counts on its budget of failed ones */
  clientIp?: string | undefined;
}

/**
 * Creates the account of a proven contact; ACCOUNT_EXISTS, naming the field, when its contact or
 * username is taken. Only who holds a proof learns what is taken, and such a refusal keeps the
 * proof, for a retry with another username or for signing in instead.
 *
 * A code is spent before the account is made: others' wrong guesses, a resend or its expiry may
 * kill it meanwhile, and a sign-up refused then must have written nothing. A token dies only by
 * its own redemption, so the account is made before it is spent: the loser of a race for a
 * username keeps its token, and the store's uniqueness keeps one token from making two accounts.
 * A token redeemed elsewhere between the two (a backend's redeem, a sign-in with it) refuses the
 * sign-up, and the account is removed again.
 */
export async function signUp(deps: AccountStepDeps, input: SignUpInput): Promise<Account> {
  refuseUnusableUsername(input);
  if ("token" in input.proof) return signUpWithToken(deps, input, input.proof);
  return proveThen(
    deps,
    input.proof,
    (contact) => refuseTaken(deps, input, contact),
    (_, contact) => createAccount(deps, input, contact, { password: input.password }),
  );
}

async function signUpWithToken(
  deps: AccountStepDeps,
  input: SignUpInput,
  proof: Extract<ContactProof, { token: unknown }>,
): Promise<Account> {
  let created: Account | undefined;
  try {
    return await proveThen(
      deps,
      proof,
      async (contact) => {
        // Made once the token is found good (a made-up one costs no password hash), and its write
        // then comes right after the hash, so that the write and the token's spend are moments
        // apart: a token redeemed elsewhere meanwhile is rare, and the account it makes us remove
        // seldom seen.
        created = await createAccount(deps, input, contact, { password: input.password });
        return created;
      },
      async (account) => account,
    );
  } catch (error) {
    if (created) await deps.accounts.undoSignUp(created);
    throw error;
  }
}

/**
 * Sets a new password on the account a reset code or token proves. ACCOUNT_NOT_FOUND (the
 * account went after the code was sent) keeps the proof. The password is written once the proof
 * is spent, so one proof never writes two passwords.
 */
export async function resetPassword(deps: AccountStepDeps, input: ResetPasswordInput): Promise<Account> {
  return proveThen(
    deps,
    input.proof,
    async ({ channel, address }) => {
      const found = await deps.accounts.findByContact(input.app, channel, address);
      if (!found) throw new OtpError("ACCOUNT_NOT_FOUND");
      return found;
    },
    (account) => deps.accounts.resetPassword(account, input.password),
  );
}

/**
 * Moves a logged-in account to the contact a code or token proves (a first one, or a change).
 * ACCOUNT_EXISTS when another account has it, and the proof is kept; the contact is written once
 * the proof is spent.
 */
export async function changeContact(deps: AccountStepDeps, input: ChangeContactInput): Promise<Account> {
  const { app, account } = input;
  return proveThen(
    deps,
    input.proof,
    async ({ channel, address }) => {
      const holder = await deps.accounts.findByContact(app, channel, address);
      if (holder && holder.id !== account.id) {
        throw new OtpError("ACCOUNT_EXISTS", { details: { field: input.field } });
      }
    },
    (_, { channel, address }) => deps.accounts.update(account, contactField(channel, address)),
  );
}

/**
 * Applies a logged-in account's edit (Fresns's account/edit): new contacts, each proven by its own
 * code, and a new password, in one write. Every code is compared before any is spent, so a typo in
 * one costs the others nothing. Only then is a new contact that an account already has refused
 * (ACCOUNT_EXISTS naming its field; every code kept): as at sign-up, only who holds the contact's
 * code learns that it is taken. A look-up before the codes answered any logged-in caller, with
 * made-up codes and without limit, whether any address has an account. Then every code is spent,
 * and the changes are written.
 *
 * Any account, the caller's own included, makes a contact taken: Fresns refuses a "change" to the
 * contact the account already has as it refuses another's.
 */
export async function editAccount(deps: AccountStepDeps, input: EditAccountInput): Promise<Account> {
  const { app, account } = input;
  const contacts: (ProvenContact & { field: string })[] = [];
  for (const { code, newContactField } of input.codes) {
    const { record } = await deps.checkCode({ ...code, mode: "peek" });
    if (newContactField !== undefined) {
      contacts.push({ channel: record.channel, address: record.to, field: newContactField });
    }
  }
  const changes: { email?: string; phone?: string; password?: string } = {};
  for (const { channel, address, field } of contacts) {
    if (await deps.accounts.findByContact(app, channel, address)) {
      throw new OtpError("ACCOUNT_EXISTS", { details: { field } });
    }
    Object.assign(changes, contactField(channel, address));
  }
  for (const { code } of input.codes) await deps.checkCode({ ...code, mode: "consume" });
  if (input.password !== undefined) changes.password = input.password;
  return deps.accounts.update(account, changes, { keepSessions: input.keepSessions ?? [] });
}

/**
 * Proves again that a logged-in person holds the account, before a sensitive change: by its
 * password (with the login lockout, and the client's budget of failed passwords), or by a
 * verification token of one of the account's own contacts (a code sent there, with CloudBase's
 * `CUR_USER`). A token of another contact is TOKEN_INVALID and stays unspent.
 */
export async function reverify(deps: AccountStepDeps, input: ReverifyInput): Promise<void> {
  const { app, account, proof } = input;
  if ("password" in proof) {
    return deps.accounts.verifyPasswordLogin(app, account, proof.password, input.clientIp);
  }
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

/** The contact a proof proves: its channel and normalised address. */
type ProvenContact = { channel: Channel; address: string };

/**
 * Runs a step a proof allows: `check` (refusals that need no write) with the proof still unspent,
 * so that its refusals keep it, and a code's right peek costs the code nothing; then the proof is
 * spent; then `act` writes.
 */
async function proveThen<Checked, Result>(
  deps: AccountStepDeps,
  proof: ContactProof,
  check: (contact: ProvenContact) => Promise<Checked>,
  act: (checked: Checked, contact: ProvenContact) => Promise<Result>,
): Promise<Result> {
  if ("code" in proof) {
    const { record } = await deps.checkCode({ ...proof.code, mode: "peek" });
    const contact = { channel: record.channel, address: record.to };
    const checked = await check(contact);
    await deps.checkCode({ ...proof.code, mode: "consume" });
    return act(checked, contact);
  }
  let checked: { value: Checked } | undefined;
  const token = await deps.redeemToken({
    ...proof.token,
    beforeSpending: async (verified) => {
      checked = { value: await check({ channel: verified.channel, address: verified.to }) };
    },
  });
  return act((checked as { value: Checked }).value, { channel: token.channel, address: token.to });
}

/**
 * What no username may hold, whichever face signs it up (all faces share one namespace per app):
 * control, format, invisible (default-ignorable) and separator characters that are not a plain
 * space (a zero-width space, a variation selector or a Hangul filler makes a look-alike of a taken
 * name, a right-to-left override shows another, CR LF splits a log line), unpaired surrogates (no
 * text at all), and an '@' (CloudBase's
 * `loginAccount` reads a name holding one as an email, so the account could never sign in by it).
 */
const USERNAME_FORBIDDEN =
  /[\p{Cc}\p{Cs}\p{Zl}\p{Zp}@]|(?![\u200c\u200d])[\p{Cf}\p{Default_Ignorable_Code_Point}]/u;

/**
 * A zero-width non-joiner or joiner out of place. Persian words, Indic conjuncts and emoji
 * sequences need them between two characters of their own (RFC 5892's CONTEXTJ rule, simplified):
 * only beside a space, an ASCII character or an end of the name do they make a look-alike.
 */
const JOINER_OUT_OF_PLACE = /(?:^|[ -~\s])[\u200c\u200d]|[\u200c\u200d](?:$|[ -~\s])/u;

/**
 * Refuses, as VALIDATION_FAILED naming the face's field, a username no face could show or sign in
 * by: one with a character `USERNAME_FORBIDDEN` names, empty or with whitespace at either end
 * (whitespace only, too), starting with '+' (CloudBase reads it as a phone number), or not in
 * Unicode NFC (a second account under a name that shows as a taken one). What a
 * face takes today stays good: CloudBase's `^[A-Za-z0-9_-]{5,24}$`, IDaaS's digits (a `user_name`
 * sent as a number) and names in any script. Checked before the proof, which a refusal keeps.
 */
function refuseUnusableUsername(input: SignUpInput): void {
  const { username } = input;
  if (username === undefined) return;
  const unusable =
    username === "" ||
    username.trim() !== username ||
    username.startsWith("+") ||
    USERNAME_FORBIDDEN.test(username) ||
    JOINER_OUT_OF_PLACE.test(username) ||
    // one name on screen, two accounts: "José" typed composed and decomposed
    username.normalize("NFC") !== username;
  if (unusable) {
    throw new OtpError("VALIDATION_FAILED", {
      message:
        "A username may not be blank, start with '+', hold '@', control or invisible characters, or start or end with a space",
      details: { field: input.fields.username ?? "username" },
    });
  }
}

/** Refuses a sign-up whose contact or username another account has, naming the field. */
async function refuseTaken(deps: AccountStepDeps, input: SignUpInput, contact: ProvenContact): Promise<void> {
  const { app, username, fields } = input;
  if (await deps.accounts.findByContact(app, contact.channel, contact.address)) {
    throw new OtpError("ACCOUNT_EXISTS", {
      message: `A user with this ${fields.contact} already exists; sign in instead`,
      details: { field: fields.contact },
    });
  }
  if (username !== undefined && (await deps.accounts.findByUsername(app, username))) {
    throw new OtpError("ACCOUNT_EXISTS", {
      message: "This username is taken",
      details: { field: fields.username ?? "username" },
    });
  }
}

/** Creates the account; a taken contact or username is ACCOUNT_EXISTS naming the field. */
async function createAccount(
  deps: AccountStepDeps,
  input: SignUpInput,
  contact: ProvenContact,
  password: Pick<NewAccountInput, "password">,
): Promise<Account> {
  // Looked up first, as a taken one is told without hashing the password.
  await refuseTaken(deps, input, contact);
  try {
    return await deps.accounts.create({
      app: input.app,
      ...contactField(contact.channel, contact.address),
      username: input.username,
      ...password,
      ...(input.profile ? { profile: input.profile } : {}),
    });
  } catch (error) {
    // A concurrent sign-up took the contact or the username after the look-up and the store's
    // uniqueness refused this one: look again to say which.
    if (isOtpError(error) && error.code === "ACCOUNT_EXISTS") await refuseTaken(deps, input, contact);
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
