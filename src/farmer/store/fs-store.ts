/**
 * The farmer's piece store on a local file system.
 *
 * ## Layout (under `dir`)
 * ```
 * pieces/<pieceId[0:2]>/<renter>-<pieceId>   one file per piece, exactly its bytes
 * tmp/<renter>-<pieceId>.<random>.tmp         uploads in progress
 * index/                                      level (classic-level) database
 * ```
 * Sharding by the first byte of the piece id (piece ids are uniformly random
 * HKDF output) spreads pieces over 256 directories, all created when the
 * store starts, so no upload creates a directory: 10 million pieces are
 * ~40 000 files per directory, which ext4's hashed directories look up
 * directly. (Stores up to 2026-11 used two levels, `<pieceId[0:2]>/<pieceId[2:4]>/`:
 * 65 536 leaf directories, so a young farmer's every upload made two
 * directories and fsynced three, and a full spread cost 256 MiB of directory
 * blocks; start-up moves such pieces into the one-level layout.) Temp files
 * live on the same file system as `pieces/`, so the final rename is atomic.
 *
 * The index maps `<renter>/<pieceId>` to a JSON {@link IndexRecord}: size,
 * Merkle root, deal id, expiry and whether the piece is confirmed into a
 * co-signed deal state. The level database also serves as the store's
 * single-process lock: LevelDB refuses a second opener, which is reported as
 * `HOME_IN_USE`, and it is taken BEFORE reconciliation so that one process
 * never deletes another's temp files.
 *
 * ## Write order (commit)
 * 1. bytes → temp file (quota already reserved, root hashed incrementally;
 *    whole aligned batches with direct I/O, see direct-io.ts);
 * 2. size and Merkle root checked — a mismatch deletes the temp file;
 * 3. temp file fsync, close;
 * 4. rename into `pieces/…` (atomic replace-free: the key is locked and known absent);
 * 5. fsync of the shard directory, so the rename itself is durable (a shard
 *    directory removed behind the store's back is made again, durably, first);
 * 6. index put — only now is the piece visible, and only now does commit() resolve.
 *
 * ## Start-up reconciliation (after a crash or kill)
 * - every file in `tmp/` is deleted: an upload whose commit never resolved was
 *   never acknowledged to the renter, who retries or places it elsewhere;
 * - a piece file without an index entry is deleted: the crash hit between
 *   step 4/5 and step 6, so commit() never resolved either. Keeping it would
 *   use disk the quota does not count and that no deal pays for; deleting it
 *   lets the renter's retry of the same piece succeed;
 * - an index entry whose file is missing, or whose file has the wrong size,
 *   is removed (and the wrong-size file deleted): the store must never serve
 *   or promise bytes it does not have. This only happens after damage outside
 *   dstor's write order (disk loss, manual deletion); it is logged as an error
 *   because the renter's audits of that piece will now fail and its repair
 *   worker must replace the piece;
 * - pieces in the old two-level layout are moved into the one-level layout
 *   (each shard directory fsynced after its moves), their old directories removed;
 * - files in `pieces/` whose name or shard does not match the layout are deleted;
 * - `used` is recomputed as the sum of the sizes of the surviving entries.
 * Reconciliation walks the whole `pieces/` tree once per start. It checks
 * presence and size, not content: re-hashing every piece would make a start
 * take hours on a full disk. Content is covered by the write order above (a
 * file only gets its final name after fsync of verified bytes) and, against
 * later bit rot, by the Merkle proofs every read and audit carries.
 *
 * ## Delete order
 * index delete first, then unlink: a crash in between leaves a file without an
 * entry, which reconciliation removes (the other order could leave an entry
 * that promises a missing piece).
 *
 * ## Concurrency and lock order
 * JavaScript runs one task at a time, so the quota check and the increment of
 * `reserved` happen with no `await` between them: `used + reserved <= quota`
 * holds however many uploads race. Mutations of one (renter, pieceId) — reserve's
 * existence check, commit's rename+index put, delete, confirm, expiry — hold a
 * per-key async lock. A task that needs several keys (confirm) takes them in
 * ascending key order and no other lock exists, so there is no deadlock.
 * The `#writing` set marks keys with an open upload, so a second reserve of the
 * same piece fails with `PIECE_EXISTS` before any byte is accepted.
 */
import { randomBytes } from "node:crypto";
import * as nodeFs from "node:fs/promises";
import { join } from "node:path";
import { Level } from "level";
import { type AbortOptions, abortReason, throwIfAborted } from "../../core/abort.js";
import { assertArgument, DstorError } from "../../core/errors.js";
import { type Logger, silentLogger } from "../../core/logging.js";
import { MIB } from "../../core/units.js";
import { DIRECT_IO_ALIGNMENT, directWritable, isDirectIoMemory } from "./direct-io.js";
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

/**
 * The subset of `node:fs/promises` the store uses. Injected so tests can
 * simulate a full disk or count file-system calls; defaults to the real module.
 */
export type StoreFileSystem = Pick<typeof nodeFs, "open" | "rename" | "unlink" | "mkdir" | "readdir" | "stat" | "rm">;

/** Options of {@link createFsPieceStore}. */
export interface FsPieceStoreInit {
  /** Directory that holds pieces, temp files and the index; created if missing. */
  dir: string;
  /** Bytes of piece data the store may hold (used + reserved never exceed it). */
  quotaBytes: number;
  /** Logger; the store logs under `<namespace>:store` if given a parent, or as given. Default: silent. */
  logger?: Logger;
  /** File-system implementation (tests only). Default `node:fs/promises`. */
  fs?: StoreFileSystem;
}

/** A {@link PieceStore} kept in a directory; see the module comment for layout and guarantees. */
export interface FsPieceStore extends PieceStore {
  /** The store's directory. */
  readonly dir: string;
  /** Where the piece file of (renter, pieceId) lives (validated first). */
  piecePath(renter: string, pieceId: string): string;
  /** Piece bytes written with direct I/O since the store was created (see direct-io.ts; tests and status). */
  readonly directBytes: number;
  /** Piece bytes read with direct I/O since the store was created (readStream into direct-I/O buffers; tests and status). */
  readonly directReadBytes: number;
}

/** Default chunk size of {@link PieceStore.readStream}. */
export const READ_STREAM_CHUNK_BYTES = MIB;

/** Current version of the index record layout. */
const INDEX_RECORD_VERSION = 1;

