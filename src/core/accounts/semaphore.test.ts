import { describe, expect, it } from "vitest";
import { createSemaphore } from "./semaphore.js";

/** A task that runs until `finish` is called, noting when it started. */
function heldTask(started: string[], name: string) {
  let finish = () => {};
  const done = new Promise<void>((resolve) => {
    finish = resolve;
  });
  return {
    task: async () => {
      started.push(name);
      await done;
      return name;
    },
    finish: () => finish(),
  };
}

describe("createSemaphore", () => {
  it("runs at most its slots at once, the rest in the order they came, and counts those waiting", async () => {
    const slots = createSemaphore(2);
    const started: string[] = [];
    const tasks = ["a", "b", "c", "d"].map((name) => heldTask(started, name));
    const results = tasks.map(({ task }) => slots.run(task));
    await Promise.resolve();
    expect(started).toEqual(["a", "b"]);
    expect(slots.waiting).toBe(2);

    tasks[1]?.finish();
    expect(await results[1]).toBe("b");
    await new Promise((resolve) => setImmediate(resolve));
    expect(started).toEqual(["a", "b", "c"]);
    expect(slots.waiting).toBe(1);

    for (const { finish } of tasks) finish();
    expect(await Promise.all(results)).toEqual(["a", "b", "c", "d"]);
    expect(slots.waiting).toBe(0);
  });

  it("frees the slot of a task that failed", async () => {
    const slot = createSemaphore(1);
    await expect(slot.run(() => Promise.reject(new Error("boom")))).rejects.toThrow("boom");
    expect(await slot.run(async () => "next")).toBe("next");
  });
});
