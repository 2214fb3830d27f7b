/**
 * Coalescing of repeated work per key: a caller that needs a run of
 * `task(key)` *starting after its call* (because the run reads state the
 * caller has just changed) gets one, but callers arriving close together
 * share it. Per key at most one run is in progress and at most one waits
 * behind it; every caller that arrives while a run is in progress joins the
 * waiting one, which starts when the running one ends. So N callers during
 * one run cost two runs, not N.
 *
 * The renter uses it for deal-state co-signing: each upload needs the
 * farmers' deal states to list its new pieces, and each sync reads the piece
 * list when it starts — so a tar x of many files costs one co-sign round
 * trip (and one chain transaction) per farmer per round, not per file.
 *
 * Lock order: none (single-threaded; the map is only touched synchronously).
 */

interface Waiting {
  promise: Promise<void>;
  resolve: () => void;
  reject: (error: unknown) => void;
}

interface Entry {
  /** Callers waiting for the run after the current one. */
  next: Waiting | undefined;
}

function waiting(): Waiting {
  let resolve!: () => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** See the module note. */
export class Coalescer<K> {
  readonly #task: (key: K) => Promise<void>;
  readonly #entries = new Map<K, Entry>();
  /** Runs started (for tests and statistics). */
  runs = 0;

  constructor(task: (key: K) => Promise<void>) {
    this.#task = task;
  }

  /** Resolves or rejects with a run of the task for `key` that starts no earlier than this call. */
  run(key: K): Promise<void> {
    const entry = this.#entries.get(key);
    if (entry === undefined) {
      const fresh: Entry = { next: undefined };
      this.#entries.set(key, fresh);
      return this.#start(key, fresh);
    }
    entry.next ??= waiting();
    return entry.next.promise;
  }

  #start(key: K, entry: Entry): Promise<void> {
    this.runs++;
    const run = Promise.resolve().then(() => this.#task(key));
    const after = (): void => {
      const waiting = entry.next;
      if (waiting === undefined) {
        this.#entries.delete(key);
        return;
      }
      entry.next = undefined;
      this.#start(key, entry).then(waiting.resolve, waiting.reject);
    };
    run.then(after, after);
    return run;
  }
}