/** One index value, stored as JSON. */
interface IndexRecord {
  v: number;
  size: number;
  /** Merkle root, lowercase hex. */
  root: string;
  /** Deal id, decimal (bigint does not survive JSON). */
  dealId: string;
  /** ms epoch, or null once confirmed. */
  expiresAt: number | null;
  confirmed: boolean;
}

type StoreState = "new" | "starting" | "started" | "stopping" | "stopped";

const PIECES_DIR = "pieces";
const TMP_DIR = "tmp";
const INDEX_DIR = "index";
const PIECE_FILE_PATTERN = /^(0x[0-9a-f]{40})-([0-9a-f]{64})$/;
/** Name of a shard directory (and of an old-layout second-level one). */
const SHARD_PATTERN = /^[0-9a-f]{2}$/;

/** The piece a directory entry holds, if it is a piece file whose id starts with `prefix` (its shard). */
function pieceOfFile(entry: { name: string; isFile(): boolean }, prefix: string): { renter: string; pieceId: string } | undefined {
  const match = PIECE_FILE_PATTERN.exec(entry.name);
  if (!entry.isFile() || match === null || !match[2]!.startsWith(prefix)) return undefined;
  return { renter: match[1]!, pieceId: match[2]! };
}

function indexKey(renter: string, pieceId: string): string {
  return `${renter}/${pieceId}`;
}

function parseIndexKey(key: string): { renter: string; pieceId: string } | undefined {
  const match = /^(0x[0-9a-f]{40})\/([0-9a-f]{64})$/.exec(key);
  return match === null ? undefined : { renter: match[1]!, pieceId: match[2]! };
}

function isIndexRecord(value: unknown): value is IndexRecord {
  if (typeof value !== "object" || value === null) return false;
  const r = value as Partial<IndexRecord>;
  return (
    r.v === INDEX_RECORD_VERSION &&
    Number.isSafeInteger(r.size) &&
    (r.size as number) >= 0 &&
    typeof r.root === "string" &&
    /^[0-9a-f]{64}$/.test(r.root) &&
    typeof r.dealId === "string" &&
    /^\d+$/.test(r.dealId) &&
    (r.expiresAt === null || Number.isSafeInteger(r.expiresAt)) &&
    typeof r.confirmed === "boolean"
  );
}

function recordToInfo(record: IndexRecord): PieceInfo {
  return {
    size: record.size,
    root: new Uint8Array(Buffer.from(record.root, "hex")),
    dealId: BigInt(record.dealId),
    expiresAt: record.expiresAt ?? undefined,
    confirmed: record.confirmed,
  };
}

function errnoCode(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" ? code : undefined;
}

/** Turns a file-system failure into a coded error; a full disk becomes `DISK_FULL`. */
function ioError(error: unknown, what: string, details: Record<string, unknown> = {}): DstorError {
  if (error instanceof DstorError) return error;
  const code = errnoCode(error);
  if (code === "ENOSPC" || code === "EDQUOT") {
    return new DstorError("DISK_FULL", `the disk holding the piece store is full (${what}); free space on it or lower the quota`, {
      cause: error,
      details: { ...details, errno: code },
    });
  }
  const message = error instanceof Error ? error.message : String(error);
  return new DstorError("INTERNAL", `piece store: ${what} failed: ${message}`, { cause: error, details: { ...details, errno: code } });
}

function validateMeta(meta: PieceMeta): void {
  assertArgument(typeof meta === "object" && meta !== null, "piece meta must be an object");
  assertArgument(
    meta.root instanceof Uint8Array && meta.root.byteLength === MERKLE_HASH_SIZE_BYTES,
    "piece root must be a 32-byte Uint8Array",
  );
  assertArgument(typeof meta.dealId === "bigint" && meta.dealId >= 0n, "dealId must be a non-negative bigint");
  assertArgument(Number.isSafeInteger(meta.expiresAt) && meta.expiresAt >= 0, "expiresAt must be a non-negative integer (ms epoch)");
}

function validateSize(size: number): void {
  assertArgument(Number.isSafeInteger(size) && size >= 0, `piece size must be a non-negative integer, got ${String(size)}`);
}

/** Creates a file-system piece store. Call `start()` before use. */
export function createFsPieceStore(init: FsPieceStoreInit): FsPieceStore {
  return new FsPieceStoreImpl(init);
}

/** What a writer needs from its store; closures keep the store's fields private. */
/** Whether the store's file system takes direct I/O (shared by its writers; false after the first refusal). */
interface DirectIo {
  usable: boolean;
  /** Bytes written directly since the store was created (tests and status). */
  bytes: number;
  /** Bytes of piece data served by direct reads since the store was created (tests and status). */
  readBytes: number;
}

/** After the file system refused O_DIRECT (EINVAL, e.g. tmpfs): every read and write goes through the page cache from now on. */
function refuseDirectIo(direct: DirectIo, logger: Logger, error: unknown): void {
  direct.usable = false;
  logger.info("the piece directory does not take direct I/O; reading and writing through the page cache", { error: String(error) });
}

interface WriterHooks {
  direct: DirectIo;
  /** Steps 4–6 of the write order; releases the reservation into `used`. */
  finalize(writer: FsPieceWriter, record: IndexRecord, tmpPath: string): Promise<void>;
  /** Releases the reservation of an upload that ends without a piece. */
  release(writer: FsPieceWriter): void;
  fs: StoreFileSystem;
  logger: Logger;
}

type WriterState = "open" | "committing" | "committed" | "aborted";

class FsPieceWriter implements PieceWriter {
  readonly renter: string;
  readonly pieceId: string;
  readonly size: number;
  readonly #meta: PieceMeta;
  readonly #hooks: WriterHooks;
  readonly #tmpPath: string;
  readonly #hasher = new IncrementalMerkleRoot();
  #file: nodeFs.FileHandle | undefined;
  /** The temp file opened a second time with O_DIRECT, for aligned batches (see direct-io.ts); null: not usable. */
  #direct: nodeFs.FileHandle | null | undefined;
  #bytes = 0;
  #state: WriterState = "open";
  /** Why the upload was aborted, for later calls (undefined: aborted by the caller). */
  #failure: DstorError | undefined;
  /** File operations, applied in call order. */
  #queue: Promise<unknown> = Promise.resolve();
  #done: Promise<void> | undefined;

