import { isMainThread, type MessagePort, parentPort, Worker, workerData } from "node:worker_threads";
import { createOutageLog } from "../core/outage-log.js";
import type {
  CaptchaGenerator,
  Clock,
  ImageChallengeData,
  Logger,
  SliderChallengeData,
} from "../core/ports.js";
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
 * Renders waiting for the thread, past which a draw is refused before it is counted (the core
 * asks `refusal()`) rather than queued (those admitted while the bound was reached are queued): at 1-5 ms each, the last of them waits about a second at
 * most. Room for five apps' full bursts at once (each may draw 50 at a time), so that two apps'
 * bursts do not refuse a third app's draws.
 */
export const MAX_WAITING_RENDERS = 256;
/** A render the thread has not answered in this time fails, and the thread is started again. */
const RENDER_DEADLINE_MS = 5_000;
/** After a thread failed, draws are refused this long before a new one is started. */
const RESTART_DELAY_MS = 1_000;

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
  /** where a thread's failures are told: the first, then a reminder a minute, then its recovery */
  log: Pick<Logger, "error" | "warn" | "info">;
  clock: Clock;
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
  // A thread failing at every start would otherwise be started again at every draw, each start
  // a new isolate on another core, and each failure a line with its stack.
  const trouble = createOutageLog({ clock: options.clock, log: options.log, what: "captcha rendering" });
  let thread: Worker | null = null;
  let restartAtMs = 0;
  let nextId = 1;

  /** A failed or stuck thread: its renders fail, and draws are refused a while before the next. */
  const failed = (failedThread: Worker, error: Error) => {
    trouble.failed(error);
    restartAtMs = performance.now() + RESTART_DELAY_MS;
    void retire(failedThread, error.message);
  };

  /** Ends a thread that failed, is stuck or is no longer wanted, failing its renders waiting. */
  const retire = (retired: Worker, reason: string): Promise<number> => {
    if (thread === retired) thread = null;
    for (const [id, entry] of waiting) {
      if (entry.thread !== retired) continue;
      clearTimeout(entry.deadline);
      waiting.delete(id);
      entry.reject(new Error(reason));
    }
    return retired.terminate();
  };
  const threadStarted = (): Worker => {
    if (thread) return thread;
    const started = new Worker(entry, { workerData: { role: THREAD_ROLE } });
    options.log.info({ threadId: started.threadId }, "captcha render thread started");
    // Renders waiting hold their requests open; an idle thread holds nothing.
    started.unref();
    started.on("message", (reply: RenderReply) => {
      const entry = waiting.get(reply.id);
      if (!entry) return;
      waiting.delete(reply.id);
      clearTimeout(entry.deadline);
      if (!("error" in reply)) trouble.succeeded();
      entry.resolve(reply);
    });
    started.on("error", (error) => {
      if (thread === started) failed(started, error);
    });
    started.on("exit", (exitCode) => {
      // (a thread retired here has exited because it was told to)
      if (thread === started) failed(started, new Error(`the captcha render thread stopped (${exitCode})`));
    });
    thread = started;
    return started;
  };

  const refusal = (): "busy" | "down" | null => {
    if (waiting.size >= MAX_WAITING_RENDERS) return "busy";
    return thread === null && performance.now() < restartAtMs ? "down" : null;
  };

  function render(kind: Kind): Promise<RenderReply> {
    // The core asks `refusal()` before it counts a draw, and renders once the counting is done: the
    // draws admitted meanwhile are queued past the bound (a few: each app's rate bounds them), not
    // failed, which answered them as the renderer's failure. A thread resting after a failure
    // renders nothing.
    if (thread === null && performance.now() < restartAtMs) {
      return Promise.reject(new Error("the captcha renderer is starting again after a failure"));
    }
    const worker = threadStarted();
    const id = nextId++;
    return new Promise<RenderReply>((resolve, reject) => {
      // A thread this late is stuck (a bug): it is ended, and a fresh one started after the pause.
      const deadline = setTimeout(
        () => failed(worker, new Error(`a captcha render took over ${deadlineMs} ms`)),
        deadlineMs,
      );
      waiting.set(id, { thread: worker, resolve, reject, deadline });
      worker.postMessage({ id, kind } satisfies RenderRequest);
    });
  }

  return {
    generator: {
      ...inProcess,
      refusal,
      async image() {
        const reply = await render("image");
        if ("image" in reply) return reply.image;
        throw new Error("error" in reply ? reply.error : "the thread drew no image");
      },
      async slider() {
        const reply = await render("slider");
        if ("slider" in reply) return reply.slider;
        throw new Error("error" in reply ? reply.error : "the thread drew no slider");
      },
    },
    async close() {
      trouble.close();
      if (thread) await retire(thread, "the server is stopping");
    },
  };
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
