/**
 * Segment encryption: AES-256-GCM over 64 KiB blocks.
 *
 * A segment's plaintext is cut into blocks of {@link AEAD_BLOCK_BYTES}; the
 * last may be short, and an empty segment is one empty block (so cutting a
 * sealed segment down to nothing is detected, not read as "empty file").
 * Block b is sealed as ciphertext ‖ 16-byte tag with
 *
 *   nonce = 0x00000000 ‖ b (u64be)                      — 12 bytes
 *   AAD   = segmentId (24) ‖ b (u64be) ‖ lastFlag (1)   — 33 bytes
 *
 * The key is unique per write of a segment (keys.ts: fresh 16-byte salt), so a
 * nonce that is just the block index never repeats under one key. Binding
 * the segment id and block index in the AAD stops splicing and reordering; the
 * last flag stops truncation at a block boundary (the new final block would
 * carry flag 0). Blocks are independent, so a small read opens only the
 * blocks it touches ({@link openBlocks}, {@link sealedRangeFor}).
 *
 * Three implementations, identical bytes (tests prove it):
 * - native kernels (native/aead_gcm.c, compiled into the dstor addon): Node's
 *   own OpenSSL driven directly — one context per segment, only the IV reset
 *   per block, output written in place. Used when `loadNative()` exposes
 *   `gcmSealSegment` / `gcmOpenBlocks`.
 * - node:crypto (this file): the same OpenSSL through the Cipher API, which
 *   costs a context and an output buffer per 64 KiB block; still seals into
 *   one preallocated buffer, so the only extra copy is per block.
 * - @noble/ciphers (aead-reference.ts): the independent reference.
 */
import { createCipheriv, createDecipheriv, createSecretKey } from "node:crypto";
import { assertArgument, DstorError } from "../core/errors.js";
import { loadNative } from "../core/native.js";
import { assertBytes, uninitializedBytes } from "./bytes.js";
import { KEY_BYTES, SEGMENT_ID_BYTES } from "./keys.js";

/** Chooses the implementation; tests use `native: false` to compare paths. */
export interface AeadOptions {
  /** Use the native kernels when the addon has them (default true). */
  native?: boolean;
}

/** The AEAD kernels of native/aead_gcm.c, as the addon exports them. */
interface AeadKernels {
  gcmSealSegment(key: Uint8Array, segmentId: Uint8Array, plaintext: Uint8Array, out: Uint8Array): void;
  /** -1 when all blocks authenticate, else the index (within the call) of the first that failed. */
  gcmOpenBlocks(key: Uint8Array, segmentId: Uint8Array, sealed: Uint8Array, firstBlock: number, totalBlocks: number, out: Uint8Array): number;
  /** The same on libuv's thread pool; `sealed` and `out` must not be touched until it settles. */
  gcmOpenBlocksAsync?(key: Uint8Array, segmentId: Uint8Array, sealed: Uint8Array, firstBlock: number, totalBlocks: number, out: Uint8Array): Promise<number>;
}

function kernels(options: AeadOptions | undefined): AeadKernels | undefined {
  if (options?.native === false) return undefined;
  // Feature-detected rather than typed: the addon gains these functions when
  // native/aead_gcm.c is compiled in, and builds without it simply lack them.
  // loadNative() caches the addon and re-reads DSTOR_NO_NATIVE on every call.
  const addon = loadNative() as Partial<AeadKernels> | undefined;
  return typeof addon?.gcmSealSegment === "function" && typeof addon.gcmOpenBlocks === "function" ? (addon as AeadKernels) : undefined;
}

/** Which AEAD implementation {@link sealSegment} uses in this process. */
export function aeadImplementation(): "native" | "node:crypto" {
  return kernels(undefined) === undefined ? "node:crypto" : "native";
}

/** Plaintext bytes per AEAD block (64 KiB). */
export const AEAD_BLOCK_BYTES = 65536;
/** GCM tag bytes appended to each block. */
export const AEAD_TAG_BYTES = 16;
/** Bytes of a full sealed block. */
export const SEALED_BLOCK_BYTES = AEAD_BLOCK_BYTES + AEAD_TAG_BYTES;
/** GCM nonce bytes. */
export const AEAD_NONCE_BYTES = 12;
/** Associated-data bytes: segment id (24) ‖ block index (8) ‖ last flag (1). */
export const AEAD_AAD_BYTES = SEGMENT_ID_BYTES + 8 + 1;

