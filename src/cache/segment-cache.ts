/**
 * The read cache: decrypted, segment-sized chunks of clean files in a
 * byte-bounded LRU (`lru-cache`). Chunks are keyed by inode, which is never
 * reused, so a rewritten file (a new inode) can never be served stale bytes.
 * Concurrent misses on one chunk share a single fetch.
 *
 * Read-ahead: a read that starts where the previous read of the same file
 * ended (within {@link SEQUENTIAL_SLACK_BYTES}, since the kernel issues its
 * own read-ahead requests concurrently and slightly out of order) is
 * sequential, and the next `readAheadChunks` chunks are fetched in the
 * background while the current one is consumed. Bounded: at most
 * `maxPrefetches` background fetches run at once in the whole cache. A read
 * elsewhere in the file (random access) aborts that file's background
 * fetches that no read has asked for yet; a read that needs a chunk being
 * prefetched joins that fetch, which from then on is never aborted.
 *
 * Lock order: none (single-threaded; the maps are only touched synchronously).
 */
import { LRUCache } from "lru-cache";

/** Fetches bytes [offset, offset + length) of a file (clamped to its size). */
export type ChunkFetcher = (offset: number, length: number, options: { signal?: AbortSignal | undefined }) => Promise<Uint8Array>;

/** How far from the end of the previous read a read may start and still count as sequential, in bytes. */
export const SEQUENTIAL_SLACK_BYTES = 1024 * 1024;
/** Chunks fetched ahead of a sequential reader by default. */
export const DEFAULT_READ_AHEAD_CHUNKS = 2;
/** Background fetches running at once in one cache by default. */
export const DEFAULT_MAX_PREFETCHES = 4;

/** Options of a {@link SegmentCache}. */
export interface SegmentCacheInit {
  /** Largest total size of cached chunks, in bytes. */
  maxBytes: number;
  /** Chunks fetched ahead of a sequential reader (0: no read-ahead). */
  readAheadChunks?: number;
  /** Background fetches running at once, over all files. */
  maxPrefetches?: number;
  /** Default {@link SEQUENTIAL_SLACK_BYTES}. */
  sequentialSlackBytes?: number;
}

interface InFlight {
  promise: Promise<Uint8Array>;
  /** Set while the fetch is a read-ahead no read has asked for (it may be aborted). */
  prefetch?: AbortController | undefined;
}

/** See the module note. */
export class SegmentCache {
  readonly #lru: LRUCache<string, Uint8Array>;
  readonly #inFlight = new Map<string, InFlight>();
  /** Per inode: where its last read ended (bounded: an inode not read for long just starts over). */
  readonly #lastEnd = new LRUCache<number, number>({ max: 4096 });
  readonly #readAhead: number;
  readonly #maxPrefetches: number;
  readonly #slack: number;
  #prefetching = 0;
  /** Read-ahead fetches started (for tests and statistics). */
  prefetched = 0;

  constructor(init: SegmentCacheInit) {
    this.#lru = new LRUCache<string, Uint8Array>({ maxSize: Math.max(1, init.maxBytes), sizeCalculation: (v) => Math.max(1, v.byteLength) });
    this.#readAhead = Math.max(0, init.readAheadChunks ?? DEFAULT_READ_AHEAD_CHUNKS);
    this.#maxPrefetches = Math.max(0, init.maxPrefetches ?? DEFAULT_MAX_PREFETCHES);
    this.#slack = Math.max(0, init.sequentialSlackBytes ?? SEQUENTIAL_SLACK_BYTES);
  }

  /** Bytes currently cached. */
  get bytes(): number {
    return this.#lru.calculatedSize;
  }

  /** Read-ahead fetches running now. */
  get prefetching(): number {
    return this.#prefetching;
  }

