import {
  CAPTCHA_VERIFY_TIMEOUT_MS,
  type ExternalCaptchaResult,
  type ExternalCaptchaVerifier,
  type ExternalCaptchaVerifierId,
  type ExternalCaptchaVerifierOptions,
  MAX_CAPTCHA_TOKEN_CHARS,
} from "./external-verifier.js";

/** Siteverify answers are a few hundred bytes; a bigger body is not one, and is not read further. */
const MAX_RESPONSE_BYTES = 64 * 1024;

/** Upper bound on a configured timeout: beyond a minute the request path is effectively hung. */
const MAX_TIMEOUT_MS = 60_000;

/** Longer than any IPv6 text form (45 characters): junk is not forwarded as `remoteip`. */
const MAX_REMOTE_IP_CHARS = 64;

/** What the vendor-specific part of a verifier decides from a parsed siteverify answer. */
export type SiteverifyJudge = (answer: Record<string, unknown>) => ExternalCaptchaResult;

/**
 * Builds a verifier for the siteverify protocol the three vendors share: POST form-encoded
 * `secret`, `response` and (optionally) `remoteip`; read JSON with a boolean `success` and an
 * `error-codes` list. `judge` adds each vendor's own checks (reCAPTCHA v3 score, action).
 *
 * @throws RangeError/TypeError at construction on an empty secret, a non-http(s) URL or a timeout
 *   outside 1…60,000 ms: configuration mistakes surface at startup, never per request.
 */
export function createSiteverifyVerifier(
  id: ExternalCaptchaVerifierId,
  defaultVerifyUrl: string,
  options: ExternalCaptchaVerifierOptions,
  judge: SiteverifyJudge,
  /** vendor-specific fields posted with every verification (hCaptcha's `sitekey`) */
  extraFields: Readonly<Record<string, string>> = {},
): ExternalCaptchaVerifier {
  const { secret } = options;
  if (typeof secret !== "string" || secret.length === 0) {
    throw new TypeError(`${id}: secret is required`);
  }
  const verifyUrl = new URL(options.verifyUrl ?? defaultVerifyUrl);
  if (verifyUrl.protocol !== "https:" && verifyUrl.protocol !== "http:") {
    throw new TypeError(`${id}: verifyUrl must be an http(s) URL, got ${verifyUrl.protocol}`);
  }
  const timeoutMs = options.timeoutMs ?? CAPTCHA_VERIFY_TIMEOUT_MS;
  if (!Number.isInteger(timeoutMs) || timeoutMs < 1 || timeoutMs > MAX_TIMEOUT_MS) {
    throw new RangeError(`${id}: timeoutMs must be an integer from 1 to ${MAX_TIMEOUT_MS}, got ${timeoutMs}`);
  }

  const hostnames = options.expectedHostnames?.length
    ? new Set(options.expectedHostnames.map((hostname) => hostname.toLowerCase()))
    : null;

  async function verify(token: string, remoteIp?: string): Promise<ExternalCaptchaResult> {
    // Checked before any I/O: an empty or oversized token can never be valid, and must not cost a
    // vendor round trip (nor let a client make us post megabytes).
    if (typeof token !== "string" || token.trim().length === 0) {
      return { ok: false, reason: "missing_token" };
    }
    if (token.length > MAX_CAPTCHA_TOKEN_CHARS) {
      return { ok: false, reason: "token_too_long" };
    }
    const form = new URLSearchParams({ ...extraFields, secret, response: token });
    if (typeof remoteIp === "string" && remoteIp.length > 0 && remoteIp.length <= MAX_REMOTE_IP_CHARS) {
      form.set("remoteip", remoteIp);
    }
    const fetched = await postForm(verifyUrl, form, timeoutMs);
    if (!fetched.ok) {
      return fetched;
    }
    const answer = parseAnswer(fetched.body);
    if (answer === null) {
      return { ok: false, reason: "malformed_response" };
    }
    if (answer["success"] !== true) {
      return { ok: false, reason: rejection(answer["error-codes"]) };
    }
    if (hostnames && !hostnames.has(String(answer["hostname"]).toLowerCase())) {
      return { ok: false, reason: "hostname_mismatch" };
    }
    return judge(answer);
  }

  return {
    id,
    async verify(token, remoteIp) {
      try {
        return await verify(token, remoteIp);
      } catch {
        // Belt and braces: the steps above catch their own failures, but the contract is
        // "never throws, never passes on doubt".
        return { ok: false, reason: "internal_error" };
      }
    },
  };
}

type Fetched = { ok: true; body: string } | { ok: false; reason: string };

async function postForm(url: URL, form: URLSearchParams, timeoutMs: number): Promise<Fetched> {
  // One signal covers connect, headers and body, so a vendor trickling bytes still times out.
  const signal = AbortSignal.timeout(timeoutMs);
  try {
    const response = await fetch(url, {
      method: "POST",
      body: form,
      headers: { accept: "application/json" },
      signal,
      // Siteverify never redirects; following one would post our secret to wherever it points.
      redirect: "error",
    });
    if (response.status < 200 || response.status > 299) {
      await response.body?.cancel().catch(() => undefined);
      return { ok: false, reason: `http_status_${response.status}` };
    }
    const body = await readBounded(response);
    return body === null ? { ok: false, reason: "malformed_response" } : { ok: true, body };
  } catch (error) {
    return { ok: false, reason: signal.aborted || isTimeout(error) ? "timeout" : "network_error" };
  }
}

function isTimeout(error: unknown): boolean {
  return error instanceof Error && (error.name === "TimeoutError" || error.name === "AbortError");
}

/** The body as text, or null when it exceeds {@link MAX_RESPONSE_BYTES}. */
async function readBounded(response: Response): Promise<string | null> {
  if (response.body === null) {
    return "";
  }
  const reader = response.body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > MAX_RESPONSE_BYTES) {
      await reader.cancel().catch(() => undefined);
      return null;
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks).toString("utf8");
}

function parseAnswer(body: string): Record<string, unknown> | null {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch {
    return null;
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    return null;
  }
  const answer = parsed as Record<string, unknown>;
  // A body without a boolean `success` is not a siteverify answer (a captive portal, a proxy page).
  return typeof answer["success"] === "boolean" ? answer : null;
}

function rejection(errorCodes: unknown): string {
  const codes = Array.isArray(errorCodes)
    ? errorCodes
        .filter((code): code is string => typeof code === "string")
        .slice(0, 8)
        .map((code) => code.slice(0, 64))
    : [];
  return codes.length > 0 ? `rejected:${codes.join(",")}` : "rejected";
}