/** Number of AEAD blocks of a segment with `plaintextLength` bytes (at least 1). */
export function blockCount(plaintextLength: number): number {
  assertArgument(Number.isSafeInteger(plaintextLength) && plaintextLength >= 0, `plaintext length must be a non-negative integer, got ${plaintextLength}`);
  return Math.max(1, Math.ceil(plaintextLength / AEAD_BLOCK_BYTES));
}

/** Sealed size of a segment: L + 16·max(1, ceil(L / 65536)). */
export function sealedLength(plaintextLength: number): number {
  return plaintextLength + AEAD_TAG_BYTES * blockCount(plaintextLength);
}

/** Plaintext length behind a sealed length, or `undefined` when no plaintext seals to it. */
function tryPlaintextLength(sealed: number): number | undefined {
  if (!Number.isSafeInteger(sealed) || sealed < AEAD_TAG_BYTES) return undefined;
  const blocks = Math.ceil(sealed / SEALED_BLOCK_BYTES);
  const last = sealed - (blocks - 1) * SEALED_BLOCK_BYTES;
  // A last block holding only a tag exists only for the empty segment.
  if (last < AEAD_TAG_BYTES || (last === AEAD_TAG_BYTES && blocks > 1)) return undefined;
  return sealed - blocks * AEAD_TAG_BYTES;
}

/**
 * Inverse of {@link sealedLength}. Throws `INVALID_ARGUMENT` for a length that
 * no plaintext seals to (for example 65552 + 16).
 */
export function plaintextLength(sealed: number): number {
  const length = tryPlaintextLength(sealed);
  if (length === undefined) throw new DstorError("INVALID_ARGUMENT", `${sealed} is not the length of a sealed segment`);
  return length;
}

/** The 12-byte nonce of block `b`: four zero bytes ‖ b (u64be). */
export function blockNonce(block: number): Uint8Array {
  const nonce = new Uint8Array(AEAD_NONCE_BYTES);
  new DataView(nonce.buffer).setBigUint64(4, BigInt(block), false);
  return nonce;
}

/** The 33-byte AAD of block `b`: segmentId ‖ b (u64be) ‖ lastFlag. */
export function blockAad(segmentId: Uint8Array, block: number, last: boolean): Uint8Array {
  const aad = new Uint8Array(AEAD_AAD_BYTES);
  aad.set(segmentId, 0);
  new DataView(aad.buffer).setBigUint64(SEGMENT_ID_BYTES, BigInt(block), false);
  aad[AEAD_AAD_BYTES - 1] = last ? 1 : 0;
  return aad;
}

function checkKeyAndId(key: Uint8Array, segmentId: Uint8Array): void {
  assertBytes(key, KEY_BYTES, "segment key");
  assertBytes(segmentId, SEGMENT_ID_BYTES, "segment id");
}

function decryptFailed(block: number, cause?: unknown): DstorError {
  return new DstorError(
    "DECRYPT_FAILED",
    `segment data failed authentication at block ${block}: it was altered, truncated, reordered or sealed under another key; fetch it from another farmer`,
    { cause, details: { block } },
  );
}

/**
 * Seals a whole segment. Returns a new buffer of {@link sealedLength} bytes.
 *
 * @param key - the segment key (32 bytes, unique per write; keys.ts).
 * @param segmentId - the 24-byte segment id.
 * @param options - `{ native: false }` forces the node:crypto path.
 */
export function sealSegment(key: Uint8Array, segmentId: Uint8Array, plaintext: Uint8Array, options?: AeadOptions): Uint8Array {
  assertArgument(plaintext instanceof Uint8Array, "plaintext must be a Uint8Array");
  // Uninitialised is safe: sealSegmentInto writes every byte of it.
  return sealSegmentInto(key, segmentId, plaintext, uninitializedBytes(sealedLength(plaintext.byteLength)), options);
}

