import { parse } from "pg-connection-string";
import { ProviderUrlError, parseProviderUrl } from "../delivery/provider-url.js";

// Cluster mode's backend URLs, read at startup as their drivers will read them, so that a URL the
// driver would fail on, or read otherwise than meant, stops the start naming its key instead of
// crashing the server later or printing the URL. The messages never repeat the URL: it carries a
// password.

/** A Redis URL as ioredis reads it: `redis://` or `rediss://`, and a path that is a db number. */
export function parseRedisUrl(text: string): URL {
  const { url } = parseProviderUrl(text, {
    kind: "Redis",
    protocols: ["redis:", "rediss:"],
    credentials: "decode",
  });
  // ioredis selects the path as the database; anything but a number is refused by Redis at
  // every connection, after the server has started.
  if (!/^(\/\d{0,9})?$/.test(url.pathname)) {
    throw new ProviderUrlError("Redis", "its path must be empty or a database number (redis://host:6379/0)");
  }
  return url;
}

/**
 * A PostgreSQL URL as pg reads it: with pg's own parser, which takes what `URL` refuses (a `%`
 * starting no escape, a host-less `user:pass@/db?host=/socket`), so a URL pg connects with is
 * never refused here.
 */
export function parsePostgresUrl(text: string): void {
  try {
    parse(text);
  } catch {
    // Not rethrown and not kept as the cause: the parser's error carries the whole URL.
    throw new ProviderUrlError(
      "PostgreSQL",
      "its driver cannot read it (a '#', '?' or '/' in the user or password must be percent-encoded, and the port must be 1-65535)",
    );
  }
}
