/**
 * An in-memory {@link PieceStore}: same contract as the file-system store
 * (quota reserved before the first byte, Merkle root checked at commit,
 * (renter, pieceId) ownership, expiry), no durability. For protocol and
 * node tests that need a fast store, and as the second implementation that
 * keeps the compliance suite honest about testing the interface only.
 *
 * Uploads are buffered until commit (a memory store holds the bytes anyway).
 * Every state change happens synchronously between awaits, so no locks are
 * needed: `used + reserved <= quota` holds for concurrent uploads.
 */
import { type AbortOptions, abortReason, throwIfAborted } from "../../core/abort.js";
import { assertArgument, DstorError } from "../../core/errors.js";
import { MIB } from "../../core/units.js";
import { IncrementalMerkleRoot, MERKLE_HASH_SIZE_BYTES } from "./root.js";
import {
  assertPieceId,
  assertRenter,
  type PieceInfo,
  type PieceListEntry,
  type PieceMeta,
  type PieceStore,
  type PieceWriter,
  type ReadStreamOptions,
  readStreamChunk,
  type RemovedPiece,
  type ReserveOptions,
  type StoreUsage,
} from "./types.js";

/** Options of {@link createMemoryPieceStore}. */
export interface MemoryPieceStoreInit {
  /** Bytes of piece data the store may hold. */
  quotaBytes: number;
}

interface StoredPiece {
  data: Uint8Array;
  info: PieceInfo;
}

