import { parseProviderUrl } from "../../provider-url.js";

/** Where and how nodemailer connects, as an SMTP URL says. */
export interface SmtpConnection {
  host: string;
  port: number;
  /** TLS from the first byte (`smtps://`) */
  secure: boolean;
  /** refuse to send unless the relay upgrades with STARTTLS (`?requireTLS=true`) */
  requireTLS: boolean;
  /** percent-decoded; absent without a user */
  auth?: { user: string; pass: string };
}

/**
 * Reads `smtp://user:pass@host:port` (port 587 by default; `?requireTLS=true` insists on STARTTLS)
 * or `smtps://…` (port 465), credentials percent-decoded. Throws a `ProviderUrlError`, which never
 * repeats the URL, for one the sender could not use; config validation calls it too.
 */
export function parseSmtpUrl(text: string): SmtpConnection {
  const { url, username, password } = parseProviderUrl(text, {
    kind: "SMTP",
    protocols: ["smtp:", "smtps:"],
    credentials: "decode",
  });
  const secure = url.protocol === "smtps:";
  return {
    host: url.hostname,
    port: url.port ? Number(url.port) : secure ? 465 : 587,
    secure,
    requireTLS: url.searchParams.get("requireTLS") === "true",
    ...(username ? { auth: { user: username, pass: password } } : {}),
  };
}
