/**
 * The farmer's protocol handlers: put, get, audit, delete and info over
 * libp2p streams, on top of a {@link PieceStore}, a {@link SerialStore} and a
 * {@link DealChecker}.
 *
 * Design essay — why a request is handled the way it is:
 * - The order is verified before anything else that costs us: no byte of a
 *   put is accepted, no quota reserved and no piece read before the renter's
 *   signature, chain, farmer, piece, action, size, expiry, serial and funded
 *   deal have all been checked (protocol/orders.ts does the checks, in a
 *   fixed order, each with its own code). The only work done earlier is
 *   decoding the header (bounded by MAX_HEADER_BYTES) and, for a get, one
 *   index lookup to learn how many bytes the request moves.
 * - A put reserves quota, streams frames straight into the store's writer
 *   (awaiting each write is the backpressure), and commits, which checks the
 *   declared Merkle root. Every failure — bad frame, deadline, farmer
 *   stopping, wrong root — aborts the writer, so nothing half-written is ever
 *   visible; after a crash the store's start-up reconciliation removes temp
 *   files. Unconfirmed pieces carry an expiry and are collected by a timer,
 *   so an upload the renter abandoned (long-tail cancellation) frees its quota.
 * - Every stream has a whole-exchange deadline (PROTOCOL_TIMEOUT_MS), every
 *   frame an idle deadline, and `stop()` aborts every exchange in flight and
 *   waits for the handlers to unwind (writers aborted, files closed).
 * - A peer may hold at most MAX_CONCURRENT_STREAMS_PER_PEER dstor streams at
 *   once; more are reset at once. libp2p additionally caps streams per
 *   protocol per connection (maxInboundStreams) and connections overall.
 * - Errors go back as `{ ok: false, code, message }` with the DstorError code;
 *   anything that is not a DstorError is reported as INTERNAL without details.
 *
 * Lock order: the service holds no locks; the piece store serialises per-key
 * operations itself and the serial store's claim is atomic.
 */
import type { AbortOptions } from "../core/abort.js";
import { DstorError } from "../core/errors.js";
import { type Logger, silentLogger } from "../core/logging.js";
import { BufferPool } from "../crypto/bytes.js";
import { buildMerkleTree, type MerkleTree, merkleMultiproof, merkleProof, multiproofLength } from "../crypto/merkle.js";
import { type BorrowingByteSink, type ByteSink, type ByteSource, FrameReader, readData, writeBorrowedFrame, writeFrame } from "../protocol/codec.js";
import { DATA_FRAME_BYTES, FRAME_IDLE_TIMEOUT_MS, HEADER_TIMEOUT_MS, MAX_CONCURRENT_STREAMS_PER_PEER } from "../protocol/limits.js";
import {
  decodeAuditRequest,
  decodeDeleteRequest,
  decodeGetRequest,
  decodeInfoRequest,
  decodePutRequest,
  encodeAuditResponse,
  encodeDeleteResponse,
  encodeGetResponse,
  encodeInfoResponse,
  encodePutResponse,
  errorResponse,
  type PieceRequestBase,
  PROTOCOL_VERSION,
  readMessage,
  resolveGetRange,
  writeMessage,
} from "../protocol/messages.js";
import { type DealChecker, type OrderAction, OrderAction as Action, type VerifiedOrder, verifyOrder } from "../protocol/orders.js";
import {
  isDstorProtocolId,
  NODE_INFO_PROTOCOL,
  PIECE_AUDIT_PROTOCOL,
  PIECE_DELETE_PROTOCOL,
  PIECE_GET_PROTOCOL,
  PIECE_PUT_PROTOCOL,
  PROTOCOL_TIMEOUT_MS,
} from "../protocol/protocols.js";
import type { SerialStore } from "../protocol/serials.js";
import {
  DEAL_SIGN_PROTOCOL,
  DEAL_SIGN_TIMEOUT_MS,
  type DealStateSigner,
  decodeDealSignRequest,
  encodeDealSignResponse,
  MAX_DEAL_SIGN_REQUEST_BYTES,
} from "./deal-sign.js";
import { decodeEgressVoucherRequest, EGRESS_VOUCHER_PROTOCOL, encodeEgressVoucherResponse, MAX_EGRESS_MESSAGE_BYTES } from "../protocol/egress.js";
import type { EgressVoucherBook } from "./egress.js";
import { directIoBytes } from "./store/direct-io.js";
import type { PieceInfo, PieceStore, PieceWriter } from "./store/types.js";

