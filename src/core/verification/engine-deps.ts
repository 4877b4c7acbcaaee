import type { CaptchaService } from "../abuse/captcha-service.js";
import type { AppDirectory } from "../apps/apps.js";
import type { AccountDirectory, Clock, CounterStore, Logger, SendLog, VerificationStore } from "../ports.js";
import type { CodeSecrets } from "../secrets.js";
import type { App, Channel } from "../types.js";

/** What the verification use cases need; main.ts builds it once. */
export interface EngineDeps {
  store: VerificationStore;
  counters: CounterStore;
  apps: AppDirectory;
  accounts: AccountDirectory;
  secrets: CodeSecrets;
  clock: Clock;
  logger: Logger;
  /** region for national numbers given without one (VERIFYD_DEFAULT_COUNTRY) */
  defaultCountry: string;
  /** whether a channel has a provider (production disables a channel without one) */
  channelEnabled: (channel: Channel) => boolean;
  captcha: CaptchaService;
  sendLog: SendLog;
  /** asks the pumping detector to look at a prefix that just got an SMS (off the request path) */
  watchPrefix: (app: App, prefix: string) => void;
  /** called after a send is committed so the outbox worker delivers it without waiting for its poll */
  onQueued: () => void;
}
