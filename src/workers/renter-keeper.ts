/**
 * The renter's chain keeper: makes audits bite. A farmer has no reason to
 * fix the seed of an epoch it cannot answer, and an unfixed seed counts as
 * "not challenged" (paid), so the renter fixes the seeds of the current and
 * previous epoch itself. Then, for each of its deals:
 *
 * - settles the epochs that are over: an unanswered challenge becomes a
 *   recorded failure (reputation, refund to the renter) once its deadline
 *   has passed — that is how a farmer that lost its data stops being paid
 *   and, after `failureThreshold` failures, is disqualified;
 * - closes the deal at once when its farmer is disqualified (every
 *   unsettled epoch is refunded) and claims the renter's share of the
 *   slashed stake; closes deals whose term is over;
 * - tops up a deal's escrow (Market.topUp) when what is left of it would not
 *   cover the data now stored for the rest of the term plus a margin
 *   ({@link TOP_UP_MARGIN_PPM} of that cost): a deal whose escrow runs short
 *   refuses the next co-signed state (InsufficientEscrow), i.e. the next
 *   upload to that farmer, and egress vouchers cannot be redeemed from the
 *   reserve. It tops up to twice the margin, so it does not act every round;
 * - withdraws refunds.
 *
 * It logs one line per epoch: deals, failures recorded, epochs settled,
 * deals closed, tokens refunded and claimed.
 */
import { storageCost } from "../chain/proofs.js";
import type { AbortOptions } from "../core/abort.js";
import { throwIfAborted } from "../core/abort.js";
import type { Logger } from "../core/logging.js";
import { type AuditedDeal, canSettle, minEpoch } from "./farmer-audit.js";
import { advanceSeed, type EpochClock, type Finality, epochAt, PeriodicWorker, pollIntervalMs, type SeedSource, type SentTx, trySend, type Worker } from "./worker.js";

/**
 * Escrow margin, in parts per million of the storage cost of the whole term
 * at the bytes now stored: below it the keeper tops up (to twice it).
 */
export const TOP_UP_MARGIN_PPM = 250_000n;

/** A deal as the keeper reads it: the audited fields plus its money. */
export interface KeeperDeal extends AuditedDeal {
  pricePerTBMonth: bigint;
  deposited: bigint;
}

/** The Market calls the keeper makes. */
export interface KeeperMarket {
  deal(dealId: bigint): Promise<KeeperDeal>;
  /** Byte-seconds of the deal up to `t` (with the bytes now stored continuing to its end). */
  byteSecondsAt(dealId: bigint, t: bigint): Promise<bigint>;
  topUp(dealId: bigint, amount: bigint): Promise<SentTx>;
  outcomes(dealId: bigint, epoch: bigint): Promise<bigint>;
  requestedChallenges(dealId: bigint, epoch: bigint): Promise<boolean>;
  settle(dealId: bigint, upToEpoch: bigint): Promise<SentTx>;
  closeDeal(dealId: bigint): Promise<SentTx>;
  withdrawable(account: string): Promise<bigint>;
  withdraw(): Promise<SentTx>;
}

/** The Registry calls the keeper makes. */
export interface KeeperRegistry {
  isDisqualified(farmer: string): Promise<boolean>;
  claimable(farmer: string, renter: string): Promise<bigint>;
  claim(farmer: string): Promise<SentTx>;
}

/** The token calls top-ups need (allowance for the market). */
export interface KeeperToken {
  allowance(owner: string, spender: string): Promise<bigint>;
  approve(spender: string, amount: bigint): Promise<SentTx>;
}

/**
 * Tokens to add to `deal`'s escrow, or 0: the escrow must cover the storage
 * cost of the whole term at the bytes now stored (as Market.updateState
 * requires) plus the egress redeemed, plus a margin of `marginPpm` of the
 * storage cost; below that it is topped up to twice the margin.
 */
export function topUpAmount(deal: Pick<KeeperDeal, "pricePerTBMonth" | "deposited" | "egressPaid">, byteSecondsAtEnd: bigint, marginPpm = TOP_UP_MARGIN_PPM): bigint {
  const projected = storageCost(deal.pricePerTBMonth, byteSecondsAtEnd);
  if (projected === 0n) return 0n;
  const margin = (projected * marginPpm + 999_999n) / 1_000_000n;
  const available = deal.deposited - deal.egressPaid;
  if (available >= projected + margin) return 0n;
  return projected + 2n * margin - available;
}

/** Options of {@link createRenterKeeper}. */
export interface RenterKeeperInit {
  /** Our wallet address. */
  renter: string;
  market: KeeperMarket;
  registry: KeeperRegistry;
  randomness: SeedSource;
  /** With the market's address: escrow top-ups (without it, none). */
  token?: KeeperToken;
  marketAddress?: string;
  /** Top-up margin in ppm of the term's storage cost (default {@link TOP_UP_MARGIN_PPM}). */
  topUpMarginPpm?: bigint;
  /** Ids of our deals (DealOpened events naming us as renter). */
  dealIds(options: AbortOptions): Promise<bigint[]>;
  /** Chain time, unix seconds. */
  now(): Promise<number>;
  clock: EpochClock;
  challengeProbabilityPpm: bigint;
  /**
   * When a transaction counts as final (see worker.ts): a close, claim or
   * top-up that is reorged out is not remembered as done, so the keeper does
   * it again from what the chain then shows.
   */
  finality?: Finality;
  /** Called when a farmer is found disqualified (metadata, repair). */
  onDisqualified?: (farmer: string) => Promise<void> | void;
  intervalMs?: number;
  logger: Logger;
  signal?: AbortSignal | undefined;
}

