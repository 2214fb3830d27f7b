/**
 * Tiny benchmark harness: runs a function until a time budget is spent (at
 * least `minRuns` times), reports the best run's throughput. Best-of-N is used
 * because these machines are shared: the fastest run is the one least
 * disturbed by neighbours. Figures are compared as ratios against a baseline
 * measured in the same process run.
 */

/** One measurement. */
export interface Measurement {
  /** Best single-run duration, milliseconds. */
  bestMs: number;
  /** Runs performed. */
  runs: number;
}

/** Options for {@link measure}. */
export interface MeasureOptions {
  minRuns?: number;
  budgetMs?: number;
}

/** Runs `fn` repeatedly and returns the best duration. */
export async function measure(fn: () => unknown, options: MeasureOptions = {}): Promise<Measurement> {
  const minRuns = options.minRuns ?? 3;
  const budgetMs = options.budgetMs ?? 1500;
  let best = Number.POSITIVE_INFINITY;
  let runs = 0;
  const started = performance.now();
  while (runs < minRuns || performance.now() - started < budgetMs) {
    const t0 = performance.now();
    await fn();
    const dt = performance.now() - t0;
    best = Math.min(best, dt);
    runs++;
    if (runs >= 50) break;
  }
  return { bestMs: best, runs };
}

/** Megabytes (10^6 bytes) per second for `bytes` processed in `ms`. */
export function mbps(bytes: number, ms: number): number {
  return bytes / 1e6 / (ms / 1000);
}

/** Prints one JSON line on stdout. */
export function emit(line: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(line)}\n`);
}

/** Rounds for display: 3 significant decimals for ratios, 1 for MB/s. */
export function round(value: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}