/**
 * Seals a whole segment into `out`, which must be exactly
 * {@link sealedLength}(plaintext.length) bytes and must not overlap `plaintext`.
 * Returns `out`.
 */
export function sealSegmentInto(
  key: Uint8Array,
  segmentId: Uint8Array,
  plaintext: Uint8Array,
  out: Uint8Array,
  options?: AeadOptions,
): Uint8Array {
  checkKeyAndId(key, segmentId);
  assertArgument(plaintext instanceof Uint8Array, "plaintext must be a Uint8Array");
  const length = plaintext.byteLength;
  assertArgument(out instanceof Uint8Array && out.byteLength === sealedLength(length), "output buffer must be exactly sealedLength(plaintext.length) bytes");
  // Blocks move by 16 bytes per tag, so sealing in place would overwrite
  // plaintext not yet read.
  assertArgument(
    out.buffer !== plaintext.buffer ||
      out.byteOffset >= plaintext.byteOffset + length ||
      plaintext.byteOffset >= out.byteOffset + out.byteLength,
    "output buffer must not overlap the plaintext",
  );
  const native = kernels(options);
  if (native !== undefined) {
    native.gcmSealSegment(key, segmentId, plaintext, out);
    return out;
  }
  const keyObject = createSecretKey(key);
  const blocks = blockCount(length);
  const nonce = new Uint8Array(AEAD_NONCE_BYTES);
  const nonceView = new DataView(nonce.buffer);
  const aad = blockAad(segmentId, 0, false);
  const aadView = new DataView(aad.buffer);
  for (let b = 0; b < blocks; b++) {
    const start = b * AEAD_BLOCK_BYTES;
    const end = Math.min(length, start + AEAD_BLOCK_BYTES);
    nonceView.setUint32(8, b >>> 0, false);
    nonceView.setUint32(4, Math.floor(b / 2 ** 32), false);
    aadView.setUint32(SEGMENT_ID_BYTES + 4, b >>> 0, false);
    aadView.setUint32(SEGMENT_ID_BYTES, Math.floor(b / 2 ** 32), false);
    aad[AEAD_AAD_BYTES - 1] = b === blocks - 1 ? 1 : 0;
    // GCM's default tag is 16 bytes; no options object keeps this per-block call lean.
    const cipher = createCipheriv("aes-256-gcm", keyObject, nonce);
    cipher.setAAD(aad);
    const outOffset = b * SEALED_BLOCK_BYTES;
    if (end > start) out.set(cipher.update(plaintext.subarray(start, end)), outOffset);
    cipher.final();
    out.set(cipher.getAuthTag(), outOffset + (end - start));
  }
  return out;
}

/**
 * Opens a whole sealed segment. Any alteration, truncation (of bytes or of
 * whole blocks), reordering, splicing or wrong key throws `DECRYPT_FAILED`.
 */
export function openSegment(key: Uint8Array, segmentId: Uint8Array, sealed: Uint8Array, options?: OpenOptions): Uint8Array {
  return openBlocksUnchecked(key, segmentId, sealed, 0, segmentBlockCount(key, segmentId, sealed), options);
}

/** Checks a whole sealed segment's arguments and length; its block count. */
function segmentBlockCount(key: Uint8Array, segmentId: Uint8Array, sealed: Uint8Array): number {
  checkKeyAndId(key, segmentId);
  assertArgument(sealed instanceof Uint8Array, "sealed segment must be a Uint8Array");
  const length = tryPlaintextLength(sealed.byteLength);
  if (length === undefined) throw decryptFailed(Math.floor(sealed.byteLength / SEALED_BLOCK_BYTES));
  return blockCount(length);
}

/** The native kernels' answer (-1, or the first failed block within the call; `out` already zeroed) as `out` or a throw. */
function openedOrThrow(failed: number, firstBlock: number, out: Uint8Array): Uint8Array {
  if (failed >= 0) throw decryptFailed(firstBlock + failed);
  return out;
}

/**
 * {@link openSegment} off the event loop: with the native kernels the
 * blocks are opened on libuv's thread pool (the caller must leave `sealed`
 * and `options.into` alone until it settles); without them, it is
 * {@link openSegment}. Same bytes, same errors.
 */
