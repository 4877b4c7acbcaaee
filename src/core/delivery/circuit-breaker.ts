import type { Clock, Logger } from "../ports.js";

export interface CircuitBreakerOptions {
  clock: Clock;
  /** consecutive transient failures that open a provider's circuit */
  failureThreshold: number;
  /** how long an open circuit skips its provider before letting one probe through */
  coolDownMs: number;
  /** told when a provider's circuit opens and when it closes again */
  log?: Pick<Logger, "warn" | "info">;
}

/** What a caller may do with a provider right now. */
export type CircuitPermit =
  /** closed: use it */
  | "use"
  /** half-open: this caller carries the one probe; report its outcome */
  | "probe"
  /** open, or another caller's probe is in flight: skip it */
  | "skip";

export type CircuitState = "closed" | "open" | "half_open";

interface Circuit {
  consecutiveFailures: number;
  /** while open: when a probe may go through */
  openUntilMs: number | null;
  probing: boolean;
}

export interface CircuitBreakers {
  /** Asks to use a provider. A "probe" permit must be followed by `succeeded` or `failed`. */
  permit(provider: string): CircuitPermit;
  succeeded(provider: string): void;
  /** a transient failure or timeout; permanent refusals are the recipient's fault, not the provider's */
  failed(provider: string): void;
  /** a permit given back unused (the message never reached the provider): the probe is free again */
  released(provider: string): void;
  /**
   * When a skipped provider may be tried again: the end of its cool-down (now if it is not open),
   * or null while another caller's probe is in flight, which reopens it (or not) when it ends.
   */
  retryAtMs(provider: string): number | null;
  state(provider: string): CircuitState;
}

/**
 * One circuit breaker per provider, shared by every worker of a process: after `failureThreshold`
 * consecutive failures a provider is skipped for `coolDownMs`, so messages go to the next provider
 * at once instead of waiting on one that keeps failing; then one probe decides whether it closes
 * again (success) or stays open for another cool-down (failure). Time comes from the clock port,
 * so tests drive it with a fixed clock.
 */
export function createCircuitBreakers(options: CircuitBreakerOptions): CircuitBreakers {
  const { clock, failureThreshold, coolDownMs } = options;
  const circuits = new Map<string, Circuit>();

  const circuitOf = (provider: string): Circuit => {
    let circuit = circuits.get(provider);
    if (!circuit) {
      circuit = { consecutiveFailures: 0, openUntilMs: null, probing: false };
      circuits.set(provider, circuit);
    }
    return circuit;
  };

  return {
    permit(provider) {
      const circuit = circuitOf(provider);
      if (circuit.openUntilMs === null) return "use";
      // One probe at a time: a provider that is still down should cost one failed try, not a batch.
      if (circuit.probing || clock.nowMs() < circuit.openUntilMs) return "skip";
      circuit.probing = true;
      return "probe";
    },
    succeeded(provider) {
      const circuit = circuitOf(provider);
      if (circuit.openUntilMs !== null) {
        options.log?.info({ provider }, "provider back: a probe went through, its circuit is closed");
      }
      circuit.consecutiveFailures = 0;
      circuit.openUntilMs = null;
      circuit.probing = false;
    },
    failed(provider) {
      const circuit = circuitOf(provider);
      circuit.consecutiveFailures += 1;
      // A failed probe reopens at once; a closed circuit opens at the threshold.
      if (circuit.probing || circuit.consecutiveFailures >= failureThreshold) {
        // Told once, as it opens (not at each failed probe): an operator learns the provider is
        // down from one line, where the message lines name only each message's own try.
        if (circuit.openUntilMs === null) {
          options.log?.warn(
            { provider, failures: circuit.consecutiveFailures, coolDownSeconds: coolDownMs / 1000 },
            "provider failing: skipped for the next provider until a probe after the cool-down goes through",
          );
        }
        circuit.openUntilMs = clock.nowMs() + coolDownMs;
      }
      circuit.probing = false;
    },
    released(provider) {
      circuitOf(provider).probing = false;
    },
    retryAtMs(provider) {
      const circuit = circuitOf(provider);
      // The cool-down is over by then: reporting its end would have every caller come back at once.
      if (circuit.probing) return null;
      return circuit.openUntilMs ?? clock.nowMs();
    },
    state(provider) {
      const circuit = circuitOf(provider);
      if (circuit.openUntilMs === null) return "closed";
      return clock.nowMs() < circuit.openUntilMs || circuit.probing ? "open" : "half_open";
    },
  };
}
