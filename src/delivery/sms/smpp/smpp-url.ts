import { parseProviderUrl } from "../../provider-url.js";

/** Where the SMPP sender connects, as its URL says. */
export interface SmppTarget {
  host: string;
  port: number;
  tls: boolean;
}

/**
 * Reads `smpp://host:port` (port 2775 by default) or `ssmpp://host:port` (TLS, port 3550). Bind
 * credentials are keys of their own, so a user or password in the URL is not read. Throws a
 * `ProviderUrlError`, which never repeats the URL; config validation calls it too.
 */
export function parseSmppUrl(text: string): SmppTarget {
  const { url } = parseProviderUrl(text, {
    kind: "SMPP",
    protocols: ["smpp:", "ssmpp:"],
    credentials: "ignore",
  });
  const tls = url.protocol === "ssmpp:";
  return { host: url.hostname, port: url.port ? Number(url.port) : tls ? 3550 : 2775, tls };
}
