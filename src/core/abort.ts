/**
 * AbortSignal and deadline helpers. Every operation that can wait on the
 * network or the disk takes `{ signal?: AbortSignal }` and has a deadline;
 * these helpers turn both into one signal and into coded errors.
 */
import { DstorError } from "./errors.js";

/** Options every async operation that may wait accepts. */
export interface AbortOptions {
  signal?: AbortSignal | undefined;
}

/**
 * A signal that aborts when `signal` aborts or after `timeoutMs`, whichever is
 * first. The timeout's reason is a `TIMEOUT` {@link DstorError} naming `what`.
 */
export function withDeadline(signal: AbortSignal | undefined, timeoutMs: number, what: string): AbortSignal {
  const timeout = new AbortController();
  const timer = setTimeout(() => {
    timeout.abort(new DstorError("TIMEOUT", `${what} did not finish within ${timeoutMs} ms`, { details: { timeoutMs } }));
  }, timeoutMs);
  timer.unref?.();
  const combined = signal === undefined ? timeout.signal : AbortSignal.any([signal, timeout.signal]);
  combined.addEventListener("abort", () => clearTimeout(timer), { once: true });
  return combined;
}

/** Throws the signal's reason as a coded error if it has been aborted. */
export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw abortReason(signal);
}

/** The coded error for an aborted signal (`TIMEOUT` passes through, anything else becomes `ABORTED`). */
export function abortReason(signal: AbortSignal): DstorError {
  const reason: unknown = signal.reason;
  if (reason instanceof DstorError) return reason;
  return new DstorError("ABORTED", "the operation was cancelled", { cause: reason });
}

/**
 * Races `promise` against `signal`: resolves or rejects as `promise` does,
 * unless the signal aborts first, which rejects with {@link abortReason}.
 * The underlying work is not cancelled; pass the signal down for that.
 */
export function raceSignal<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (signal === undefined) return promise;
  if (signal.aborted) return Promise.reject(abortReason(signal));
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(abortReason(signal));
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener("abort", onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener("abort", onAbort);
        reject(error);
      },
    );
  });
}

/** Resolves after `ms`, or rejects early when `signal` aborts. */
export function sleep(ms: number, options: AbortOptions = {}): Promise<void> {
  return raceSignal(
    new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms);
      options.signal?.addEventListener("abort", () => clearTimeout(timer), { once: true });
    }),
    options.signal,
  );
}
