/**
 * Reads a local file for upload in reused buffers.
 *
 * `fs.createReadStream` allocates a new buffer for every read. Buffers of
 * 1 MiB come straight from mmap, so each one costs a page fault per 4 KiB
 * when first touched (about 200 faults per MB read, dear on virtual
 * machines) and is external memory that drives V8 toward full GCs. Here two
 * buffers alternate — one handed out, the next one being read ahead — and
 * full-size buffers come from a pool shared by all reads. A small file gets
 * buffers of its own size (plus one byte): one 1 MiB buffer per small file
 * was half of the mount's CPU in create-stat (garbage collection of
 * external memory).
 *
 * The contract is that of a transient read: a chunk stays valid only until
 * the consumer asks for the next one, so the consumer copies what it keeps
 * (`Renter.put` does).
 */
import { open } from "node:fs/promises";
import { BufferPool, uninitializedBytes } from "../crypto/bytes.js";
import { MIB } from "./units.js";

/** Default chunk size. */
export const FILE_CHUNK_BYTES = MIB;
/** Smallest buffer used for a small file (else its size plus one byte, to see the end in one read). */
const MIN_CHUNK_BYTES = 16 * 1024;

/** Full-size read buffers, shared: a few files read at once, dropped after 30 s unused. */
const pool = new BufferPool(8 * FILE_CHUNK_BYTES, { idleMs: 30_000 });

/**
 * The bytes of the file at `path`, in chunks of at most `chunkBytes`
 * (default {@link FILE_CHUNK_BYTES}), but no larger than the file (plus one
 * byte). Each chunk is valid only until the next one is asked for. The file
 * is opened when iteration starts and closed when it ends, fails or is
 * abandoned (`return()`). `path` is kept (the drive's upload progress reads it).
 */
export function readFileChunks(path: string, options: { chunkBytes?: number } = {}): AsyncIterable<Uint8Array> & { readonly path: string } {
  const chunkBytes = options.chunkBytes ?? FILE_CHUNK_BYTES;
  return { path, [Symbol.asyncIterator]: () => chunksOf(path, chunkBytes) };
}

async function* chunksOf(path: string, chunkBytes: number): AsyncGenerator<Uint8Array, void, undefined> {
  const handle = await open(path, "r");
  const pooled = [] as Uint8Array[];
  let pending: Promise<number> | undefined;
  try {
    const { size } = await handle.stat();
    const length = Math.min(chunkBytes, Math.max(MIN_CHUNK_BYTES, size + 1));
    const buffer = (): Uint8Array => {
      if (length !== FILE_CHUNK_BYTES) return uninitializedBytes(length);
      const taken = pool.take(length);
      pooled.push(taken);
      return taken;
    };
    const buffers = [buffer(), buffer()] as const;
    const read = async (into: Uint8Array): Promise<number> => (await handle.read(into, 0, into.byteLength, null)).bytesRead;
    let current = 0;
    pending = read(buffers[0]);
    for (;;) {
      const bytesRead = await pending;
      pending = undefined;
      if (bytesRead === 0) return;
      // Read ahead into the other buffer while the consumer works on this one.
      const next = current ^ 1;
      pending = read(buffers[next]);
      yield buffers[current].subarray(0, bytesRead);
      current = next;
    }
  } finally {
    // A read still in flight must finish before its buffer is reused or the file closed.
    await pending?.catch(() => {});
    await handle.close();
    pool.give(pooled);
  }
}