export async function openSegmentAsync(key: Uint8Array, segmentId: Uint8Array, sealed: Uint8Array, options?: OpenOptions): Promise<Uint8Array> {
  const native = kernels(options);
  if (native?.gcmOpenBlocksAsync === undefined) return openSegment(key, segmentId, sealed, options);
  const totalBlocks = segmentBlockCount(key, segmentId, sealed);
  const out = openTarget(sealed, 0, totalBlocks, options);
  return openedOrThrow(await native.gcmOpenBlocksAsync(key, segmentId, sealed, 0, totalBlocks, out), 0, out);
}

/** Options of {@link openSegment}. */
export interface OpenOptions extends AeadOptions {
  /**
   * Where the plaintext goes: at least its length, not overlapping the
   * sealed bytes; the result is a view of its start. On failure it is
   * zeroed there, so no unauthenticated byte is left behind. Default: new memory.
   */
  into?: Uint8Array | undefined;
}

/**
 * Opens only some consecutive blocks of a segment, for small reads.
 *
 * @param sealedBytesForBlocks - the sealed bytes of blocks
 *   `firstBlock … firstBlock + n - 1`, exactly as in the sealed segment
 *   (every block full except the segment's last).
 * @param firstBlock - index of the first block passed.
 * @param totalBlocksInSegment - the segment's block count ({@link blockCount}
 *   of its plaintext length, known from metadata); needed to know which block
 *   carries the last flag.
 * @param options - `{ native: false }` forces the node:crypto path.
 * @returns the plaintext of the blocks passed.
 */
export function openBlocks(
  key: Uint8Array,
  segmentId: Uint8Array,
  sealedBytesForBlocks: Uint8Array,
  firstBlock: number,
  totalBlocksInSegment: number,
  options?: AeadOptions,
): Uint8Array {
  checkKeyAndId(key, segmentId);
  assertArgument(sealedBytesForBlocks instanceof Uint8Array, "sealed blocks must be a Uint8Array");
  assertArgument(Number.isSafeInteger(totalBlocksInSegment) && totalBlocksInSegment >= 1, "totalBlocksInSegment must be a positive integer");
  assertArgument(
    Number.isSafeInteger(firstBlock) && firstBlock >= 0 && firstBlock < totalBlocksInSegment,
    `firstBlock must be in [0, ${totalBlocksInSegment}), got ${firstBlock}`,
  );
  return openBlocksUnchecked(key, segmentId, sealedBytesForBlocks, firstBlock, totalBlocksInSegment, options);
}

/**
 * Checks the shape of sealed blocks `firstBlock …` of a `totalBlocks`-block
 * segment and returns the buffer their plaintext goes to (`options.into`'s
 * start, or new memory).
 */
function openTarget(sealed: Uint8Array, firstBlock: number, totalBlocks: number, options: OpenOptions | undefined): Uint8Array {
  const count = Math.max(1, Math.ceil(sealed.byteLength / SEALED_BLOCK_BYTES));
  const lastIncluded = firstBlock + count === totalBlocks;
  const lastSealed = sealed.byteLength - (count - 1) * SEALED_BLOCK_BYTES;
  // Shape checks: too many blocks, a short block that is not the segment's
  // last, or an empty last block that is not the only block — all are
  // truncation or padding, reported like any other authentication failure.
  if (
    firstBlock + count > totalBlocks ||
    lastSealed < AEAD_TAG_BYTES ||
    (!lastIncluded && lastSealed !== SEALED_BLOCK_BYTES) ||
    (lastSealed === AEAD_TAG_BYTES && totalBlocks > 1)
  ) {
    throw decryptFailed(firstBlock + count - 1);
  }
  const length = sealed.byteLength - count * AEAD_TAG_BYTES;
  const into = options?.into;
  if (into !== undefined) {
    assertArgument(into instanceof Uint8Array && into.byteLength >= length, `the output buffer must hold ${length} bytes`);
    assertArgument(
      into.buffer !== sealed.buffer || into.byteOffset >= sealed.byteOffset + sealed.byteLength || sealed.byteOffset >= into.byteOffset + length,
      "the output buffer must not overlap the sealed bytes",
    );
  }
  // Uninitialised is safe: every block is written, or the call throws and
  // the output is zeroed (a fresh buffer would be dropped anyway, but a
  // caller's buffer lives on).
  return into === undefined ? uninitializedBytes(length) : into.subarray(0, length);
}

