/**
 * What every background worker (src/workers/) is: a named loop with a
 * start/stop lifecycle, an injected logger and an AbortSignal that ends it.
 *
 * {@link PeriodicWorker} runs one `tick` at a time, every `intervalMs`
 * measured from the end of the previous tick (a slow chain never makes ticks
 * pile up). A failing tick is logged and the loop goes on: workers must
 * survive a chain endpoint that is briefly down. `stop()` aborts the signal
 * the running tick holds and waits for it to return; it is idempotent.
 */
import { mined, revertName } from "../chain/signer.js";
import { sleep } from "../core/abort.js";
import { DstorError } from "../core/errors.js";
import type { Logger } from "../core/logging.js";

/** A background worker. */
export interface Worker {
  /** Short name used in logs (`farmer-audit`). */
  readonly name: string;
  /** Starts the loop; a second call does nothing. */
  start(): void;
  /** Ends the loop and waits for the running tick; idempotent. */
  stop(): Promise<void>;
}

/** Options of {@link PeriodicWorker}. */
export interface PeriodicWorkerInit {
  name: string;
  /** Pause between the end of one tick and the start of the next, in ms. */
  intervalMs: number;
  /** One round of work; must honour `signal`. */
  tick(signal: AbortSignal): Promise<void>;
  logger: Logger;
  /** Ends the worker when aborted (as stop() does). */
  signal?: AbortSignal | undefined;
}

/** A worker that calls `tick` periodically; see the module comment. */
export class PeriodicWorker implements Worker {
  readonly name: string;
  readonly #init: PeriodicWorkerInit;
  readonly #controller = new AbortController();
  #loop: Promise<void> | undefined;

