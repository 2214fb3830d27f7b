/**
 * The renter: files in, pieces out across farmers, and back.
 *
 * Upload (per file):
 *   source ─► segmentChunks (bounded: one segment buffered at a time)
 *          ─► encodeSegment into a pooled layout buffer
 *          ─► up to SEGMENTS_IN_FLIGHT segments uploading at once
 *          ─► per segment: `total` puts in parallel, stop at `optimal`
 *          ─► one metadata batch with the file and every segment
 * Files of at most 4 KiB never touch a farmer: they are sealed with the file
 * key and kept inline in the metadata.
 *
 * Long tail. A segment's `total` puts start together; as soon as `optimal`
 * have succeeded the rest are aborted. That is the normal outcome (slow
 * farmers only cost the bytes already sent), counted in the result as
 * `longTailCancelled`, never reported as an error. A put that fails while
 * fewer than `optimal` have succeeded is retried on a spare farmer (a
 * different one, in a failure domain the segment does not use yet); when
 * there are no spares left and `optimal` is out of reach the segment fails
 * with `NOT_ENOUGH_FARMERS`. Before resolving, a segment waits for its aborted
 * puts to settle, so its layout buffer is never reused while a stream still
 * reads from it. The race is paced (src/renter/pacing.ts): only the
 * `optimal` puts furthest ahead send freely, the others a head start, until
 * one fails or all stand still — so the cancelled puts cost little of the
 * renter's uplink and the farmers' work.
 *
 * Atomicity. Metadata is written once, after every segment is stored. A
 * failed upload writes nothing; pieces it did store are deleted on their
 * farmers, best effort (a farmer that keeps them is not paid for them: they
 * never enter a co-signed deal state).
 *
 * Download (per segment): start k + EXTRA_DOWNLOADS gets from the holders
 * with the best record, verify each piece as it arrives (whole pieces
 * against their Merkle root, ranges against the farmer's multiproof), stop at
 * k verified, decode, decrypt. A missing piece or a failed verification
 * lowers that farmer's score in metadata and starts the next holder. Byte
 * ranges fetch only the leaf-aligned piece ranges they need and decrypt only
 * the 64 KiB blocks they touch.
 *
 * Lock order: none beyond the metadata database's own write mutex; this
 * module keeps no shared mutable state between operations other than the
 * layout pool (used only by the upload loop that owns it) and the farmer
 * candidate cache (replaced wholesale).
 */
import { abortReason, raceSignal, throwIfAborted } from "../core/abort.js";
import { DstorError, isDstorError } from "../core/errors.js";
import { type Logger, silentLogger } from "../core/logging.js";
import { MIB } from "../core/units.js";
import { openBlocks, openSegment, openSegmentAsync, sealedLength, sealedRangeFor, sealSegment } from "../crypto/aead.js";
import { BufferPool, bytesEqual, fromHex, toHex, uninitializedBytes } from "../crypto/bytes.js";
import { deriveSegmentKey, generateFileId, generateFileKey, generateSegmentSalt, segmentId } from "../crypto/keys.js";
import { LEAF_SIZE_BYTES, leafCount, merkleRoot, verifyMerkleMultiproof, verifyMerkleMultiproofAsync } from "../crypto/merkle.js";
import { createErasureCoder, type ErasureCoder, type KernelChoice } from "../erasure/index.js";
import { formatRedundancyStrategy, parseRedundancyStrategy, type RedundancyStrategy } from "../erasure/strategy.js";
import type { MetadataDb, RemovedFile } from "../metadata/db.js";
import { normalizePath } from "../metadata/db.js";
import { type FarmerRecord, INLINE_MAX_BYTES, type InodeRecord, type SegmentMeta, SNAPSHOT_INODE, type StoredFile } from "../metadata/types.js";
import { createSegmentPipeline, type EncodedSegment, encodeSegmentAsync, type FileSecrets, segmentChunks, segmentLayoutBytes, type SegmentPipelineComponents } from "../pipeline/index.js";
import { OrderAction } from "../protocol/orders.js";
import { Coalescer } from "./coalesce.js";
import { LongTailPacer } from "./pacing.js";
import { failureDomain, type SelectionPolicy, selectFarmers } from "./selection.js";
import type { DealProvider, FarmerCandidate, FarmerDirectory, FarmerRef, OrderAuthority, PieceTransport } from "./types.js";

/** Segments uploading at once: enough to keep every farmer link busy while the next segment is encoded. */
export const SEGMENTS_IN_FLIGHT = 3;
/**
 * Gets started up front beyond k per segment (see {@link HEDGE_MIN_MS} for
 * the hedged ones that follow when a farmer is slow). None: every extra
 * whole-piece get costs a full piece of transfer, decryption and hashing on
 * both ends — k/4 of the work for k = 4 — and aborting it when k pieces are
 * in costs its direct connection (a new TLS handshake later). With one
 * extra get always started, two alternating bench:network pairs gave
 * download 90.0 / 87.4 MB/s against 112.4 / 139.9 with none (renter CPU per
 * MB 0.0091 / 0.0096 against 0.0078 / 0.0063, farmers 0.0081 / 0.0075
 * against 0.0054 / 0.0043).
 */
export const EXTRA_DOWNLOADS = 0;
/**
 * Hedged gets: while pieces of a segment are missing, another holder is
 * asked every half of the time the segment's first piece took (at least
 * this, in ms), so slow or stalled farmers do not stall a read; a failed or
 * corrupt get is replaced at once anyway.
 */
export const HEDGE_MIN_MS = 25;
/** Until a segment's first piece arrives, another holder is asked every this many ms. */
export const HEDGE_IDLE_MS = 2_000;
/** A renter's bulk buffer pools drop their free buffers after this long unused, in ms. */
const BULK_BUFFERS_IDLE_MS = 30_000;
/** Plaintext segments pooled: four of the default 8 MiB (larger segments are pooled fewer). */
const MAX_POOLED_SEGMENT_BYTES = 8 * MIB;
/** Segment layouts pooled, per segment in flight: one of 8 MiB segments at 4/6/8/10 (20 MiB). */
const MAX_POOLED_LAYOUT_BYTES = 20 * MIB;

/** Pieces `stat --verify` fetches at once. */
const VERIFY_PARALLELISM = 8;
/** How long a farmer list from the directory is reused, in ms. */
const CANDIDATE_TTL_MS = 30_000;
/**
 * Long-tail pacing (src/renter/pacing.ts): a paced put hands its piece over
 * in chunks of 1/8 of the piece, at most 256 KiB (one DATA frame); a spare's
 * head start is one chunk; a segment whose puts all stand still for 1 s
 * while a spare waits races the spares; a waiting spare is handed a chunk
 * every 10 s (its farmer drops a put idle for FRAME_IDLE_TIMEOUT_MS, 30 s).
 */
const PACE_CHUNK_BYTES = 256 * 1024;
const PACE_CHUNKS_PER_PIECE = 8;
const PACE_STALL_MS = 1_000;
const PACE_KEEP_ALIVE_MS = 10_000;

/** Injected dependencies of a {@link Renter}. */
export interface RenterComponents {
  metadata: MetadataDb;
  transport: PieceTransport;
  directory: FarmerDirectory;
  deals: DealProvider;
  orders: OrderAuthority;
  /** Told of every read received and verified, per deal (egress vouchers; see egress.ts). */
  egress?: EgressMeter;
  logger?: Logger;
}

/** What the get path reports verified reads to (EgressAccountant fits). */
export interface EgressMeter {
  received(farmer: FarmerRef, dealId: bigint, bytes: number): void;
}

/** Options of a {@link Renter}. */
export interface RenterInit {
  strategy: RedundancyStrategy;
  /** Plaintext bytes per segment. */
  segmentSize: number;
  /** The renter's piece-id key (from the phrase). */
  pieceIdKey: Uint8Array;
  policy?: SelectionPolicy;
  kernel?: KernelChoice;
  segmentsInFlight?: number;
  /** Gets started up front beyond k per segment (default {@link EXTRA_DOWNLOADS}); hedged gets follow when farmers are slow. */
  extraDownloads?: number;
}

/** Progress callback: bytes of user data done so far. */
export type ProgressFn = (bytesDone: number) => void;

/** Options of {@link Renter.put}. */
export interface PutOptions {
  signal?: AbortSignal | undefined;
  mode?: number;
  mtimeMs?: number;
  onProgress?: ProgressFn | undefined;
  /**
   * `wait` (the default): resolve only once the holders' deal states list
   * the new pieces (and replaced pieces are deleted). `background`: resolve
   * once the file is committed and co-sign in the background, coalesced
   * with other uploads' syncs ({@link Renter.settle} waits for them). Write-back
   * uses it: farmers keep an unconfirmed piece for an hour, and a sync
   * serving many files costs one round trip per farmer instead of one per file.
   */
  dealSync?: "wait" | "background" | undefined;
}

