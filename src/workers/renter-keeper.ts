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
 * - withdraws refunds.
 *
 * It logs one line per epoch: deals, failures recorded, epochs settled,
 * deals closed, tokens refunded and claimed.
 */
import type { AbortOptions } from "../core/abort.js";
import { throwIfAborted } from "../core/abort.js";
import type { Logger } from "../core/logging.js";
import { type AuditedDeal, canSettle, minEpoch } from "./farmer-audit.js";
import { advanceSeed, type EpochClock, epochAt, PeriodicWorker, pollIntervalMs, type SeedSource, type SentTx, trySend, type Worker } from "./worker.js";

/** The Market calls the keeper makes. */
export interface KeeperMarket {
  deal(dealId: bigint): Promise<AuditedDeal>;
  outcomes(dealId: bigint, epoch: bigint): Promise<bigint>;
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

/** Options of {@link createRenterKeeper}. */
export interface RenterKeeperInit {
  /** Our wallet address. */
  renter: string;
  market: KeeperMarket;
  registry: KeeperRegistry;
  randomness: SeedSource;
  /** Ids of our deals (DealOpened events naming us as renter). */
  dealIds(options: AbortOptions): Promise<bigint[]>;
  /** Chain time, unix seconds. */
  now(): Promise<number>;
  clock: EpochClock;
  challengeProbabilityPpm: bigint;
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
}

/** The renter's keeper; see the module comment. */
export function createRenterKeeper(init: RenterKeeperInit): Worker {
  const log = init.logger;
  const send = (what: string, tx: () => Promise<SentTx>): Promise<boolean> => trySend(log, what, tx);
  const finished = new Set<string>();
  const claimedFrom = new Set<string>();
  const knownDisqualified = new Set<string>();
  let tally: KeeperTally = { deals: 0, settled: 0, failures: 0, closed: 0, refunded: 0n, claimed: 0n };
  let lastEpoch: bigint | undefined;

  const failuresIn = async (dealId: bigint, from: bigint, to: bigint): Promise<number> => {
    let n = 0;
    for (let e = from; e < to; e++) if ((await init.market.outcomes(dealId, e)) === 2n) n++;
    return n;
  };

  const tick = async (signal: AbortSignal): Promise<void> => {
    const now = await init.now();
    const current = epochAt(init.clock, now);
    lastEpoch ??= current;
    if (current > 0n) await advanceSeed(log, init.randomness, current - 1n);
    await advanceSeed(log, init.randomness, current);
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
          `${t.closed} deals closed, refunded ${t.refunded} and claimed ${t.claimed} token units`,
        { epoch: (current - 1n).toString(), ...t, refunded: t.refunded.toString(), claimed: t.claimed.toString() },
      );
      tally = { deals: 0, settled: 0, failures: 0, closed: 0, refunded: 0n, claimed: 0n };
      lastEpoch = current;
    }
  };

  return new PeriodicWorker({ name: "renter-keeper", intervalMs: init.intervalMs ?? pollIntervalMs(init.clock), tick, logger: log, signal: init.signal });
}
