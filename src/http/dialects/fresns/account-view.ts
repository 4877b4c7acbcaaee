import { createHash } from "node:crypto";
import { parsePhoneNumberFromString } from "libphonenumber-js/max";
import type { IssuedSession } from "../../../core/accounts/account-service.js";
import type { Account } from "../../../core/types.js";

/**
 * How verifyd's accounts look on the Fresns wire. Fresns has accounts (`aid`) with one or more
 * users (`uid`); verifyd has accounts only, so each account shows as one user whose uid is derived
 * from the account id (stable, numeric like Fresns's), and the account's session tokens serve as
 * its user's tokens.
 */

/** The account's Fresns user id: a stable 9-digit number derived from the account id. */
export function uidOf(accountId: string): number {
  const digest = createHash("sha256").update(accountId).digest();
  return 100_000_000 + (digest.readUInt32BE(0) % 900_000_000);
}

/** Fresns `StrHelper::maskEmail`: the first three characters of the local part stay (one if it is short). */
export function maskEmail(email: string): string {
  const at = email.lastIndexOf("@");
  const local = email.slice(0, at);
  const domain = email.slice(at);
  return local.length > 3
    ? `${local.slice(0, 3)}${"*".repeat(local.length - 3)}${domain}`
    : `${local.slice(0, 1)}***${domain}`;
}

/** Fresns `StrHelper::maskNumber`: the first two and last two digits stay. */
export function maskNumber(digits: string): string {
  return `${digits.slice(0, 2)}${"*".repeat(Math.max(0, digits.length - 4))}${digits.slice(-2)}`;
}

/**
 * Fresns `Y-m-d H:i:s` in the client's UTC offset (`X-Fresns-Client-Timezone`, e.g. "+8",
 * "-5:30" or "+5.5"); UTC when it names none.
 */
export function fresnsDateTime(ms: number, timezone: string | undefined): string {
  const offsetMinutes = offsetOf(timezone);
  const shifted = new Date(ms + offsetMinutes * 60_000).toISOString();
  return `${shifted.slice(0, 10)} ${shifted.slice(11, 19)}`;
}

// Hours with minutes ("+5:30", "+0530"), or decimal hours ("+5.5", "-3.5", "+5.75"): the Fresns
// clients send `-getTimezoneOffset() / 60` as a number with a "+" put before a positive one, so
// a half hour comes as ".5" and UTC as a bare "0".
const OFFSET_PATTERN = /^([+-]?)(\d{1,2})(?::?(\d{2})|\.(\d{1,6}))?$/;

function offsetOf(timezone: string | undefined): number {
  const match = timezone ? OFFSET_PATTERN.exec(timezone.trim()) : null;
  if (!match) return 0;
  const fraction = match[4] === undefined ? 0 : Math.round(Number(`0.${match[4]}`) * 60);
  const minutes = Number(match[2]) * 60 + Number(match[3] ?? 0) + fraction;
  if (minutes > 14 * 60) return 0;
  return match[1] === "-" ? -minutes : minutes;
}

/** How long a session has left, as Fresns tells it beside a token. */
function expiryView(session: IssuedSession, nowMs: number, timezone: string | undefined) {
  const seconds = Math.round((session.expiresAtMs - nowMs) / 1000);
  return {
    expiredHours: Math.round(seconds / 3600),
    expiredDays: Math.round(seconds / 86_400),
    expiredDateTime: fresnsDateTime(session.expiresAtMs, timezone),
  };
}

/** `data.sessionToken` of register and login. */
export function sessionTokenView(
  account: Account,
  session: IssuedSession,
  nowMs: number,
  timezone: string | undefined,
) {
  return { aid: account.id, token: session.token, ...expiryView(session, nowMs, timezone) };
}

/** `data.sessionToken` of user/auth: the uid token of the account's one user. */
export function userSessionTokenView(
  account: Account,
  session: IssuedSession,
  nowMs: number,
  timezone: string | undefined,
) {
  return { uid: uidOf(account.id), token: session.token, ...expiryView(session, nowMs, timezone) };
}

/**
 * The account's one user, as Fresns's "User Info" gives it in account detail's `users` and in
 * user/auth's `detail`: the fields verifyd has (no avatar, roles or stats), and no user password.
 */
export function userView(account: Account) {
  return {
    uid: uidOf(account.id),
    username: account.username ?? null,
    nickname: account.profile.nickname ?? null,
    hasPassword: false,
    status: true,
  };
}

/**
 * Fresns always gives an account its `wallet`, and its clients read it unguarded
 * (`wallet.hasPassword`); verifyd keeps no wallet, so it is the wallet of a site that has the
 * wallet switched off, with no currency and no amounts.
 */
const DISABLED_WALLET = {
  status: false,
  hasPassword: false,
  currencyCode: null,
  currencyName: null,
  currencyUnit: null,
  currencyPrecision: null,
  balance: null,
  freezeAmount: null,
} as const;

/** The Fresns "Account Info" common data structure (`getAccountInfo`), contacts masked as Fresns masks them. */
export function accountDetailView(account: Account, timezone: string | undefined) {
  const phone = account.phone ? parsePhoneNumberFromString(account.phone) : undefined;
  const countryCode = phone ? Number(phone.countryCallingCode) : null;
  const purePhone = phone ? String(phone.nationalNumber) : null;
  return {
    aid: account.id,
    countryCode,
    purePhone: purePhone ? maskNumber(purePhone) : null,
    phone: phone ? maskNumber(`${countryCode}${purePhone}`) : null,
    email: account.email ? maskEmail(account.email) : null,
    hasPassword: account.passwordHash !== undefined,
    verifyStatus: false,
    verifyRealName: null,
    verifyGender: null,
    verifyCertType: null,
    verifyCertNumber: null,
    verifyIdentityType: null,
    verifyDateTime: null,
    registerDateTime: fresnsDateTime(account.createdAtMs, timezone),
    status: true,
    waitDelete: account.deletionRequestedAtMs !== undefined,
    // Fresns gives the date its scheduled deletion runs; verifyd schedules none (what a deletion
    // request leads to is the operator's), so there is no date to give.
    waitDeleteDateTime: null,
    connects: [],
    wallet: DISABLED_WALLET,
    users: [userView(account)],
  };
}

/** `data` of account/detail, and the rest of register/login's `data` (verifyd has no wallet extensions). */
export function accountDataView(account: Account, timezone: string | undefined) {
  return {
    items: { walletRecharges: [], walletWithdraws: [] },
    detail: accountDetailView(account, timezone),
  };
}