/** A bidirectional byte stream as the handlers need it (a libp2p 3 stream fits). */
export interface FarmerStream extends ByteSource, ByteSink {
  /**
   * Optional. While on, the bytes this stream yields stay valid only until
   * its reader asks for more, so the transport may reuse their memory: the
   * code reading must copy whatever it keeps (a put copying into its disk
   * batches does). Direct connections implement it (src/node/bulk.ts).
   */
  transientReads?(on: boolean): void;
  /**
   * Optional, {@link BorrowingByteSink.sendBorrowed}: sends memory the
   * caller gets back. Direct connections implement it; without it every
   * chunk sent is fresh memory.
   */
  sendBorrowed?: BorrowingByteSink["sendBorrowed"];
  /** Closes our writing side once queued bytes are handed to the transport. */
  close(options?: AbortOptions): Promise<void>;
  /** Resets the stream at once. */
  abort(error: Error): void;
}

/**
 * Runs `read` with `stream`'s reads transient (see
 * {@link FarmerStream.transientReads}; a stream without it reads as always):
 * `read` must copy every byte it keeps before it asks for more.
 */
export async function withTransientReads<T>(stream: Partial<Pick<FarmerStream, "transientReads">>, read: () => Promise<T>): Promise<T> {
  stream.transientReads?.(true);
  try {
    return await read();
  } finally {
    stream.transientReads?.(false);
  }
}

function lendsMemory(stream: FarmerStream): stream is FarmerStream & BorrowingByteSink {
  return typeof stream.sendBorrowed === "function";
}

/** One protocol handler: serves one stream from the peer named `peer`. */
export type FarmerHandler = (stream: FarmerStream, peer: string) => Promise<void>;

/** Default time an unconfirmed piece is kept before it expires and frees its quota, in ms. */
export const DEFAULT_UNCONFIRMED_PIECE_TTL_MS = 60 * 60_000;

/** Interval of the expired-piece collector, in ms. */
export const EXPIRY_SWEEP_INTERVAL_MS = 60_000;

/**
 * Bytes a put writes to disk at once. Each write is a hand-off to libuv's
 * thread pool (a futex wake-up, two context switches), and on this virtual
 * machine hand-offs and wake-ups took about a seventh of a receiving
 * farmer's CPU with 256 KiB writes; 1 MiB cut the farmers' CPU per MB of
 * upload by about 5 % (0.0333/0.0315/0.0338 → 0.0319/0.0299/0.0316 in three
 * alternating bench:network pairs).
 */
const WRITE_BATCH_BYTES = 1024 * 1024;
/** A farmer that served no get for this long drops its pooled read buffers, in ms. */
const READ_BUFFERS_IDLE_MS = 30_000;
/** Longest a refused put keeps reading (and discarding) the renter's data before resetting, in ms. */
const REFUSED_DRAIN_MS = 5_000;

/** Piece trees kept for answering ranges and audits without rehashing. */
const TREE_CACHE_ENTRIES = 8;

/** Options of {@link FarmerService}. */
export interface FarmerServiceInit {
  store: PieceStore;
  serials: SerialStore;
  deals: DealChecker;
  /** Our chain id. */
  chainId: bigint;
  /** Our wallet address. */
  wallet: string;
  /** Our libp2p peer id (for info answers). */
  peerId: string;
  /** Price per TB-month in token units (for info answers). */
  priceTbMonth: bigint;
  /** Software version for info answers. */
  version: string;
  /** How long an unconfirmed piece lives, in ms (default {@link DEFAULT_UNCONFIRMED_PIECE_TTL_MS}). */
  unconfirmedPieceTtlMs?: number;
  /** Co-signs deal states on `/dstor/deal/sign/1`; without it that protocol is not served. */
  dealSigner?: DealStateSigner;
  /** Keeps renters' egress vouchers on `/dstor/deal/egress/1`; without it that protocol is not served. */
  egressVouchers?: EgressVoucherBook;
  /** Interval of the expiry sweep, in ms (default {@link EXPIRY_SWEEP_INTERVAL_MS}). */
  sweepIntervalMs?: number;
  /** Cap on concurrent dstor streams per peer (default {@link MAX_CONCURRENT_STREAMS_PER_PEER}). */
  maxStreamsPerPeer?: number;
  /** Whole-stream deadlines per protocol, in ms (defaults from protocols.ts; tests shorten them). */
  timeoutsMs?: Partial<Record<string, number>>;
  /** Clock in ms since the epoch (tests). Default Date.now. */
  now?: () => number;
  /**
   * Test hook (`--dev-refuse-reads`, dev chains only): refuse every get
   * while keeping the pieces and answering audits — the farmer the renter's
   * spot checks exist to catch.
   */
  refuseReads?: boolean;
  logger?: Logger;
}