/** What {@link Renter.put} did. */
export interface PutResult {
  path: string;
  /** Inode of the committed file. */
  inode: number;
  size: number;
  inline: boolean;
  segments: number;
  piecesStored: number;
  /** Puts aborted once `optimal` was reached (the normal long tail). */
  longTailCancelled: number;
  /** Puts that failed and were replaced. */
  replaced: number;
  /** Farmers whose deal state could not be co-signed yet, or (`dealSync: "background"`) is still being co-signed (their new pieces expire unless a later sync succeeds). */
  unconfirmedFarmers: number;
}

/**
 * A change of a committed file to store with {@link Renter.rewrite}: which
 * segments may differ from the committed version, and the new bytes.
 */
export interface RewriteRequest {
  /** Inode of the committed version the change was made to. */
  baseInode: number;
  /** The file's new size in bytes. */
  size: number;
  /** Byte ranges [start, end) written to since that version. */
  written: ReadonlyArray<readonly [number, number]>;
  /**
   * The smallest size the file had since that version (truncations): bytes
   * from here on may differ even where nothing wrote (a shrink then a grow
   * leaves zeros).
   */
  unchangedBelow: number;
  /** Reads exactly `length` bytes of the new content at `offset`. */
  read(offset: number, length: number): Promise<Uint8Array>;
}

/** Per-piece view for `stat`. */
export interface PieceStat {
  number: number;
  pieceId: string;
  farmer?: string | undefined;
  /**
   * With `stat --verify` only: what fetching the whole piece and checking it
   * against its Merkle root found — `ok`, `corrupt` (bad bytes, or the farmer
   * reports its copy damaged), `missing` (the farmer no longer has it) or
   * `unreachable` (no answer, refused, timed out).
   */
  verified?: "ok" | "corrupt" | "missing" | "unreachable" | undefined;
}

/** What {@link Renter.stat} reports. */
export interface FileStat {
  path: string;
  record: InodeRecord;
  redundancy?: string;
  /** `healthy`: pieces on farmers not disqualified; with `verify`, only pieces that verified. */
  segments: Array<{ index: number; plaintextLength: number; pieceSize: number; healthy: number; pieces: PieceStat[] }>;
  /** Lowest piece count of any segment vs. the strategy: `inline`, `healthy` (≥ optimal), `degraded` (> repair), `repair` (≥ k), `lost`. */
  health: "inline" | "healthy" | "degraded" | "repair" | "lost" | "directory" | "symlink";
}

function hex(bytes: Uint8Array): string {
  return toHex(bytes);
}

/** Collects an async iterable's first bytes; returns them and whether the source ended. */
async function peekBytes(
  iterator: AsyncIterator<Uint8Array>,
  limit: number,
): Promise<{ head: Uint8Array[]; bytes: number; done: boolean }> {
  const head: Uint8Array[] = [];
  let bytes = 0;
  while (bytes <= limit) {
    // A source may reuse a chunk's memory once the next one is asked for
    // (readFileChunks does): keep a copy of what is held (at most `limit` bytes).
    if (head.length > 0) head[head.length - 1] = head[head.length - 1]!.slice();
    const next = await iterator.next();
    if (next.done) return { head, bytes, done: true };
    head.push(next.value);
    bytes += next.value.byteLength;
  }
  return { head, bytes, done: false };
}

async function* prepend(head: Uint8Array[], iterator: AsyncIterator<Uint8Array>): AsyncGenerator<Uint8Array> {
  yield* head;
  for (;;) {
    const next = await iterator.next();
    if (next.done) return;
    yield next.value;
  }
}

/** Numbers the segments of a plaintext stream 0, 1, 2, …. */
async function* numbered(chunks: AsyncIterable<Uint8Array>): AsyncGenerator<{ index: number; plaintext: Uint8Array }> {
  let index = 0;
  for await (const plaintext of chunks) yield { index: index++, plaintext };
}

function concat(chunks: Uint8Array[], total: number): Uint8Array {
  const out = new Uint8Array(total);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.byteLength;
  }
  return out;
}

