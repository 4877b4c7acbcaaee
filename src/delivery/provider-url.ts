/**
 * A provider URL its sender cannot use. The message says what is wrong and never repeats the URL
 * or any part of it: provider URLs carry passwords, and this message reaches logs and the console.
 */
export class ProviderUrlError extends Error {
  constructor(
    readonly kind: string,
    readonly reason: string,
  ) {
    super(`not a valid ${kind} URL: ${reason}`);
    this.name = "ProviderUrlError";
  }
}

export interface ProviderUrlRules {
  /** what the URL is for, as messages name it: "SMTP", "SMPP", "HTTP" */
  kind: string;
  /** the protocols accepted, as `URL.protocol` gives them: `["smtp:", "smtps:"]` */
  protocols: readonly string[];
  /**
   * What the sender does with a user and password in the URL: percent-decodes them (SMTP logs in
   * with them), cannot send them (fetch refuses a URL with credentials), never reads them, or
   * passes the URL on whole for a vendor to call (which may use them, and whose path, query or
   * fragment may hold an '@').
   */
  credentials: "decode" | "refuse" | "ignore" | "pass";
  /** a `#` fragment is refused (default): no sender reads one; a URL given to a vendor may carry one */
  fragment?: "refuse" | "allow";
}

export interface ProviderUrl {
  url: URL;
  /** percent-decoded; empty unless the rules decode credentials */
  username: string;
  password: string;
}

const PORT_RANGE = "the port must be 1-65535";
// One message for every character that must be encoded in the credentials: naming the one found
// would tell a reader of the log a character of the password.
const ENCODE_CREDENTIALS =
  "a '%', '#', '?' or '/' in the user or password must be percent-encoded (%25, %23, %3F, %2F)";
const FRAGMENT = "it has a '#' fragment, which no provider reads";

/**
 * Parses a provider URL as its sender reads it, and throws a `ProviderUrlError` for what the
 * sender could not use or would read otherwise than meant. Config validation and the senders both
 * call it, so a URL that passes at startup cannot fail in the delivery thread.
 */
export function parseProviderUrl(text: string, rules: ProviderUrlRules): ProviderUrl {
  const fail = (reason: string) => new ProviderUrlError(rules.kind, reason);
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    // Not rethrown and not kept as the cause: Node's error carries the whole URL as `input`.
    throw fail(whyUnparsable(text, rules));
  }
  if (!rules.protocols.includes(url.protocol)) {
    throw fail(mustStartWith(rules));
  }
  if (cutShort(text, rules)) throw fail(ENCODE_CREDENTIALS);
  if (text.includes("#") && rules.fragment !== "allow") throw fail(FRAGMENT);
  if (url.hostname === "") throw fail("it has no host");
  if (url.port === "0") throw fail(PORT_RANGE);
  if (rules.credentials === "ignore" || rules.credentials === "pass")
    return { url, username: "", password: "" };
  if (url.username !== "" || url.password !== "") {
    if (rules.credentials === "refuse") {
      throw fail("it must not carry a user or password (requests refuse a URL with credentials)");
    }
    try {
      return { url, username: decodeURIComponent(url.username), password: decodeURIComponent(url.password) };
    } catch {
      throw fail(ENCODE_CREDENTIALS);
    }
  }
  return { url, username: "", password: "" };
}

/** An HTTP(S) endpoint that `fetch` is given: a vendor's base URL or a webhook. */
export function parseHttpUrl(text: string): URL {
  return parseProviderUrl(text, { kind: "HTTP", protocols: ["http:", "https:"], credentials: "refuse" }).url;
}

/** What is wrong with a URL `new URL` refused, told without repeating any of it. */
function whyUnparsable(text: string, rules: ProviderUrlRules): string {
  if (!/^[A-Za-z][A-Za-z0-9+.-]*:\/\//.test(text)) {
    return mustStartWith(rules);
  }
  if (cutShort(text, rules)) return ENCODE_CREDENTIALS;
  if (text.includes("#") && rules.fragment !== "allow") return FRAGMENT;
  const authority = authorityOf(text);
  const hostAndPort = authority.slice(authority.lastIndexOf("@") + 1);
  const port = /:([^:\]]*)$/.exec(hostAndPort)?.[1];
  if (port !== undefined && port !== "") {
    if (!/^\d+$/.test(port)) return "the port is not a number";
    if (Number(port) > 65_535) return PORT_RANGE;
  }
  if (/^(:\d*)?$/.test(hostAndPort)) return "it has no host";
  return "it does not parse as a URL";
}

/**
 * Where the URL may carry credentials, an '@' past the host is theirs: an unencoded '/', '?' or
 * '#' in them ended the authority early, and the rest reads as host, port, path or query. (An HTTP
 * URL for fetch carries none, and may well have an '@' in its path or query.)
 */
function cutShort(text: string, rules: ProviderUrlRules): boolean {
  if (rules.credentials === "refuse") return false;
  const rest = afterAuthority(text);
  if (rules.credentials !== "pass") return rest.includes("@");
  // A URL passed on whole may have an '@' in a parameter of its query or fragment (a vendor's
  // `owner=ops@acme`); one in its path, or before a parameter's first '=' or '&', still tells
  // credentials cut short by an unencoded '/', '?' or '#'.
  const end = rest.search(/[?#]/);
  if (end === -1) return rest.includes("@");
  if (rest.slice(0, end).includes("@")) return true;
  const parameters = rest.slice(end + 1);
  const at = parameters.indexOf("@");
  const separator = parameters.search(/[=&]/);
  return at !== -1 && (separator === -1 || at < separator);
}

function mustStartWith(rules: ProviderUrlRules): string {
  return `it must start with ${rules.protocols.map((protocol) => `${protocol}//`).join(" or ")}`;
}

function authorityOf(text: string): string {
  const start = text.indexOf("://") + 3;
  const rest = text.slice(start);
  const end = rest.search(/[/?#]/);
  return end === -1 ? rest : rest.slice(0, end);
}

function afterAuthority(text: string): string {
  const start = text.indexOf("://") + 3;
  return text.slice(start + authorityOf(text).length);
}