/** Counters for logs and tests. */
export interface FarmerStats {
  /** Streams being served now. */
  active: number;
  /** Streams reset because a peer was over its concurrent stream cap. */
  refusedOverCap: number;
}

interface TreeEntry {
  root: string;
  tree: MerkleTree;
}

/** Serves the dstor piece protocols; see the module comment. */
export class FarmerService {
  readonly #init: FarmerServiceInit;
  readonly #log: Logger;
  readonly #now: () => number;
  readonly #ttlMs: number;
  readonly #maxPerPeer: number;
  readonly #stopController = new AbortController();
  readonly #inFlight = new Set<Promise<void>>();
  readonly #perPeer = new Map<string, number>();
  readonly #trees = new Map<string, TreeEntry>();
  /**
   * Batch buffers of {@link writeBatched}, kept for the next put (eight puts
   * at once without allocating): fresh batch buffers for every piece were a
   * source of page faults, which are dear on virtual machines. Aligned, so
   * that whole batches go to disk with direct I/O (store/direct-io.ts).
   */
  readonly #batchBuffers = new BufferPool(16 * WRITE_BATCH_BYTES, { allocate: directIoBytes });
  /**
   * Chunks of pieces being sent by gets (see #sendPieceData): a fresh
   * 256 KiB buffer per chunk cost page faults and drove the farmer into
   * full GCs (external memory), as received blocks did for puts. Aligned,
   * so that the store reads chunks into them with direct I/O.
   */
  readonly #readBuffers = new BufferPool(32 * DATA_FRAME_BYTES, { idleMs: READ_BUFFERS_IDLE_MS, allocate: directIoBytes });
  /**
   * Tree builds run one at a time: each reads a whole piece (up to 256 MiB)
   * into memory, so concurrent audits of large pieces must not multiply that.
   */
  #treeBuild: Promise<unknown> = Promise.resolve();
  #sweepTimer: NodeJS.Timeout | undefined;
  #sweeping: Promise<void> | undefined;
  #stopped: Promise<void> | undefined;
  #refusedOverCap = 0;

