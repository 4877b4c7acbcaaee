import { isMainThread, type MessagePort, parentPort, Worker, workerData } from "node:worker_threads";
import { OtpError } from "../core/errors.js";
import type { CaptchaGenerator, ImageChallengeData, SliderChallengeData } from "../core/ports.js";
import { createCaptchaGenerator } from "./captcha-generator.js";
import { createImageChallenge } from "./image/image-challenge.js";
import { createSliderChallenge } from "./slider/slider-challenge.js";

// The server renders its challenges in a worker thread of its own: a render takes 1-5 ms of
// synchronous work (rasterising, encoding a GIF or a PNG), which on the request thread delayed
// every other request by as much, and a flood of draws from many networks took the whole thread.
// This module is both halves: `startCaptchaRenderThread` on the server's side, and, when loaded
// as that thread, the thread's loop (the end of this file). Reading answers stays on the request
// thread: it is a few microseconds.

const THREAD_ROLE = "verifyd-captcha-render";
/**
 * Renders waiting for the thread, past which a draw is refused at once (rate-limited, retry in a
 * second) rather than queued: at 1-5 ms each, the last of them waits at most about a third of a
 * second. The thread's backlog is then what bounds the captcha's latency, not the draws' rate.
 */
export const MAX_WAITING_RENDERS = 64;
/** A render the thread has not answered in this time fails, and the thread is started again. */
const RENDER_DEADLINE_MS = 5_000;
const RETRY_AFTER_SECONDS = 1;

type Kind = "image" | "slider";
interface RenderRequest {
  id: number;
  kind: Kind;
}
type RenderReply =
  | { id: number; image: ImageChallengeData }
  | { id: number; slider: SliderChallengeData }
  | { id: number; error: string };

interface Waiting {
  /** the thread rendering it: only that thread's failure fails it */
  thread: Worker;
  resolve(reply: RenderReply): void;
  reject(error: unknown): void;
  deadline: NodeJS.Timeout;
}

export interface CaptchaRenderThread {
  /** the generator whose renders run on the thread (started at the first one) */
  generator: CaptchaGenerator;
  /** ends the thread; renders still waiting fail */
  close(): Promise<void>;
}

export interface CaptchaRenderThreadOptions {
  /** called when the thread fails or misses a deadline (it is started again at the next render) */
  onTrouble(reason: string, error?: unknown): void;
  /** the module to run as the thread (tests name the built one; default: this module) */
  entry?: URL;
  /** how long a render may take before its thread counts as stuck (default RENDER_DEADLINE_MS) */
  deadlineMs?: number;
}

export function startCaptchaRenderThread(options: CaptchaRenderThreadOptions): CaptchaRenderThread {
  const entry = options.entry ?? new URL(import.meta.url);
  const deadlineMs = options.deadlineMs ?? RENDER_DEADLINE_MS;
  const inProcess = createCaptchaGenerator();
  const waiting = new Map<number, Waiting>();
  let thread: Worker | null = null;
  let nextId = 1;

  /** Ends a thread that failed, is stuck or is no longer wanted, failing its renders waiting. */
  const retire = (retired: Worker, reason: string): Promise<number> => {
    if (thread === retired) thread = null;
    for (const [id, entry] of waiting) {
      if (entry.thread !== retired) continue;
      clearTimeout(entry.deadline);
      waiting.delete(id);
      entry.reject(unavailable(reason));
    }
    return retired.terminate();
  };
  const threadStarted = (): Worker => {
    if (thread) return thread;
    const started = new Worker(entry, { workerData: { role: THREAD_ROLE } });
    // Renders waiting hold their requests open; an idle thread holds nothing.
    started.unref();
    started.on("message", (reply: RenderReply) => {
      const entry = waiting.get(reply.id);
      if (!entry) return;
      waiting.delete(reply.id);
      clearTimeout(entry.deadline);
      entry.resolve(reply);
    });
    started.on("error", (error) => {
      options.onTrouble("the captcha render thread failed", error);
      void retire(started, "the captcha render thread failed");
    });
    started.on("exit", () => void retire(started, "the captcha render thread stopped"));
    thread = started;
    return started;
  };

  function render(kind: Kind): Promise<RenderReply> {
    if (waiting.size >= MAX_WAITING_RENDERS) {
      return Promise.reject(
        new OtpError("RATE_LIMITED", {
          message: "Too many captchas are being drawn; try again shortly",
          details: { retryAfterSeconds: RETRY_AFTER_SECONDS, rule: "captcha_renders_waiting" },
        }),
      );
    }
    const worker = threadStarted();
    const id = nextId++;
    return new Promise<RenderReply>((resolve, reject) => {
      const deadline = setTimeout(() => {
        // A thread this late is stuck (a bug); the next render starts a fresh one.
        options.onTrouble(`a captcha render took over ${deadlineMs} ms; starting its thread again`);
        void retire(worker, "a captcha render took too long");
      }, deadlineMs);
      waiting.set(id, { thread: worker, resolve, reject, deadline });
      worker.postMessage({ id, kind } satisfies RenderRequest);
    });
  }

  return {
    generator: {
      ...inProcess,
      async image() {
        const reply = await render("image");
        if ("image" in reply) return reply.image;
        throw unavailable("error" in reply ? reply.error : "the thread drew no image");
      },
      async slider() {
        const reply = await render("slider");
        if ("slider" in reply) return reply.slider;
        throw unavailable("error" in reply ? reply.error : "the thread drew no slider");
      },
    },
    async close() {
      if (thread) await retire(thread, "the server is stopping");
    },
  };
}

function unavailable(internal: string): OtpError {
  return new OtpError("CAPTCHA_UNAVAILABLE", {
    message: "The captcha cannot be drawn now; try again shortly",
    details: { retryAfterSeconds: RETRY_AFTER_SECONDS },
    internal,
  });
}

/** The thread's loop: one render a message, answered in order. */
function runRenderThread(port: MessagePort): void {
  port.on("message", ({ id, kind }: RenderRequest) => {
    try {
      const reply: RenderReply =
        kind === "image" ? { id, image: createImageChallenge() } : { id, slider: createSliderChallenge() };
      port.postMessage(reply);
    } catch (error) {
      port.postMessage({ id, error: String(error) } satisfies RenderReply);
    }
  });
}

if (!isMainThread && parentPort && (workerData as { role?: unknown } | null)?.role === THREAD_ROLE) {
  runRenderThread(parentPort);
}
