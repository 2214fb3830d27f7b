/**
 * Redundancy strategy (Storj's `RedundancyStrategy`): a segment becomes `total`
 * pieces of which any `k` rebuild it. Uploads start `total` pieces and stop
 * once `optimal` succeed (long-tail cancellation); repair starts when fewer
 * than `repair` pieces remain healthy.
 */
import { DstorError } from "../core/errors.js";

/** Largest total piece count: GF(2^8) offers 255 distinct non-zero evaluation points. */
export const MAX_TOTAL_PIECES = 255;

/** A validated, immutable redundancy strategy with 1 ≤ k ≤ repair ≤ optimal ≤ total ≤ 255. */
export interface RedundancyStrategy {
  /** Pieces required to rebuild a segment. */
  readonly k: number;
  /** Healthy-piece count at or below which the segment is repaired. */
  readonly repair: number;
  /** Pieces an upload waits for before cancelling the long tail. */
  readonly optimal: number;
  /** Pieces generated (and uploads started) per segment. */
  readonly total: number;
}

/** Input of {@link createRedundancyStrategy}: only `k` is needed; the rest default upward. */
export interface RedundancyStrategyInit {
  /** Pieces required to rebuild a segment. */
  k: number;
  /** Default `k` (repair as soon as anything is lost is unusual but valid). */
  repair?: number;
  /** Default `total`. */
  optimal?: number;
  /** Default: `optimal`, else `repair`, else `k`. */
  total?: number;
}

/**
 * Builds a {@link RedundancyStrategy}, throwing `ERASURE_INVALID_PARAMS` unless
 * every number is an integer and 1 ≤ k ≤ repair ≤ optimal ≤ total ≤ 255.
 */
export function createRedundancyStrategy(init: RedundancyStrategyInit): RedundancyStrategy {
  const k = init.k;
  const total = init.total ?? init.optimal ?? init.repair ?? k;
  const repair = init.repair ?? k;
  const optimal = init.optimal ?? total;
  const values = { k, repair, optimal, total };
  for (const [name, value] of Object.entries(values)) {
    if (typeof value !== "number" || !Number.isInteger(value)) {
      throw new DstorError("ERASURE_INVALID_PARAMS", `redundancy ${name} must be a whole number, got ${String(value)}`, {
        details: values,
      });
    }
  }
  if (!(k >= 1 && k <= repair && repair <= optimal && optimal <= total && total <= MAX_TOTAL_PIECES)) {
    throw new DstorError(
      "ERASURE_INVALID_PARAMS",
      `redundancy ${k}/${repair}/${optimal}/${total} is invalid: need 1 ≤ k ≤ repair ≤ optimal ≤ total ≤ ${MAX_TOTAL_PIECES} (for example 10/14/20/30)`,
      { details: values },
    );
  }
  return Object.freeze({ k, repair, optimal, total });
}

/**
 * Parses `"k/repair/optimal/total"` (for example `"10/14/20/30"`), as used in
 * options and config files. Throws `ERASURE_INVALID_PARAMS` on bad syntax or values.
 */
export function parseRedundancyStrategy(text: string): RedundancyStrategy {
  const match = /^\s*(\d{1,3})\s*\/\s*(\d{1,3})\s*\/\s*(\d{1,3})\s*\/\s*(\d{1,3})\s*$/.exec(text);
  if (match === null) {
    throw new DstorError(
      "ERASURE_INVALID_PARAMS",
      `redundancy "${text}" is not of the form k/repair/optimal/total (for example 10/14/20/30)`,
      { details: { text } },
    );
  }
  return createRedundancyStrategy({
    k: Number(match[1]),
    repair: Number(match[2]),
    optimal: Number(match[3]),
    total: Number(match[4]),
  });
}

/** Formats a strategy as `"k/repair/optimal/total"`, the inverse of {@link parseRedundancyStrategy}. */
export function formatRedundancyStrategy(strategy: RedundancyStrategy): string {
  return `${strategy.k}/${strategy.repair}/${strategy.optimal}/${strategy.total}`;
}
