import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { killAll, postJson, startServer } from "../../test/e2e/verifyd-process.js";
import { OtpError } from "../core/errors.js";
import { createCaptchaGenerator } from "./captcha-generator.js";
import { type CaptchaRenderThread, MAX_WAITING_RENDERS, startCaptchaRenderThread } from "./render-thread.js";

// The thread runs compiled code (vitest's global setup builds dist/).
const BUILT_THREAD = new URL("../../dist/captcha/render-thread.js", import.meta.url);
const dir = mkdtempSync(join(tmpdir(), "verifyd-render-thread-"));

/**
 * A module to run as the thread instead: its first start runs `firstBody` (exits, or never
 * answers), every later one answers each render with a fixed image.
 */
function fakeThread(name: string, firstBody: string): { entry: URL; starts(): number } {
  const startsFile = join(dir, `${name}.starts`);
  writeFileSync(startsFile, "");
  const file = join(dir, `${name}.mjs`);
  writeFileSync(
    file,
    `import { parentPort } from "node:worker_threads";
import { appendFileSync, readFileSync } from "node:fs";
const first = readFileSync(${JSON.stringify(startsFile)}, "utf8") === "";
appendFileSync(${JSON.stringify(startsFile)}, "started\\n");
if (first) {
  ${firstBody}
} else {
  parentPort.on("message", ({ id }) =>
    parentPort.postMessage({ id, image: { answer: "FAKE", imageDataUri: "data:image/gif;base64," } }),
  );
}`,
  );
  return {
    entry: pathToFileURL(file),
    starts: () => readFileSync(startsFile, "utf8").split("\n").filter(Boolean).length,
  };
}

const troubles: string[] = [];
const onTrouble = (reason: string) => void troubles.push(reason);
let thread: CaptchaRenderThread | undefined;

afterEach(async () => {
  await thread?.close();
  thread = undefined;
  troubles.length = 0;
});
afterAll(killAll);

async function refusal(promise: Promise<unknown>): Promise<OtpError> {
  const error = await promise.then(
    () => expect.fail("the render was not refused"),
    (error: unknown) => error,
  );
  expect(error).toBeInstanceOf(OtpError);
  return error as OtpError;
}