  constructor(init: FarmerServiceInit) {
    this.#init = init;
    this.#log = init.logger ?? silentLogger("dstor:farmer");
    this.#now = init.now ?? Date.now;
    this.#ttlMs = init.unconfirmedPieceTtlMs ?? DEFAULT_UNCONFIRMED_PIECE_TTL_MS;
    this.#maxPerPeer = init.maxStreamsPerPeer ?? MAX_CONCURRENT_STREAMS_PER_PEER;
    if (!Number.isSafeInteger(this.#ttlMs) || this.#ttlMs < 1) throw new DstorError("INVALID_ARGUMENT", "unconfirmedPieceTtlMs must be a positive integer");
  }

  /** Starts the expiry sweep (the store must already be started). */
  start(): void {
    if (this.#sweepTimer !== undefined || this.#stopped !== undefined) return;
    const interval = this.#init.sweepIntervalMs ?? EXPIRY_SWEEP_INTERVAL_MS;
    this.#sweepTimer = setInterval(() => void this.sweep(), interval);
    this.#sweepTimer.unref();
  }

  /** Removes expired unconfirmed pieces and expired serials now. Never throws. */
  sweep(): Promise<void> {
    this.#sweeping ??= (async () => {
      try {
        const removed = await this.#init.store.collectExpired(this.#now());
        for (const r of removed) this.#trees.delete(`${r.renter}/${r.pieceId}`);
        if (removed.length > 0) this.#log.info("expired unconfirmed pieces removed", { count: removed.length });
        await this.#init.serials.prune(Math.floor(this.#now() / 1000));
      } catch (error) {
        this.#log.warn("expiry sweep failed; will retry", { error: String(error) });
      } finally {
        this.#sweeping = undefined;
      }
    })();
    return this.#sweeping;
  }

  /** Current counters. */
  stats(): FarmerStats {
    return { active: this.#inFlight.size, refusedOverCap: this.#refusedOverCap };
  }

  /**
   * The handler of every protocol this farmer serves, keyed by protocol id:
   * the five dstor piece/info protocols, plus `/dstor/deal/sign/1` when a
   * deal signer is configured.
   */
  handlers(): Record<string, FarmerHandler> {
    const handlers: Record<string, FarmerHandler> = {
      [PIECE_PUT_PROTOCOL]: this.#wrap(PIECE_PUT_PROTOCOL, (s, sig) => this.#put(s, sig)),
      [PIECE_GET_PROTOCOL]: this.#wrap(PIECE_GET_PROTOCOL, (s, sig) => this.#get(s, sig)),
      [PIECE_AUDIT_PROTOCOL]: this.#wrap(PIECE_AUDIT_PROTOCOL, (s, sig) => this.#audit(s, sig)),
      [PIECE_DELETE_PROTOCOL]: this.#wrap(PIECE_DELETE_PROTOCOL, (s, sig) => this.#delete(s, sig)),
      [NODE_INFO_PROTOCOL]: this.#wrap(NODE_INFO_PROTOCOL, (s, sig) => this.#info(s, sig)),
    };
    const signer = this.#init.dealSigner;
    if (signer !== undefined) handlers[DEAL_SIGN_PROTOCOL] = this.#wrap(DEAL_SIGN_PROTOCOL, (s, sig) => this.#dealSign(s, sig, signer));
    const vouchers = this.#init.egressVouchers;
    if (vouchers !== undefined) handlers[EGRESS_VOUCHER_PROTOCOL] = this.#wrap(EGRESS_VOUCHER_PROTOCOL, (s, sig) => this.#egress(s, sig, vouchers));
    return handlers;
  }

  /** Bytes of get read buffers waiting in the pool for reuse (tests and status). */
  get freeReadBufferBytes(): number {
    return this.#readBuffers.freeBytes;
  }

  /**
   * Stops serving: aborts every exchange in flight (open uploads are aborted,
   * never committed half-way), waits for the handlers to finish and stops the
   * sweep. Idempotent. The stores are owned and closed by the caller.
   */
  stop(): Promise<void> {
    this.#stopped ??= (async () => {
      if (this.#sweepTimer !== undefined) clearInterval(this.#sweepTimer);
      this.#stopController.abort(new DstorError("ABORTED", "the farmer is shutting down; retry with another farmer or later"));
      await Promise.allSettled([...this.#inFlight]);
      await this.#sweeping;
      this.#trees.clear();
    })();
    return this.#stopped;
  }

  /** Adds the per-peer cap, the deadline, the stop signal and error reporting around a handler. */
  #wrap(protocol: string, body: (stream: FarmerStream, signal: AbortSignal) => Promise<void>): FarmerHandler {
    return async (stream, peer) => {
      if (this.#stopController.signal.aborted) {
        stream.abort(new Error("farmer is stopping"));
        return;
      }
      const count = this.#perPeer.get(peer) ?? 0;
      if (count >= this.#maxPerPeer) {
        this.#refusedOverCap++;
        stream.abort(new Error("too many concurrent streams from this peer"));
        return;
      }
      this.#perPeer.set(peer, count + 1);
      const timeoutMs =
        this.#init.timeoutsMs?.[protocol] ?? (isDstorProtocolId(protocol) ? PROTOCOL_TIMEOUT_MS[protocol] : DEAL_SIGN_TIMEOUT_MS);
      const deadline = new AbortController();
      const timer = setTimeout(() => {
        deadline.abort(new DstorError("TIMEOUT", `the ${protocol} exchange did not finish within ${timeoutMs} ms`));
      }, timeoutMs);
      const signal = AbortSignal.any([this.#stopController.signal, deadline.signal]);
      const run = (async () => {
        try {
          await body(stream, signal);
        } catch (error) {
          // Handlers answer coded errors themselves; what reaches here is a
          // broken stream (reset, deadline). Reset our side and move on.
          this.#log.debug("stream ended with an error", { protocol, peer, error: String(error) });
          stream.abort(error instanceof Error ? error : new Error(String(error)));
        } finally {
          clearTimeout(timer);
          const left = (this.#perPeer.get(peer) ?? 1) - 1;
          if (left <= 0) this.#perPeer.delete(peer);
          else this.#perPeer.set(peer, left);
        }
      })();
      this.#inFlight.add(run);
      try {
        await run;
      } finally {
        this.#inFlight.delete(run);
      }
    };
  }

  /** Checks a request's order; throws the order's error code. */
  #verify(req: PieceRequestBase, action: OrderAction, bytes: number, signal: AbortSignal): Promise<VerifiedOrder> {
    return verifyOrder(
      { order: req.order, signature: req.signature },
      {
        chainId: this.#init.chainId,
        farmerAddress: this.#init.wallet,
        nowSeconds: Math.floor(this.#now() / 1000),
        expectedAction: action,
        expectedPieceId: req.pieceId,
        bytesRequested: bytes,
        serials: this.#init.serials,
        deals: this.#init.deals,
        signal,
      },
    );
  }

  /** Sends an error answer and closes; a broken stream is reset instead. */
  async #refuse(stream: FarmerStream, encode: (e: ReturnType<typeof errorResponse>) => Uint8Array, error: unknown, signal: AbortSignal): Promise<void> {
    if (!(error instanceof DstorError)) this.#log.warn("request failed unexpectedly", { error: String(error) });
    else this.#log.debug("request refused", { code: error.code, message: error.message });
    if (signal.aborted) {
      stream.abort(error instanceof Error ? error : new Error(String(error)));
      return;
    }
    await writeMessage(stream, encode(errorResponse(error)), { signal });
    await stream.close({ signal });
  }

  async #put(stream: FarmerStream, signal: AbortSignal): Promise<void> {
    const reader = new FrameReader(stream);
    let writer: Awaited<ReturnType<PieceStore["reserve"]>> | undefined;
    try {
      // Every read of a put is transient (the request is decoded and the
      // piece copied into batches before more is asked for), from the first
      // byte to the renter's end, which it sends right after the piece: so a
      // transport that recycles its receive memory gets all of it back.
      const { req, renter, piece } = await withTransientReads(stream, async () => {
        const req = await readMessage(reader, decodePutRequest, { signal });
        const { renter } = await this.#verify(req, Action.Put, req.size, signal);
        const piece = await this.#init.store.reserve(
          renter,
          req.pieceId,
          req.size,
          { root: Buffer.from(req.root, "hex"), dealId: req.order.dealId, expiresAt: this.#now() + this.#ttlMs },
          { signal },
        );
        writer = piece;
        await writeBatched(piece, readData(reader, req.size, { signal, frameTimeoutMs: FRAME_IDLE_TIMEOUT_MS }), this.#batchBuffers);
        await reader.readEnd({ signal, timeoutMs: FRAME_IDLE_TIMEOUT_MS });
        return { req, renter, piece };
      });
      await piece.commit();
      writer = undefined;
      this.#log.debug("piece stored", { renter, pieceId: req.pieceId, size: req.size });
      await writeMessage(stream, encodePutResponse({ v: PROTOCOL_VERSION, ok: true }), { signal });
      await stream.close({ signal });
    } catch (error) {
      if (writer !== undefined) await writer.abort();
      await this.#refuse(stream, encodePutResponse, error, signal);
      // The renter may still be sending; read and drop for a moment so the
      // answer is not lost to a reset, then reset.
      await drain(reader, signal);
      stream.abort(new Error("put refused"));
    } finally {
      reader.close();
    }
  }

  async #get(stream: FarmerStream, signal: AbortSignal): Promise<void> {
    const reader = new FrameReader(stream);
    try {
      const req = await readMessage(reader, decodeGetRequest, { signal });
      // One index lookup to learn how many bytes the request moves; the owner
      // named by the (not yet verified) order is only used as a lookup key.
      const info = await this.#init.store.stat(req.order.renter, req.pieceId, { signal });
      let range: ReturnType<typeof resolveGetRange> | undefined;
      let rangeError: unknown;
      if (info !== undefined) {
        try {
          range = resolveGetRange(info.size, req.offset, req.length);
        } catch (error) {
          rangeError = error;
        }
      }
      const { renter } = await this.#verify(req, Action.Get, range === undefined ? 0 : range.end - range.start, signal);
      if (this.#init.refuseReads === true) throw new DstorError("NOT_PERMITTED", "this farmer refuses reads (--dev-refuse-reads test hook)");
      if (info === undefined) throw new DstorError("PIECE_NOT_FOUND", "this farmer does not hold that piece for you");
      if (range === undefined) throw rangeError;
      const proofLength = multiproofLength(range.leafCount, range.startLeaf, range.endLeaf);
      const proof =
        proofLength === 0 ? [] : merkleMultiproof(await this.#tree(renter, req.pieceId, info, { signal }), range.startLeaf, range.endLeaf);
      await writeMessage(
        stream,
        encodeGetResponse({
          v: PROTOCOL_VERSION,
          ok: true,
          size: info.size,
          root: Buffer.from(info.root).toString("hex"),
          startLeaf: range.startLeaf,
          endLeaf: range.endLeaf,
          proof: proof.map((h) => Buffer.from(h).toString("hex")),
          leafCount: range.leafCount,
        }),
        { signal },
      );
      const length = range.end - range.start;
      if (length > 0) await this.#sendPieceData(stream, renter, req.pieceId, range.start, length, signal);
      await stream.close({ signal });
    } catch (error) {
      if (isStreamFailure(error)) throw error;
      await this.#refuse(stream, encodeGetResponse, error, signal);
    } finally {
      reader.close();
    }
  }

  /**
   * Streams bytes [offset, offset + length) of a piece as data frames. On a
   * stream that can send borrowed memory, each chunk is read into a buffer
   * of {@link #readBuffers} that comes back once the socket has sent it.
   */
  async #sendPieceData(stream: FarmerStream, renter: string, pieceId: string, offset: number, length: number, signal: AbortSignal): Promise<void> {
    const frame = { signal, timeoutMs: FRAME_IDLE_TIMEOUT_MS };
    const chunks = { offset, length, chunkSize: DATA_FRAME_BYTES, signal };
    if (!lendsMemory(stream)) {
      for await (const chunk of this.#init.store.readStream(renter, pieceId, chunks)) await writeFrame(stream, chunk, frame);
      return;
    }
    const pool = this.#readBuffers;
    let taken: Uint8Array | undefined;
    const buffer = (): Uint8Array => {
      taken = pool.take(DATA_FRAME_BYTES);
      return taken;
    };
    for await (const chunk of this.#init.store.readStream(renter, pieceId, { ...chunks, buffer })) {
      const whole = taken!;
      taken = undefined;
      await writeBorrowedFrame(stream, chunk, () => pool.give([whole]), frame);
    }
  }

  async #audit(stream: FarmerStream, signal: AbortSignal): Promise<void> {
    const reader = new FrameReader(stream);
    try {
      const req = await readMessage(reader, decodeAuditRequest, { signal });
      const { renter } = await this.#verify(req, Action.Audit, 0, signal);
      const info = await this.#init.store.stat(renter, req.pieceId, { signal });
      if (info === undefined) throw new DstorError("PIECE_NOT_FOUND", "this farmer does not hold that piece for you");
      const tree = await this.#tree(renter, req.pieceId, info, { signal });
      if (req.leafIndex >= tree.leafCount) {
        throw new DstorError("INVALID_ARGUMENT", `leaf ${req.leafIndex} is past the last leaf (${tree.leafCount - 1}) of the piece`);
      }
      const start = req.leafIndex * 1024;
      const leaf = await this.#init.store.read(renter, req.pieceId, start, Math.min(1024, info.size - start), { signal });
      const proof = merkleProof(tree, req.leafIndex).map((h) => Buffer.from(h).toString("hex"));
      await writeMessage(stream, encodeAuditResponse({ v: PROTOCOL_VERSION, ok: true, leaf, proof, leafCount: tree.leafCount }), { signal });
      await stream.close({ signal });
    } catch (error) {
      if (isStreamFailure(error)) throw error;
      await this.#refuse(stream, encodeAuditResponse, error, signal);
    } finally {
      reader.close();
    }
  }

  async #delete(stream: FarmerStream, signal: AbortSignal): Promise<void> {
    const reader = new FrameReader(stream);
    try {
      const req = await readMessage(reader, decodeDeleteRequest, { signal });
      const { renter } = await this.#verify(req, Action.Delete, 0, signal);
      // A confirmed piece is part of a co-signed deal state the renter may
      // still submit and audit against; it goes only once a newer co-signed
      // state without it exists.
      const info = await this.#init.store.stat(renter, req.pieceId, { signal });
      if (info?.confirmed === true && this.#init.dealSigner?.isReleased(info.dealId, req.pieceId) !== true) {
        throw new DstorError(
          "INVALID_ARGUMENT",
          "the piece is in the latest co-signed deal state; have a state without it co-signed first, then delete it",
        );
      }
      await this.#init.store.delete(renter, req.pieceId, { signal });
      this.#trees.delete(`${renter}/${req.pieceId}`);
      await writeMessage(stream, encodeDeleteResponse({ v: PROTOCOL_VERSION, ok: true }), { signal });
      await stream.close({ signal });
    } catch (error) {
      if (isStreamFailure(error)) throw error;
      await this.#refuse(stream, encodeDeleteResponse, error, signal);
    } finally {
      reader.close();
    }
  }

  async #info(stream: FarmerStream, signal: AbortSignal): Promise<void> {
    const reader = new FrameReader(stream);
    try {
      await readMessage(reader, decodeInfoRequest, { signal });
      const usage = this.#init.store.usage();
      await writeMessage(
        stream,
        encodeInfoResponse({
          v: PROTOCOL_VERSION,
          version: this.#init.version,
          peerId: this.#init.peerId,
          wallet: this.#init.wallet.toLowerCase(),
          capacity: BigInt(usage.quota),
          free: BigInt(usage.free),
          priceTbMonth: this.#init.priceTbMonth,
          chainId: this.#init.chainId,
        }),
        { signal },
      );
      await stream.close({ signal });
    } catch (error) {
      if (isStreamFailure(error)) throw error;
      // Info answers have no error form; a bad request just ends the stream.
      stream.abort(error instanceof Error ? error : new Error(String(error)));
    } finally {
      reader.close();
    }
  }

  async #dealSign(stream: FarmerStream, signal: AbortSignal, signer: DealStateSigner): Promise<void> {
    const reader = new FrameReader(stream, { maxFrameBytes: MAX_DEAL_SIGN_REQUEST_BYTES });
    try {
      const frame = await reader.readFrame({ signal, timeoutMs: HEADER_TIMEOUT_MS, maxBytes: MAX_DEAL_SIGN_REQUEST_BYTES });
      const request = decodeDealSignRequest(frame);
      const farmerSignature = await signer.sign(request, { signal });
      await writeMessage(stream, encodeDealSignResponse({ v: PROTOCOL_VERSION, ok: true, farmerSignature }), { signal });
      await stream.close({ signal });
    } catch (error) {
      if (isStreamFailure(error)) throw error;
      await this.#refuse(stream, encodeDealSignResponse, error, signal);
    } finally {
      reader.close();
    }
  }

  async #egress(stream: FarmerStream, signal: AbortSignal, vouchers: EgressVoucherBook): Promise<void> {
    const reader = new FrameReader(stream, { maxFrameBytes: MAX_EGRESS_MESSAGE_BYTES });
    try {
      const frame = await reader.readFrame({ signal, timeoutMs: HEADER_TIMEOUT_MS, maxBytes: MAX_EGRESS_MESSAGE_BYTES });
      const answer = await vouchers.accept(decodeEgressVoucherRequest(frame), { signal });
      await writeMessage(stream, encodeEgressVoucherResponse(answer), { signal });
      await stream.close({ signal });
    } catch (error) {
      if (isStreamFailure(error)) throw error;
      await this.#refuse(stream, encodeEgressVoucherResponse, error, signal);
    } finally {
      reader.close();
    }
  }

