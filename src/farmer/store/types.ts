/**
 * The piece store as the farmer's protocol handlers see it: a narrow
 * interface (house rule 2) with a start/stop lifecycle. The file-system
 * implementation is `fs-store.ts`; every implementation must pass the shared
 * compliance suite in `test/farmer/store-compliance.ts`.
 *
 * A piece is owned by the pair (renter, pieceId): the same piece id stored by
 * two renters is two independent pieces. Renters are `0x` + 40 lowercase hex
 * digits, piece ids exactly 64 lowercase hex digits; anything else is rejected
 * before the store touches a disk.
 */
import type { AbortOptions } from "../../core/abort.js";
import { DstorError } from "../../core/errors.js";

/** What the renter declares about a piece when it starts uploading it. */
export interface PieceMeta {
  /** Merkle root of the piece bytes (32 bytes, format of docs/formats.md). */
  root: Uint8Array;
  /** The on-chain deal the piece is uploaded under. */
  dealId: bigint;
  /** Milliseconds since the epoch after which the piece is deleted unless confirmed. */
  expiresAt: number;
}

/** What the store knows about a stored piece. */
export interface PieceInfo {
  /** Size in bytes. */
  size: number;
  /** Merkle root (32 bytes). */
  root: Uint8Array;
  /** Deal the piece belongs to (the one it was confirmed into, once confirmed). */
  dealId: bigint;
  /** When an unconfirmed piece expires (ms epoch); `undefined` once confirmed. */
  expiresAt: number | undefined;
  /** True once the piece is part of a co-signed deal state. */
  confirmed: boolean;
}

/** One entry yielded by {@link PieceStore.list}. */
export interface PieceListEntry extends PieceInfo {
  /** Owner address, `0x` + 40 lowercase hex. */
  renter: string;
  /** Piece id, 64 lowercase hex. */
  pieceId: string;
}

/** A piece removed by {@link PieceStore.collectExpired}. */
export interface RemovedPiece {
  renter: string;
  pieceId: string;
  size: number;
}

/** Space accounting of a store, in bytes. Invariant: `used + reserved <= quota` (see {@link StoreUsage.free}). */
export interface StoreUsage {
  /** Bytes the farmer offers. */
  quota: number;
  /** Bytes held by committed pieces. */
  used: number;
  /** Bytes promised to uploads in progress. */
  reserved: number;
  /** `max(0, quota - used - reserved)`: the largest piece a new upload may reserve. */
  free: number;
}

/**
 * An upload in progress, returned by {@link PieceStore.reserve}. Exactly one
 * of `commit()` or `abort()` ends it; after that every call fails with
 * `INVALID_ARGUMENT` (commit/write) or does nothing (abort).
 */
export interface PieceWriter {
  /** Owner of the piece. */
  readonly renter: string;
  /** Id of the piece. */
  readonly pieceId: string;
  /** Declared size in bytes (what was reserved). */
  readonly size: number;
  /** Bytes accepted so far. */
  readonly bytesWritten: number;
  /**
   * Appends the next bytes. Resolves once the bytes are handed to the disk, so
   * awaiting each call is the backpressure. Calls are applied in call order.
   * The chunk must not be modified until the returned promise settles.
   * More bytes than the declared size → `INTEGRITY_MISMATCH` (the upload is aborted);
   * a full disk → `DISK_FULL` (the upload is aborted).
   */
  write(chunk: Uint8Array): Promise<void>;
  /**
   * Verifies size and Merkle root and makes the piece durable and visible.
   * Mismatch → `INTEGRITY_MISMATCH` and nothing is kept. Resolves only once the
   * piece survives a crash.
   */
  commit(): Promise<PieceInfo>;
  /** Discards the upload and releases its reservation. Idempotent. */
  abort(): Promise<void>;
}

/** Options of {@link PieceStore.reserve}. */
export type ReserveOptions = AbortOptions;

/** Options of {@link PieceStore.readStream}. */
export interface ReadStreamOptions extends AbortOptions {
  /** First byte to read. Default 0. */
  offset?: number;
  /** Bytes to read. Default: to the end of the piece. */
  length?: number;
  /** Largest chunk yielded, in bytes. Default 1 MiB. */
  chunkSize?: number;
  /**
   * Where each chunk is read: called once per chunk, it returns at least
   * `chunkSize` bytes that the caller owns, and the chunk yielded is a view
   * of them (of their start, except where a store reads whole aligned
   * blocks into direct-I/O memory: see the fs store). Default: a new buffer
   * per chunk.
   */
  buffer?: () => Uint8Array;
}