  constructor(init: PeriodicWorkerInit) {
    this.name = init.name;
    this.#init = init;
    init.signal?.addEventListener("abort", () => this.#controller.abort(), { once: true });
  }

  start(): void {
    if (this.#loop !== undefined || this.#controller.signal.aborted) return;
    this.#loop = this.#run();
  }

  async #run(): Promise<void> {
    const signal = this.#controller.signal;
    const log = this.#init.logger;
    while (!signal.aborted) {
      try {
        await this.#init.tick(signal);
      } catch (error) {
        if (signal.aborted) break;
        log.warn(`${this.name}: round failed; retrying next round`, { error: String(error) });
      }
      try {
        await sleep(this.#init.intervalMs, { signal });
      } catch {
        break;
      }
    }
  }

  async stop(): Promise<void> {
    this.#controller.abort();
    await this.#loop;
  }
}

/** Epoch arithmetic of a deployment (Market.epochAt / answerDeadline). */
export interface EpochClock {
  /** Start of epoch 0, unix seconds. */
  genesis: number;
  epochSeconds: number;
}

/** The epoch containing unix time `t` (as Market.epochAt). */
export function epochAt(clock: EpochClock, t: number): bigint {
  return t < clock.genesis ? 0n : BigInt(Math.floor((t - clock.genesis) / clock.epochSeconds));
}

/** Start of `epoch`, unix seconds. */
export function epochStartTime(clock: EpochClock, epoch: bigint): number {
  return clock.genesis + Number(epoch) * clock.epochSeconds;
}

/** Time after which a challenge of `epoch` can no longer be answered (Market.answerDeadline). */
export function answerDeadline(clock: EpochClock, epoch: bigint): number {
  return epochStartTime(clock, epoch + 2n);
}

/** How often a worker looks at the chain: five times an epoch, between 1 s and 60 s. */
export function pollIntervalMs(clock: EpochClock): number {
  return Math.min(60_000, Math.max(1_000, Math.floor((clock.epochSeconds * 1000) / 5)));
}

/**
 * Chain time as a worker should use it: the latest block's timestamp, or the
 * wall clock when that is later (an auto-mining dev chain makes no block
 * while idle, yet its next block will carry the wall-clock time).
 */
export async function chainNow(provider: { getBlock(tag: "latest"): Promise<{ timestamp: number } | null> }): Promise<number> {
  const block = await provider.getBlock("latest");
  return Math.max(block?.timestamp ?? 0, Math.floor(Date.now() / 1000));
}

/** A sent transaction (an ethers TransactionResponse fits). */
export interface SentTx {
  /** Its hash; needed to follow it to finality. */
  readonly hash?: string;
  /** ethers' `wait(confirms, timeout)`: rejects with code TIMEOUT after `timeout` ms. */
  wait(confirms?: number, timeout?: number): Promise<unknown>;
}

/** The chain reads that follow a transaction to finality (an ethers provider fits). */
export interface FinalityChain {
  getBlockNumber(): Promise<number>;
  getTransactionReceipt(hash: string): Promise<{ blockNumber: number; status: number | null } | null>;
  getTransaction(hash: string): Promise<unknown>;
}

/**
 * When a worker treats its transaction as final: once its block has
 * `confirmations` blocks on top (itself included). 0 is "once mined" (dev
 * chains). A transaction whose receipt disappears and which the node no
 * longer knows (reorged out, dropped) is lost: `onLost` runs (the signer
 * resets its nonce, or every later transaction would wait behind the gap)
 * and the worker's next round sees the chain without it and acts again.
 */
export interface Finality {
  confirmations: number;
  chain: FinalityChain;
  /** Longest a send follows its transaction, in ms; after it the send counts as not final (the next round looks again). */
  timeoutMs: number;
  /** Poll interval while following a transaction, in ms. */
  pollMs?: number;
  onLost?: () => void;
}

/** Default confirmations: none on dev chains (instant, no reorgs), 2 on real networks. */
export function defaultConfirmations(devChain: boolean): number {
  return devChain ? 0 : 2;
}

/** `--confirmations` checked (a whole number of blocks), or the default for the chain. */
export function resolveConfirmations(value: number | undefined, devChain: boolean): number {
  if (value === undefined) return defaultConfirmations(devChain);
  if (!Number.isSafeInteger(value) || value < 0 || value > 1000) {
    throw new DstorError("INVALID_OPTION", "--confirmations must be a whole number of blocks between 0 and 1000");
  }
  return value;
}

/** How long a worker follows one transaction to finality: a quarter epoch, between 5 s and 2 min. */
export function finalityTimeoutMs(epochSeconds: number): number {
  return Math.min(120_000, Math.max(5_000, Math.floor((epochSeconds * 1000) / 4)));
}

/** What became of a followed transaction. */
export type TxFate = "final" | "reverted" | "lost" | "pending";

/** Follows the transaction `hash` until it is final, reverted or lost, or `timeoutMs` pass ("pending"). */
export async function followTransaction(hash: string, finality: Finality, signal?: AbortSignal): Promise<TxFate> {
  const deadline = Date.now() + finality.timeoutMs;
  const pollMs = finality.pollMs ?? 250;
  for (;;) {
    const receipt = await finality.chain.getTransactionReceipt(hash);
    if (receipt !== null) {
      if (receipt.status === 0) return "reverted";
      if ((await finality.chain.getBlockNumber()) - receipt.blockNumber + 1 >= finality.confirmations) {
        // Still there once deep enough (a reorg between the two reads would have removed it).
        if ((await finality.chain.getTransactionReceipt(hash))?.blockNumber === receipt.blockNumber) return "final";
        continue;
      }
    } else if ((await finality.chain.getTransaction(hash)) === null) {
      return "lost";
    }
    if (Date.now() >= deadline) return "pending";
    try {
      await sleep(pollMs, { signal });
    } catch {
      return "pending";
    }
  }
}

/**
 * Sends a transaction and waits for it — with `finality` until it is final
 * (see {@link Finality}); false (logged at debug) when the contract refuses
 * it, and also when it was lost or is not final yet: workers decide from
 * chain state each round, so a lost transaction is simply sent again.
 * Workers race each other for seeds and settlements, and losing such a race
 * is normal.
 */
export async function trySend(log: Logger, what: string, tx: () => Promise<SentTx>, finality?: Finality): Promise<boolean> {
  let sent: SentTx;
  try {
    sent = await tx();
    if (finality === undefined || finality.confirmations === 0 || sent.hash === undefined) {
      // Bounded: a transaction that is never mined is given up (and sent again next round).
      await mined(sent, what);
      return true;
    }
  } catch (error) {
    log.debug(`${what} not sent`, { revert: revertName(error), error: String(error) });
    return false;
  }
  const fate = await followTransaction(sent.hash, finality);
  if (fate === "final") return true;
  if (fate === "lost") {
    log.warn(`${what} was dropped or reorged out; sending it again if still needed`, { tx: sent.hash });
    finality.onLost?.();
  } else {
    log.debug(`${what} is ${fate}`, { tx: sent.hash });
  }
  return false;
}

/** The randomness calls seed keeping needs. */
export interface SeedSource {
  seedOf(epoch: bigint): Promise<string>;
  fixSeed(epoch: bigint): Promise<SentTx>;
}

/** Anchors or fixes the seed of `epoch` (two calls in two blocks); a no-op once it is fixed. */
export async function advanceSeed(log: Logger, randomness: SeedSource, epoch: bigint, finality?: Finality): Promise<void> {
  if (BigInt(await randomness.seedOf(epoch)) !== 0n) return;
  await trySend(log, `fixSeed(${epoch})`, () => randomness.fixSeed(epoch), finality);
}