interface KeeperTally {
  deals: number;
  settled: number;
  failures: number;
  closed: number;
  refunded: bigint;
  claimed: bigint;
  toppedUp: bigint;
}

/** The renter's keeper; see the module comment. */
export function createRenterKeeper(init: RenterKeeperInit): Worker {
  const log = init.logger;
  const send = (what: string, tx: () => Promise<SentTx>): Promise<boolean> => trySend(log, what, tx, init.finality);
  const finished = new Set<string>();
  const claimedFrom = new Set<string>();
  const knownDisqualified = new Set<string>();
  let tally: KeeperTally = { deals: 0, settled: 0, failures: 0, closed: 0, refunded: 0n, claimed: 0n, toppedUp: 0n };
  let lastEpoch: bigint | undefined;

  const MAX_ALLOWANCE = 2n ** 255n;
  const topUp = async (dealId: bigint, deal: KeeperDeal): Promise<void> => {
    const { token, marketAddress } = init;
    if (token === undefined || marketAddress === undefined) return;
    const amount = topUpAmount(deal, await init.market.byteSecondsAt(dealId, deal.end), init.topUpMarginPpm);
    if (amount === 0n) return;
    if ((await token.allowance(init.renter, marketAddress)) < amount && !(await send("approve", () => token.approve(marketAddress, MAX_ALLOWANCE)))) return;
    if (await send(`topUp(${dealId}, ${amount})`, () => init.market.topUp(dealId, amount))) {
      tally.toppedUp += amount;
      log.info("deal escrow topped up", { dealId: dealId.toString(), amount: amount.toString() });
    }
  };

  const failuresIn = async (dealId: bigint, from: bigint, to: bigint): Promise<number> => {
    let n = 0;
    for (let e = from; e < to; e++) if ((await init.market.outcomes(dealId, e)) === 2n) n++;
    return n;
  };

  const tick = async (signal: AbortSignal): Promise<void> => {
    const now = await init.now();
    const current = epochAt(init.clock, now);
    lastEpoch ??= current;
    if (current > 0n) await advanceSeed(log, init.randomness, current - 1n, init.finality);
    await advanceSeed(log, init.randomness, current, init.finality);
    let open = 0;
    for (const dealId of await init.dealIds({ signal })) {
      throwIfAborted(signal);
      const id = dealId.toString();
      if (finished.has(id)) continue;
      let deal = await init.market.deal(dealId);
      if (deal.closed || deal.renter.toLowerCase() !== init.renter.toLowerCase()) {
        finished.add(id);
        continue;
      }
      open++;
      const farmer = deal.farmer.toLowerCase();
      const last = epochAt(init.clock, Number(deal.end) - 1);
      if (await init.registry.isDisqualified(farmer)) {
        if (!knownDisqualified.has(farmer)) {
          knownDisqualified.add(farmer);
          log.warn("farmer disqualified; closing its deal and claiming its stake", { farmer, dealId: id });
          await init.onDisqualified?.(farmer);
        }
        if (await send(`closeDeal(${id})`, () => init.market.closeDeal(dealId))) {
          finished.add(id);
          tally.closed++;
        }
        if (!claimedFrom.has(farmer)) {
          const amount = await init.registry.claimable(farmer, init.renter);
          if (amount === 0n || (await send(`claim(${farmer})`, () => init.registry.claim(farmer)))) {
            claimedFrom.add(farmer);
            tally.claimed += amount;
          }
        }
        continue;
      }
      if (await canSettle(init, dealId, deal, now, last)) {
        const before = deal.nextEpoch;
        if (await send(`settle(${id})`, () => init.market.settle(dealId, minEpoch(current - 1n, last)))) {
          deal = await init.market.deal(dealId);
          tally.settled += Number(deal.nextEpoch - before);
          tally.failures += await failuresIn(dealId, before, deal.nextEpoch);
        }
      }
      if (now < Number(deal.end)) await topUp(dealId, deal);
      if (now >= Number(deal.end) && deal.nextEpoch > last && (await send(`closeDeal(${id})`, () => init.market.closeDeal(dealId)))) {
        finished.add(id);
        tally.closed++;
      }
    }
    tally.deals = open;
    const refund = await init.market.withdrawable(init.renter);
    if (refund > 0n && (await send("withdraw", () => init.market.withdraw()))) tally.refunded += refund;
    if (current > lastEpoch) {
      const t = tally;
      log.info(
        `epoch ${current - 1n}: ${t.deals} open deals, ${t.settled} epochs settled, ${t.failures} audit failures recorded, ` +
          `${t.closed} deals closed, refunded ${t.refunded}, claimed ${t.claimed} and topped up ${t.toppedUp} token units`,
        { epoch: (current - 1n).toString(), ...t, refunded: t.refunded.toString(), claimed: t.claimed.toString(), toppedUp: t.toppedUp.toString() },
      );
      tally = { deals: 0, settled: 0, failures: 0, closed: 0, refunded: 0n, claimed: 0n, toppedUp: 0n };
      lastEpoch = current;
    }
  };

  return new PeriodicWorker({ name: "renter-keeper", intervalMs: init.intervalMs ?? pollIntervalMs(init.clock), tick, logger: log, signal: init.signal });
}
