import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ConfigError, environmentProviderIds, loadConfig } from "./load.js";
import { type ProviderConfig, providerWarnings } from "./provider-schema.js";

const dir = mkdtempSync(join(tmpdir(), "verifyd-providers-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let files = 0;
function configFile(content: unknown): string {
  const path = join(dir, `config-${files++}.json`);
  writeFileSync(path, JSON.stringify(content));
  return path;
}

function issues(env: Record<string, string>): string[] {
  try {
    loadConfig(env);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as ConfigError).issues;
  }
  throw new Error("expected the configuration to be refused");
}

const twilio = {
  id: "twilio",
  type: "twilio",
  accountSid: `AC${"a1".repeat(16)}`,
  authToken: "${TWILIO_AUTH_TOKEN}",
  from: "+14155550199",
  statusCallbackUrl: "https://verifyd.example.com/v1/callbacks/twilio",
};
const tencent = {
  id: "tencent",
  type: "tencent",
  secretId: "AKID0123",
  secretKey: "${TENCENT_SECRET_KEY}",
  smsSdkAppId: "1400006666",
  signName: "腾讯云",
  templateId: "1110",
};
const mail = {
  id: "mail",
  type: "smtp",
  url: "smtps://relay.example.com",
  from: "Acme <no-reply@acme.example>",
};

describe("loadConfig: providers and routing", () => {
  it("reads providers with secrets from the environment, and routes per channel, country and app", () => {
    const config = loadConfig({
      VERIFYD_CONFIG: configFile({
        providers: [mail, twilio, tencent],
        routing: { sms: ["twilio"], "sms:CN": ["tencent", "twilio"], "acme/email": ["mail"] },
        delivery: {
          triesPerProvider: 3,
          leaseSeconds: 45,
          breaker: { failureThreshold: 4, coolDownSeconds: 60 },
        },
      }),
      TWILIO_AUTH_TOKEN: "token-from-env",
      TENCENT_SECRET_KEY: "key-from-env",
    });
    expect(config.providers).toEqual([
      mail,
      { ...twilio, authToken: "token-from-env" },
      { ...tencent, secretKey: "key-from-env" },
    ]);
    expect(config.routing).toEqual({
      sms: ["twilio"],
      "sms:CN": ["tencent", "twilio"],
      "acme/email": ["mail"],
    });
    expect(config.delivery).toEqual({
      triesPerProvider: 3,
      leaseSeconds: 45,
      breaker: { failureThreshold: 4, coolDownSeconds: 60 },
    });
  });

  // @see .scratch/providers/slow-vendor.test.ts: with leaseSeconds 10 the worker gave a gateway
  // 5 s, recorded a failure, and the retry sent the message the gateway had accepted a second time.
  it("refuses a delivery lease shorter than a provider call and its recording need, naming the key", () => {
    for (const leaseSeconds of [2, 10, 29]) {
      expect(issues({ VERIFYD_CONFIG: configFile({ delivery: { leaseSeconds } }) })).toEqual([
        expect.stringMatching(/^delivery\/leaseSeconds: .*30/),
      ]);
    }
    expect(loadConfig({ VERIFYD_CONFIG: configFile({ delivery: { leaseSeconds: 30 } }) }).delivery).toEqual({
      leaseSeconds: 30,
    });
  });

  // An HTTP vendor's call allowed 60 s outlasted the try's 20 s: the worker gave up on a call that
  // could still send the message, and the retry sent it again.
  it("refuses an HTTP provider's timeout the try cannot wait for, naming the key", () => {
    const gateway = {
      id: "gateway",
      type: "webhook",
      url: "https://sms.example.com/send",
      secret: "whsec_0123456789abcdef",
    };
    for (const timeoutMs of [19_000, 30_000]) {
      expect(issues({ VERIFYD_CONFIG: configFile({ providers: [{ ...gateway, timeoutMs }] }) })).toEqual([
        expect.stringMatching(/^providers\/0\/timeoutMs: /),
      ]);
    }
    const config = loadConfig({
      VERIFYD_CONFIG: configFile({ providers: [{ ...gateway, timeoutMs: 18_000 }] }),
    });
    expect(config.providers).toEqual([{ ...gateway, timeoutMs: 18_000 }]);
  });

  it("turns VERIFYD_SMTP_URL + VERIFYD_EMAIL_FROM alone into the SMTP provider of email", () => {
    const config = loadConfig({
      VERIFYD_SMTP_URL: "smtp://user:pass@mail.example.com:587",
      VERIFYD_EMAIL_FROM: "codes@example.com",
    });
    expect(config.providers).toEqual([
      { id: "smtp", type: "smtp", url: "smtp://user:pass@mail.example.com:587", from: "codes@example.com" },
    ]);
    expect(loadConfig({}).providers).toEqual([]);
  });

  it("lets the environment's SMTP replace a file provider with the id smtp", () => {
    const config = loadConfig({
      VERIFYD_CONFIG: configFile({ providers: [{ ...mail, id: "smtp" }, twilio] }),
      TWILIO_AUTH_TOKEN: "t",
      VERIFYD_SMTP_URL: "smtp://mail.example.com:25",
      VERIFYD_EMAIL_FROM: "codes@example.com",
    });
    expect(
      config.providers.map((provider) => [provider.id, "url" in provider ? provider.url : undefined]),
    ).toEqual([
      ["smtp", "smtp://mail.example.com:25"],
      ["twilio", undefined],
    ]);
  });

  // Regression: VERIFYD_EMAIL_FROM was checked as an address but a file SMTP provider's `from`
  // (and `replyTo`) was not: "not an address", or one with a CR/LF ending the header, started.
  it("refuses an SMTP provider's from or replyTo that is not an address, naming the key", () => {
    expect(
      issues({
        VERIFYD_CONFIG: configFile({
          providers: [{ ...mail, from: "not an address", replyTo: "Shop <help@shop.example>\r\nBcc: x@y.z" }],
          routing: { email: ["mail"] },
        }),
      }),
    ).toEqual([
      'providers/0/from: "not an address" is not an email address: write codes@example.com or Name <codes@example.com>',
      'providers/0/replyTo: "Shop <help@shop.example>\\r\\nBcc: x@y.z" is not an email address: write codes@example.com or Name <codes@example.com> (several: a comma list)',
    ]);
    const config = loadConfig({
      VERIFYD_CONFIG: configFile({
        providers: [
          {
            ...mail,
            from: '"Shop, Inc." <codes@shop.example>',
            replyTo: 'help@shop.example, "Billing, Shop" <billing@shop.example>',
          },
        ],
        routing: { email: ["mail"] },
      }),
    });
    expect(config.providers[0]).toMatchObject({ from: '"Shop, Inc." <codes@shop.example>' });
  });

  it("names the route key and position of an unknown provider", () => {
    expect(
      issues({
        VERIFYD_CONFIG: configFile({ providers: [mail], routing: { email: ["mail"], "sms:CN": ["tencnt"] } }),
      }),
    ).toEqual(['routing/sms:CN/0: unknown provider "tencnt" (declared: mail)']);
  });

  it("refuses a route to a provider of the other channel", () => {
    expect(issues({ VERIFYD_CONFIG: configFile({ providers: [mail], routing: { sms: ["mail"] } }) })).toEqual(
      ['routing/sms/0: provider "mail" delivers email, not sms'],
    );
  });

  // Regression: an app id containing "email" made its SMS routes checked as email ones. @see issue 7
  it("checks an app's route against the channel its key names, whatever the app id contains", () => {
    const hook = {
      id: "hook",
      type: "webhook",
      url: "https://gateway.example/sms",
      secret: "whsec_0123456789",
    };
    const load = (routing: Record<string, string[]>) =>
      loadConfig({ VERIFYD_CONFIG: configFile({ providers: [mail, hook], routing }) });
    expect(load({ "email-team/sms": ["hook"], "sms-team/email": ["mail"] }).routing).toEqual({
      "email-team/sms": ["hook"],
      "sms-team/email": ["mail"],
    });
    expect(
      issues({
        VERIFYD_CONFIG: configFile({ providers: [mail, hook], routing: { "email-team/sms": ["mail"] } }),
      }),
    ).toEqual(['routing/email-team/sms/0: provider "mail" delivers email, not sms']);
  });

  it("refuses a malformed route key", () => {
    const found = issues({
      VERIFYD_CONFIG: configFile({ providers: [mail], routing: { "email:CN": ["mail"] } }),
    });
    expect(found.join("\n")).toMatch(/routing.*email:CN/);
  });

  it("checks each provider against its own type, naming the key", () => {
    const found = issues({
      VERIFYD_CONFIG: configFile({
        providers: [
          { id: "mail", type: "smtp", url: "http://relay.example.com", from: "a@b.c" },
          { ...tencent, secretKey: "k", templateId: "not-a-number", region: undefined },
          { id: "hook", type: "webhook", url: "https://gw.example.com", secret: "short" },
          {
            id: "sms",
            type: "smpp",
            url: "smpp://smsc.example.com:2775",
            systemId: "acme",
            password: "p",
            sourceAddr: "Acme",
            bogus: 1,
          },
        ],
      }),
    });
    expect(found).toEqual([
      expect.stringMatching(/^providers\/0\/url: /),
      expect.stringMatching(/^providers\/1\/templateId: /),
      expect.stringMatching(/^providers\/2\/secret: /),
      "providers/3: unknown key(s) bogus for type smpp",
    ]);
  });

  it("reads an SMPP provider's submit window, and refuses one below 1 and a response timeout the try cannot wait for", () => {
    const smsc = {
      id: "smsc",
      type: "smpp",
      url: "smpp://smsc.example.com:2775",
      systemId: "acme",
      password: "p",
      sourceAddr: "Acme",
    };
    const config = loadConfig({ VERIFYD_CONFIG: configFile({ providers: [{ ...smsc, submitWindow: 5 }] }) });
    expect(config.providers).toEqual([{ ...smsc, submitWindow: 5 }]);

    const found = issues({
      VERIFYD_CONFIG: configFile({
        providers: [
          { ...smsc, submitWindow: 0 },
          { ...smsc, id: "smsc2", responseTimeoutMs: 30_000 },
        ],
      }),
    });
    expect(found).toEqual([
      expect.stringMatching(/^providers\/0\/submitWindow: /),
      expect.stringMatching(/^providers\/1\/responseTimeoutMs: /),
    ]);
  });

  it("refuses an unknown provider type, duplicate ids and Twilio credentials that do not go together", () => {
    const found = issues({
      VERIFYD_CONFIG: configFile({
        providers: [
          { id: "x", type: "carrier-pigeon" },
          mail,
          { ...mail },
          {
            id: "t1",
            type: "twilio",
            accountSid: twilio.accountSid,
            from: "+1",
            apiKeySid: `SK${"b".repeat(32)}`,
          },
          {
            id: "t2",
            type: "twilio",
            accountSid: twilio.accountSid,
            authToken: "t",
            from: "+1",
            messagingServiceSid: `MG${"c".repeat(32)}`,
          },
        ],
      }),
    });
    expect(found).toEqual(expect.arrayContaining([expect.stringMatching(/^providers\/0\/type: /)]));
    const more = issues({
      VERIFYD_CONFIG: configFile({
        providers: [
          mail,
          { ...mail },
          {
            id: "t1",
            type: "twilio",
            accountSid: twilio.accountSid,
            from: "+1",
            apiKeySid: `SK${"b".repeat(32)}`,
          },
          {
            id: "t2",
            type: "twilio",
            accountSid: twilio.accountSid,
            authToken: "t",
            from: "+1",
            messagingServiceSid: `MG${"c".repeat(32)}`,
          },
          {
            id: "t3",
            type: "twilio",
            accountSid: twilio.accountSid,
            apiKeySid: `SK${"b".repeat(32)}`,
            apiKeySecret: "s",
            from: "+1",
            statusCallbackUrl: "https://x.example/cb",
          },
        ],
      }),
    });
    expect(more).toEqual([
      'providers/1/id: provider "mail" is declared twice',
      "providers/2/apiKeySecret: apiKeySid and apiKeySecret go together",
      "providers/3/from: set exactly one of from and messagingServiceSid",
      "providers/4/authToken: required to verify the signature of status callbacks (statusCallbackUrl is set)",
    ]);
  });

  // @see .scratch/ops-review/bad-smtp-url-prod.mjs: a URL matching its type's prefix pattern was
  // parsed only in the delivery thread, which then crash-looped.
  it("reads every provider URL as its sender will, naming the key and never the URL", () => {
    const smpp = { id: "smsc", type: "smpp", systemId: "acme", password: "p", sourceAddr: "Acme" };
    const hook = { id: "hook", type: "webhook", secret: "whsec_0123456789" };
    const found = issues({
      VERIFYD_CONFIG: configFile({
        providers: [
          { ...mail, url: "smtp://mailer:Tr0ub4dor#3@smtp.example.com:587" },
          { ...mail, id: "mail2", url: "smtps://mailer:50%off@mail.example" },
          { ...smpp, url: "smpp://smsc.example.com:99999" },
          { ...hook, url: "https://gateway:hunter2@gw.example/send" },
          { ...twilio, baseUrl: "https://twilio-stub:70000" },
          { ...tencent, baseUrl: "https://tencent stub/" },
          { ...smpp, id: "smsc2", url: "ssmpp://smsc.example.com:3550" },
          { ...twilio, id: "twilio2", statusCallbackUrl: "https://verifyd.example.com:99999/v1/callbacks/t" },
        ],
      }),
      TWILIO_AUTH_TOKEN: "t",
      TENCENT_SECRET_KEY: "k",
    });
    const encode =
      "a '%', '#', '?' or '/' in the user or password must be percent-encoded (%25, %23, %3F, %2F)";
    expect(found).toEqual([
      `providers/0/url: not a valid SMTP URL: ${encode}`,
      `providers/1/url: not a valid SMTP URL: ${encode}`,
      "providers/2/url: not a valid SMPP URL: the port must be 1-65535",
      "providers/3/url: not a valid HTTP URL: it must not carry a user or password (requests refuse a URL with credentials)",
      "providers/4/baseUrl: not a valid HTTP URL: the port must be 1-65535",
      "providers/5/baseUrl: not a valid HTTP URL: it does not parse as a URL",
      "providers/7/statusCallbackUrl: not a valid HTTP URL: the port must be 1-65535",
    ]);
    expect(found.join("\n")).not.toMatch(/Tr0ub4dor|50%off|mailer|hunter2|gateway|stub|example/);
  });

  // Regression: the environment's SMTP provider went first in the list checked, so a file
  // provider's issue named the index after its own. The file's "smtp" entry, which the
  // environment replaces, is not checked.
  it("names a file provider by its index in the file when VERIFYD_SMTP_URL adds one", () => {
    const providers = [{ ...mail, from: "x" }, twilio, { ...mail, id: "smtp", url: "smtp://h:99999" }];
    expect(
      issues({
        VERIFYD_CONFIG: configFile({ providers }),
        VERIFYD_SMTP_URL: "smtp://mail.example.com:25",
        VERIFYD_EMAIL_FROM: "codes@example.com",
        TWILIO_AUTH_TOKEN: "t",
      }),
    ).toEqual([expect.stringMatching(/^providers\/0\/from: /)]);
  });

  it("refuses SMS settings of an app it cannot use", () => {
    const found = issues({
      VERIFYD_CONFIG: configFile({ apps: [{ id: "shop", sms: { webOtpDomain: "https://shop.example" } }] }),
    });
    expect(found.join("\n")).toMatch(/apps\/0\/sms\/webOtpDomain/);
  });

  // Regression: refused as "a fragment, which no provider reads", though Twilio reads its
  // connection overrides there. @see .scratch/diff17 finding 7
  it("accepts a Twilio statusCallbackUrl with connection overrides in its fragment", () => {
    const config = loadConfig({
      VERIFYD_CONFIG: configFile({
        providers: [
          // an '@' in its query is no credentials cut short (@see .scratch/diff17b finding 5)
          {
            ...twilio,
            statusCallbackUrl: "https://verifyd.example.com/v1/callbacks/t?owner=ops@acme#rc=3&ct=2000",
          },
        ],
      }),
      TWILIO_AUTH_TOKEN: "t",
    });
    expect(config.providers[0]).toMatchObject({ statusCallbackUrl: expect.stringContaining("#rc=3") });
    // credentials cut short by an unencoded '/' are still told (@see .scratch/diff17c finding 5)
    expect(
      issues({
        VERIFYD_CONFIG: configFile({
          providers: [
            { ...twilio, statusCallbackUrl: "https://ops:pa/ss@verifyd.example.com/v1/callbacks/t" },
            {
              ...twilio,
              id: "t2",
              statusCallbackUrl: "https://ops:2024?x@verifyd.example.com/v1/callbacks/t",
            },
            {
              ...twilio,
              id: "t3",
              statusCallbackUrl: "https://ops:pa#ss@verifyd.example.com/v1/callbacks/t",
            },
          ],
        }),
        TWILIO_AUTH_TOKEN: "t",
      }),
    ).toEqual([
      expect.stringMatching(/^providers\/0\/statusCallbackUrl: .*must be percent-encoded/),
      expect.stringMatching(/^providers\/1\/statusCallbackUrl: .*must be percent-encoded/),
      expect.stringMatching(/^providers\/2\/statusCallbackUrl: .*must be percent-encoded/),
    ]);
  });
});

describe("providerWarnings", () => {
  const smtp = (url: string): ProviderConfig => ({
    id: "mail",
    type: "smtp",
    url,
    from: "codes@shop.example",
  });

  // Regression: credentials and codes went in cleartext to a relay that offered no STARTTLS,
  // with no warning.
  it("warns of an SMTP login that may go in cleartext, and of nothing safer", () => {
    expect(providerWarnings([smtp("smtp://mailer:s3cret@smtp.example.com:587")])).toEqual([
      {
        provider: "mail",
        key: "url",
        message: expect.stringMatching(/cleartext.*smtps:\/\/.*requireTLS=true/),
      },
    ]);
    for (const url of [
      "smtps://mailer:s3cret@smtp.example.com",
      "smtp://mailer:s3cret@smtp.example.com:587?requireTLS=true",
      "smtp://smtp.example.com:25",
      "smtp://mailer:s3cret@127.0.0.1:25",
      "smtp://mailer:s3cret@localhost:25",
      "smtp://mailer:s3cret@[::1]:25",
    ]) {
      expect(providerWarnings([smtp(url)])).toEqual([]);
    }
  });
});

// Regression: the warning for the provider VERIFYD_SMTP_URL made named `"key":"url"`, a setting no
// file of the operator's has; config errors name the variable.
it("names VERIFYD_SMTP_URL in the cleartext warning of the provider the environment made", () => {
  const fromEnvironment: ProviderConfig = {
    id: "smtp",
    type: "smtp",
    url: "smtp://mailer:s3cret@smtp.example.com:587",
    from: "codes@shop.example",
  };
  expect(providerWarnings([fromEnvironment], ["smtp"])).toEqual([
    { provider: "smtp", key: "VERIFYD_SMTP_URL", message: expect.stringMatching(/cleartext/) },
  ]);
  expect(providerWarnings([fromEnvironment])).toEqual([
    { provider: "smtp", key: "url", message: expect.stringMatching(/cleartext/) },
  ]);
  const config = loadConfig({
    VERIFYD_SMTP_URL: "smtp://mailer:s3cret@smtp.example.com:587",
    VERIFYD_EMAIL_FROM: "codes@shop.example",
  });
  expect(providerWarnings(config.providers, environmentProviderIds(config))).toMatchObject([
    { provider: "smtp", key: "VERIFYD_SMTP_URL" },
  ]);
});

// Regression: a Twilio statusCallbackUrl whose path was not this provider's callback path was
// accepted without a word, and every status callback it brought was refused (401).
describe("providerWarnings for Twilio", () => {
  const twilio = (statusCallbackUrl?: string): ProviderConfig => ({
    id: "twilio",
    type: "twilio",
    accountSid: `AC${"a1".repeat(16)}`,
    authToken: "token",
    from: "+14155550199",
    ...(statusCallbackUrl === undefined ? {} : { statusCallbackUrl }),
  });

  it("warns of a status callback URL whose path is not /v1/callbacks/<its id>", () => {
    for (const url of [
      "https://verifyd.example.com/v1/callbacks/sms",
      "https://verifyd.example.com/callbacks",
    ]) {
      expect(providerWarnings([twilio(url)])).toEqual([
        {
          provider: "twilio",
          key: "statusCallbackUrl",
          message: expect.stringContaining("/v1/callbacks/twilio"),
        },
      ]);
    }
    for (const url of [
      undefined,
      "https://verifyd.example.com/v1/callbacks/twilio",
      "https://hook:s3cret@verifyd.example.com:8443/otp/v1/callbacks/twilio?source=twilio#rc=3",
    ]) {
      expect(providerWarnings([twilio(url)])).toEqual([]);
    }
  });
});
