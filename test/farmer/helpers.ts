/**
 * Helpers shared by the farmer tests, the compliance suite and the crash
 * fixture (no node:test import here: the fixture runs as a plain child process).
 */
import { createHash } from "node:crypto";
import * as nodeFs from "node:fs/promises";
import { join } from "node:path";
import type { PieceMeta, PieceStore, PieceWriter } from "../../src/farmer/store/types.js";

/** A valid renter address; `n` picks one of many. */
export function renterAddress(n: number): string {
  return `0x${n.toString(16).padStart(40, "0")}`;
}

/** A valid piece id; `n` picks one of many (spread over shards by hashing). */
export function pieceIdOf(n: number): string {
  return createHash("sha256").update(`piece-${n}`).digest("hex");
}

/** Deterministic pseudo-random piece bytes, different for each `seed`. */
export function pieceBytes(size: number, seed = 1): Uint8Array {
  const out = new Uint8Array(size);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < size; i++) {
    // xorshift32: cheap, not all-zero, different per seed.
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out[i] = x & 0xff;
  }
  return out;
}

/**
 * Reference piece Merkle root computed level by level over the whole buffer,
 * exactly as the shared format describes it (independent of src/).
 */
export function referenceMerkleRoot(data: Uint8Array): Uint8Array {
  const sha = (...parts: Uint8Array[]): Uint8Array => {
    const h = createHash("sha256");
    for (const p of parts) h.update(p);
    return new Uint8Array(h.digest());
  };
  const leafCount = Math.max(1, Math.ceil(data.byteLength / 1024));
  let level: Uint8Array[] = [];
  for (let i = 0; i < leafCount; i++) level.push(sha(Uint8Array.of(0), data.subarray(i * 1024, Math.min(data.byteLength, (i + 1) * 1024))));
  while (level.length > 1) {
    const next: Uint8Array[] = [];
    for (let j = 0; j + 1 < level.length; j += 2) next.push(sha(Uint8Array.of(1), level[j]!, level[j + 1]!));
    if (level.length % 2 === 1) next.push(level[level.length - 1]!); // promoted unchanged
    level = next;
  }
  return level[0]!;
}

/** Meta for `data`, expiring at `expiresAt`. */
export function metaFor(data: Uint8Array, dealId = 1n, expiresAt = Date.now() + 3_600_000): PieceMeta {
  return { root: referenceMerkleRoot(data), dealId, expiresAt };
}

/** Writes `data` in chunks of `chunkSize` bytes (awaiting each: backpressure). */
export async function writeAll(writer: PieceWriter, data: Uint8Array, chunkSize = 64 * 1024): Promise<void> {
  for (let offset = 0; offset < data.byteLength; offset += chunkSize) {
    await writer.write(data.subarray(offset, Math.min(data.byteLength, offset + chunkSize)));
  }
}

/** Reserves, writes and commits a whole piece. */
export async function putPiece(
  store: PieceStore,
  renter: string,
  pieceId: string,
  data: Uint8Array,
  meta: PieceMeta = metaFor(data),
  chunkSize?: number,
): Promise<void> {
  const writer = await store.reserve(renter, pieceId, data.byteLength, meta);
  await writeAll(writer, data, chunkSize);
  await writer.commit();
}

/** Collects an async iterable. */
export async function collect<T>(iterable: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of iterable) out.push(item);
  return out;
}

/** Whether `dir`'s file system takes O_DIRECT (tmpfs does not). */
export async function takesDirectIo(dir: string): Promise<boolean> {
  const probe = join(dir, "direct-io-probe");
  try {
    const handle = await nodeFs.open(probe, nodeFs.constants.O_WRONLY | nodeFs.constants.O_CREAT | nodeFs.constants.O_DIRECT, 0o600);
    await handle.close();
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "EINVAL") return false;
    throw error;
  } finally {
    await nodeFs.rm(probe, { force: true });
  }
}
