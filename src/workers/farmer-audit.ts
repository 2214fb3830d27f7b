/**
 * The farmer's audit and payment worker. Each round (a few per epoch) it:
 *
 * 1. finds its deals (DealOpened events naming it, scanned incrementally);
 * 2. for the current epoch, fixes the seed if nobody has (anchor, then fix —
 *    two rounds). An honest farmer wants its challenges: every passed one
 *    is a success in its on-chain reputation;
 * 3. for every epoch of every open deal that is still answerable (not
 *    settled, before its deadline) and whose seed is fixed: computes the
 *    challenge exactly as the contract does, and if the deal is challenged
 *    reads each asked leaf from the piece store and sends it with both
 *    proofs (leaf → piece root, piece → deal root). The answer proves
 *    against the deal's CURRENT root, so the piece list comes from the store
 *    (confirmed pieces of the deal), checked against that root, with the
 *    co-signer's memory of recent states as a fallback;
 * 4. settles the epochs that are over (pay moves only on settlement), closes
 *    deals whose term is over, and withdraws what it earned.
 *
 * The contract checks an answer against the deal root current when the
 * answer is MINED, so a state update landing between building and mining
 * would fail an honest farmer. Answers are therefore built and sent under
 * the co-signer's per-deal lock (no new state is signed meanwhile), and not
 * while a state this farmer signed has yet to reach the chain (an honest
 * renter submits it at once; the answer waits a round). A renter that
 * withholds a signed state to front-run the answer with it can still fail
 * the farmer once — a known limit of answering against the current root.
 *
 * A challenge it cannot answer (a piece is missing or corrupt) is not
 * answered — a wrong answer costs gas and fails just the same — and is
 * logged; the renter's keeper records the failure once the deadline passes.
 *
 * At every new epoch it logs one line with the previous epoch's outcome:
 * deals, challenges passed/failed/unanswerable, epochs settled, earned.
 */
import { hexlify } from "ethers";
import type { AbortOptions } from "../core/abort.js";
import { throwIfAborted } from "../core/abort.js";
import { DstorError } from "../core/errors.js";
import type { Logger } from "../core/logging.js";
import { buildChallengeAnswer, computeChallenge, type LeafSource } from "../chain/proofs.js";
import { buildMerkleTree, type DealPiece, dealRoot, LEAF_SIZE_BYTES, type MerkleTree, merkleProof } from "../crypto/merkle.js";
import type { PieceListEntry } from "../farmer/store/types.js";
import {
  advanceSeed,
  answerDeadline,
  chainNow,
  type EpochClock,
  epochAt,
  epochStartTime,
  type Finality,
  PeriodicWorker,
  pollIntervalMs,
  type SeedSource,
  type SentTx,
  trySend,
  type Worker,
} from "./worker.js";

export type { SeedSource, SentTx } from "./worker.js";

/** A deal as the worker reads it (Market.deal). */
export interface AuditedDeal {
  renter: string;
  farmer: string;
  start: bigint;
  end: bigint;
  closed: boolean;
  nextEpoch: bigint;
  root: string;
  pieceCount: bigint;
  version: bigint;
  /** Egress already redeemed (cumulative voucher amount). */
  egressPaid: bigint;
}

/** The Market calls the worker makes (the typed ethers binding fits). */
export interface FarmerAuditMarket {
  deal(dealId: bigint): Promise<AuditedDeal>;
  /** The outcome of an epoch; `blockTag` reads it as of an older block (confirmations). */
  outcomes(dealId: bigint, epoch: bigint, overrides?: { blockTag?: number }): Promise<bigint>;
  /** Whether the renter requested a challenge of the deal in `epoch` (Market.requestChallenge). */
  requestedChallenges(dealId: bigint, epoch: bigint): Promise<boolean>;
  answerChallenge(
    dealId: bigint,
    epoch: bigint,
    samples: Array<{ pieceId: string; pieceRoot: string; pieceSize: bigint; dealProof: string[]; leaf: string; leafProof: string[] }>,
  ): Promise<SentTx>;
  settle(dealId: bigint, upToEpoch: bigint): Promise<SentTx>;
  closeDeal(dealId: bigint): Promise<SentTx>;
  withdrawable(account: string): Promise<bigint>;
  withdraw(): Promise<SentTx>;
  redeemVoucher(dealId: bigint, cumulativeAmount: bigint, renterSig: string): Promise<SentTx>;
}

