import type { FastifyRequest } from "fastify";
import { clientAddressSpokenFor, type TrustedPeers } from "../../shared/trusted-peers.js";
import type { IdaasLang } from "./error-map.js";

// Longer than any real user agent or fingerprint; a longer value is junk, not device information.
const MAX_DEVICE_HEADER_CHARS = 512;

/** What the IDaaS device headers say about the caller, once they are complete. */
export interface DeviceInfo {
  /** X-device-fingerprint: the device the abuse rules count */
  fingerprint: string;
  /** X-device-ip when a trusted peer states it for itself, otherwise the request's address */
  clientIp: string;
}

/** A header's trimmed value; undefined when absent, repeated or blank. */
export function headerText(request: FastifyRequest, name: string): string | undefined {
  const value = request.headers[name];
  if (typeof value !== "string") return undefined;
  const trimmed = value.trim();
  return trimmed.length > 0 ? trimmed : undefined;
}

/**
 * Reads `X-operating-sys-version`, `X-device-fingerprint` and `X-agent` (all required) and
 * `X-device-ip`; null when the required ones are incomplete. `X-device-ip` is a claim the device
 * itself could make, so it is believed only as `clientAddressSpokenFor` says.
 */
export function readDeviceHeaders(request: FastifyRequest, trusted: TrustedPeers): DeviceInfo | null {
  const required = ["x-operating-sys-version", "x-device-fingerprint", "x-agent"].map((name) =>
    headerText(request, name),
  );
  if (required.some((value) => value === undefined || value.length > MAX_DEVICE_HEADER_CHARS)) return null;
  const clientIp = clientAddressSpokenFor(request, trusted, () => headerText(request, "x-device-ip"));
  return { fingerprint: required[1] as string, clientIp };
}

/** `X-L`: Chinese for any `zh…` value, English otherwise (and when absent). */
export function languageOf(request: FastifyRequest): IdaasLang {
  return headerText(request, "x-l")?.toLowerCase().startsWith("zh") ? "zh" : "en";
}
