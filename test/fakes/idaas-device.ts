/** The device headers every IDaaS call carries (COMPANION-APIS.md §3), for the app `clientId`. */
export function idaasDeviceHeaders(clientId: string): Record<string, string> {
  return {
    "x-operating-sys-version": "windows10.1.1",
    "x-device-fingerprint": "156aysdna213sc50",
    "x-agent": "Mozilla/5.0 (iPhone; CPU iPhone OS 13_3 like Mac OS X)",
    "x-client-id": clientId,
  };
}