/** The farmer's piece store. */
export interface PieceStore {
  /** Opens the store (and, for durable stores, reconciles it after a crash). */
  start(options?: AbortOptions): Promise<void>;
  /** Closes the store; aborts open uploads, releases every handle. Idempotent. */
  stop(): Promise<void>;
  /**
   * Reserves `size` bytes of quota for a new piece before any byte is accepted.
   * Throws `PIECE_EXISTS` if (renter, pieceId) is stored or being uploaded,
   * `QUOTA_EXCEEDED` if it does not fit, `PIECE_ID_INVALID`/`INVALID_ARGUMENT`
   * for malformed input. Aborting `signal` aborts the upload.
   */
  reserve(renter: string, pieceId: string, size: number, meta: PieceMeta, options?: ReserveOptions): Promise<PieceWriter>;
  /** Reads `length` bytes at `offset`. `PIECE_NOT_FOUND` if absent; a range past the end → `INVALID_ARGUMENT`. */
  read(renter: string, pieceId: string, offset: number, length: number, options?: AbortOptions): Promise<Uint8Array>;
  /** Streams a range of a piece in chunks. Same errors as {@link PieceStore.read}. */
  readStream(renter: string, pieceId: string, options?: ReadStreamOptions): AsyncIterable<Uint8Array>;
  /** Facts about a stored piece, or `undefined` if it is not stored. */
  stat(renter: string, pieceId: string, options?: AbortOptions): Promise<PieceInfo | undefined>;
  /**
   * Marks pieces as included in a co-signed deal state under `dealId`: clears
   * their expiry. All or nothing: if any is missing, `PIECE_NOT_FOUND` and none
   * is changed.
   */
  confirm(renter: string, pieceIds: readonly string[], dealId: bigint, options?: AbortOptions): Promise<void>;
  /** Deletes a stored piece and frees its bytes. `PIECE_NOT_FOUND` if absent. */
  delete(renter: string, pieceId: string, options?: AbortOptions): Promise<void>;
  /** Every stored piece (of one renter, if given), ordered by renter then piece id. */
  list(renter?: string, options?: AbortOptions): AsyncIterable<PieceListEntry>;
  /** Current space accounting. */
  usage(): StoreUsage;
  /** Removes unconfirmed pieces whose `expiresAt <= now` (ms epoch); returns what was removed. */
  collectExpired(now: number, options?: AbortOptions): Promise<RemovedPiece[]>;
}

const PIECE_ID_PATTERN = /^[0-9a-f]{64}$/;
const RENTER_PATTERN = /^0x[0-9a-f]{40}$/;

/** True for exactly 64 lowercase hex characters. */
export function isValidPieceId(pieceId: unknown): pieceId is string {
  return typeof pieceId === "string" && PIECE_ID_PATTERN.test(pieceId);
}

/** True for `0x` followed by exactly 40 lowercase hex characters. */
export function isValidRenter(renter: unknown): renter is string {
  return typeof renter === "string" && RENTER_PATTERN.test(renter);
}

/** Throws `PIECE_ID_INVALID` unless `pieceId` is 64 lowercase hex characters. */
export function assertPieceId(pieceId: unknown): asserts pieceId is string {
  if (!isValidPieceId(pieceId)) {
    const shown = typeof pieceId === "string" ? JSON.stringify(pieceId.slice(0, 80)) : typeof pieceId;
    throw new DstorError("PIECE_ID_INVALID", `piece id ${shown} is not 64 lowercase hex characters`, {
      details: { length: typeof pieceId === "string" ? pieceId.length : undefined },
    });
  }
}

/** Throws `INVALID_ARGUMENT` unless `renter` is `0x` + 40 lowercase hex characters. */
export function assertRenter(renter: unknown): asserts renter is string {
  if (!isValidRenter(renter)) {
    const shown = typeof renter === "string" ? JSON.stringify(renter.slice(0, 80)) : typeof renter;
    throw new DstorError("INVALID_ARGUMENT", `renter ${shown} is not an address (0x + 40 lowercase hex characters)`);
  }
}

/**
 * The memory chunk `length` of a {@link PieceStore.readStream} lands in: a
 * view of the caller's `buffer` when it gave one, else a new buffer.
 */
export function readStreamChunk(options: ReadStreamOptions, length: number): Uint8Array {
  if (options.buffer === undefined) return new Uint8Array(length);
  const buffer = options.buffer();
  if (!(buffer instanceof Uint8Array) || buffer.byteLength < length) {
    throw new DstorError("INVALID_ARGUMENT", `readStream's buffer() must give at least ${length} bytes`);
  }
  return buffer.subarray(0, length);
}