function openBlocksUnchecked(
  key: Uint8Array,
  segmentId: Uint8Array,
  sealed: Uint8Array,
  firstBlock: number,
  totalBlocks: number,
  options: OpenOptions | undefined,
): Uint8Array {
  const count = Math.max(1, Math.ceil(sealed.byteLength / SEALED_BLOCK_BYTES));
  const out = openTarget(sealed, firstBlock, totalBlocks, options);
  const native = kernels(options);
  if (native !== undefined) return openedOrThrow(native.gcmOpenBlocks(key, segmentId, sealed, firstBlock, totalBlocks, out), firstBlock, out);
  const keyObject = createSecretKey(key);
  for (let i = 0; i < count; i++) {
    const b = firstBlock + i;
    const inStart = i * SEALED_BLOCK_BYTES;
    const inEnd = Math.min(sealed.byteLength, inStart + SEALED_BLOCK_BYTES);
    const ctEnd = inEnd - AEAD_TAG_BYTES;
    // authTagLength pins the tag size: without it OpenSSL would accept a shorter tag.
    const decipher = createDecipheriv("aes-256-gcm", keyObject, blockNonce(b), { authTagLength: AEAD_TAG_BYTES });
    decipher.setAAD(blockAad(segmentId, b, b === totalBlocks - 1));
    decipher.setAuthTag(sealed.subarray(ctEnd, inEnd));
    try {
      if (ctEnd > inStart) out.set(decipher.update(sealed.subarray(inStart, ctEnd)), i * AEAD_BLOCK_BYTES);
      decipher.final();
    } catch (error) {
      // Never hand back plaintext that failed authentication, even partially.
      out.fill(0);
      throw decryptFailed(b, error);
    }
  }
  return out;
}

/** Which sealed bytes to fetch for a plaintext range, and how to cut the result. */
export interface SealedRange {
  /** First block touched. */
  firstBlock: number;
  /** Number of blocks touched. */
  blockCount: number;
  /** Blocks in the whole segment (pass to {@link openBlocks}). */
  totalBlocks: number;
  /** Offset of the first sealed byte to fetch. */
  sealedStart: number;
  /** One past the last sealed byte to fetch. */
  sealedEnd: number;
  /** Where the requested range starts inside the plaintext {@link openBlocks} returns. */
  plaintextSkip: number;
}

/**
 * The sealed byte range covering plaintext bytes [offset, offset + length) of
 * a segment whose plaintext is `segmentPlaintextLength` bytes. Fetch
 * `sealed[sealedStart, sealedEnd)`, pass it to {@link openBlocks} with
 * `firstBlock` and `totalBlocks`, then take `length` bytes from `plaintextSkip`.
 */
export function sealedRangeFor(segmentPlaintextLength: number, offset: number, length: number): SealedRange {
  const totalBlocks = blockCount(segmentPlaintextLength);
  assertArgument(
    Number.isSafeInteger(offset) && Number.isSafeInteger(length) && offset >= 0 && length >= 1 && offset + length <= segmentPlaintextLength,
    `range [${offset}, ${offset}+${length}) is not a non-empty range inside a ${segmentPlaintextLength}-byte segment`,
  );
  const firstBlock = Math.floor(offset / AEAD_BLOCK_BYTES);
  const endBlock = Math.ceil((offset + length) / AEAD_BLOCK_BYTES);
  const sealedEnd = endBlock === totalBlocks ? sealedLength(segmentPlaintextLength) : endBlock * SEALED_BLOCK_BYTES;
  return {
    firstBlock,
    blockCount: endBlock - firstBlock,
    totalBlocks,
    sealedStart: firstBlock * SEALED_BLOCK_BYTES,
    sealedEnd,
    plaintextSkip: offset - firstBlock * AEAD_BLOCK_BYTES,
  };
}
