/**
 * Long-tail pacing for one segment's puts.
 *
 * A segment starts `total` puts together and keeps the first `optimal` that
 * succeed (src/renter/renter.ts). Run as a plain race, every put sends as
 * fast as its farmer takes the bytes, so when the `optimal`-th piece is
 * stored the puts cancelled after it have usually sent most of their piece
 * too: on equal farmers each of them is ~90 % through. Those bytes cost the
 * renter's uplink and the farmers' receive work and are thrown away.
 *
 * The pacer keeps the race but lets only the `optimal` puts furthest ahead
 * run freely. A put behind them (a spare) may send a head start of one
 * chunk (enough for the farmer to check the order and begin) and then
 * waits while it stays behind. The ranking is by bytes handed to the
 * transport, so the farmers slowest to take their first bytes become the
 * spares (on equal farmers: the puts started last, which are parity pieces,
 * so reads keep finding the data pieces). The pacing ends for the rest of
 * the segment, and every put runs freely, when
 *   - any put fails (the spares are needed, and its replacement must not
 *     wait either), or
 *   - no put has been handed a byte or succeeded for `stallMs` while one
 *     waits (a farmer stalled: the spares race it).
 * A put that has waited `keepAliveMs` is handed one more chunk, so that its
 * farmer's idle deadline never ends it. With no spares (`optimal === total`)
 * nothing ever waits.
 */

import { abortReason } from "../core/abort.js";

/** What a paced segment upload needs to know. */
export interface LongTailPacerInit {
  optimal: number;
  total: number;
  /** Size of each chunk handed to the transport; a spare's head start is one. */
  chunkBytes: number;
  /** No progress this long while a put waits ends the pacing, in ms. */
  stallMs: number;
  /** A waiting put is handed a chunk every this many ms, in ms. */
  keepAliveMs: number;
}

/** Paces the puts of one segment; see the module comment. */
export class LongTailPacer {
  readonly #init: LongTailPacerInit;
  /** Bytes handed over per put number, for every put not failed (succeeded ones stay, as the leaders they are). */
  readonly #progress = new Map<number, number>();
  readonly #waiters = new Set<() => void>();
  #released: boolean;
  #lastProgressAt = performance.now();
  #stallTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(init: LongTailPacerInit) {
    if (!(init.chunkBytes > 0)) throw new RangeError("chunkBytes must be positive");
    this.#init = init;
    this.#released = init.optimal >= init.total;
  }

  /** True once pacing has ended for this segment (every put then runs freely). */
  get released(): boolean {
    return this.#released;
  }

  /**
   * The bytes of put `number` as chunk views of `data` (no copies), each
   * handed over when the pacer lets it go. Rejects with the signal's reason
   * when aborted while waiting.
   */
  async *chunks(number: number, data: Uint8Array, signal?: AbortSignal): AsyncGenerator<Uint8Array, void, undefined> {
    this.#progress.set(number, 0);
    const { chunkBytes } = this.#init;
    for (let at = 0; at < data.byteLength; at += chunkBytes) {
      const end = Math.min(at + chunkBytes, data.byteLength);
      if (!this.#admit(number, end)) await this.#wait(number, end, signal);
      yield data.subarray(at, end);
    }
  }

  /** Put `number` succeeded. */
  succeeded(number: number): void {
    this.#progress.set(number, Number.POSITIVE_INFINITY);
    this.#advanced();
  }

  /** Put `number` failed (it is no longer in the race; a replacement may take its number). */
  failed(number: number): void {
    this.#progress.delete(number);
    this.#release();
  }

  #release(): void {
    this.#released = true;
    this.#stopWatching();
    this.#wake();
  }

  #stopWatching(): void {
    clearTimeout(this.#stallTimer);
    this.#stallTimer = undefined;
  }

  #wake(): void {
    for (const wake of this.#waiters) wake();
  }

  #advanced(): void {
    this.#lastProgressAt = performance.now();
    this.#wake();
  }

  /** Lets put `number` hand over bytes up to `end` if it may, recording that at once (so puts woken together are ranked one by one). */
  #admit(number: number, end: number): boolean {
    if (!this.#mayAdvance(number, end)) return false;
    this.#handOver(number, end);
    return true;
  }

  /** Records that put `number` has handed over bytes up to `end`. */
  #handOver(number: number, end: number): void {
    this.#progress.set(number, end);
    this.#advanced();
  }

  #mayAdvance(number: number, end: number): boolean {
    if (this.#released || end <= this.#init.chunkBytes) return true;
    const mine = this.#progress.get(number) ?? 0;
    let ahead = 0;
    for (const [other, progress] of this.#progress) if (other !== number && progress > mine) ahead++;
    return ahead < this.#init.optimal;
  }

  /** While a put waits: ends the pacing once nothing has moved for `stallMs`. */
  #watchForStall(): void {
    if (this.#stallTimer !== undefined || this.#released || this.#waiters.size === 0) return;
    const due = this.#lastProgressAt + this.#init.stallMs - performance.now();
    this.#stallTimer = setTimeout(
      () => {
        this.#stallTimer = undefined;
        if (performance.now() - this.#lastProgressAt >= this.#init.stallMs) this.#release();
        else this.#watchForStall();
      },
      Math.max(0, due),
    );
  }

  #wait(number: number, end: number, signal: AbortSignal | undefined): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      if (signal?.aborted) {
        reject(abortReason(signal));
        return;
      }
      const done = (): void => {
        clearTimeout(keepAlive);
        this.#waiters.delete(check);
        signal?.removeEventListener("abort", onAbort);
        if (this.#waiters.size === 0) this.#stopWatching();
      };
      const check = (): void => {
        if (!this.#mayAdvance(number, end)) return;
        done();
        this.#handOver(number, end);
        resolve();
      };
      const onAbort = (): void => {
        done();
        reject(abortReason(signal!));
      };
      const keepAlive = setTimeout(() => {
        done();
        this.#handOver(number, end);
        resolve();
      }, this.#init.keepAliveMs);
      this.#waiters.add(check);
      signal?.addEventListener("abort", onAbort, { once: true });
      this.#watchForStall();
    });
  }
}