/** The renter; see the module note. */
export class Renter {
  readonly strategy: RedundancyStrategy;
  readonly segmentSize: number;
  readonly #c: RenterComponents;
  readonly #init: RenterInit;
  readonly #log: Logger;
  readonly #pipelines = new Map<string, { pipeline: SegmentPipelineComponents; coder: ErasureCoder }>();
  #candidates: { at: number; list: FarmerCandidate[] } | undefined;
  readonly #knownDeals = new Map<string, bigint>();
  /**
   * Bulk buffers reused from segment to segment and from file to file (see
   * BufferPool; without them a 256 MiB upload or download allocates over
   * 300 MiB of fresh memory, and the renter took 230-290 page faults per MB),
   * each released after 30 s unused. Sized for SEGMENTS_IN_FLIGHT segments:
   * plaintext segments read from the source, the segment layouts pieces are
   * encoded into (sealed data and parity), and received whole pieces.
   */
  readonly #plaintextBuffers = new BufferPool(4 * MAX_POOLED_SEGMENT_BYTES, { idleMs: BULK_BUFFERS_IDLE_MS });
  readonly #layoutBuffers = new BufferPool(SEGMENTS_IN_FLIGHT * MAX_POOLED_LAYOUT_BYTES, { idleMs: BULK_BUFFERS_IDLE_MS });
  readonly #pieceBuffers = new BufferPool(48 * MIB, { idleMs: BULK_BUFFERS_IDLE_MS });
  /** Sealed segments being opened, one per segment in flight (a sealed 8 MiB segment is a little over 8 MiB). */
  readonly #sealedBuffers = new BufferPool((SEGMENTS_IN_FLIGHT + 1) * (MAX_POOLED_SEGMENT_BYTES + MIB), { idleMs: BULK_BUFFERS_IDLE_MS });
  /** Deal syncs and deletes of uploads that did not wait for them (see {@link settle}). */
  readonly #backgroundSyncs = new Set<Promise<void>>();
  /** Deal-state syncs per farmer (see {@link syncDeals}). */
  readonly #dealSyncs = new Coalescer<string>(async (address) => {
    const pieces = (await this.#c.metadata.piecesOn(address)).map((p) => ({ pieceId: p.pieceId, root: p.root, size: p.size }));
    await this.#c.deals.syncState?.call(this.#c.deals, await this.#farmerRef(address), pieces, {});
  });

  constructor(components: RenterComponents, init: RenterInit) {
    this.#c = components;
    this.#init = init;
    this.strategy = init.strategy;
    this.segmentSize = init.segmentSize;
    this.#log = components.logger ?? silentLogger("dstor:renter");
  }

  /** The metadata database. */
  get metadata(): MetadataDb {
    return this.#c.metadata;
  }

  #coderFor(redundancy: string): { pipeline: SegmentPipelineComponents; coder: ErasureCoder } {
    let entry = this.#pipelines.get(redundancy);
    if (entry === undefined) {
      const strategy = parseRedundancyStrategy(redundancy);
      const kernel = this.#init.kernel ?? "auto";
      entry = { pipeline: createSegmentPipeline({ strategy, kernel, logger: this.#log }), coder: createErasureCoder(strategy, { kernel }) };
      this.#pipelines.set(redundancy, entry);
    }
    return entry;
  }

  async #listCandidates(signal: AbortSignal | undefined, fresh = false): Promise<FarmerCandidate[]> {
    if (!fresh && this.#candidates !== undefined && Date.now() - this.#candidates.at < CANDIDATE_TTL_MS) return this.#candidates.list;
    const list = await this.#c.directory.list({ signal });
    this.#candidates = { at: Date.now(), list };
    return list;
  }

  async #records(): Promise<Map<string, FarmerRecord>> {
    return new Map((await this.#c.metadata.farmers()).map((r) => [r.address, r]));
  }

  async #recordOutcome(farmer: FarmerRef, outcome: { ok: boolean; bytes?: number; ms?: number; corrupt?: boolean }): Promise<void> {
    try {
      await this.#c.metadata.updateFarmer(farmer.address, (r) => ({
        ...r,
        peerId: farmer.peerId || r.peerId,
        multiaddrs: farmer.multiaddrs.length > 0 ? [...farmer.multiaddrs] : r.multiaddrs,
        successes: r.successes + (outcome.ok ? 1 : 0),
        failures: r.failures + (outcome.ok ? 0 : 1),
        lastFailureAt: outcome.ok ? r.lastFailureAt : Date.now(),
        corrupt: r.corrupt + (outcome.corrupt ? 1 : 0),
        bytes: r.bytes + (outcome.ok ? (outcome.bytes ?? 0) : 0),
        ms: r.ms + (outcome.ok ? (outcome.ms ?? 0) : 0),
      }));
    } catch (error) {
      // Scores are advisory; a closed database during shutdown must not fail a transfer.
      this.#log.debug("could not record a farmer outcome", { farmer: farmer.address, error });
    }
  }

  // ------------------------------------------------------------------ upload

  /**
   * Stores the bytes of `source` at `remotePath` (replacing a file there).
   * Each chunk of `source` is copied before the next one is asked for, so a
   * source may reuse its buffers (readFileChunks, src/core/file-chunks.ts).
   * Memory stays bounded by SEGMENTS_IN_FLIGHT segments and their pieces,
   * whatever the file size. Throws `NOT_ENOUGH_FARMERS` when a segment cannot
   * reach `optimal` pieces; nothing is written to metadata then.
   */
  async put(remotePath: string, source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>, options: PutOptions = {}): Promise<PutResult> {
    const path = normalizePath(remotePath);
    if (path === "/") throw new DstorError("IS_A_DIRECTORY", "/ is a directory; name a file");
    const signal = options.signal;
    // Fail early, before any transfer, on paths that cannot be committed.
    await this.#checkTarget(path);
    const fileKey = generateFileKey();
    const fileId = generateFileId();
    const secrets: FileSecrets = { fileKey, fileId, pieceIdKey: this.#init.pieceIdKey };
    const redundancy = formatRedundancyStrategy(this.strategy);
    const base = { fileKey: hex(fileKey), fileId: hex(fileId), segmentSize: this.segmentSize, redundancy };
    const iterator = (Symbol.asyncIterator in source ? source[Symbol.asyncIterator]() : (async function* () { yield* source as Iterable<Uint8Array>; })()) as AsyncIterator<Uint8Array>;
    const peek = await peekBytes(iterator, INLINE_MAX_BYTES);
    const stored = { mode: options.mode ?? 0o644, mtimeMs: options.mtimeMs ?? Date.now() };
    if (peek.done && peek.bytes <= INLINE_MAX_BYTES) {
      const plaintext = concat(peek.head, peek.bytes);
      const salt = generateSegmentSalt();
      const sealed = sealSegment(deriveSegmentKey(fileKey, 0, salt), segmentId(fileId, 0), plaintext);
      const { record, replaced } = await this.#c.metadata.commitFile(path, {
        ...stored,
        size: peek.bytes,
        content: { ...base, segmentCount: 0, inline: { salt: hex(salt), sealed: Buffer.from(sealed).toString("base64") } },
        segments: [],
      });
      options.onProgress?.(peek.bytes);
      await this.#afterCommit(new Set(), replaced, options);
      return { path, inode: record.inode, size: peek.bytes, inline: true, segments: 0, piecesStored: 0, longTailCancelled: 0, replaced: 0, unconfirmedFarmers: 0 };
    }
    const { segments, size, stats } = await this.#storeSegments(secrets, redundancy, numbered(segmentChunks(prepend(peek.head, iterator), this.segmentSize, { signal, pool: this.#plaintextBuffers })), signal, options.onProgress);
    const { record, replaced } = await this.#c.metadata.commitFile(path, { ...stored, size, content: { ...base, segmentCount: segments.length }, segments });
    const farmers = new Set(segments.flatMap((s) => Object.values(s.holders)));
    const unconfirmed = await this.#afterCommit(farmers, replaced, options);
    const piecesStored = segments.reduce((n, s) => n + Object.keys(s.holders).length, 0);
    return { path, inode: record.inode, size, inline: false, segments: segments.length, piecesStored, ...stats, unconfirmedFarmers: unconfirmed };
  }

  /**
   * Stores a change of the committed file at `remotePath` by re-uploading
   * only the segments it touched (see {@link RewriteRequest}): each of them
   * is sealed again under a fresh random salt — so a new key, new piece ids,
   * and never a nonce reused with other plaintext — with the file's own key
   * and id; every other segment keeps its salt and its pieces. One metadata
   * batch ({@link MetadataDb.commitRewrite}) swaps the segments in; the
   * pieces of replaced segments are then deleted on their farmers like those
   * of a replaced file. Resolves `undefined`, having stored nothing, when a
   * whole-file {@link put} is needed instead: the file at the path is no
   * longer `baseInode`, is inline or becomes small enough to be, or was
   * stored with another segment size or redundancy than this renter uses.
   */
  async rewrite(remotePath: string, request: RewriteRequest, options: PutOptions = {}): Promise<PutResult | undefined> {
    const path = normalizePath(remotePath);
    const signal = options.signal;
    let record: InodeRecord;
    try {
      record = await this.#c.metadata.lookup(path);
    } catch (error) {
      if (isDstorError(error, "NO_SUCH_FILE", "NOT_A_DIRECTORY")) return undefined;
      throw error;
    }
    const file = record.file;
    const { size } = request;
    if (record.inode !== request.baseInode || record.type !== "file" || file === undefined || file.inline !== undefined || file.segmentCount === 0) return undefined;
    if (file.segmentSize !== this.segmentSize || file.redundancy !== formatRedundancyStrategy(this.strategy) || size <= INLINE_MAX_BYTES) return undefined;
    const segmentSize = file.segmentSize;
    const old = new Map((await this.#c.metadata.segments(record.inode)).map((s) => [s.index, s]));
    const dirty = new Set<number>();
    for (const [start, end] of request.written) {
      for (let index = Math.floor(start / segmentSize); index * segmentSize < end; index++) dirty.add(index);
    }
    const keep: number[] = [];
    const changed: number[] = [];
    for (let index = 0; index < Math.ceil(size / segmentSize); index++) {
      const start = index * segmentSize;
      const end = Math.min(start + segmentSize, size);
      const unchanged =
        !dirty.has(index) && end <= request.unchangedBelow && end === Math.min(start + segmentSize, record.size) && old.get(index)?.plaintextLength === end - start;
      (unchanged ? keep : changed).push(index);
    }
    const secrets: FileSecrets = { fileKey: fromHex(file.fileKey), fileId: fromHex(file.fileId), pieceIdKey: this.#init.pieceIdKey };
    const read = request.read;
    async function* plaintexts(): AsyncGenerator<{ index: number; plaintext: Uint8Array }> {
      for (const index of changed) {
        const plaintext = await read(index * segmentSize, Math.min(segmentSize, size - index * segmentSize));
        if (plaintext.byteLength !== Math.min(segmentSize, size - index * segmentSize)) throw new DstorError("INVALID_ARGUMENT", `segment ${index} of ${path}: the source gave ${plaintext.byteLength} bytes`);
        yield { index, plaintext };
      }
    }
    const { segments, stats } = await this.#storeSegments(secrets, file.redundancy, plaintexts(), signal, options.onProgress);
    let committed: Awaited<ReturnType<MetadataDb["commitRewrite"]>>;
    try {
      committed = await this.#c.metadata.commitRewrite(path, record.inode, {
        content: file,
        size,
        segments,
        keep,
        mode: options.mode ?? record.mode,
        mtimeMs: options.mtimeMs ?? Date.now(),
      });
    } catch (error) {
      await this.#deleteStored(segments, secrets.fileKey);
      if (isDstorError(error, "NO_SUCH_FILE")) return undefined;
      throw error;
    }
    const farmers = new Set(segments.flatMap((s) => Object.values(s.holders)));
    const unconfirmed = await this.#afterCommit(farmers, committed.replaced.segments.length > 0 ? committed.replaced : undefined, options);
    const piecesStored = segments.reduce((n, s) => n + Object.keys(s.holders).length, 0);
    this.#log.debug("rewrote changed segments", { path, rewritten: changed.length, kept: keep.length });
    return { path, inode: committed.record.inode, size, inline: false, segments: segments.length, piecesStored, ...stats, unconfirmedFarmers: unconfirmed };
  }

  /**
   * Encodes and uploads every segment of `source` under `secrets` (the upload
   * loop of {@link put}); commits nothing. On failure the pieces already
   * stored are deleted, best effort, and the error is thrown.
   */
  async #storeSegments(
    secrets: FileSecrets,
    redundancy: string,
    source: AsyncIterable<{ index: number; plaintext: Uint8Array }>,
    signal: AbortSignal | undefined,
    onProgress: ProgressFn | undefined,
  ): Promise<{ segments: SegmentMeta[]; size: number; stats: { longTailCancelled: number; replaced: number } }> {
    const { pipeline } = this.#coderFor(redundancy);
    const stats = { longTailCancelled: 0, replaced: 0 };
    const segments: SegmentMeta[] = [];
    const inFlight = new Map<number, Promise<void>>();
    const layoutBytes = segmentLayoutBytes(pipeline.coder, this.segmentSize);
    const controller = new AbortController();
    const onAbort = (): void => controller.abort(signal?.reason);
    signal?.addEventListener("abort", onAbort, { once: true });
    let size = 0;
    let done = 0;
    let failure: unknown;
    try {
      let slot = 0;
      for await (const { index, plaintext } of source) {
        while (inFlight.size >= (this.#init.segmentsInFlight ?? SEGMENTS_IN_FLIGHT)) await Promise.race(inFlight.values());
        if (failure !== undefined) break;
        throwIfAborted(controller.signal);
        size += plaintext.byteLength;
        // Full segments reuse pooled layouts; a short one (a small file, a last segment) gets one of its own size.
        const need = segmentLayoutBytes(pipeline.coder, plaintext.byteLength);
        const full = need > layoutBytes / 2;
        const layout = full ? this.#layoutBuffers.take(layoutBytes) : uninitializedBytes(need);
        const encoded = await encodeSegmentAsync(pipeline, secrets, index, plaintext, { layout });
        // Encoding copied the plaintext (sealed) into the layout.
        this.#plaintextBuffers.give([plaintext]);
        const i = slot++;
        const task = this.#uploadSegment(encoded, stats, controller.signal)
          .then((meta) => {
            segments[i] = meta;
            done += encoded.record.plaintextLength;
            onProgress?.(done);
          })
          .catch((error: unknown) => {
            failure ??= error;
            controller.abort(error);
          })
          .finally(() => {
            if (full) this.#layoutBuffers.give([layout]);
            inFlight.delete(i);
          });
        inFlight.set(i, task);
      }
    } catch (error) {
      failure ??= error;
      controller.abort(error);
    }
    await Promise.all(inFlight.values());
    signal?.removeEventListener("abort", onAbort);
    if (failure !== undefined) {
      await this.#deleteStored(segments.filter((s) => s !== undefined), secrets.fileKey);
      if (signal?.aborted) throw abortReason(signal);
      throw failure;
    }
    return { segments, size, stats };
  }

  /**
   * Stores the bytes of `source` on farmers like a file's, without putting
   * them in the tree: returns the content description and segments a reader
   * needs ({@link readStored}). The caller owns the pieces from then on —
   * adding their references to metadata so deal states cover them, and
   * deleting them when no longer needed. Used for metadata snapshots, whose
   * file key and id the caller derives so that nothing secret has to be kept
   * outside the snapshot itself.
   */
  async storeBlob(
    source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
    options: { fileKey: Uint8Array; fileId: Uint8Array; signal?: AbortSignal | undefined; onProgress?: ProgressFn | undefined },
  ): Promise<StoredFile> {
    const redundancy = formatRedundancyStrategy(this.strategy);
    const secrets: FileSecrets = { fileKey: options.fileKey, fileId: options.fileId, pieceIdKey: this.#init.pieceIdKey };
    const iterable = Symbol.asyncIterator in source ? source : (async function* () { yield* source as Iterable<Uint8Array>; })();
    const { segments, size } = await this.#storeSegments(secrets, redundancy, numbered(segmentChunks(iterable, this.segmentSize, { signal: options.signal, pool: this.#plaintextBuffers })), options.signal, options.onProgress);
    const content = { fileKey: hex(options.fileKey), fileId: hex(options.fileId), segmentSize: this.segmentSize, redundancy, segmentCount: segments.length };
    return { content, size, segments };
  }

  async #checkTarget(path: string): Promise<void> {
    try {
      const existing = await this.#c.metadata.lookup(path);
      if (existing.type === "dir") throw new DstorError("IS_A_DIRECTORY", `${path} is a directory; name a file inside it`, { details: { path } });
    } catch (error) {
      if (!isDstorError(error, "NO_SUCH_FILE")) throw error;
      const parent = path.slice(0, path.lastIndexOf("/")) || "/";
      const dir = await this.#c.metadata.lookup(parent);
      if (dir.type !== "dir") throw new DstorError("NOT_A_DIRECTORY", `${parent} is not a directory`);
    }
  }

  async #afterReplace(replaced: RemovedFile | undefined, signal: AbortSignal | undefined, synced?: ReadonlySet<string>): Promise<void> {
    if (replaced !== undefined) await this.flushDeletes({ signal, ...(synced === undefined ? {} : { synced }) }).catch((error: unknown) => this.#log.warn("deleting replaced pieces failed; will retry", { error }));
  }

  /**
   * After a commit: co-signs the deal states of `farmers` (the new pieces'
   * holders), then deletes what the commit replaced — now, or in the
   * background (see {@link PutOptions.dealSync}). Resolves with the number of
   * farmers not (yet) co-signed.
   */
  async #afterCommit(farmers: ReadonlySet<string>, replaced: RemovedFile | undefined, options: PutOptions): Promise<number> {
    if (options.dealSync !== "background") {
      const unconfirmed = farmers.size === 0 ? 0 : await this.syncDeals([...farmers], { signal: options.signal });
      await this.#afterReplace(replaced, options.signal, farmers);
      return unconfirmed;
    }
    if (farmers.size === 0 && replaced === undefined) return 0;
    const task = (async () => {
      // syncDeals logs and counts its own failures; the next sync of a farmer covers them.
      if (farmers.size > 0) await this.syncDeals([...farmers]);
      await this.#afterReplace(replaced, undefined, farmers);
    })().catch((error: unknown) => this.#log.warn("background deal sync failed; the next sync retries it", { error }));
    this.#backgroundSyncs.add(task);
    void task.finally(() => this.#backgroundSyncs.delete(task));
    return farmers.size;
  }

  /** Waits for the deal-state syncs and deletes of uploads that did not wait for them (`dealSync: "background"`). */
  async settle(): Promise<void> {
    while (this.#backgroundSyncs.size > 0) await Promise.all([...this.#backgroundSyncs]);
  }

  /** Best-effort deletion of pieces of an upload that did not commit. */
  async #deleteStored(segments: SegmentMeta[], _fileKey: Uint8Array): Promise<void> {
    const jobs: Promise<unknown>[] = [];
    for (const s of segments) {
      for (const [number, address] of Object.entries(s.holders)) {
        jobs.push(this.#deletePiece(address, s.pieceIds[Number(number)]!, s.pieceSize).catch(() => false));
      }
    }
    await Promise.all(jobs);
  }

  async #putPiece(farmer: FarmerCandidate, pieceId: string, root: string, data: Uint8Array, signal: AbortSignal, chunks?: AsyncIterable<Uint8Array>): Promise<void> {
    const dealId = await this.#c.deals.ensureDeal(farmer, { signal });
    if (this.#knownDeals.get(farmer.address) !== dealId) {
      // Gets and deletes later sign orders under this deal; keep it with the farmer's record.
      await this.#c.metadata.updateFarmer(farmer.address, (r) => ({ ...r, peerId: farmer.peerId, multiaddrs: [...farmer.multiaddrs], dealId: dealId.toString() }));
      this.#knownDeals.set(farmer.address, dealId);
    }
    const order = await this.#c.orders.sign({ farmer: farmer.address, dealId, pieceId, action: OrderAction.Put, maxBytes: data.byteLength });
    await this.#c.transport.put(farmer, { order, pieceId, root, data, ...(chunks === undefined ? {} : { chunks }) }, { signal });
  }

  async #uploadSegment(encoded: EncodedSegment, stats: { longTailCancelled: number; replaced: number }, signal: AbortSignal): Promise<SegmentMeta> {
    const { optimal, total } = this.strategy;
    const { record, pieces } = encoded;
    const candidates = await this.#listCandidates(signal);
    const records = await this.#records();
    const policy = this.#init.policy ?? {};
    const initial = selectFarmers({ candidates, records, count: total, pieceBytes: record.pieceSize, policy });
    if (initial.length < optimal) {
      throw new DstorError("NOT_ENOUGH_FARMERS", `not enough farmers: need ${optimal}, found ${initial.length}`, {
        details: { need: optimal, found: initial.length, known: candidates.length },
      });
    }
    const tail = new AbortController();
    const combined = AbortSignal.any([signal, tail.signal]);
    const paceChunk = Math.max(1, Math.min(PACE_CHUNK_BYTES, Math.ceil(record.pieceSize / PACE_CHUNKS_PER_PIECE)));
    const pacer = new LongTailPacer({ optimal, total, chunkBytes: paceChunk, stallMs: PACE_STALL_MS, keepAliveMs: PACE_KEEP_ALIVE_MS });
    const holders: Record<number, string> = {};
    const tried = new Set<string>();
    const active = new Map<number, FarmerCandidate>();
    let inFlight = 0;
    let lastError: unknown;
    let reachedOptimal = false;

    await new Promise<void>((resolve) => {
      const settleIfDone = (): void => {
        if (inFlight === 0) resolve();
      };
      const start = (number: number, farmer: FarmerCandidate): void => {
        tried.add(farmer.address);
        active.set(number, farmer);
        inFlight++;
        const piece = pieces[number]!;
        const began = performance.now();
        this.#putPiece(farmer, hex(piece.id), hex(piece.root), piece.data, combined, pacer.chunks(number, piece.data, combined)).then(
          () => {
            inFlight--;
            pacer.succeeded(number);
            active.delete(number);
            holders[number] = farmer.address;
            void this.#recordOutcome(farmer, { ok: true, bytes: piece.data.byteLength, ms: performance.now() - began });
            if (!reachedOptimal && Object.keys(holders).length >= optimal) {
              reachedOptimal = true;
              stats.longTailCancelled += inFlight;
              tail.abort(new DstorError("ABORTED", "long tail cancelled: optimal pieces stored"));
            }
            settleIfDone();
          },
          (error: unknown) => {
            inFlight--;
            active.delete(number);
            pacer.failed(number);
            if (!reachedOptimal && !signal.aborted) {
              lastError = error;
              this.#log.debug("piece put failed", { farmer: farmer.address, piece: number, error });
              void this.#recordOutcome(farmer, { ok: false });
              const stored = Object.keys(holders).length;
              if (stored + inFlight < optimal) {
                const used = new Set([...Object.values(holders), ...[...active.values()].map((f) => f.address)]);
                const usedSubnets = new Set(
                  [...active.values(), ...candidates.filter((c) => Object.values(holders).includes(c.address))].map((f) => failureDomain(f, policy)),
                );
                const [spare] = selectFarmers({
                  candidates,
                  records,
                  count: 1,
                  pieceBytes: record.pieceSize,
                  policy,
                  exclude: new Set([...tried, ...used]),
                  usedSubnets,
                });
                if (spare !== undefined) {
                  stats.replaced++;
                  start(number, spare);
                }
              }
            }
            settleIfDone();
          },
        );
      };
      for (const [number, farmer] of initial.entries()) start(number, farmer);
    });
    const stored = Object.keys(holders).length;
    if (stored < optimal || signal.aborted) {
      // Clean up what did get stored: the segment (or the whole upload) failed.
      await Promise.all(Object.entries(holders).map(([n, a]) => this.#deletePiece(a, hex(record.pieceIds[Number(n)]!), record.pieceSize).catch(() => false)));
      throwIfAborted(signal);
      throw new DstorError("NOT_ENOUGH_FARMERS", `not enough farmers: need ${optimal}, found ${stored} that accepted segment ${record.index}`, {
        cause: lastError,
        details: { need: optimal, found: stored, segment: record.index },
      });
    }
    return {
      index: record.index,
      salt: hex(record.salt),
      plaintextLength: record.plaintextLength,
      pieceSize: record.pieceSize,
      pieceIds: record.pieceIds.map(hex),
      pieceRoots: record.pieceRoots.map(hex),
      holders,
    };
  }

  // ---------------------------------------------------------------- download

  async #farmerRef(address: string): Promise<FarmerRef> {
    const rec = await this.#c.metadata.farmer(address);
    const fromDirectory = this.#candidates?.list.find((c) => c.address === address);
    return fromDirectory ?? { address, peerId: rec?.peerId ?? "", multiaddrs: rec?.multiaddrs ?? [] };
  }

  /**
   * Fetches verified piece bytes [pieceOffset, pieceOffset + length) of at
   * least k pieces of `segment` (whole pieces when the range is the whole piece).
   */
  async #fetchPieces(
    segment: SegmentMeta,
    k: number,
    range: { offset: number; length: number },
    signal: AbortSignal | undefined,
    dealIds?: ReadonlyMap<string, bigint>,
    buffers?: { pool: BufferPool; taken: Uint8Array[] },
  ): Promise<Map<number, Uint8Array>> {
    const records = await this.#records();
    const score = (address: string): number => {
      const r = records.get(address);
      if (r === undefined) return 0.5;
      return (r.successes + 1) / (r.successes + r.failures + 4 * r.corrupt + 2);
    };
    const queue = Object.entries(segment.holders)
      .map(([n, address]) => ({ number: Number(n), address, score: score(address) + Math.random() * 0.01 }))
      .sort((a, b) => b.score - a.score);
    const whole = range.offset === 0 && range.length === segment.pieceSize;
    // Leaf-align the range: farmers serve (and prove) whole leaves only.
    const alignedStart = Math.floor(range.offset / LEAF_SIZE_BYTES) * LEAF_SIZE_BYTES;
    const alignedEnd = Math.min(segment.pieceSize, Math.ceil((range.offset + range.length) / LEAF_SIZE_BYTES) * LEAF_SIZE_BYTES);
    const leaves = leafCount(segment.pieceSize);
    const good = new Map<number, Uint8Array>();
    const stop = new AbortController();
    const combined = signal === undefined ? stop.signal : AbortSignal.any([signal, stop.signal]);
    let inFlight = 0;
    let lastError: unknown;
    // k gets (plus extraDownloads) at first, then one more every `ms` of
    // hedgeAfter while pieces are missing: HEDGE_IDLE_MS until the first
    // piece arrives, then half the time that piece took (see HEDGE_MIN_MS).
    const started = performance.now();
    let extra = this.#init.extraDownloads ?? EXTRA_DOWNLOADS;
    let hedgeTimer: NodeJS.Timeout | undefined;
    await new Promise<void>((resolve) => {
      const hedgeAfter = (ms: number): void => {
        clearTimeout(hedgeTimer);
        hedgeTimer = setTimeout(() => {
          extra++;
          next();
          if (queue.length > 0) hedgeAfter(ms);
        }, ms);
      };
      const next = (): void => {
        while (good.size + inFlight < k + extra && queue.length > 0 && good.size < k && !combined.aborted) {
          const { number, address } = queue.shift()!;
          inFlight++;
          const began = performance.now();
          let into: Uint8Array | undefined;
          if (whole && buffers !== undefined) {
            into = buffers.pool.take(segment.pieceSize);
            buffers.taken.push(into);
          }
          this.#getPiece(address, segment, number, whole ? undefined : { offset: alignedStart, length: alignedEnd - alignedStart }, combined, dealIds, into)
            .then(
              async ({ farmer, dealId, data, proof }) => {
                const root = fromHex(segment.pieceRoots[number]!);
                const expectedBytes = whole ? segment.pieceSize : alignedEnd - alignedStart;
                // No proof: the transport verified against the root we sent (see GetPieceResult).
                // A whole piece is hashed on the thread pool: the event loop keeps receiving the others.
                const ok =
                  data.byteLength === expectedBytes &&
                  (proof === undefined || (await verifyMerkleMultiproofAsync(root, leaves, alignedStart / LEAF_SIZE_BYTES, data, proof)));
                if (!ok) {
                  lastError = new DstorError("INTEGRITY_MISMATCH", `farmer ${address} returned piece ${number} of segment ${segment.index} with bad bytes`);
                  this.#log.warn("corrupt piece skipped", { farmer: address, segment: segment.index, piece: number });
                  await this.#recordOutcome(farmer, { ok: false, corrupt: true });
                  return;
                }
                this.#c.egress?.received(farmer, dealId, data.byteLength);
                if (good.size === 0) hedgeAfter(Math.max(HEDGE_MIN_MS, (performance.now() - started) / 2));
                if (good.size < k) good.set(number, whole ? data : data.subarray(range.offset - alignedStart, range.offset - alignedStart + range.length));
                void this.#recordOutcome(farmer, { ok: true, bytes: data.byteLength, ms: performance.now() - began });
                if (good.size >= k) stop.abort(new DstorError("ABORTED", "enough pieces"));
              },
              async (error: unknown) => {
                if (stop.signal.aborted && good.size >= k) return;
                lastError = error;
                const corrupt = isDstorError(error, "MERKLE_PROOF_INVALID", "INTEGRITY_MISMATCH");
                if (corrupt) this.#log.warn("corrupt piece skipped", { farmer: address, segment: segment.index, piece: number });
                else this.#log.debug("piece get failed", { farmer: address, segment: segment.index, piece: number, error });
                if (!signal?.aborted) await this.#recordOutcome({ address, peerId: "", multiaddrs: [] }, { ok: false, corrupt });
              },
            )
            .finally(() => {
              inFlight--;
              next();
              if (inFlight === 0) resolve();
            });
        }
        if (inFlight === 0) resolve();
      };
      next();
      hedgeAfter(HEDGE_IDLE_MS);
    }).finally(() => clearTimeout(hedgeTimer));
    if (signal?.aborted) throw abortReason(signal);
    if (good.size < k) {
      throw new DstorError("ERASURE_TOO_FEW_PIECES", `segment ${segment.index}: only ${good.size} of the ${k} pieces needed could be fetched and verified`, {
        cause: lastError,
        details: { segment: segment.index, need: k, have: good.size },
      });
    }
    return good;
  }

  async #getPiece(
    address: string,
    segment: SegmentMeta,
    number: number,
    range: { offset: number; length: number } | undefined,
    signal: AbortSignal,
    dealIds?: ReadonlyMap<string, bigint>,
    into?: Uint8Array,
  ): Promise<{ farmer: FarmerRef; dealId: bigint; data: Uint8Array; proof: readonly Uint8Array[] | undefined }> {
    const farmer = await this.#farmerRef(address);
    const rec = await this.#c.metadata.farmer(address);
    const dealId = dealIds?.get(address) ?? (rec?.dealId === undefined ? 0n : BigInt(rec.dealId));
    const pieceId = segment.pieceIds[number]!;
    const maxBytes = range?.length ?? segment.pieceSize;
    const order = await this.#c.orders.sign({ farmer: address, dealId, pieceId, action: OrderAction.Get, maxBytes });
    const root = segment.pieceRoots[number]!;
    const result = await this.#c.transport.get(farmer, { order, pieceId, root, size: segment.pieceSize, offset: range?.offset, length: range?.length, into }, { signal });
    return { farmer, dealId, data: result.data, proof: result.proof };
  }

  #secrets(record: InodeRecord): { fileKey: Uint8Array; fileId: Uint8Array } {
    const file = record.file;
    if (file === undefined) throw new DstorError("IS_A_DIRECTORY", "that is a directory");
    return { fileKey: fromHex(file.fileKey), fileId: fromHex(file.fileId) };
  }

  async #decodeWhole(
    record: InodeRecord,
    segment: SegmentMeta,
    signal: AbortSignal | undefined,
    dealIds?: ReadonlyMap<string, bigint>,
    into?: Uint8Array,
  ): Promise<Uint8Array> {
    const file = record.file!;
    const { coder } = this.#coderFor(file.redundancy);
    const { fileKey, fileId } = this.#secrets(record);
    // Pieces arrive in reused buffers, given back once decoded (every get
    // has settled when #fetchPieces returns or throws).
    const buffers = { pool: this.#pieceBuffers, taken: [] as Uint8Array[] };
    let scratch: Uint8Array | undefined;
    try {
      const pieces = await this.#fetchPieces(segment, coder.strategy.k, { offset: 0, length: segment.pieceSize }, signal, dealIds, buffers);
      // Decode into a pooled buffer (a fresh 8 MiB one per segment costs a
      // page fault per 4 KiB), opened on the thread pool while the event
      // loop receives the next segments' pieces.
      scratch = this.#sealedBuffers.take(segment.pieceSize * coder.strategy.k);
      const sealed = coder.decode(pieces, sealedLength(segment.plaintextLength), scratch);
      return await openSegmentAsync(deriveSegmentKey(fileKey, segment.index, fromHex(segment.salt)), segmentId(fileId, segment.index), sealed, { into });
    } finally {
      this.#pieceBuffers.give(buffers.taken);
      if (scratch !== undefined) this.#sealedBuffers.give([scratch]);
    }
  }

  #openInline(record: InodeRecord): Uint8Array {
    const inline = record.file!.inline!;
    const { fileKey, fileId } = this.#secrets(record);
    return openSegment(deriveSegmentKey(fileKey, 0, fromHex(inline.salt)), segmentId(fileId, 0), new Uint8Array(Buffer.from(inline.sealed, "base64")));
  }

  /**
   * The whole file at `remotePath`, segment by segment (the next segments
   * are fetched while the current one is consumed, at most
   * SEGMENTS_IN_FLIGHT ahead).
   *
   * With `transient`, each chunk is valid only until the next is asked for
   * (or the iteration ends): segments are decrypted into reused buffers, so
   * the caller must copy or write out a chunk before it asks for more
   * (`dstor get` and the drive do). A fresh 8 MiB plaintext per segment
   * costs a page fault per 4 KiB and drives V8 toward full GCs.
   */
  async *read(
    remotePath: string,
    options: { signal?: AbortSignal | undefined; onProgress?: ProgressFn | undefined; transient?: boolean | undefined } = {},
  ): AsyncGenerator<Uint8Array> {
    const record = await this.#c.metadata.lookup(remotePath);
    if (record.type !== "file" || record.file === undefined) throw new DstorError("IS_A_DIRECTORY", `${normalizePath(remotePath)} is ${record.type === "symlink" ? "a symbolic link" : "a directory"}`);
    if (record.file.inline !== undefined) {
      const data = this.#openInline(record);
      options.onProgress?.(data.byteLength);
      if (data.byteLength > 0) yield data;
      return;
    }
    const segments = await this.#c.metadata.segments(record.inode);
    if (segments.length !== record.file.segmentCount) throw new DstorError("STORE_CORRUPT", `${normalizePath(remotePath)}: metadata lists ${segments.length} of ${record.file.segmentCount} segments`);
    const ahead = this.#init.segmentsInFlight ?? SEGMENTS_IN_FLIGHT;
    const pool = options.transient === true ? this.#plaintextBuffers : undefined;
    const segmentSize = record.file.segmentSize;
    const pending: Array<{ data: Promise<Uint8Array>; buffer: Uint8Array | undefined }> = [];
    let nextIndex = 0;
    let done = 0;
    const fill = (): void => {
      while (pending.length < ahead && nextIndex < segments.length) {
        const buffer = pool?.take(segmentSize);
        const data = this.#decodeWhole(record, segments[nextIndex++]!, options.signal, undefined, buffer);
        data.catch(() => {}); // observed when awaited; avoid an unhandled rejection meanwhile
        pending.push({ data, buffer });
      }
    };
    // The buffer of the chunk last yielded; segments still decoding keep
    // theirs (dropped, not pooled, if the caller stops early).
    let lent: Uint8Array | undefined;
    try {
      fill();
      while (pending.length > 0) {
        const next = pending.shift()!;
        const data = await next.data;
        fill();
        done += data.byteLength;
        options.onProgress?.(done);
        lent = next.buffer;
        yield data;
        if (lent !== undefined) pool!.give([lent]);
        lent = undefined;
      }
    } finally {
      if (lent !== undefined) pool!.give([lent]);
    }
  }

  /**
   * The bytes {@link storeBlob} stored, segment by segment, verified piece by
   * piece and authenticated by the segment AEAD. Works on a renter whose
   * metadata knows nothing yet (recovery): farmers are found in the
   * directory, and `dealIds` names the deal each holder serves the pieces
   * under when metadata has no record of it.
   */
  async *readStored(
    stored: Pick<StoredFile, "content" | "size" | "segments">,
    options: { signal?: AbortSignal | undefined; dealIds?: ReadonlyMap<string, bigint> } = {},
  ): AsyncGenerator<Uint8Array> {
    if (stored.segments.length !== stored.content.segmentCount) throw new DstorError("STORE_CORRUPT", `stored content lists ${stored.segments.length} of ${stored.content.segmentCount} segments`);
    // Load the directory so holders metadata does not know yet can be reached.
    await this.#listCandidates(options.signal);
    const record: InodeRecord = { inode: SNAPSHOT_INODE, type: "file", mode: 0o600, mtimeMs: 0, size: stored.size, file: stored.content };
    for (const segment of [...stored.segments].sort((a, b) => a.index - b.index)) {
      yield await this.#decodeWhole(record, segment, options.signal, options.dealIds);
    }
  }

  /**
   * Bytes [offset, offset + length) of the file at `remotePath` (clamped to
   * its size). Fetches only the leaf-aligned piece ranges the range needs, from
   * k pieces, and decrypts only the 64 KiB blocks it touches.
   */
  async readRange(remotePath: string, offset: number, length: number, options: { signal?: AbortSignal | undefined } = {}): Promise<Uint8Array> {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) {
      throw new DstorError("INVALID_ARGUMENT", "offset and length must be non-negative integers");
    }
    const record = await this.#c.metadata.lookup(remotePath);
    if (record.type !== "file" || record.file === undefined) throw new DstorError("IS_A_DIRECTORY", `${normalizePath(remotePath)} is ${record.type === "symlink" ? "a symbolic link" : "a directory"}`);
    const end = Math.min(record.size, offset + length);
    if (end <= offset) return new Uint8Array(0);
    if (record.file.inline !== undefined) return this.#openInline(record).slice(offset, end);
    const file = record.file;
    const { coder } = this.#coderFor(file.redundancy);
    const { fileKey, fileId } = this.#secrets(record);
    const out = new Uint8Array(end - offset);
    const first = Math.floor(offset / file.segmentSize);
    const last = Math.floor((end - 1) / file.segmentSize);
    await Promise.all(
      Array.from({ length: last - first + 1 }, async (_, i) => {
        const index = first + i;
        const segment = await this.#c.metadata.segment(record.inode, index);
        if (segment === undefined) throw new DstorError("STORE_CORRUPT", `segment ${index} of ${normalizePath(remotePath)} is missing from metadata`);
        const segStart = index * file.segmentSize;
        const from = Math.max(offset, segStart) - segStart;
        const to = Math.min(end, segStart + segment.plaintextLength) - segStart;
        const sealedRange = sealedRangeFor(segment.plaintextLength, from, to - from);
        const sealedTotal = sealedLength(segment.plaintextLength);
        const sealedBytes = sealedRange.sealedEnd - sealedRange.sealedStart;
        const pieceRange = coder.pieceRangeFor(sealedTotal, sealedRange.sealedStart, sealedBytes);
        const pieces = await this.#fetchPieces(segment, coder.strategy.k, { offset: pieceRange.pieceOffset, length: pieceRange.length }, options.signal);
        const sealed = coder.decodeSegmentRange(pieces, sealedTotal, sealedRange.sealedStart, sealedBytes);
        const key = deriveSegmentKey(fileKey, index, fromHex(segment.salt));
        const plain = openBlocks(key, segmentId(fileId, index), sealed, sealedRange.firstBlock, sealedRange.totalBlocks);
        out.set(plain.subarray(sealedRange.plaintextSkip, sealedRange.plaintextSkip + (to - from)), segStart + from - offset);
      }),
    );
    return out;
  }

  // ------------------------------------------------------------------ delete

  async #deletePiece(address: string, pieceId: string, size: number, signal?: AbortSignal): Promise<boolean> {
    const rec = await this.#c.metadata.farmer(address);
    if (rec?.dealId === undefined) return true; // never had a deal: nothing can be stored there
    const farmer = await this.#farmerRef(address);
    const order = await this.#c.orders.sign({ farmer: address, dealId: BigInt(rec.dealId), pieceId, action: OrderAction.Delete, maxBytes: size });
    try {
      await this.#c.transport.delete(farmer, { order, pieceId }, { signal });
      return true;
    } catch (error) {
      if (isDstorError(error, "PIECE_NOT_FOUND")) return true;
      throw error;
    }
  }

  /**
   * Deletes pieces no file needs any more (left by rm and by replacing
   * writes) on their farmers, and forgets those that are gone. Returns how
   * many were deleted and how many remain for a later retry.
   */
  async flushDeletes(
    options: { signal?: AbortSignal | undefined; synced?: ReadonlySet<string> } = {},
  ): Promise<{ deleted: number; remaining: number }> {
    const pending = await this.#c.metadata.pendingDeletes();
    // A farmer deletes a confirmed piece only once a newer co-signed deal
    // state without it exists: sync first (metadata already lists only live
    // pieces), then delete.
    const farmers = [...new Set(pending.map((p) => p.farmer))].filter((f) => !options.synced?.has(f));
    await this.syncDeals(farmers, options);
    const done: Array<{ farmer: string; pieceId: string }> = [];
    const limit = 16;
    for (let i = 0; i < pending.length; i += limit) {
      await Promise.all(
        pending.slice(i, i + limit).map(async ({ farmer, ref }) => {
          try {
            if (await this.#deletePiece(farmer, ref.pieceId, ref.size, options.signal)) done.push({ farmer, pieceId: ref.pieceId });
          } catch (error) {
            this.#log.debug("piece delete failed; kept for retry", { farmer, error });
          }
        }),
      );
    }
    await this.#c.metadata.clearPendingDeletes(done);
    return { deleted: done.length, remaining: pending.length - done.length };
  }

  /**
   * Brings the co-signed deal state of each farmer in `farmers` up to the
   * pieces metadata says it holds (farmers expire pieces that no co-signed
   * state lists). Resolves with the number of farmers that could not be
   * synced; they are retried by the next sync.
   *
   * Syncs are coalesced per farmer ({@link Coalescer}): each reads the
   * farmer's piece list when it starts, so callers arriving while one runs
   * share the next — many small uploads finishing close together cost one
   * co-sign round trip and one chain transaction per farmer, not one per
   * file. A shared sync runs without any one caller's signal (the co-sign
   * has its own deadline); `signal` only stops this caller's wait.
   */
  async syncDeals(farmers: readonly string[], options: { signal?: AbortSignal | undefined } = {}): Promise<number> {
    if (this.#c.deals.syncState === undefined) return 0;
    let failed = 0;
    await Promise.all(
      farmers.map(async (address) => {
        try {
          await raceSignal(this.#dealSyncs.run(address), options.signal);
        } catch (error) {
          failed++;
          this.#log.warn("deal state not co-signed yet; its new pieces stay unconfirmed", { farmer: address, error });
        }
      }),
    );
    return failed;
  }

  /**
   * Removes a file (or, with `recursive`, a directory and everything below
   * it) from metadata — each file in its own batch — then deletes the pieces
   * on the farmers with signed delete orders.
   */
  async remove(remotePath: string, options: { recursive?: boolean; signal?: AbortSignal | undefined } = {}): Promise<{ files: number; directories: number; deleted: number; remaining: number }> {
    const path = normalizePath(remotePath);
    const record = await this.#c.metadata.lookup(path);
    let files = 0;
    let directories = 0;
    const walk = async (p: string, r: InodeRecord): Promise<void> => {
      if (r.type !== "dir") {
        await this.#c.metadata.unlink(p);
        files++;
        return;
      }
      if (!options.recursive) throw new DstorError("IS_A_DIRECTORY", `${p} is a directory; use rm -r to remove it with its contents`);
      for (const entry of await this.#c.metadata.readdir(p)) await walk(`${p === "/" ? "" : p}/${entry.name}`, entry.record);
      if (p !== "/") {
        await this.#c.metadata.rmdir(p);
        directories++;
      }
    };
    await walk(path, record);
    const { deleted, remaining } = await this.flushDeletes({ signal: options.signal });
    return { files, directories, deleted, remaining };
  }

  // -------------------------------------------------------------------- stat

  /**
   * Segments, pieces, farmers and health of the file at `remotePath`. With
   * `verify`, every stored piece is fetched whole and checked against its
   * Merkle root (like `tahoe check --verify`): health then counts only pieces
   * that verified, and each farmer's outcome goes into the renter's record
   * (a corrupt piece weighs as in downloads).
   */
  async stat(remotePath: string, options: { verify?: boolean; signal?: AbortSignal | undefined } = {}): Promise<FileStat> {
    const path = normalizePath(remotePath);
    const record = await this.#c.metadata.lookup(path);
    if (record.type === "symlink") return { path, record, segments: [], health: "symlink" };
    if (record.type === "dir" || record.file === undefined) return { path, record, segments: [], health: "directory" };
    if (record.file.inline !== undefined) return { path, record, redundancy: record.file.redundancy, segments: [], health: "inline" };
    const strategy = parseRedundancyStrategy(record.file.redundancy);
    const farmers = await this.#records();
    const stored = await this.#c.metadata.segments(record.inode);
    const verdicts = options.verify === true ? await this.#verifyPieces(stored, options.signal) : undefined;
    const segments = stored.map((s) => {
      const pieces: PieceStat[] = s.pieceIds.map((pieceId, number) => ({
        number,
        pieceId,
        farmer: s.holders[number],
        ...(verdicts === undefined || s.holders[number] === undefined ? {} : { verified: verdicts.get(`${s.index}/${number}`) }),
      }));
      const healthy = pieces.filter((p) => p.farmer !== undefined && farmers.get(p.farmer)?.disqualified !== true && (verdicts === undefined || p.verified === "ok")).length;
      return { index: s.index, plaintextLength: s.plaintextLength, pieceSize: s.pieceSize, healthy, pieces };
    });
    const min = segments.reduce((m, s) => Math.min(m, s.healthy), Number.POSITIVE_INFINITY);
    const health = min >= strategy.optimal ? "healthy" : min > strategy.repair ? "degraded" : min >= strategy.k ? "repair" : "lost";
    return { path, record, redundancy: record.file.redundancy, segments, health };
  }

  /** Fetches every stored piece of `segments` and checks it (see {@link stat}); keys are `segment/piece`. */
  async #verifyPieces(segments: readonly SegmentMeta[], signal: AbortSignal | undefined): Promise<Map<string, NonNullable<PieceStat["verified"]>>> {
    const jobs = segments.flatMap((segment) => Object.entries(segment.holders).map(([n, address]) => ({ segment, number: Number(n), address })));
    const out = new Map<string, NonNullable<PieceStat["verified"]>>();
    const never = new AbortController().signal;
    const worker = async (): Promise<void> => {
      for (let job = jobs.shift(); job !== undefined; job = jobs.shift()) {
        throwIfAborted(signal);
        const { segment, number, address } = job;
        let verdict: NonNullable<PieceStat["verified"]>;
        const began = performance.now();
        try {
          const { data, proof } = await this.#getPiece(address, segment, number, undefined, signal ?? never);
          // No proof: the transport already verified the bytes against the root we sent (as in downloads).
          const verified = proof === undefined || bytesEqual(merkleRoot(data), fromHex(segment.pieceRoots[number]!));
          verdict = data.byteLength === segment.pieceSize && verified ? "ok" : "corrupt";
          if (verdict === "ok") await this.#recordOutcome({ address, peerId: "", multiaddrs: [] }, { ok: true, bytes: data.byteLength, ms: performance.now() - began });
        } catch (error) {
          if (signal?.aborted) throw abortReason(signal);
          verdict = isDstorError(error, "MERKLE_PROOF_INVALID", "INTEGRITY_MISMATCH", "STORE_CORRUPT")
            ? "corrupt"
            : isDstorError(error, "PIECE_NOT_FOUND")
              ? "missing"
              : "unreachable";
        }
        if (verdict !== "ok") await this.#recordOutcome({ address, peerId: "", multiaddrs: [] }, { ok: false, corrupt: verdict === "corrupt" });
        out.set(`${segment.index}/${number}`, verdict);
      }
    };
    await Promise.all(Array.from({ length: VERIFY_PARALLELISM }, worker));
    return out;
  }

  // ------------------------------------------------------- audits and repair

  /**
   * Off-chain spot check (the renter audit worker calls it): fetches leaves
   * [startLeaf, endLeaf) of one piece `address` holds for us through the
   * normal get path, verifies them against the root in metadata, and records
   * the outcome in the farmer's record — which selection reads, so a farmer
   * that refuses reads or serves bad bytes is avoided.
   */
  async spotCheck(
    address: string,
    piece: { pieceId: string; root: string; size: number },
    startLeaf: number,
    endLeaf: number,
    options: { signal?: AbortSignal | undefined } = {},
  ): Promise<{ ok: boolean; corrupt: boolean; error?: unknown }> {
    const leaves = leafCount(piece.size);
    if (!(Number.isSafeInteger(startLeaf) && Number.isSafeInteger(endLeaf) && startLeaf >= 0 && startLeaf < endLeaf && endLeaf <= leaves)) {
      throw new DstorError("INVALID_ARGUMENT", `leaf range [${startLeaf}, ${endLeaf}) is not inside a ${leaves}-leaf piece`);
    }
    const farmer = await this.#farmerRef(address);
    const offset = startLeaf * LEAF_SIZE_BYTES;
    const length = Math.min(piece.size, endLeaf * LEAF_SIZE_BYTES) - offset;
    const began = performance.now();
    try {
      const rec = await this.#c.metadata.farmer(address);
      const dealId = rec?.dealId === undefined ? 0n : BigInt(rec.dealId);
      const order = await this.#c.orders.sign({ farmer: address, dealId, pieceId: piece.pieceId, action: OrderAction.Get, maxBytes: length });
      const signal = options.signal;
      const result = await this.#c.transport.get(farmer, { order, pieceId: piece.pieceId, root: piece.root, size: piece.size, offset, length }, { signal });
      // No proof: the transport verified against the root we sent (see GetPieceResult).
      const ok =
        result.data.byteLength === length &&
        (result.proof === undefined || verifyMerkleMultiproof(fromHex(piece.root), leaves, startLeaf, result.data, result.proof));
      if (ok) this.#c.egress?.received(farmer, dealId, length);
      await this.#recordOutcome(farmer, ok ? { ok: true, bytes: length, ms: performance.now() - began } : { ok: false, corrupt: true });
      return { ok, corrupt: !ok };
    } catch (error) {
      if (options.signal?.aborted) throw abortReason(options.signal);
      const corrupt = isDstorError(error, "MERKLE_PROOF_INVALID", "INTEGRITY_MISMATCH");
      await this.#recordOutcome(farmer, { ok: false, corrupt });
      return { ok: false, corrupt, error };
    }
  }

  /**
   * Repairs the file at `remotePath` (the repair worker calls it): every
   * segment whose pieces on farmers outside `unhealthy` (and not
   * disqualified) are down to the strategy's `repair` threshold gets k
   * pieces downloaded from healthy holders, the missing pieces rebuilt
   * (checked against their roots in metadata) and placed on new farmers
   * under the usual selection and subnet rules, until `optimal` are healthy.
   * Metadata changes in one batch for the whole file, then the deal states
   * of the farmers involved are co-signed anew. Returns what was done.
   */
  async repairFile(
    remotePath: string,
    unhealthy: ReadonlySet<string>,
    options: { signal?: AbortSignal | undefined } = {},
  ): Promise<{ segments: number; pieces: number; bytes: number }> {
    const signal = options.signal;
    const record = await this.#c.metadata.lookup(normalizePath(remotePath));
    const file = record.file;
    if (record.type !== "file" || file === undefined || file.inline !== undefined) return { segments: 0, pieces: 0, bytes: 0 };
    const { coder } = this.#coderFor(file.redundancy);
    const strategy = coder.strategy;
    const candidates = await this.#listCandidates(signal, true);
    const byAddress = new Map(candidates.map((c) => [c.address, c]));
    const policy = this.#init.policy ?? {};
    const isHealthy = (address: string): boolean => !unhealthy.has(address) && byAddress.get(address)?.disqualified !== true;
    const changes: Array<{ index: number; pieceIds: string[]; holders: Record<number, string> }> = [];
    const touched = new Set<string>();
    let pieces = 0;
    let bytes = 0;
    for (const segment of await this.#c.metadata.segments(record.inode)) {
      throwIfAborted(signal);
      const healthy = Object.entries(segment.holders).filter(([, a]) => isHealthy(a));
      if (healthy.length > strategy.repair) continue;
      const fromHealthy: SegmentMeta = { ...segment, holders: Object.fromEntries(healthy) as Record<number, string> };
      const fetched = await this.#fetchPieces(fromHealthy, strategy.k, { offset: 0, length: segment.pieceSize }, signal);
      const held = new Set(healthy.map(([n]) => Number(n)));
      const wanted: number[] = [];
      for (let n = 0; n < segment.pieceIds.length && held.size + wanted.length < strategy.optimal; n++) if (!held.has(n)) wanted.push(n);
      const rebuilt = coder.reconstruct(fetched, wanted);
      const holders: Record<number, string> = Object.fromEntries(healthy.map(([n, a]) => [Number(n), a]));
      const exclude = new Set(Object.values(segment.holders));
      const usedSubnets = new Set(healthy.map(([, a]) => byAddress.get(a)).filter((c) => c !== undefined).map((c) => failureDomain(c, policy)));
      const records = await this.#records();
      for (const [i, number] of wanted.entries()) {
        const data = rebuilt[i]!;
        const root = segment.pieceRoots[number]!;
        if (toHex(merkleRoot(data)) !== root) throw new DstorError("INTEGRITY_MISMATCH", `rebuilt piece ${number} of segment ${segment.index} does not match its root`);
        for (;;) {
          const [farmer] = selectFarmers({ candidates, records, count: 1, pieceBytes: segment.pieceSize, policy, exclude, usedSubnets });
          if (farmer === undefined || unhealthy.has(farmer.address)) {
            if (farmer !== undefined) {
              exclude.add(farmer.address);
              continue;
            }
            throw new DstorError("NOT_ENOUGH_FARMERS", `no farmer left to take piece ${number} of segment ${segment.index}`);
          }
          exclude.add(farmer.address);
          const began = performance.now();
          try {
            await this.#putPiece(farmer, segment.pieceIds[number]!, root, data, signal ?? new AbortController().signal);
          } catch (error) {
            if (signal?.aborted) throw abortReason(signal);
            this.#log.warn("repair put failed; trying another farmer", { farmer: farmer.address, error });
            await this.#recordOutcome(farmer, { ok: false });
            continue;
          }
          void this.#recordOutcome(farmer, { ok: true, bytes: data.byteLength, ms: performance.now() - began });
          usedSubnets.add(failureDomain(farmer, policy));
          holders[number] = farmer.address;
          touched.add(farmer.address);
          pieces++;
          bytes += data.byteLength;
          break;
        }
      }
      changes.push({ index: segment.index, pieceIds: segment.pieceIds, holders });
    }
    if (changes.length === 0) return { segments: 0, pieces: 0, bytes: 0 };
    await this.#c.metadata.moveSegmentPieces(record.inode, changes);
    // New holders confirm their pieces. The dropped holders' deal states are
    // left alone on purpose: a challenge is asked with the deal's current
    // piece count, so removing the pieces a failing farmer lost would turn
    // its pending failures into paid, unchallenged epochs. Their deals end
    // by disqualification or at their term; the pieces wait in pending deletes.
    await this.syncDeals([...touched], { signal });
    return { segments: changes.length, pieces, bytes };
  }
}