  /**
   * The Merkle tree of a stored piece, from a small cache or by reading and
   * hashing the piece. A tree whose root differs from the index is
   * `STORE_CORRUPT` (bit rot): we must not serve proofs that cannot verify.
   */
  async #tree(renter: string, pieceId: string, info: PieceInfo, options: AbortOptions): Promise<MerkleTree> {
    const key = `${renter}/${pieceId}`;
    const rootHex = Buffer.from(info.root).toString("hex");
    const cached = this.#trees.get(key);
    if (cached !== undefined && cached.root === rootHex) {
      this.#trees.delete(key);
      this.#trees.set(key, cached);
      return cached.tree;
    }
    const build = this.#treeBuild.then(
      async () => buildMerkleTree(await this.#init.store.read(renter, pieceId, 0, info.size, options)),
      async () => buildMerkleTree(await this.#init.store.read(renter, pieceId, 0, info.size, options)),
    );
    this.#treeBuild = build.catch(() => {});
    const tree = await build;
    if (Buffer.from(tree.root).toString("hex") !== rootHex) {
      this.#log.error("stored piece does not match its root", { renter, pieceId });
      throw new DstorError("STORE_CORRUPT", "the stored piece is damaged; repair it from other farmers");
    }
    this.#trees.set(key, { root: rootHex, tree });
    while (this.#trees.size > TREE_CACHE_ENTRIES) {
      const oldest = this.#trees.keys().next().value;
      if (oldest === undefined) break;
      this.#trees.delete(oldest);
    }
    return tree;
  }
}

