import type { ExternalCaptchaVerifier } from "../../core/ports.js";
import type { App, ExternalCaptchaConfig } from "../../core/types.js";
import { createHcaptchaVerifier } from "./hcaptcha.js";
import { createRecaptchaVerifier } from "./recaptcha.js";
import { createTurnstileVerifier } from "./turnstile.js";

/** Builds the verifier an app's `abuse.external` names (a small switch registry, no globals). */
export function createExternalVerifier(config: ExternalCaptchaConfig): ExternalCaptchaVerifier {
  const common = {
    secret: config.secret,
    ...(config.verifyUrl ? { verifyUrl: config.verifyUrl } : {}),
    ...(config.expectedHostnames ? { expectedHostnames: config.expectedHostnames } : {}),
  };
  const action = config.expectedAction ? { expectedAction: config.expectedAction } : {};
  switch (config.provider) {
    case "turnstile":
      return createTurnstileVerifier({ ...common, ...action });
    case "hcaptcha":
      return createHcaptchaVerifier({ ...common, ...(config.sitekey ? { sitekey: config.sitekey } : {}) });
    case "recaptcha":
      return createRecaptchaVerifier({
        ...common,
        ...action,
        ...(config.minScore !== undefined ? { minScore: config.minScore } : {}),
      });
  }
}

/**
 * Each app's verifier, built once per configuration (apps are re-read every few seconds; a
 * verifier is rebuilt only when its configuration changed).
 */
export function externalVerifiersByApp(): (app: App) => ExternalCaptchaVerifier | null {
  const built = new Map<string, { key: string; verifier: ExternalCaptchaVerifier }>();
  return (app) => {
    const config = app.abuse.external;
    if (!config) return null;
    const key = JSON.stringify(config);
    const cached = built.get(app.id);
    if (cached?.key === key) return cached.verifier;
    const verifier = createExternalVerifier(config);
    built.set(app.id, { key, verifier });
    return verifier;
  };
}