describe("startCaptchaRenderThread", () => {
  it("draws images and sliders on its thread, answerable as the in-process generator's", async () => {
    thread = startCaptchaRenderThread({ onTrouble, entry: BUILT_THREAD });
    const { generator } = thread;

    const [image, slider] = await Promise.all([generator.image(), generator.slider()]);

    expect(image.imageDataUri).toMatch(/^data:image\/gif;base64,/);
    expect(generator.normalizeImageAnswer(` ${image.answer.toLowerCase()} `)).toBe(
      createCaptchaGenerator().normalizeImageAnswer(image.answer),
    );
    expect(slider.x).toBeGreaterThan(0);
    expect(slider.x).toBeLessThan(slider.width);
    expect(Buffer.from(slider.backgroundPngBase64, "base64").subarray(1, 4).toString()).toBe("PNG");
    expect(generator.parseSliderX(String(slider.x), null)).toBe(slider.x);
    expect(troubles).toEqual([]);
  });

  // Regression: every render took 1-5 ms of the request thread, so a flood of draws delayed every
  // other request by as much, and from enough networks took the whole thread.
  it("keeps the rendering off the calling thread", async () => {
    thread = startCaptchaRenderThread({ onTrouble, entry: BUILT_THREAD });
    const inProcess = createCaptchaGenerator();
    await Promise.all([thread.generator.slider(), inProcess.slider()]); // each draws its backgrounds
    const busyMsOf = async (draw: () => Promise<unknown>) => {
      const before = performance.eventLoopUtilization();
      for (let i = 0; i < 5; i++) await Promise.all(Array.from({ length: 10 }, draw));
      return performance.eventLoopUtilization(before).active;
    };

    const onThread = await busyMsOf(() => thread?.generator.slider() ?? Promise.resolve());
    const here = await busyMsOf(() => inProcess.slider());

    // 50 sliders: ~100 ms of this thread rendered here, a few ms of messages when rendered there
    expect(onThread).toBeLessThan(here / 3);
  });

  it("refuses draws past the renders waiting, rate-limited for a second, and draws the rest", async () => {
    thread = startCaptchaRenderThread({ onTrouble, entry: BUILT_THREAD });

    const draws = Array.from({ length: MAX_WAITING_RENDERS + 3 }, () =>
      thread?.generator.image().then(
        () => "drawn",
        (error: unknown) => error,
      ),
    );
    const outcomes = await Promise.all(draws);

    expect(outcomes.filter((outcome) => outcome === "drawn")).toHaveLength(MAX_WAITING_RENDERS);
    const refused = outcomes.filter((outcome) => outcome !== "drawn") as OtpError[];
    expect(refused).toHaveLength(3);
    for (const error of refused) {
      expect(error.code).toBe("RATE_LIMITED");
      expect(error.details).toMatchObject({ retryAfterSeconds: 1, rule: "captcha_renders_waiting" });
    }
    // and once they are drawn, there is room again
    await expect(thread.generator.image()).resolves.toHaveProperty("answer");
  });

  it("fails the renders of a thread that dies, and starts a new one at the next draw", async () => {
    const dying = fakeThread("dying", `parentPort.on("message", () => process.exit(3));`);
    thread = startCaptchaRenderThread({ onTrouble, entry: dying.entry });

    const error = await refusal(thread.generator.image());

    expect(error.code).toBe("CAPTCHA_UNAVAILABLE");
    expect(error.details).toMatchObject({ retryAfterSeconds: 1 });
    await expect(thread.generator.image()).resolves.toMatchObject({ answer: "FAKE" });
    expect(dying.starts()).toBe(2);
  });

  it("fails a render the thread does not answer in time, and starts a new thread", async () => {
    const stuck = fakeThread("stuck", `parentPort.on("message", () => {});`);
    thread = startCaptchaRenderThread({ onTrouble, entry: stuck.entry, deadlineMs: 300 });

    const [first, second] = await Promise.all([
      refusal(thread.generator.image()),
      refusal(thread.generator.slider()),
    ]);

    expect([first.code, second.code]).toEqual(["CAPTCHA_UNAVAILABLE", "CAPTCHA_UNAVAILABLE"]);
    expect(troubles.some((reason) => reason.includes("took over 300 ms"))).toBe(true);
    await expect(thread.generator.image()).resolves.toMatchObject({ answer: "FAKE" });
    expect(stuck.starts()).toBe(2);
  });

  it("fails the renders waiting when it is closed", async () => {
    const stuck = fakeThread("closed", `parentPort.on("message", () => {});`);
    thread = startCaptchaRenderThread({ onTrouble, entry: stuck.entry });
    const waiting = refusal(thread.generator.image());

    await thread.close();

    expect((await waiting).code).toBe("CAPTCHA_UNAVAILABLE");
  });
});

describe("the server's captchas", () => {
  it("are drawn on a thread the running verifyd starts at its first draw", async () => {
    const server = await startServer({ VERIFYD_DATA_DIR: mkdtempSync(join(dir, "data-")) });
    const threads = () =>
      Number(/^Threads:\s+(\d+)/m.exec(readFileSync(`/proc/${server.child.pid}/status`, "utf8"))?.[1]);
    const before = threads();

    const image = await postJson(`${server.url}/v1/captcha`, { type: "image" });
    const slider = await postJson(`${server.url}/v1/captcha`, { type: "slider" });

    expect(image.status).toBe(200);
    expect(image.body.image).toMatch(/^data:image\/gif;base64,/);
    expect(slider.status).toBe(200);
    expect(slider.body.background).toMatch(/^data:image\/png;base64,/);
    expect(threads()).toBe(before + 1);
  });
});
