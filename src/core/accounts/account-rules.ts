import { OtpError } from "../errors.js";
import type { AccountDirectory } from "../ports.js";
import type { Account, AccountRule, Channel, Recipient } from "../types.js";

export interface AccountRuleInput {
  appId: string;
  rule: AccountRule;
  channel: Channel;
  /** absent only for `own_contact`, which sends to the logged-in account's own contact */
  recipient: Recipient | undefined;
  /** the logged-in account, for the logged-in rules */
  accountId: string | undefined;
}

export interface AccountRuleOutcome {
  recipient: Recipient;
  /** whether an account owns the recipient, when the rule had to look it up */
  accountExists: boolean | undefined;
  /** the logged-in account, for the logged-in rules */
  account: Account | undefined;
}

export function contactOf(account: Account, channel: Channel): string | undefined {
  return channel === "email" ? account.email : account.phone;
}

/** Checks the recipient precondition of a send (DESIGN.md "Purposes and account rules"). */
export async function applyAccountRule(
  accounts: AccountDirectory,
  input: AccountRuleInput,
): Promise<AccountRuleOutcome> {
  const { appId, rule, channel } = input;
  if (rule === "own_contact" || rule === "logged_in_contact_blank") {
    const account = input.accountId ? await accounts.findById(appId, input.accountId) : null;
    if (!account) throw new OtpError("LOGIN_REQUIRED");
    const own = contactOf(account, channel);
    if (rule === "own_contact") {
      if (!own) throw new OtpError("CONTACT_MISSING");
      return { recipient: { channel, address: own }, accountExists: true, account };
    }
    const recipient = requireRecipient(input.recipient);
    // Binding a contact that an account already owns would let one contact sign into two accounts.
    // Told before the account's own contact, in Fresns's order (COMPANION-APIS.md 1.1, step 7
    // before step 9): a contact owned already is refused whoever asks.
    if (await accounts.findByContact(appId, channel, recipient.address)) throw new OtpError("ACCOUNT_EXISTS");
    if (own) throw new OtpError("CONTACT_ALREADY_SET");
    return { recipient, accountExists: false, account };
  }
  const recipient = requireRecipient(input.recipient);
  if (rule === "any") return { recipient, accountExists: undefined, account: undefined };
  const exists = (await accounts.findByContact(appId, channel, recipient.address)) !== null;
  if (rule === "must_exist" && !exists) throw new OtpError("ACCOUNT_NOT_FOUND");
  if (rule === "must_not_exist" && exists) throw new OtpError("ACCOUNT_EXISTS");
  return { recipient, accountExists: exists, account: undefined };
}

function requireRecipient(recipient: Recipient | undefined): Recipient {
  if (!recipient)
    throw new OtpError("VALIDATION_FAILED", { message: "to is required", details: { field: "to" } });
  return recipient;
}