  constructor(renter: string, pieceId: string, size: number, meta: PieceMeta, file: nodeFs.FileHandle, tmpPath: string, hooks: WriterHooks) {
    this.renter = renter;
    this.pieceId = pieceId;
    this.size = size;
    this.#meta = { root: new Uint8Array(meta.root), dealId: meta.dealId, expiresAt: meta.expiresAt };
    this.#file = file;
    this.#tmpPath = tmpPath;
    this.#hooks = hooks;
  }

  get bytesWritten(): number {
    return this.#bytes;
  }

  #closedError(): DstorError {
    if (this.#failure !== undefined) return this.#failure;
    return new DstorError("INVALID_ARGUMENT", `the upload of piece ${this.pieceId} has already ${this.#state === "committed" ? "been committed" : "been aborted"}`);
  }

  write(chunk: Uint8Array): Promise<void> {
    if (this.#state !== "open") return Promise.reject(this.#closedError());
    if (!(chunk instanceof Uint8Array)) return Promise.reject(new DstorError("INVALID_ARGUMENT", "chunk must be a Uint8Array"));
    if (this.#bytes + chunk.byteLength > this.size) {
      const error = new DstorError("INTEGRITY_MISMATCH", `piece ${this.pieceId} is larger than its declared ${this.size} bytes`, {
        details: { declared: this.size, received: this.#bytes + chunk.byteLength },
      });
      return this.fail(error).then(() => Promise.reject(error));
    }
    // Hash now, in call order; the file write is queued behind earlier ones.
    this.#hasher.update(chunk);
    const position = this.#bytes;
    this.#bytes += chunk.byteLength;
    const run = this.#queue.then(async () => {
      if (this.#state === "aborted") throw this.#closedError();
      let offset = 0;
      try {
        // Aligned batches bypass the page cache; the rest (a piece's tail,
        // the rest of a short write) goes through it.
        const direct = directWritable(chunk, position) ? await this.#directHandle() : null;
        if (direct !== null) {
          offset = (await direct.write(chunk, 0, chunk.byteLength, position)).bytesWritten;
          this.#hooks.direct.bytes += offset;
        }
        const file = this.#file!;
        while (offset < chunk.byteLength) {
          const { bytesWritten } = await file.write(chunk, offset, chunk.byteLength - offset, position + offset);
          offset += bytesWritten;
        }
      } catch (error) {
        const coded = ioError(error, "writing a piece", { pieceId: this.pieceId });
        // Already inside the queue: clean up here (queueing behind ourselves would deadlock).
        if (this.#state === "open" || this.#state === "committing") {
          this.#failure = coded;
          await this.#cleanup(true);
        }
        throw coded;
      }
    });
    this.#queue = run.catch(() => {});
    return run;
  }

  /** The O_DIRECT handle of the temp file, opened on first use; null where the file system refuses direct I/O. */
  async #directHandle(): Promise<nodeFs.FileHandle | null> {
    if (this.#direct !== undefined) return this.#direct;
    if (!this.#hooks.direct.usable) {
      this.#direct = null;
      return null;
    }
    try {
      this.#direct = await this.#hooks.fs.open(this.#tmpPath, nodeFs.constants.O_WRONLY | nodeFs.constants.O_DIRECT);
    } catch (error) {
      // tmpfs and some other file systems refuse O_DIRECT (EINVAL): write
      // through the page cache there from now on. Other failures: this piece only.
      if (errnoCode(error) === "EINVAL") refuseDirectIo(this.#hooks.direct, this.#hooks.logger, error);
      this.#direct = null;
    }
    return this.#direct;
  }

  /** Closes the O_DIRECT handle, if one is open. */
  async #closeDirect(): Promise<void> {
    const direct = this.#direct;
    this.#direct = null;
    await direct?.close();
  }

  commit(): Promise<PieceInfo> {
    if (this.#state !== "open") return Promise.reject(this.#closedError());
    this.#state = "committing";
    const run = this.#queue.then(async (): Promise<PieceInfo> => {
      if (this.#failure !== undefined) throw this.#failure;
      if (this.#bytes !== this.size) {
        throw await this.#failCommit(
          new DstorError("INTEGRITY_MISMATCH", `piece ${this.pieceId} has ${this.#bytes} bytes, ${this.size} were declared`, {
            details: { declared: this.size, received: this.#bytes },
          }),
        );
      }
      const root = this.#hasher.digest();
      if (!Buffer.from(root).equals(Buffer.from(this.#meta.root))) {
        throw await this.#failCommit(
          new DstorError("INTEGRITY_MISMATCH", `piece ${this.pieceId}: the bytes received do not match the declared Merkle root`, {
            details: { declared: Buffer.from(this.#meta.root).toString("hex"), computed: Buffer.from(root).toString("hex") },
          }),
        );
      }
      try {
        const file = this.#file!;
        this.#file = undefined;
        try {
          // fsync is per file, not per handle: it also covers the direct writes.
          await file.sync();
        } finally {
          try {
            await file.close();
          } finally {
            await this.#closeDirect();
          }
        }
      } catch (error) {
        throw await this.#failCommit(ioError(error, "flushing a piece to disk", { pieceId: this.pieceId }));
      }
      const record: IndexRecord = {
        v: INDEX_RECORD_VERSION,
        size: this.size,
        root: Buffer.from(root).toString("hex"),
        dealId: this.#meta.dealId.toString(),
        expiresAt: this.#meta.expiresAt,
        confirmed: false,
      };
      try {
        await this.#hooks.finalize(this, record, this.#tmpPath);
      } catch (error) {
        // finalize released the reservation and removed what it had placed.
        throw await this.#failCommit(ioError(error, "storing a piece", { pieceId: this.pieceId }), { released: true });
      }
      this.#state = "committed";
      return recordToInfo(record);
    });
    this.#done = run.then(
      () => {},
      () => {},
    );
    this.#queue = this.#done;
    return run;
  }

  async #failCommit(error: DstorError, opts: { released?: boolean } = {}): Promise<DstorError> {
    this.#failure = error;
    await this.#cleanup(!opts.released);
    return error;
  }

  abort(): Promise<void> {
    if (this.#state === "open") return this.fail(undefined);
    // Committing: let the commit finish or fail; aborted/committed: nothing to do.
    return this.#done ?? Promise.resolve();
  }

  /** Ends an open upload: no piece is kept, the reservation is released. Idempotent. */
  fail(error: DstorError | undefined): Promise<void> {
    if (this.#state !== "open") return this.#done ?? Promise.resolve();
    this.#state = "aborted";
    this.#failure = error;
    this.#done = this.#queue.then(() => this.#cleanup(true));
    this.#queue = this.#done;
    return this.#done;
  }

  /** Closes and deletes the temp file; releases the reservation once. */
  async #cleanup(release: boolean): Promise<void> {
    this.#state = "aborted";
    const file = this.#file;
    this.#file = undefined;
    if (file !== undefined) {
      await file.close().catch((error: unknown) => this.#hooks.logger.warn("closing a temp file failed", { error }));
    }
    await this.#closeDirect().catch((error: unknown) => this.#hooks.logger.warn("closing a temp file failed", { error }));
    await this.#hooks.fs.rm(this.#tmpPath, { force: true }).catch((error: unknown) => {
      // Reconciliation deletes it at the next start.
      this.#hooks.logger.warn("deleting a temp file failed", { path: this.#tmpPath, error });
    });
    if (release) this.#hooks.release(this);
  }
}

class FsPieceStoreImpl implements FsPieceStore {
  readonly dir: string;
  readonly #quota: number;
  readonly #logger: Logger;
  readonly #fs: StoreFileSystem;
  readonly #piecesDir: string;
  readonly #tmpDir: string;
  readonly #indexDir: string;
  #db: Level<string, IndexRecord> | undefined;
  #state: StoreState = "new";
  #used = 0;
  #reserved = 0;
  readonly #direct: DirectIo = { usable: true, bytes: 0, readBytes: 0 };

  get directBytes(): number {
    return this.#direct.bytes;
  }

  get directReadBytes(): number {
    return this.#direct.readBytes;
  }
  /** Keys with an upload in progress. */
  readonly #writing = new Set<string>();
  readonly #writers = new Set<FsPieceWriter>();
  /** Tail of each key's lock queue. */
  readonly #locks = new Map<string, Promise<void>>();
  /** Store operations in flight; stop() waits for them. */
  readonly #pending = new Set<Promise<unknown>>();
  /** File handles held by read streams; stop() closes them. */
  readonly #streams = new Set<nodeFs.FileHandle>();
  #startPromise: Promise<void> | undefined;
  #stopPromise: Promise<void> | undefined;

  constructor(init: FsPieceStoreInit) {
    assertArgument(typeof init === "object" && init !== null, "createFsPieceStore needs options");
    assertArgument(typeof init.dir === "string" && init.dir.length > 0, "the piece store needs a directory (dir)");
    assertArgument(
      Number.isSafeInteger(init.quotaBytes) && init.quotaBytes >= 0,
      `quotaBytes must be a non-negative integer, got ${String(init.quotaBytes)}`,
    );
    this.dir = init.dir;
    this.#quota = init.quotaBytes;
    this.#logger = init.logger ?? silentLogger("dstor:farmer:store");
    this.#fs = init.fs ?? nodeFs;
    this.#piecesDir = join(this.dir, PIECES_DIR);
    this.#tmpDir = join(this.dir, TMP_DIR);
    this.#indexDir = join(this.dir, INDEX_DIR);
  }

  piecePath(renter: string, pieceId: string): string {
    assertRenter(renter);
    assertPieceId(pieceId);
    return this.#piecePath(renter, pieceId);
  }

  #shardDir(pieceId: string): string {
    return join(this.#piecesDir, pieceId.slice(0, 2));
  }

  #piecePath(renter: string, pieceId: string): string {
    return join(this.#shardDir(pieceId), `${renter}-${pieceId}`);
  }

  // ---------------------------------------------------------------- lifecycle

  start(options: AbortOptions = {}): Promise<void> {
    if (this.#state === "started") return Promise.resolve();
    if (this.#state === "starting") return this.#startPromise!;
    if (this.#state === "stopping") {
      return this.#stopPromise!.then(() => this.start(options));
    }
    this.#state = "starting";
    this.#startPromise = this.#start(options).then(
      () => {
        this.#state = "started";
      },
      (error: unknown) => {
        this.#state = "stopped";
        throw error;
      },
    );
    return this.#startPromise;
  }

  async #start(options: AbortOptions): Promise<void> {
    throwIfAborted(options.signal);
    try {
      await this.#fs.mkdir(this.#piecesDir, { recursive: true });
      await this.#fs.mkdir(this.#tmpDir, { recursive: true });
      await this.#makeShardDirs();
    } catch (error) {
      throw ioError(error, `creating the piece store directory ${this.dir}`);
    }
    const db = new Level<string, IndexRecord>(this.#indexDir, { valueEncoding: "json" });
    try {
      await db.open();
    } catch (error) {
      const cause = (error as { cause?: unknown }).cause;
      if (errnoCode(cause) === "LEVEL_LOCKED" || errnoCode(error) === "LEVEL_LOCKED") {
        throw new DstorError(
          "HOME_IN_USE",
          `the piece store in ${this.dir} is already open in another dstor process (or another store in this one); stop that farmer first or choose another --storage directory`,
          { cause: error, details: { dir: this.dir } },
        );
      }
      throw new DstorError("STORE_CORRUPT", `cannot open the piece index in ${this.#indexDir}: ${(error as Error).message}`, {
        cause: error,
      });
    }
    this.#db = db;
    try {
      await this.#reconcile(db, options);
    } catch (error) {
      this.#db = undefined;
      await db.close().catch(() => {});
      throw error;
    }
  }

  stop(): Promise<void> {
    if (this.#state === "new" || this.#state === "stopped") {
      this.#state = "stopped";
      return Promise.resolve();
    }
    if (this.#state === "stopping") return this.#stopPromise!;
    const starting = this.#state === "starting" ? this.#startPromise!.catch(() => {}) : Promise.resolve();
    this.#state = "stopping";
    this.#stopPromise = starting.then(() => this.#stop());
    return this.#stopPromise;
  }

  async #stop(): Promise<void> {
    // New operations now fail with STORE_CLOSED; let running ones finish so
    // no reservation or index write is cut in half.
    await Promise.allSettled([...this.#pending]);
    const closed = new DstorError("STORE_CLOSED", "the piece store was stopped during the upload");
    // Open uploads are aborted; commits in progress are waited for (fail() returns their end).
    await Promise.allSettled([...this.#writers].map((w) => w.fail(closed)));
    await Promise.allSettled([...this.#pending]);
    for (const handle of this.#streams) await handle.close().catch(() => {});
    this.#streams.clear();
    const db = this.#db;
    this.#db = undefined;
    if (db !== undefined) await db.close().catch((error: unknown) => this.#logger.warn("closing the piece index failed", { error }));
    this.#state = "stopped";
  }

  /** Runs `fn` as a tracked operation of a started store. */
  #op<T>(fn: (db: Level<string, IndexRecord>) => Promise<T>): Promise<T> {
    const db = this.#db;
    if (this.#state !== "started" || db === undefined) {
      return Promise.reject(new DstorError("STORE_CLOSED", "the piece store is not running; start it first"));
    }
    const run = fn(db);
    this.#pending.add(run);
    const untrack = (): void => {
      this.#pending.delete(run);
    };
    run.then(untrack, untrack);
    return run;
  }

  /** Takes the per-key locks of `keys` in ascending order (the documented lock order). */
  async #lock(keys: readonly string[]): Promise<() => void> {
    const sorted = [...new Set(keys)].sort();
    const releases: (() => void)[] = [];
    for (const key of sorted) {
      const previous = this.#locks.get(key) ?? Promise.resolve();
      let release!: () => void;
      const mine = new Promise<void>((resolve) => {
        release = resolve;
      });
      const tail = previous.then(() => mine);
      this.#locks.set(key, tail);
      await previous;
      releases.push(() => {
        release();
        if (this.#locks.get(key) === tail) this.#locks.delete(key);
      });
    }
    return () => {
      for (const release of releases.reverse()) release();
    };
  }

  // ----------------------------------------------------------- reconciliation

  async #reconcile(db: Level<string, IndexRecord>, options: AbortOptions): Promise<void> {
    const log = this.#logger;
    // 1. Temp files: uploads that never committed.
    let tmpRemoved = 0;
    for (const name of await this.#fs.readdir(this.#tmpDir)) {
      await this.#fs.rm(join(this.#tmpDir, name), { recursive: true, force: true });
      tmpRemoved++;
    }
    if (tmpRemoved > 0) log.info("removed temp files of interrupted uploads", { count: tmpRemoved });
    throwIfAborted(options.signal);

    // 2. Piece files on disk (moving any in the old two-level layout).
    const files = new Map<string, { path: string; size: number }>();
    let moved = 0;
    for (const level1 of await this.#fs.readdir(this.#piecesDir, { withFileTypes: true })) {
      const shardPath = join(this.#piecesDir, level1.name);
      if (!level1.isDirectory() || !SHARD_PATTERN.test(level1.name)) {
        log.warn("removing a stray entry from the pieces directory", { path: shardPath });
        await this.#fs.rm(shardPath, { recursive: true, force: true });
        continue;
      }
      let movedHere = 0;
      const oldDirs: string[] = [];
      for (const entry of await this.#fs.readdir(shardPath, { withFileTypes: true })) {
        const path = join(shardPath, entry.name);
        if (entry.isDirectory() && SHARD_PATTERN.test(entry.name)) {
          movedHere += await this.#moveOldShard(shardPath, level1.name + entry.name, files);
          oldDirs.push(path);
          continue;
        }
        const piece = pieceOfFile(entry, level1.name);
        if (piece === undefined) {
          log.warn("removing a stray entry from the pieces directory", { path });
          await this.#fs.rm(path, { recursive: true, force: true });
          continue;
        }
        const { size } = await this.#fs.stat(path);
        files.set(indexKey(piece.renter, piece.pieceId), { path, size });
      }
      // The moves are durable before their old directories (and the strays left there) go.
      if (movedHere > 0) await this.#syncDir(shardPath);
      for (const path of oldDirs) await this.#fs.rm(path, { recursive: true, force: true });
      moved += movedHere;
      throwIfAborted(options.signal);
    }
    if (moved > 0) log.info("moved pieces from the old two-level layout into pieces/<2 hex>/", { count: moved });

    // 3. Index entries against files.
    let used = 0;
    const removeKeys: string[] = [];
    for await (const [key, record] of db.iterator()) {
      const parsed = parseIndexKey(key);
      const file = files.get(key);
      if (parsed === undefined || !isIndexRecord(record)) {
        log.error("removing a malformed index entry", { key });
        removeKeys.push(key);
        continue;
      }
      if (file === undefined) {
        log.error("index entry without a piece file: removed; audits of this piece will fail until it is repaired", parsed);
        removeKeys.push(key);
        continue;
      }
      files.delete(key);
      if (file.size !== record.size) {
        log.error("piece file has the wrong size: piece removed; audits of this piece will fail until it is repaired", {
          ...parsed,
          expected: record.size,
          found: file.size,
        });
        removeKeys.push(key);
        await this.#fs.rm(file.path, { force: true });
        continue;
      }
      used += record.size;
    }
    if (removeKeys.length > 0) await db.batch(removeKeys.map((key) => ({ type: "del" as const, key })));

    // 4. Piece files without an index entry: committed to disk but never acknowledged.
    for (const [key, file] of files) {
      log.info("removing a piece file without index entry (interrupted commit)", { key });
      await this.#fs.rm(file.path, { force: true });
    }

    this.#used = used;
    this.#reserved = 0;
    if (used > this.#quota) {
      log.warn("the pieces held exceed the quota; no new uploads are accepted until pieces are deleted", {
        used,
        quota: this.#quota,
      });
    }
  }

  /**
   * Moves the pieces of an old-layout leaf directory (`pieces/<aa>/<bb>/`,
   * `prefix` = aabb) up into `shardPath` and records them in `files`; stray
   * entries stay for the caller to remove with the directory. Returns how many moved.
   */
  async #moveOldShard(shardPath: string, prefix: string, files: Map<string, { path: string; size: number }>): Promise<number> {
    const oldPath = join(shardPath, prefix.slice(2));
    let moved = 0;
    for (const entry of await this.#fs.readdir(oldPath, { withFileTypes: true })) {
      const piece = pieceOfFile(entry, prefix);
      if (piece === undefined) {
        this.#logger.warn("removing a stray entry from the pieces directory", { path: join(oldPath, entry.name) });
        continue;
      }
      const path = join(shardPath, entry.name);
      await this.#fs.rename(join(oldPath, entry.name), path);
      const { size } = await this.#fs.stat(path);
      files.set(indexKey(piece.renter, piece.pieceId), { path, size });
      moved++;
    }
    return moved;
  }

  // ------------------------------------------------------------------- uploads

  #free(): number {
    return Math.max(0, this.#quota - this.#used - this.#reserved);
  }

  usage(): StoreUsage {
    return { quota: this.#quota, used: this.#used, reserved: this.#reserved, free: this.#free() };
  }

  reserve(renter: string, pieceId: string, size: number, meta: PieceMeta, options: ReserveOptions = {}): Promise<PieceWriter> {
    try {
      // Boundary checks first: nothing below runs for malformed input.
      assertRenter(renter);
      assertPieceId(pieceId);
      validateSize(size);
      validateMeta(meta);
      throwIfAborted(options.signal);
    } catch (error) {
      return Promise.reject(error);
    }
    return this.#op(async (db) => {
      const key = indexKey(renter, pieceId);
      const exists = (): DstorError =>
        new DstorError("PIECE_EXISTS", `piece ${pieceId} of ${renter} is already stored or being uploaded`, { details: { renter, pieceId } });
      if (this.#writing.has(key)) throw exists();
      const unlock = await this.#lock([key]);
      try {
        if (this.#writing.has(key) || (await db.get(key)) !== undefined) throw exists();
        // No await between the check and the increment: concurrent reserves
        // cannot both take the last free bytes.
        const free = this.#free();
        if (size > free) {
          throw new DstorError("QUOTA_EXCEEDED", `piece of ${size} bytes does not fit: ${free} bytes of quota are free`, {
            details: { size, free, quota: this.#quota, used: this.#used, reserved: this.#reserved },
          });
        }
        this.#reserved += size;
        this.#writing.add(key);
      } finally {
        unlock();
      }
      const releaseReservation = (): void => {
        this.#reserved -= size;
        this.#writing.delete(key);
      };
      const tmpPath = join(this.#tmpDir, `${renter}-${pieceId}.${randomBytes(6).toString("hex")}.tmp`);
      let file: nodeFs.FileHandle;
      try {
        file = await this.#fs.open(tmpPath, "wx", 0o600);
      } catch (error) {
        releaseReservation();
        throw ioError(error, "creating a temp file", { pieceId });
      }
      let released = false;
      const writer: FsPieceWriter = new FsPieceWriter(renter, pieceId, size, meta, file, tmpPath, {
        direct: this.#direct,
        fs: this.#fs,
        logger: this.#logger,
        release: () => {
          if (released) return;
          released = true;
          releaseReservation();
          this.#writers.delete(writer);
          detach();
        },
        finalize: (w, record, path) =>
          this.#track(
            this.#finalize(w, record, path, () => {
              released = true;
              this.#writers.delete(writer);
              detach();
            }),
          ),
      });
      this.#writers.add(writer);
      const signal = options.signal;
      const onAbort = (): void => {
        if (signal !== undefined) void writer.fail(abortReason(signal));
      };
      const detach = (): void => signal?.removeEventListener("abort", onAbort);
      signal?.addEventListener("abort", onAbort, { once: true });
      // An abort during the awaits above fired no event for this listener.
      if (signal?.aborted === true) {
        await writer.fail(abortReason(signal));
        throw abortReason(signal);
      }
      if (this.#state !== "started") {
        // stop() began while the temp file was being created.
        await writer.fail(new DstorError("STORE_CLOSED", "the piece store was stopped"));
        throw new DstorError("STORE_CLOSED", "the piece store was stopped");
      }
      return writer;
    });
  }

  #track<T>(run: Promise<T>): Promise<T> {
    this.#pending.add(run);
    const untrack = (): void => {
      this.#pending.delete(run);
    };
    run.then(untrack, untrack);
    return run;
  }

  /** Steps 4–6 of the write order. On failure nothing is kept and the reservation is released. */
  async #finalize(writer: FsPieceWriter, record: IndexRecord, tmpPath: string, detachWriter: () => void): Promise<void> {
    const db = this.#db;
    const key = indexKey(writer.renter, writer.pieceId);
    const finalPath = this.#piecePath(writer.renter, writer.pieceId);
    const shardDir = this.#shardDir(writer.pieceId);
    const unlock = await this.#lock([key]);
    let renamed = false;
    try {
      if (db === undefined) throw new DstorError("STORE_CLOSED", "the piece store was stopped");
      try {
        await this.#fs.rename(tmpPath, finalPath);
      } catch (error) {
        // The shard directories are made at start; one removed since is made again.
        if (errnoCode(error) !== "ENOENT") throw error;
        await this.#makeShardDirs();
        await this.#fs.rename(tmpPath, finalPath);
      }
      renamed = true;
      await this.#syncDir(shardDir);
      await db.put(key, record);
      this.#reserved -= writer.size;
      this.#used += writer.size;
      this.#writing.delete(key);
      detachWriter();
    } catch (error) {
      if (renamed) {
        await this.#fs.rm(finalPath, { force: true }).catch((e: unknown) => this.#logger.warn("removing a piece after a failed commit failed", { error: e }));
      }
      this.#reserved -= writer.size;
      this.#writing.delete(key);
      detachWriter();
      throw error;
    } finally {
      unlock();
    }
  }

  /** Makes the 256 shard directories that are missing; if any was, fsyncs `pieces/` so their entries are durable. */
  async #makeShardDirs(): Promise<void> {
    let made = false;
    for (let shard = 0; shard < 256; shard++) {
      const created = await this.#fs.mkdir(join(this.#piecesDir, shard.toString(16).padStart(2, "0")), { recursive: true });
      if (created !== undefined) made = true;
    }
    if (made) await this.#syncDir(this.#piecesDir);
  }

  async #syncDir(path: string): Promise<void> {
    const handle = await this.#fs.open(path, "r");
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  }

  // --------------------------------------------------------------------- reads

  async #getRecord(db: Level<string, IndexRecord>, key: string): Promise<IndexRecord | undefined> {
    const record = await db.get(key);
    if (record === undefined) return undefined;
    if (!isIndexRecord(record)) throw new DstorError("STORE_CORRUPT", `the index entry of ${key} is malformed; restart the farmer to reconcile the store`);
    return record;
  }

  #notFound(renter: string, pieceId: string): DstorError {
    return new DstorError("PIECE_NOT_FOUND", `piece ${pieceId} of ${renter} is not stored here`, { details: { renter, pieceId } });
  }

  #checkRange(record: IndexRecord, offset: number, length: number): void {
    assertArgument(Number.isSafeInteger(offset) && offset >= 0, `offset must be a non-negative integer, got ${String(offset)}`);
    assertArgument(Number.isSafeInteger(length) && length >= 0, `length must be a non-negative integer, got ${String(length)}`);
    assertArgument(offset + length <= record.size, `range [${offset}, ${offset + length}) is past the end of a ${record.size}-byte piece`, {
      offset,
      length,
      size: record.size,
    });
  }

  async #openPiece(renter: string, pieceId: string): Promise<nodeFs.FileHandle> {
    try {
      return await this.#fs.open(this.#piecePath(renter, pieceId), "r");
    } catch (error) {
      // Deleted between the index lookup and the open.
      if (errnoCode(error) === "ENOENT") throw this.#notFound(renter, pieceId);
      throw ioError(error, "opening a piece", { pieceId });
    }
  }

  read(renter: string, pieceId: string, offset: number, length: number, options: AbortOptions = {}): Promise<Uint8Array> {
    try {
      assertRenter(renter);
      assertPieceId(pieceId);
      assertArgument(Number.isSafeInteger(offset) && offset >= 0, `offset must be a non-negative integer, got ${String(offset)}`);
      assertArgument(Number.isSafeInteger(length) && length >= 0, `length must be a non-negative integer, got ${String(length)}`);
      throwIfAborted(options.signal);
    } catch (error) {
      return Promise.reject(error);
    }
    return this.#op(async (db) => {
      const record = await this.#getRecord(db, indexKey(renter, pieceId));
      if (record === undefined) throw this.#notFound(renter, pieceId);
      this.#checkRange(record, offset, length);
      const out = new Uint8Array(length);
      if (length === 0) return out;
      const handle = await this.#openPiece(renter, pieceId);
      try {
        let done = 0;
        while (done < length) {
          throwIfAborted(options.signal);
          const { bytesRead } = await handle.read(out, done, length - done, offset + done);
          if (bytesRead === 0) throw new DstorError("STORE_CORRUPT", `piece ${pieceId} is shorter on disk than its index entry says`);
          done += bytesRead;
        }
      } catch (error) {
        throw ioError(error, "reading a piece", { pieceId });
      } finally {
        await handle.close();
      }
      return out;
    });
  }

  /**
   * Streams a range in chunks. When the caller's buffers are direct-I/O
   * memory (see direct-io.ts) and `chunkSize` is a multiple of its
   * alignment, chunks are read with O_DIRECT into them: whole aligned blocks,
   * the chunk being the requested part (so a chunk is then a view inside the
   * buffer, and the first one may be shorter). Anything else is read through
   * the page cache.
   */
  async *readStream(renter: string, pieceId: string, options: ReadStreamOptions = {}): AsyncGenerator<Uint8Array> {
    assertRenter(renter);
    assertPieceId(pieceId);
    const chunkSize = options.chunkSize ?? READ_STREAM_CHUNK_BYTES;
    assertArgument(Number.isSafeInteger(chunkSize) && chunkSize > 0, "chunkSize must be a positive integer");
    throwIfAborted(options.signal);
    const { record, handle } = await this.#op(async (db) => {
      const found = await this.#getRecord(db, indexKey(renter, pieceId));
      if (found === undefined) throw this.#notFound(renter, pieceId);
      const offset = options.offset ?? 0;
      this.#checkRange(found, offset, options.length ?? Math.max(0, found.size - offset));
      const opened = await this.#openPiece(renter, pieceId);
      this.#streams.add(opened);
      return { record: found, handle: opened };
    });
    const offset = options.offset ?? 0;
    const end = offset + (options.length ?? record.size - offset);
    const stopped = (): DstorError => new DstorError("STORE_CLOSED", "the piece store was stopped during a read");
    /** The piece opened with O_DIRECT, on the first chunk that can use it; null: not usable. */
    let direct: nodeFs.FileHandle | null | undefined = chunkSize % DIRECT_IO_ALIGNMENT === 0 ? undefined : null;
    try {
      let position = offset;
      while (position < end) {
        throwIfAborted(options.signal);
        if (!this.#streams.has(handle)) throw stopped();
        const buffer = options.buffer?.();
        const directMemory = buffer !== undefined && isDirectIoMemory(buffer);
        if (directMemory && direct === undefined) direct = await this.#openDirect(renter, pieceId);
        if (buffer !== undefined && directMemory && direct) {
          // Whole blocks from the one holding `position`; the last block may pass the end of the file (a short read).
          const from = position - (position % DIRECT_IO_ALIGNMENT);
          const to = Math.min(from + chunkSize, end);
          const blocks = readStreamChunk({ buffer: () => buffer }, Math.ceil((to - from) / DIRECT_IO_ALIGNMENT) * DIRECT_IO_ALIGNMENT);
          await this.#readFully(direct, blocks, from, to - from, pieceId, handle, stopped);
          this.#direct.readBytes += to - position;
          yield blocks.subarray(position - from, to - from);
          position = to;
        } else {
          const chunk = readStreamChunk(buffer === undefined ? {} : { buffer: () => buffer }, Math.min(chunkSize, end - position));
          await this.#readFully(handle, chunk, position, chunk.byteLength, pieceId, handle, stopped);
          position += chunk.byteLength;
          yield chunk;
        }
      }
    } finally {
      if (direct) {
        this.#streams.delete(direct);
        await direct.close().catch(() => {});
      }
      if (this.#streams.delete(handle)) await handle.close().catch(() => {});
    }
  }

  /**
   * Reads at least `need` bytes at `position` into `into` (asking for all of
   * it). A direct read may stop short only at the end of the file, which
   * must not come before `need`.
   */
  async #readFully(
    file: nodeFs.FileHandle,
    into: Uint8Array,
    position: number,
    need: number,
    pieceId: string,
    stream: nodeFs.FileHandle,
    stopped: () => DstorError,
  ): Promise<void> {
    let filled = 0;
    while (filled < need) {
      const { bytesRead } = await file.read(into, filled, into.byteLength - filled, position + filled).catch((error: unknown) => {
        throw this.#streams.has(stream) ? ioError(error, "reading a piece", { pieceId }) : stopped();
      });
      if (bytesRead === 0) throw new DstorError("STORE_CORRUPT", `piece ${pieceId} is shorter on disk than its index entry says`);
      filled += bytesRead;
    }
  }

  /** The piece file opened for direct reads (kept in #streams so stop() closes it); null where the file system refuses direct I/O. */
  async #openDirect(renter: string, pieceId: string): Promise<nodeFs.FileHandle | null> {
    if (!this.#direct.usable) return null;
    try {
      const handle = await this.#fs.open(this.#piecePath(renter, pieceId), nodeFs.constants.O_RDONLY | nodeFs.constants.O_DIRECT);
      this.#streams.add(handle);
      return handle;
    } catch (error) {
      if (errnoCode(error) === "EINVAL") refuseDirectIo(this.#direct, this.#logger, error);
      // Anything else (the piece deleted since it was opened, …): this read goes through the page cache.
      return null;
    }
  }

  stat(renter: string, pieceId: string, options: AbortOptions = {}): Promise<PieceInfo | undefined> {
    try {
      assertRenter(renter);
      assertPieceId(pieceId);
      throwIfAborted(options.signal);
    } catch (error) {
      return Promise.reject(error);
    }
    return this.#op(async (db) => {
      const record = await this.#getRecord(db, indexKey(renter, pieceId));
      return record === undefined ? undefined : recordToInfo(record);
    });
  }

  async *list(renter?: string, options: AbortOptions = {}): AsyncGenerator<PieceListEntry> {
    if (renter !== undefined) assertRenter(renter);
    throwIfAborted(options.signal);
    const db = this.#db;
    if (this.#state !== "started" || db === undefined) throw new DstorError("STORE_CLOSED", "the piece store is not running; start it first");
    // "/" < "0": every key of `renter` sorts between "<renter>/" and "<renter>0".
    const range = renter === undefined ? {} : { gt: `${renter}/`, lt: `${renter}0` };
    const iterator = db.iterator(range);
    try {
      for (;;) {
        throwIfAborted(options.signal);
        let next: [string, IndexRecord] | undefined;
        try {
          next = await iterator.next();
        } catch (error) {
          if (this.#state !== "started") throw new DstorError("STORE_CLOSED", "the piece store was stopped during a listing", { cause: error });
          throw error;
        }
        if (next === undefined) return;
        const [key, record] = next;
        const parsed = parseIndexKey(key);
        if (parsed === undefined || !isIndexRecord(record)) continue;
        yield { ...parsed, ...recordToInfo(record) };
      }
    } finally {
      await iterator.close().catch(() => {});
    }
  }

  // ----------------------------------------------------------------- mutations

  confirm(renter: string, pieceIds: readonly string[], dealId: bigint, options: AbortOptions = {}): Promise<void> {
    try {
      assertRenter(renter);
      assertArgument(Array.isArray(pieceIds), "pieceIds must be an array");
      for (const pieceId of pieceIds) assertPieceId(pieceId);
      assertArgument(typeof dealId === "bigint" && dealId >= 0n, "dealId must be a non-negative bigint");
      throwIfAborted(options.signal);
    } catch (error) {
      return Promise.reject(error);
    }
    return this.#op(async (db) => {
      const keys = [...new Set(pieceIds.map((pieceId) => indexKey(renter, pieceId)))];
      if (keys.length === 0) return;
      const unlock = await this.#lock(keys);
      try {
        const records = await db.getMany(keys);
        const missing = keys.filter((_key, i) => records[i] === undefined).map((key) => parseIndexKey(key)!.pieceId);
        if (missing.length > 0) {
          throw new DstorError("PIECE_NOT_FOUND", `${missing.length} of the confirmed pieces are not stored here; nothing was confirmed`, {
            details: { renter, missing },
          });
        }
        await db.batch(
          keys.map((key, i) => {
            const record = records[i]!;
            // The deal id recorded is the one the co-signed state belongs to.
            return { type: "put" as const, key, value: { ...record, dealId: dealId.toString(), expiresAt: null, confirmed: true } };
          }),
        );
      } finally {
        unlock();
      }
    });
  }

  delete(renter: string, pieceId: string, options: AbortOptions = {}): Promise<void> {
    try {
      assertRenter(renter);
      assertPieceId(pieceId);
      throwIfAborted(options.signal);
    } catch (error) {
      return Promise.reject(error);
    }
    return this.#op(async (db) => {
      const removed = await this.#remove(db, renter, pieceId, () => true);
      if (removed === undefined) throw this.#notFound(renter, pieceId);
    });
  }

  /** Deletes a piece if `shouldRemove(record)`; index first, then file (see the module comment). */
  async #remove(
    db: Level<string, IndexRecord>,
    renter: string,
    pieceId: string,
    shouldRemove: (record: IndexRecord) => boolean,
  ): Promise<IndexRecord | undefined> {
    const key = indexKey(renter, pieceId);
    const unlock = await this.#lock([key]);
    try {
      const record = await this.#getRecord(db, key);
      if (record === undefined || !shouldRemove(record)) return undefined;
      await db.del(key);
      this.#used -= record.size;
      await this.#fs.rm(this.#piecePath(renter, pieceId), { force: true }).catch((error: unknown) => {
        // The index no longer points at it; reconciliation deletes the file at the next start.
        this.#logger.warn("deleting a piece file failed", { renter, pieceId, error });
      });
      return record;
    } finally {
      unlock();
    }
  }

  collectExpired(now: number, options: AbortOptions = {}): Promise<RemovedPiece[]> {
    try {
      assertArgument(Number.isFinite(now), "now must be a time in ms since the epoch");
      throwIfAborted(options.signal);
    } catch (error) {
      return Promise.reject(error);
    }
    const expired = (record: IndexRecord): boolean => !record.confirmed && record.expiresAt !== null && record.expiresAt <= now;
    return this.#op(async (db) => {
      const candidates: { renter: string; pieceId: string }[] = [];
      for await (const [key, record] of db.iterator()) {
        const parsed = parseIndexKey(key);
        if (parsed !== undefined && isIndexRecord(record) && expired(record)) candidates.push(parsed);
      }
      const removed: RemovedPiece[] = [];
      for (const { renter, pieceId } of candidates) {
        throwIfAborted(options.signal);
        // Re-checked under the key lock: it may have been confirmed meanwhile.
        const record = await this.#remove(db, renter, pieceId, expired);
        if (record !== undefined) removed.push({ renter, pieceId, size: record.size });
      }
      if (removed.length > 0) this.#logger.info("expired unconfirmed pieces removed", { count: removed.length });
      return removed;
    });
  }
}
