/**
 * The read cache: decrypted, segment-sized chunks of clean files in a
 * byte-bounded LRU (`lru-cache`). Chunks are keyed by inode, which is never
 * reused, so a rewritten file (a new inode) can never be served stale bytes.
 * Concurrent misses on one chunk share a single fetch.
 */
import { LRUCache } from "lru-cache";

/** Fetches bytes [offset, offset + length) of a file (clamped to its size). */
export type ChunkFetcher = (offset: number, length: number, options: { signal?: AbortSignal | undefined }) => Promise<Uint8Array>;

/** Options of a {@link SegmentCache}. */
export interface SegmentCacheInit {
  /** Largest total size of cached chunks, in bytes. */
  maxBytes: number;
}

/** See the module note. */
export class SegmentCache {
  readonly #lru: LRUCache<string, Uint8Array>;
  readonly #inFlight = new Map<string, Promise<Uint8Array>>();

  constructor(init: SegmentCacheInit) {
    this.#lru = new LRUCache<string, Uint8Array>({ maxSize: Math.max(1, init.maxBytes), sizeCalculation: (v) => Math.max(1, v.byteLength) });
  }

  /** Bytes currently cached. */
  get bytes(): number {
    return this.#lru.calculatedSize;
  }

  async #chunk(inode: number, index: number, chunkSize: number, fetch: ChunkFetcher, signal: AbortSignal | undefined): Promise<Uint8Array> {
    const key = `${inode}:${index}`;
    const hit = this.#lru.get(key);
    if (hit !== undefined) return hit;
    let pending = this.#inFlight.get(key);
    if (pending === undefined) {
      pending = fetch(index * chunkSize, chunkSize, { signal }).then(
        (data) => {
          this.#inFlight.delete(key);
          this.#lru.set(key, data);
          return data;
        },
        (error: unknown) => {
          this.#inFlight.delete(key);
          throw error;
        },
      );
      this.#inFlight.set(key, pending);
    }
    return pending;
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
    const chunks = await Promise.all(
      Array.from({ length: last - first + 1 }, (_, i) => this.#chunk(file.inode, first + i, file.chunkSize, fetch, options.signal)),
    );
    chunks.forEach((chunk, i) => {
      const chunkStart = (first + i) * file.chunkSize;
      const from = Math.max(offset, chunkStart);
      const to = Math.min(end, chunkStart + chunk.byteLength);
      if (to > from) out.set(chunk.subarray(from - chunkStart, to - chunkStart), from - offset);
    });
    return out;
  }

  /** Drops every chunk of `inode`. */
  forget(inode: number): void {
    for (const key of this.#lru.keys()) if (key.startsWith(`${inode}:`)) this.#lru.delete(key);
  }
}
