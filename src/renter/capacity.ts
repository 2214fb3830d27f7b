/**
 * How many more bytes of files the network can take from this renter: what
 * the drive's statfs reports (`df` on the mount).
 *
 * A segment is stored as `optimal` pieces of segment/k bytes on distinct
 * farmers (an upload starts `total` and cancels the long tail once
 * `optimal` are stored). So a farmer holds at most one piece per segment,
 * and storing D more bytes needs, with x = D/k bytes per piece column,
 * `Σ min(freeᵢ, x) ≥ p·x` over the eligible farmers, p = optimal. The
 * largest such x is found by water-filling: the biggest farmers are capped
 * at x, the rest give all they have. With equal farmers this is
 * `Σ freeᵢ · k / optimal`, the usual "free space divided by the expansion
 * factor"; a single huge farmer counts only as much as one piece per
 * segment lets it. Fewer than `optimal` eligible farmers: 0 (uploads fail).
 *
 * Eligible: what upload selection would use (not disqualified on-chain or
 * by this renter, under the price ceiling, not failing or corrupt) and with
 * a known free capacity (as last reported: the registry's declared capacity,
 * or what the farmer itself answered). Used space is not counted: the
 * figure is what can still be written.
 */
import type { RedundancyStrategy } from "../erasure/strategy.js";
import type { FarmerRecord } from "../metadata/types.js";
import { ineligibleReason, type SelectionPolicy } from "./selection.js";
import type { FarmerCandidate } from "./types.js";

/** What {@link networkCapacity} computes. */
export interface NetworkCapacity {
  /** Bytes of file content the network can still take (0 when fewer than `optimal` farmers are eligible). */
  freeBytes: number;
  /** Eligible farmers counted. */
  farmers: number;
  /** Pieces per segment the figure assumes (the strategy's `optimal`). */
  piecesPerSegment: number;
}

/** The largest x with Σ min(freeᵢ, x) ≥ p·x (see the module note); `free` in any order. */
export function pieceColumnBytes(free: readonly number[], p: number): number {
  const sorted = free.filter((f) => f > 0).sort((a, b) => b - a);
  if (p <= 0 || sorted.length < p) return 0;
  let rest = sorted.reduce((a, b) => a + b, 0);
  // j farmers (the largest) capped at x; the others give all they have: x = rest / (p - j).
  for (let j = 0; j < p; j++) {
    const x = rest / (p - j);
    if (sorted[j]! <= x) return x;
    rest -= sorted[j]!;
  }
  return 0;
}

/** Free capacity for this renter's files under `strategy` (see the module note). */
export function networkCapacity(input: {
  candidates: readonly FarmerCandidate[];
  records: ReadonlyMap<string, FarmerRecord>;
  strategy: RedundancyStrategy;
  policy?: SelectionPolicy;
}): NetworkCapacity {
  const free: number[] = [];
  for (const c of input.candidates) {
    if (c.freeBytes === undefined) continue;
    if (ineligibleReason(c, input.records.get(c.address), input.policy ?? {}, 0) !== undefined) continue;
    free.push(Number(c.freeBytes));
  }
  const { k, optimal } = input.strategy;
  return { freeBytes: Math.floor(pieceColumnBytes(free, optimal) * k), farmers: free.length, piecesPerSegment: optimal };
}
