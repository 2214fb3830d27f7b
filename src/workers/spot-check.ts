/**
 * The renter's off-chain audit worker: frequent, cheap spot checks through
 * the normal get path. Each round picks a random farmer that holds pieces
 * for us, a random one of those pieces and a random run of 1–4 leaves in it,
 * fetches them with a signed get order and verifies them by multiproof
 * against the piece root in metadata (Renter.spotCheck). The outcome goes
 * into the farmer's record, which selection weighs (reliability) and filters
 * on (too many failures, corrupt data): a farmer that passes on-chain audits
 * but refuses reads is caught here, not only when a user's read needs it.
 *
 * A round checks `checksPerRound` pieces; one log line per round with the
 * farmers checked, passed, failed and corrupt.
 */
import type { Logger } from "../core/logging.js";
import { leafCount } from "../crypto/merkle.js";
import { PeriodicWorker, type Worker } from "./worker.js";

/** Most leaves one spot check reads. */
export const SPOT_CHECK_MAX_LEAVES = 4;

/** What the worker needs from the renter (the Renter and its metadata fit). */
export interface SpotCheckTarget {
  farmers(): Promise<Array<{ address: string; disqualified?: boolean | undefined }>>;
  piecesOn(farmer: string): Promise<Array<{ pieceId: string; root: string; size: number }>>;
  spotCheck(
    address: string,
    piece: { pieceId: string; root: string; size: number },
    startLeaf: number,
    endLeaf: number,
    options: { signal?: AbortSignal | undefined },
  ): Promise<{ ok: boolean; corrupt: boolean; error?: unknown }>;
}

/** Options of {@link createSpotCheckWorker}. */
export interface SpotCheckInit {
  target: SpotCheckTarget;
  /** Pause between rounds, ms. */
  intervalMs: number;
  /** Pieces checked per round (default 2). */
  checksPerRound?: number;
  /** Uniform [0, 1) source (tests inject a seeded one). */
  random?: () => number;
  /** Called after each check (the repair worker listens). */
  onResult?: (farmer: string, ok: boolean) => void;
  /**
   * Asks the chain to challenge `farmer`'s deal in the next epoch
   * (Market.requestChallenge), so an off-chain failure gets an on-chain
   * verdict: called after a failed check, at most once per farmer per
   * `requestIntervalMs`. Its errors are logged, never fatal.
   */
  requestChallenge?: (farmer: string, options: { signal: AbortSignal }) => Promise<void>;
  /** Least time between two challenge requests for one farmer, ms (default: one hour). */
  requestIntervalMs?: number;
  logger: Logger;
  signal?: AbortSignal | undefined;
}

/** The renter's spot-check worker; see the module comment. */
export function createSpotCheckWorker(init: SpotCheckInit): Worker {
  const random = init.random ?? Math.random;
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
  let round = 0;
  const requestedAt = new Map<string, number>();
  const request = async (farmer: string, signal: AbortSignal): Promise<void> => {
    const last = requestedAt.get(farmer);
    if (init.requestChallenge === undefined || (last !== undefined && Date.now() - last < (init.requestIntervalMs ?? 3_600_000))) return;
    requestedAt.set(farmer, Date.now());
    try {
      await init.requestChallenge(farmer, { signal });
      init.logger.info("requested an on-chain challenge after a failed spot check", { farmer });
    } catch (error) {
      if (signal.aborted) throw error;
      init.logger.warn("could not request an on-chain challenge", { farmer, error: String(error) });
    }
  };

  const tick = async (signal: AbortSignal): Promise<void> => {
    round++;
    const holders: Array<{ address: string; pieces: Array<{ pieceId: string; root: string; size: number }> }> = [];
    for (const r of await init.target.farmers()) {
      if (r.disqualified) continue;
      const pieces = await init.target.piecesOn(r.address);
      if (pieces.length > 0) holders.push({ address: r.address, pieces });
    }
    if (holders.length === 0) return;
    let passed = 0;
    let failed = 0;
    let corrupt = 0;
    const checked = new Set<string>();
    for (let i = 0; i < (init.checksPerRound ?? 2); i++) {
      const holder = pick(holders);
      const piece = pick(holder.pieces);
      const leaves = leafCount(piece.size);
      const start = Math.floor(random() * leaves);
      const end = Math.min(leaves, start + 1 + Math.floor(random() * SPOT_CHECK_MAX_LEAVES));
      const result = await init.target.spotCheck(holder.address, piece, start, end, { signal });
      checked.add(holder.address);
      if (result.ok) passed++;
      else failed++;
      if (result.corrupt) corrupt++;
      if (!result.ok) init.logger.warn("spot check failed", { farmer: holder.address, pieceId: piece.pieceId, corrupt: result.corrupt, error: String(result.error) });
      init.onResult?.(holder.address, result.ok);
      if (!result.ok) await request(holder.address, signal);
    }
    init.logger.info(`spot-check round ${round}: ${checked.size} farmers checked, ${passed} passed, ${failed} failed (${corrupt} corrupt)`, {
      round,
      farmers: checked.size,
      passed,
      failed,
      corrupt,
    });
  };

  return new PeriodicWorker({ name: "spot-check", intervalMs: init.intervalMs, tick, logger: init.logger, signal: init.signal });
}