/** The egress vouchers renters handed us (EgressVoucherBook fits). */
export interface HeldVouchers {
  latest(dealId: bigint): { cumulativeAmount: bigint; renterSignature: string } | undefined;
  forget(dealId: bigint): Promise<void>;
}

/** The piece-store calls the worker makes. */
export interface AuditPieceStore {
  list(renter?: string, options?: AbortOptions): AsyncIterable<PieceListEntry>;
  read(renter: string, pieceId: string, offset: number, length: number, options?: AbortOptions): Promise<Uint8Array>;
}

/** Options of {@link createFarmerAuditWorker}. */
export interface FarmerAuditInit {
  /** Our wallet address. */
  farmer: string;
  market: FarmerAuditMarket;
  randomness: SeedSource;
  store: AuditPieceStore;
  /** Ids of the deals naming us (new ones appear as they are opened). */
  dealIds(options: AbortOptions): Promise<bigint[]>;
  /** Chain time in unix seconds (see {@link chainNow}). */
  now(): Promise<number>;
  clock: EpochClock;
  challengeProbabilityPpm: bigint;
  samplesPerChallenge: number;
  /** The pieces of a state this farmer co-signed whose deal root is `root`, if remembered. */
  signedPieces?: (dealId: bigint, root: string) => DealPiece[] | undefined;
  /** Serialises answers with deal-state co-signing (the DealStateSigner; see the module comment). */
  coordinator?: {
    withDealLock<T>(dealId: bigint, fn: () => Promise<T>): Promise<T>;
    latestSignedVersion(dealId: bigint): bigint | undefined;
  };
  /** Renters' egress vouchers, redeemed once per epoch when they grew and before a deal closes. */
  vouchers?: HeldVouchers;
  /**
   * When a transaction counts as final (confirmations, reorgs; see
   * worker.ts). Without it, or with 0 confirmations, once it is mined.
   */
  finality?: Finality;
  /** Fix the current epoch's seed when nobody has (default true). */
  fixSeeds?: boolean;
  /** Round interval in ms (default {@link pollIntervalMs}). */
  intervalMs?: number;
  logger: Logger;
  signal?: AbortSignal | undefined;
}

/** What happened in one epoch, for its log line. */
interface EpochTally {
  deals: number;
  passed: number;
  failed: number;
  unanswerable: number;
  settled: number;
  earned: bigint;
  egress: bigint;
}

const OUTCOME_NONE = 0n;
const OUTCOME_PASSED = 1n;

/** What {@link canSettle} reads. */
export interface SettleView {
  market: { outcomes(dealId: bigint, epoch: bigint): Promise<bigint>; requestedChallenges(dealId: bigint, epoch: bigint): Promise<boolean> };
  randomness: { seedOf(epoch: bigint): Promise<string> };
  clock: EpochClock;
  challengeProbabilityPpm: bigint;
}

/**
 * Whether Market.settle would move `deal`'s cursor at chain time `now`
 * (mirrors Market._settle for the next epoch), so no gas is spent on a
 * settle that does nothing. `last` is the deal's last epoch.
 */
export async function canSettle(view: SettleView, dealId: bigint, deal: Pick<AuditedDeal, "nextEpoch" | "end" | "pieceCount">, now: number, last: bigint): Promise<boolean> {
  const e = deal.nextEpoch;
  if (e > last) return false;
  const ends = Math.min(epochStartTime(view.clock, e + 1n), Number(deal.end));
  if (now < ends) return false;
  if ((await view.market.outcomes(dealId, e)) !== OUTCOME_NONE) return true;
  if (now >= answerDeadline(view.clock, e)) return true;
  const seed = await view.randomness.seedOf(e);
  if (BigInt(seed) === 0n) return false;
  const requested = deal.pieceCount > 0n && (await view.market.requestedChallenges(dealId, e));
  return !computeChallenge(seed, dealId, e, deal.pieceCount, view.challengeProbabilityPpm, requested).challenged;
}

/** The smaller of two epochs (Math.min does not take bigints). */
export function minEpoch(a: bigint, b: bigint): bigint {
  return a < b ? a : b;
}


