import type { Clock } from "../../src/core/ports.js";

/** A clock tests move by hand: no sleeps, no flaky timing. */
export class FixedClock implements Clock {
  constructor(private now = Date.UTC(2026, 0, 1, 12, 0, 0)) {}

  nowMs(): number {
    return this.now;
  }

  advanceSeconds(seconds: number): void {
    this.now += seconds * 1000;
  }

  set(ms: number): void {
    this.now = ms;
  }
}
