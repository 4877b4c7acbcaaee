import { describe, expect, it } from "vitest";
import { isLoopbackHost } from "./loopback-host.js";

// Regression: only the spellings 127.0.0.1, ::1 and localhost counted, so dev mode warned that
// 127.0.0.2 was reachable from beyond the machine. The server and the SMTP warning each had a copy
// of this test's function; they now share it, URL brackets included.
describe("isLoopbackHost", () => {
  it.each([
    "127.0.0.1",
    "127.0.0.2",
    "127.255.0.9",
    "::1",
    "[::1]",
    "0:0:0:0:0:0:0:1",
    "::ffff:127.0.0.2",
    "[::ffff:127.0.0.2]",
    "localhost",
  ])("%s is loopback", (host) => expect(isLoopbackHost(host)).toBe(true));
  it.each(["0.0.0.0", "::", "[::]", "10.0.0.1", "128.0.0.1", "::2", "::ffff:10.0.0.1", "example.com"])(
    "%s is not",
    (host) => expect(isLoopbackHost(host)).toBe(false),
  );
});