/** The farmer's audit/payment worker; see the module comment. */
export function createFarmerAuditWorker(init: FarmerAuditInit): Worker {
  const log = init.logger;
  const me = init.farmer.toLowerCase();
  /** Deals that are closed (nothing more to do). */
  const finished = new Set<string>();
  /** Epochs answered or found unanswerable, per deal id: not retried. */
  const handled = new Map<string, Set<bigint>>();
  const markHandled = (dealId: bigint, epoch: bigint): void => {
    const key = dealId.toString();
    const set = handled.get(key) ?? new Set<bigint>();
    set.add(epoch);
    handled.set(key, set);
  };
  const tallies = new Map<bigint, EpochTally>();
  /** The epoch in which each deal's voucher was last redeemed. */
  const redeemedIn = new Map<string, bigint>();
  let lastLogged: bigint | undefined;

  const tally = (epoch: bigint): EpochTally => {
    let t = tallies.get(epoch);
    if (t === undefined) {
      t = { deals: 0, passed: 0, failed: 0, unanswerable: 0, settled: 0, earned: 0n, egress: 0n };
      tallies.set(epoch, t);
    }
    return t;
  };

  const finality = init.finality;
  const send = (what: string, tx: () => Promise<SentTx>): Promise<boolean> => trySend(log, what, tx, finality);

  /**
   * Whether an outcome recorded for `epoch` is final: with confirmations it
   * must be there as of the block `confirmations - 1` below the head, else an
   * answer of ours may still be reorged out (it is then answered again).
   */
  const outcomeFinal = async (dealId: bigint, epoch: bigint): Promise<boolean> => {
    if (finality === undefined || finality.confirmations <= 1) return true;
    const blockTag = (await finality.chain.getBlockNumber()) - (finality.confirmations - 1);
    return blockTag >= 0 && (await init.market.outcomes(dealId, epoch, { blockTag })) !== OUTCOME_NONE;
  };

  /** The deal's pieces as of its current on-chain root, or undefined when we cannot tell. */
  const piecesOf = async (dealId: bigint, deal: AuditedDeal, signal: AbortSignal): Promise<DealPiece[] | undefined> => {
    const pieces: DealPiece[] = [];
    for await (const p of init.store.list(deal.renter.toLowerCase(), { signal })) {
      if (p.confirmed && p.dealId === dealId) pieces.push({ pieceId: Buffer.from(p.pieceId, "hex"), pieceRoot: p.root, size: p.size });
    }
    if (pieces.length > 0 && hexlify(dealRoot(pieces)) === deal.root.toLowerCase()) return pieces;
    return init.signedPieces?.(dealId, deal.root.toLowerCase());
  };

  /**
   * Leaves straight from the store; a piece whose bytes do not match its root
   * is refused. One source serves one answer, and it keeps the piece it read
   * last with its tree: when a deal holds a single piece (a small upload),
   * every sample asks that piece, and reading and hashing it once instead of
   * once per sample cut an answer's hashing from ~340 to ~85 ms (4 samples of
   * a 4 MiB piece). Only one piece is held, so memory stays one piece.
   */
  const leafSource = (renter: string, signal: AbortSignal): LeafSource => {
    let last: { id: string; data: Uint8Array; tree: MerkleTree } | undefined;
    return {
      async leafWithProof(piece, leafIndex) {
        const id = Buffer.from(piece.pieceId).toString("hex");
        if (last === undefined || last.id !== id || Buffer.compare(last.tree.root, piece.pieceRoot) !== 0) {
          const data = await init.store.read(renter, id, 0, Number(piece.size), { signal });
          const tree = buildMerkleTree(data);
          if (Buffer.compare(tree.root, piece.pieceRoot) !== 0) {
            throw new DstorError("INTEGRITY_MISMATCH", `piece ${id} no longer matches its root`);
          }
          last = { id, data, tree };
        }
        const { data, tree } = last;
        const start = leafIndex * LEAF_SIZE_BYTES;
        return { leaf: data.subarray(start, Math.min(data.byteLength, start + LEAF_SIZE_BYTES)), proof: merkleProof(tree, leafIndex) };
      },
    };
  };

  const answer = (dealId: bigint, epoch: bigint, seed: string, signal: AbortSignal): Promise<void> =>
    init.coordinator === undefined
      ? answerNow(dealId, epoch, seed, signal)
      : init.coordinator.withDealLock(dealId, () => answerNow(dealId, epoch, seed, signal));

  const answerNow = async (dealId: bigint, epoch: bigint, seed: string, signal: AbortSignal): Promise<void> => {
    const deal = await init.market.deal(dealId);
    const pending = init.coordinator?.latestSignedVersion(dealId);
    // Past the middle of the answer window, a signed state that never came is not waited for.
    const patient = Date.now() / 1000 < answerDeadline(init.clock, epoch) - init.clock.epochSeconds / 2;
    if (pending !== undefined && pending > deal.version && patient) {
      log.debug("a co-signed state is not on chain yet; answering next round", { dealId: dealId.toString(), epoch: epoch.toString() });
      return;
    }
    const requested = deal.pieceCount > 0n && (await init.market.requestedChallenges(dealId, epoch));
    const challenge = computeChallenge(seed, dealId, epoch, deal.pieceCount, init.challengeProbabilityPpm, requested);
    if (!challenge.challenged) {
      // The contract asks with the piece count current at answer time: an
      // empty deal may be challenged for this epoch once its first state lands.
      if (deal.pieceCount > 0n) markHandled(dealId, epoch);
      return;
    }
    if ((await init.market.outcomes(dealId, epoch)) !== OUTCOME_NONE) {
      // Ours (or recorded by a settle); handled once final, looked at again until then.
      if (await outcomeFinal(dealId, epoch)) markHandled(dealId, epoch);
      return;
    }
    const pieces = await piecesOf(dealId, deal, signal);
    let samples: Awaited<ReturnType<typeof buildChallengeAnswer>>;
    try {
      if (pieces === undefined) throw new DstorError("PIECE_NOT_FOUND", "the pieces of the deal's current root are not known here");
      samples = await buildChallengeAnswer(challenge, pieces, init.samplesPerChallenge, leafSource(deal.renter.toLowerCase(), signal), { signal });
    } catch (error) {
      throwIfAborted(signal);
      markHandled(dealId, epoch);
      tally(epoch).unanswerable++;
      log.warn("cannot answer a challenge", { dealId: dealId.toString(), epoch: epoch.toString(), error: String(error) });
      return;
    }
    // Not final (refused, lost to a reorg, not deep enough yet): the next round looks at the chain again.
    const sent = await send(`answerChallenge(${dealId}, ${epoch})`, () => init.market.answerChallenge(dealId, epoch, samples));
    if (!sent) return; // retried next round while the deadline allows
    markHandled(dealId, epoch);
    const outcome = await init.market.outcomes(dealId, epoch);
    if (outcome === OUTCOME_PASSED) tally(epoch).passed++;
    else tally(epoch).failed++;
    log.debug("challenge answered", { dealId: dealId.toString(), epoch: epoch.toString(), passed: outcome === OUTCOME_PASSED });
  };

  const tick = async (signal: AbortSignal): Promise<void> => {
    const now = await init.now();
    const current = epochAt(init.clock, now);
    if (lastLogged === undefined) lastLogged = current;
    if (init.fixSeeds !== false) {
      // The previous epoch too: its anchor may have been set just before the epoch turned.
      if (current > 0n) await advanceSeed(log, init.randomness, current - 1n, finality);
      await advanceSeed(log, init.randomness, current, finality);
    }
    const ids = await init.dealIds({ signal });
    let open = 0;
    for (const dealId of ids) {
      throwIfAborted(signal);
      const id = dealId.toString();
      if (finished.has(id)) continue;
      const deal = await init.market.deal(dealId);
      if (deal.farmer.toLowerCase() !== me) {
        finished.add(id);
        continue;
      }
      if (deal.closed) {
        finished.add(id);
        redeemedIn.delete(id);
        await init.vouchers?.forget(dealId);
        continue;
      }
      open++;
      const last = epochAt(init.clock, Number(deal.end) - 1);
      const upTo = minEpoch(current, last);
      for (let e = deal.nextEpoch; e <= upTo; e++) {
        if (handled.get(id)?.has(e) === true || now >= answerDeadline(init.clock, e)) continue;
        const seed = await init.randomness.seedOf(e);
        if (BigInt(seed) === 0n) continue;
        await answer(dealId, e, seed, signal);
      }
      let fresh = await init.market.deal(dealId);
      if (await canSettle(init, dealId, fresh, now, last)) {
        const before = fresh.nextEpoch;
        const settleTo = minEpoch(current - 1n, last);
        if (await send(`settle(${id})`, () => init.market.settle(dealId, settleTo))) {
          fresh = await init.market.deal(dealId);
          tally(current).settled += Number(fresh.nextEpoch - before);
        }
      }
      // Settled epochs can never be asked again: forget them, so the set stays small.
      for (const e of handled.get(id) ?? []) if (e < fresh.nextEpoch) handled.get(id)?.delete(e);
      // Egress: the newest voucher is redeemed once per epoch when it grew, and
      // in the deal's last epoch and before closing it (closing refunds the rest).
      const held = init.vouchers?.latest(dealId);
      const ending = now + init.clock.epochSeconds >= Number(deal.end);
      if (held !== undefined && held.cumulativeAmount > fresh.egressPaid && (redeemedIn.get(id) !== current || ending)) {
        const before = fresh.egressPaid;
        if (await send(`redeemVoucher(${id})`, () => init.market.redeemVoucher(dealId, held.cumulativeAmount, held.renterSignature))) {
          redeemedIn.set(id, current);
          tally(current).egress += held.cumulativeAmount - before;
        }
      }
      if (now >= Number(deal.end) && fresh.nextEpoch > last) {
        if (await send(`closeDeal(${id})`, () => init.market.closeDeal(dealId))) {
          finished.add(id);
          log.info("deal closed at the end of its term", { dealId: id });
        }
      }
    }
    tally(current).deals = open;
    const earned = await init.market.withdrawable(init.farmer);
    if (earned > 0n && (await send("withdraw", () => init.market.withdraw()))) tally(current).earned += earned;
    if (current > lastLogged) {
      for (let e = lastLogged; e < current; e++) {
        const t = tally(e);
        log.info(
          `epoch ${e}: ${t.deals} open deals, challenges passed ${t.passed} failed ${t.failed} unanswerable ${t.unanswerable}, ` +
            `${t.settled} epochs settled, egress redeemed ${t.egress}, earned ${t.earned} token units`,
          { epoch: e.toString(), ...t, earned: t.earned.toString(), egress: t.egress.toString() },
        );
        tallies.delete(e);
      }
      lastLogged = current;
    }
  };

  return new PeriodicWorker({
    name: "farmer-audit",
    intervalMs: init.intervalMs ?? pollIntervalMs(init.clock),
    tick,
    logger: log,
    signal: init.signal,
  });
}

