import { isIP } from "node:net";
import ipaddr from "ipaddr.js";

/**
 * localhost, 127.0.0.0/8 and ::1, in any spelling (IPv4-mapped too, and bracketed as in a URL):
 * no other machine reaches them. Dev mode warns of listening elsewhere; an SMTP login to any other
 * host is warned of when it may go in cleartext.
 */
export function isLoopbackHost(host: string): boolean {
  const bare = host.replace(/^\[(.*)\]$/, "$1");
  if (bare === "localhost") return true;
  return isIP(bare) !== 0 && ipaddr.process(bare).range() === "loopback";
}