  #start(key: string, offset: number, length: number, fetch: ChunkFetcher, signal: AbortSignal | undefined, prefetch?: AbortController): InFlight {
    const entry: InFlight = { promise: Promise.resolve(new Uint8Array(0)), prefetch };
    entry.promise = fetch(offset, length, { signal }).then(
      (data) => {
        if (this.#inFlight.get(key) === entry) this.#inFlight.delete(key);
        this.#lru.set(key, data);
        return data;
      },
      (error: unknown) => {
        if (this.#inFlight.get(key) === entry) this.#inFlight.delete(key);
        throw error;
      },
    );
    this.#inFlight.set(key, entry);
    return entry;
  }

  async #chunk(inode: number, index: number, chunkSize: number, fetch: ChunkFetcher, signal: AbortSignal | undefined): Promise<Uint8Array> {
    const key = `${inode}:${index}`;
    const hit = this.#lru.get(key);
    if (hit !== undefined) return hit;
    const pending = this.#inFlight.get(key);
    if (pending !== undefined) {
      // A read needs it now: the read-ahead becomes an ordinary fetch that random access no longer aborts.
      pending.prefetch = undefined;
      return pending.promise;
    }
    return this.#start(key, index * chunkSize, chunkSize, fetch, signal).promise;
  }

  /** Starts background fetches of the chunks after `last` (see the module note). */
  #prefetch(file: { inode: number; size: number; chunkSize: number }, last: number, fetch: ChunkFetcher): void {
    const chunks = Math.ceil(file.size / file.chunkSize);
    for (let index = last + 1; index <= last + this.#readAhead && index < chunks; index++) {
      if (this.#prefetching >= this.#maxPrefetches) return;
      const key = `${file.inode}:${index}`;
      if (this.#lru.has(key) || this.#inFlight.has(key)) continue;
      const controller = new AbortController();
      this.#prefetching++;
      this.prefetched++;
      const entry = this.#start(key, index * file.chunkSize, file.chunkSize, fetch, controller.signal, controller);
      entry.promise
        .catch(() => {}) // a failed or aborted read-ahead is retried by the read that needs the chunk
        .finally(() => {
          this.#prefetching--;
        });
    }
  }

  /** Aborts the read-ahead fetches of `inode` that no read has joined. */
  #cancelPrefetches(inode: number): void {
    const prefix = `${inode}:`;
    for (const [key, entry] of this.#inFlight) {
      if (entry.prefetch === undefined || !key.startsWith(prefix)) continue;
      entry.prefetch.abort();
      this.#inFlight.delete(key);
    }
  }

  /**
   * Bytes [offset, offset + length) of file `inode` of `size` bytes, read in
   * chunks of `chunkSize` (its segment size) through the cache.
   */
  async read(
    file: { inode: number; size: number; chunkSize: number },
    offset: number,
    length: number,
    fetch: ChunkFetcher,
    options: { signal?: AbortSignal | undefined } = {},
  ): Promise<Uint8Array> {
    const end = Math.min(file.size, offset + length);
    if (end <= offset) return new Uint8Array(0);
    const out = new Uint8Array(end - offset);
    const first = Math.floor(offset / file.chunkSize);
    const last = Math.floor((end - 1) / file.chunkSize);
    const previousEnd = this.#lastEnd.get(file.inode);
    const sequential = offset === 0 || (previousEnd !== undefined && Math.abs(offset - previousEnd) <= this.#slack);
    this.#lastEnd.set(file.inode, Math.max(end, sequential ? (previousEnd ?? 0) : 0));
    if (!sequential) this.#cancelPrefetches(file.inode);
    const chunks = Promise.all(Array.from({ length: last - first + 1 }, (_, i) => this.#chunk(file.inode, first + i, file.chunkSize, fetch, options.signal)));
    if (sequential && this.#readAhead > 0) this.#prefetch(file, last, fetch);
    (await chunks).forEach((chunk, i) => {
      const chunkStart = (first + i) * file.chunkSize;
      const from = Math.max(offset, chunkStart);
      const to = Math.min(end, chunkStart + chunk.byteLength);
      if (to > from) out.set(chunk.subarray(from - chunkStart, to - chunkStart), from - offset);
    });
    return out;
  }

  /** Drops every chunk of `inode` and aborts its read-ahead. */
  forget(inode: number): void {
    this.#cancelPrefetches(inode);
    this.#lastEnd.delete(inode);
    for (const key of this.#lru.keys()) if (key.startsWith(`${inode}:`)) this.#lru.delete(key);
  }
}