/** The Market event query the deal scanner needs (an ethers Contract fits). */
export interface DealEventSource {
  queryFilter(
    filter: unknown,
    fromBlock: number,
    toBlock: number,
  ): Promise<Array<{ blockNumber: number; args?: unknown; topics?: readonly string[] }>>;
  filters: Record<string, ((...args: unknown[]) => unknown) | undefined>;
}

/**
 * Deal ids from `DealOpened(dealId, renter, farmer, …)` events naming
 * `party` as farmer or renter, scanned incrementally from `fromBlock` in
 * windows of `windowBlocks` (public endpoints cap log ranges).
 */
export function dealScanner(
  market: DealEventSource,
  provider: { getBlockNumber(): Promise<number> },
  party: { farmer?: string; renter?: string },
  fromBlock: number,
  windowBlocks = 10_000,
): (options?: AbortOptions) => Promise<bigint[]> {
  const ids: bigint[] = [];
  let next = fromBlock;
  const make = market.filters.DealOpened;
  if (make === undefined) throw new DstorError("INTERNAL", "the market binding has no DealOpened event");
  const filter = make(null, party.renter ?? null, party.farmer ?? null);
  return async (options = {}) => {
    const head = await provider.getBlockNumber();
    while (next <= head) {
      throwIfAborted(options.signal);
      const to = Math.min(head, next + windowBlocks - 1);
      for (const event of await market.queryFilter(filter, next, to)) {
        const args = event.args as unknown as readonly unknown[] | undefined;
        const id = args?.[0];
        if (typeof id === "bigint") ids.push(id);
      }
      next = to + 1;
    }
    return [...ids];
  };
}