/** Creates an in-memory piece store. Call `start()` before use; `stop()` discards nothing (a restart keeps pieces). */
export function createMemoryPieceStore(init: MemoryPieceStoreInit): PieceStore {
  assertArgument(Number.isSafeInteger(init.quotaBytes) && init.quotaBytes >= 0, "quotaBytes must be a non-negative integer");
  const quota = init.quotaBytes;
  const pieces = new Map<string, StoredPiece>();
  const writing = new Set<string>();
  const writers = new Set<{ fail(error: DstorError): void }>();
  let used = 0;
  let reserved = 0;
  let started = false;

  const key = (renter: string, pieceId: string): string => `${renter}/${pieceId}`;
  const free = (): number => Math.max(0, quota - used - reserved);
  const ensureStarted = (): void => {
    if (!started) throw new DstorError("STORE_CLOSED", "the piece store is not running; start it first");
  };
  const copyInfo = (info: PieceInfo): PieceInfo => ({ ...info, root: new Uint8Array(info.root) });
  const notFound = (renter: string, pieceId: string): DstorError =>
    new DstorError("PIECE_NOT_FOUND", `piece ${pieceId} of ${renter} is not stored here`, { details: { renter, pieceId } });
  const checkRange = (size: number, offset: number, length: number): void => {
    assertArgument(Number.isSafeInteger(offset) && offset >= 0, "offset must be a non-negative integer");
    assertArgument(Number.isSafeInteger(length) && length >= 0, "length must be a non-negative integer");
    assertArgument(offset + length <= size, `range [${offset}, ${offset + length}) is past the end of a ${size}-byte piece`);
  };
  const lookup = (renter: string, pieceId: string): StoredPiece => {
    const piece = pieces.get(key(renter, pieceId));
    if (piece === undefined) throw notFound(renter, pieceId);
    return piece;
  };
  const expired = (info: PieceInfo, now: number): boolean => !info.confirmed && info.expiresAt !== undefined && info.expiresAt <= now;

  function makeWriter(renter: string, pieceId: string, size: number, meta: PieceMeta, signal: AbortSignal | undefined): PieceWriter {
    const k = key(renter, pieceId);
    const chunks: Uint8Array[] = [];
    const hasher = new IncrementalMerkleRoot();
    const expectedRoot = new Uint8Array(meta.root);
    let bytes = 0;
    let state: "open" | "committed" | "aborted" = "open";
    let failure: DstorError | undefined;
    const end = (error: DstorError | undefined): void => {
      if (state !== "open") return;
      state = "aborted";
      failure = error;
      reserved -= size;
      writing.delete(k);
      writers.delete(handle);
      signal?.removeEventListener("abort", onAbort);
    };
    const closedError = (): DstorError => failure ?? new DstorError("INVALID_ARGUMENT", `the upload of piece ${pieceId} has already ended`);
    const handle = { fail: end };
    const onAbort = (): void => end(abortReason(signal!));
    signal?.addEventListener("abort", onAbort, { once: true });
    writers.add(handle);
    return {
      renter,
      pieceId,
      size,
      get bytesWritten() {
        return bytes;
      },
      async write(chunk) {
        if (state !== "open") throw closedError();
        assertArgument(chunk instanceof Uint8Array, "chunk must be a Uint8Array");
        if (bytes + chunk.byteLength > size) {
          end(new DstorError("INTEGRITY_MISMATCH", `piece ${pieceId} is larger than its declared ${size} bytes`));
          throw failure;
        }
        hasher.update(chunk);
        chunks.push(new Uint8Array(chunk));
        bytes += chunk.byteLength;
      },
      async commit() {
        if (state !== "open") throw closedError();
        if (bytes !== size) {
          end(new DstorError("INTEGRITY_MISMATCH", `piece ${pieceId} has ${bytes} bytes, ${size} were declared`));
          throw failure;
        }
        const root = hasher.digest();
        if (!Buffer.from(root).equals(Buffer.from(expectedRoot))) {
          end(new DstorError("INTEGRITY_MISMATCH", `piece ${pieceId}: the bytes received do not match the declared Merkle root`));
          throw failure;
        }
        const info: PieceInfo = { size, root, dealId: meta.dealId, expiresAt: meta.expiresAt, confirmed: false };
        pieces.set(k, { data: new Uint8Array(Buffer.concat(chunks)), info });
        state = "committed";
        reserved -= size;
        used += size;
        writing.delete(k);
        writers.delete(handle);
        signal?.removeEventListener("abort", onAbort);
        return copyInfo(info);
      },
      async abort() {
        end(undefined);
      },
    };
  }

  return {
    async start(options: AbortOptions = {}) {
      throwIfAborted(options.signal);
      started = true;
    },
    async stop() {
      if (!started) return;
      started = false;
      const closed = new DstorError("STORE_CLOSED", "the piece store was stopped during the upload");
      for (const writer of [...writers]) writer.fail(closed);
    },
    async reserve(renter: string, pieceId: string, size: number, meta: PieceMeta, options: ReserveOptions = {}) {
      assertRenter(renter);
      assertPieceId(pieceId);
      assertArgument(Number.isSafeInteger(size) && size >= 0, "piece size must be a non-negative integer");
      assertArgument(meta.root instanceof Uint8Array && meta.root.byteLength === MERKLE_HASH_SIZE_BYTES, "piece root must be a 32-byte Uint8Array");
      assertArgument(typeof meta.dealId === "bigint" && meta.dealId >= 0n, "dealId must be a non-negative bigint");
      assertArgument(Number.isSafeInteger(meta.expiresAt) && meta.expiresAt >= 0, "expiresAt must be a non-negative integer (ms epoch)");
      throwIfAborted(options.signal);
      ensureStarted();
      const k = key(renter, pieceId);
      if (writing.has(k) || pieces.has(k)) throw new DstorError("PIECE_EXISTS", `piece ${pieceId} of ${renter} is already stored or being uploaded`);
      if (size > free()) throw new DstorError("QUOTA_EXCEEDED", `piece of ${size} bytes does not fit: ${free()} bytes of quota are free`);
      reserved += size;
      writing.add(k);
      return makeWriter(renter, pieceId, size, meta, options.signal);
    },
    async read(renter: string, pieceId: string, offset: number, length: number, options: AbortOptions = {}) {
      assertRenter(renter);
      assertPieceId(pieceId);
      throwIfAborted(options.signal);
      ensureStarted();
      const piece = lookup(renter, pieceId);
      checkRange(piece.info.size, offset, length);
      return piece.data.slice(offset, offset + length);
    },
    async *readStream(renter: string, pieceId: string, options: ReadStreamOptions = {}) {
      assertRenter(renter);
      assertPieceId(pieceId);
      throwIfAborted(options.signal);
      ensureStarted();
      const piece = lookup(renter, pieceId);
      const offset = options.offset ?? 0;
      const length = options.length ?? Math.max(0, piece.info.size - offset);
      checkRange(piece.info.size, offset, length);
      const chunkSize = options.chunkSize ?? MIB;
      for (let position = offset; position < offset + length; position += chunkSize) {
        throwIfAborted(options.signal);
        const part = piece.data.subarray(position, Math.min(offset + length, position + chunkSize));
        const chunk = readStreamChunk(options, part.byteLength);
        chunk.set(part);
        yield chunk;
      }
    },
    async stat(renter: string, pieceId: string, options: AbortOptions = {}) {
      assertRenter(renter);
      assertPieceId(pieceId);
      throwIfAborted(options.signal);
      ensureStarted();
      const piece = pieces.get(key(renter, pieceId));
      return piece === undefined ? undefined : copyInfo(piece.info);
    },
    async confirm(renter: string, pieceIds: readonly string[], dealId: bigint, options: AbortOptions = {}) {
      assertRenter(renter);
      for (const pieceId of pieceIds) assertPieceId(pieceId);
      assertArgument(typeof dealId === "bigint" && dealId >= 0n, "dealId must be a non-negative bigint");
      throwIfAborted(options.signal);
      ensureStarted();
      const missing = pieceIds.filter((pieceId) => !pieces.has(key(renter, pieceId)));
      if (missing.length > 0) {
        throw new DstorError("PIECE_NOT_FOUND", `${missing.length} of the confirmed pieces are not stored here; nothing was confirmed`, { details: { renter, missing } });
      }
      for (const pieceId of pieceIds) {
        const piece = pieces.get(key(renter, pieceId))!;
        piece.info = { ...piece.info, dealId, expiresAt: undefined, confirmed: true };
      }
    },
    async delete(renter: string, pieceId: string, options: AbortOptions = {}) {
      assertRenter(renter);
      assertPieceId(pieceId);
      throwIfAborted(options.signal);
      ensureStarted();
      const piece = lookup(renter, pieceId);
      pieces.delete(key(renter, pieceId));
      used -= piece.info.size;
    },
    async *list(renter?: string, options: AbortOptions = {}): AsyncGenerator<PieceListEntry> {
      if (renter !== undefined) assertRenter(renter);
      throwIfAborted(options.signal);
      ensureStarted();
      const keys = [...pieces.keys()].filter((k) => renter === undefined || k.startsWith(`${renter}/`)).sort();
      for (const k of keys) {
        const piece = pieces.get(k);
        if (piece === undefined) continue; // deleted while listing
        const [owner, pieceId] = k.split("/") as [string, string];
        yield { renter: owner, pieceId, ...copyInfo(piece.info) };
      }
    },
    usage(): StoreUsage {
      return { quota, used, reserved, free: free() };
    },
    async collectExpired(now: number, options: AbortOptions = {}) {
      assertArgument(Number.isFinite(now), "now must be a time in ms since the epoch");
      throwIfAborted(options.signal);
      ensureStarted();
      const removed: RemovedPiece[] = [];
      for (const [k, piece] of [...pieces]) {
        if (!expired(piece.info, now)) continue;
        pieces.delete(k);
        used -= piece.info.size;
        const [renter, pieceId] = k.split("/") as [string, string];
        removed.push({ renter, pieceId, size: piece.info.size });
      }
      return removed;
    },
  };
}