/** True for failures of the stream itself (reset, deadline, stop), where no answer can be sent. */
function isStreamFailure(error: unknown): boolean {
  return error instanceof DstorError && (error.code === "ABORTED" || error.code === "TIMEOUT");
}

/**
 * Writes `parts` (network-sized pieces of a piece's bytes) to `writer` in
 * batches of {@link WRITE_BATCH_BYTES}: fewer, larger disk writes than network
 * chunks. Two batch buffers alternate, so the next one fills from the network
 * while the last one is written; a buffer is reused (here or, once both
 * writes settled, by the next put) only once its write settled (the writer's
 * contract).
 */
async function writeBatched(writer: PieceWriter, parts: AsyncIterable<Uint8Array>, pool: BufferPool): Promise<void> {
  const buffers = [pool.take(WRITE_BATCH_BYTES), pool.take(WRITE_BATCH_BYTES)];
  const writes: (Promise<void> | undefined)[] = [undefined, undefined];
  let current = 0;
  let fill = 0;
  const flush = async (): Promise<void> => {
    const write = writer.write(buffers[current]!.subarray(0, fill));
    write.catch(() => {}); // awaited below or at the end; never left unhandled
    writes[current] = write;
    current ^= 1;
    fill = 0;
    await writes[current];
    writes[current] = undefined;
  };
  try {
    for await (const part of parts) {
      for (let at = 0; at < part.byteLength; ) {
        const take = Math.min(WRITE_BATCH_BYTES - fill, part.byteLength - at);
        buffers[current]!.set(part.subarray(at, at + take), fill);
        fill += take;
        at += take;
        if (fill === WRITE_BATCH_BYTES) await flush();
      }
    }
    if (fill > 0) await flush();
    await Promise.all(writes);
  } finally {
    await Promise.allSettled(writes);
    pool.give(buffers);
  }
}

/**
 * Reads and discards frames (each at most MAX_FRAME_BYTES, as always) for up
 * to REFUSED_DRAIN_MS, so an early answer reaches a renter that is still
 * sending. A reader that already failed returns at once.
 */
async function drain(reader: FrameReader, signal: AbortSignal): Promise<void> {
  const deadline = AbortSignal.any([signal, AbortSignal.timeout(REFUSED_DRAIN_MS)]);
  try {
    while ((await reader.next({ signal: deadline })) !== null) {
      // discard
    }
  } catch {
    // A broken or timed-out stream is what we are about to reset anyway.
  }
}
