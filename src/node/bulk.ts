/**
 * Direct transfers: piece bytes between a renter and a farmer over a plain
 * TLS 1.3 connection, next to (not instead of) libp2p.
 *
 * Why: moving a byte through libp2p costs its receiver about 0.0095 CPU-s
 * per MB on this machine (TLS through a JS stream wrapper, yamux, the
 * message-stream layers), a plain Node TLS socket about 0.0015 (measured
 * with 256 MiB over loopback, receiver only counting bytes). Pieces are most
 * of what the network moves, so the farmer and the renter spent most of
 * their CPU in the stack rather than on the data.
 *
 * How, and why it is as safe as libp2p:
 * - The renter asks the farmer over libp2p (`/dstor/bulk/1`, on the
 *   connection already authenticated to the farmer's peer id) for a ticket:
 *   the port of the farmer's direct listener, a random PSK identity and a
 *   random 32-byte key. Only that farmer and that renter know the key.
 * - The renter connects to the farmer's address (the libp2p dial address)
 *   at that port with TLS 1.3 in PSK mode (psk_dhe_ke: ECDHE for forward
 *   secrecy, the PSK for mutual authentication). The farmer learns the
 *   renter's peer id from the ticket; the renter knows it reached the farmer
 *   because nobody else could complete the handshake. No certificates.
 * - Inside, exchanges run one at a time per connection, each as on a libp2p
 *   stream: the client opens it with the protocol id, then both sides send
 *   data and each half-closes with an END. A protocol violation or an abort
 *   destroys the connection (a reset). Completed connections are pooled.
 * - The farmer serves the very same handlers (FarmerService) as over libp2p,
 *   with the same per-peer caps and deadlines; orders are verified the same.
 * - Anything failing before an exchange starts (no ticket protocol on an old
 *   farmer, port unreachable, handshake refused) makes the renter use libp2p
 *   for that farmer for a while: direct transfers are an optimisation only.
 *
 * Wire format of one connection, after the TLS handshake (big-endian):
 *   OPEN  = 0x01 ‖ u16 length ‖ protocol id (UTF-8)   client → farmer only
 *   DATA  = 0x02 ‖ u32 length ‖ bytes                  both ways
 *   END   = 0x03                                       both ways (half-close)
 */
import { randomBytes } from "node:crypto";
import net, { type OnReadOpts, type Server } from "node:net";
import tls from "node:tls";
import type { PeerId, Stream } from "@libp2p/interface";
import { type Multiaddr, multiaddr } from "@multiformats/multiaddr";
import type { AbortOptions } from "../core/abort.js";
import { DstorError } from "../core/errors.js";
import { BufferPool, uninitializedBytes } from "../crypto/bytes.js";
import { type Logger, silentLogger } from "../core/logging.js";
import type { StreamDialer } from "../farmer/client.js";
import type { FarmerHandler, FarmerStream } from "../farmer/service.js";
import { peerOf } from "./discovery.js";
import { type ByteSink, type ByteSource, FrameReader, writeFrame } from "../protocol/codec.js";
import { PIECE_GET_PROTOCOL, PIECE_PUT_PROTOCOL } from "../protocol/protocols.js";

/** libp2p protocol that hands out direct-transfer tickets. */
export const BULK_TICKET_PROTOCOL = "/dstor/bulk/1";

/** Protocols the renter sends over direct connections (the ones that move piece bytes). */
export const BULK_PROTOCOLS: readonly string[] = [PIECE_PUT_PROTOCOL, PIECE_GET_PROTOCOL];

/** TLS 1.3 suites, fastest with AES-NI first. Both use SHA-256, as the PSK requires. */
const CIPHERS = "TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256";

/** Message types of the wire format (see the module comment). */
const OPEN = 0x01;
const DATA = 0x02;
const END = 0x03;

/** Longest protocol id in an OPEN. */
const MAX_PROTOCOL_ID_BYTES = 256;
/** Largest DATA message accepted (the codec's frames are at most 256 KiB plus a prefix). */
const MAX_DATA_BYTES = 4 * 1024 * 1024;
/** Received bytes an exchange buffers before the connection stops reading. */
const READ_HIGH_WATER_BYTES = 2 * 1024 * 1024;
/**
 * Both ends read into one reused buffer of this size per connection (the
 * renter through `tls.connect`'s `onread`, the farmer through
 * {@link readIntoReusedBuffer}) instead of getting a new Buffer and a trip
 * through Node's Readable machinery for every TLS record (at most 16 KiB);
 * received payload is copied out into blocks (one allocation per block).
 */
const READ_BUFFER_BYTES = 64 * 1024;
/** See {@link READ_BUFFER_BYTES}; below glibc's mmap threshold, so blocks come from (reused) heap memory. */
const COPY_BLOCK_BYTES = 64 * 1024;
/**
 * Free copy blocks kept for transient reads, across a farmer's connections
 * (or a renter's): about what eight puts (gets) in flight hold, each up to
 * READ_HIGH_WATER_BYTES queued plus what its reader has in hand.
 */
const BLOCK_POOL_BYTES = 24 * 1024 * 1024;
/** A block pool unused this long drops its blocks, in ms. */
const BLOCK_POOL_IDLE_MS = 30_000;
/** Bytes queued in the socket before `send` asks the writer to wait. */
const WRITE_HIGH_WATER_BYTES = 1024 * 1024;
/** Bytes a finished exchange may still receive (and drop) while waiting for the peer's END. */
const MAX_DISCARD_BYTES = 8 * 1024 * 1024;

/** Handshake deadline, in ms. */
export const BULK_HANDSHAKE_TIMEOUT_MS = 10_000;
/** A renter closes a pooled connection idle this long, in ms. */
export const BULK_CLIENT_IDLE_MS = 60_000;
/** A farmer closes a connection idle this long (longer than the client's, so the client closes first), in ms. */
export const BULK_SERVER_IDLE_MS = 5 * 60_000;
/** Default cap on a farmer's direct connections. */
export const DEFAULT_MAX_BULK_CONNECTIONS = 512;
/** Cap on one peer's direct connections to a farmer. */
export const MAX_BULK_CONNECTIONS_PER_PEER = 32;
/** Tickets a farmer remembers (oldest forgotten first). */
const MAX_TICKETS = 4096;
/** How long a renter uses libp2p for a farmer after direct transfers to it failed to start, in ms. */
const FALLBACK_MS = 60_000;
/** Ticket exchange deadline, in ms. */
const TICKET_TIMEOUT_MS = 10_000;

/** A farmer's answer to a ticket request. */
export interface BulkTicket {
  port: number;
  /** PSK identity (hex). */
  identity: string;
  /** 32-byte PSK (hex). */
  key: string;
}

function bulkError(message: string): DstorError {
  return new DstorError("MESSAGE_MALFORMED", `direct transfer: ${message}`);
}

/** Node's symbols behind `onread` (`kBuffer`, `kBufferCb` of net.Socket), looked up once; null if this Node has none. */
let onreadSymbols: { buffer: symbol; callback: symbol } | null | undefined;

function findOnreadSymbols(): { buffer: symbol; callback: symbol } | null {
  if (onreadSymbols === undefined) {
    // An unconnected socket made with `onread` carries them; it opens nothing.
    const probe = new net.Socket({ onread: { buffer: Buffer.alloc(1), callback: () => true } });
    const symbols = Object.getOwnPropertySymbols(probe);
    const buffer = symbols.find((s) => s.description === "kBuffer");
    const callback = symbols.find((s) => s.description === "kBufferCb");
    onreadSymbols = buffer !== undefined && callback !== undefined ? { buffer, callback } : null;
  }
  return onreadSymbols;
}

/** TLS socket internals {@link readIntoReusedBuffer} uses. */
type AcceptedTlsSocket = tls.TLSSocket & { _handle?: { useUserBuffer?: (buffer: Uint8Array) => void } | null };

/** Whether {@link readIntoReusedBuffer} works for this accepted socket on this Node. */
function canReadIntoReusedBuffer(socket: tls.TLSSocket): boolean {
  return findOnreadSymbols() !== null && typeof (socket as AcceptedTlsSocket)._handle?.useUserBuffer === "function";
}

/**
 * Makes a TLS socket accepted by a tls.Server read into one reused buffer,
 * as `onread` does for sockets Node connects itself (Node passes `onread`
 * only to a TLSSocket that owns its TCP handle). It sets what net.Socket's
 * constructor sets for `onread` and gives the TLS handle the buffer
 * (`useUserBuffer`, the same StreamBase call Node makes), so every decrypted
 * record is copied into that buffer and handed to `receive`, with no Buffer
 * or Readable push per record. A farmer's CPU per MB of upload in
 * `bench:network`, three alternating pairs: 0.0452 / 0.0386 / 0.0357 with
 * `data` events, 0.0403 / 0.0303 / 0.0308 with this. Call only where
 * {@link canReadIntoReusedBuffer} is true.
 */
function readIntoReusedBuffer(socket: tls.TLSSocket, receive: (bytes: Uint8Array) => void): void {
  const symbols = findOnreadSymbols();
  const handle = (socket as AcceptedTlsSocket)._handle;
  if (symbols === null || typeof handle?.useUserBuffer !== "function") throw new DstorError("INTERNAL", "reused reads are not available");
  const buffer = Buffer.allocUnsafe(READ_BUFFER_BYTES);
  const fields = socket as unknown as Record<symbol, unknown>;
  fields[symbols.buffer] = buffer;
  fields[symbols.callback] = (bytes: number, into: Uint8Array): boolean => {
    receive(into.subarray(0, bytes));
    return true;
  };
  handle.useUserBuffer(buffer);
  // Records decrypted before the switch would wait in the Readable buffer.
  // Node emits `secureConnection` before it decrypts what follows the
  // handshake (even data sent along with the client's Finished), so this
  // finds none today; it keeps such bytes from being stranded if that changes.
  for (let chunk = socket.read() as Buffer | null; chunk !== null; chunk = socket.read() as Buffer | null) receive(chunk);
}

/** A block of {@link CopyBlocks}: where its bytes lie in the connection's count of copied bytes. */
interface CopyBlock {
  bytes: Uint8Array;
  start: number;
  /** Position after its last byte, once it is full (Infinity while it is being filled). */
  end: number;
  /** Goes back to the pool once read past. */
  pooled: boolean;
}

/**
 * Copies bytes out of a reused read buffer into shared blocks: one block per
 * 64 KiB, not a Buffer per TLS record (exported for its tests). Blocks are
 * taken from the connection's pool, if it has one. Positions count the bytes
 * copied on the connection. While the exchange's reader declares its reads
 * transient ({@link BulkExchange.transientReads}), blocks nobody has seen a
 * byte of go back to the pool once the reader has moved past them; any
 * other block is left to the garbage collector.
 */
export class CopyBlocks {
  #current: CopyBlock | undefined;
  #used = 0;
  #copied = 0;
  /** Where blocks come from (when given): every block is taken from it, but only recycled ones go back. */
  readonly #pool: BufferPool | undefined;
  #recycling = false;
  /** Full blocks the reader may not have moved past yet, oldest first. */
  #filled: CopyBlock[] = [];

  constructor(pool?: BufferPool) {
    this.#pool = pool;
  }

  /** Bytes copied so far: the position after the last one. */
  get copied(): number {
    return this.#copied;
  }

  copy(bytes: Uint8Array): Uint8Array {
    let block = this.#current;
    if (block === undefined || block.bytes.byteLength - this.#used < bytes.byteLength) {
      this.#retire();
      // A pool buffer that is never given back is simply the garbage collector's.
      const fromPool = this.#pool !== undefined && bytes.byteLength <= COPY_BLOCK_BYTES;
      const fresh = fromPool ? this.#pool!.take(COPY_BLOCK_BYTES) : uninitializedBytes(Math.max(COPY_BLOCK_BYTES, bytes.byteLength));
      block = { bytes: fresh, start: this.#copied, end: Number.POSITIVE_INFINITY, pooled: this.#recycling && fromPool };
      this.#current = block;
      this.#used = 0;
    }
    const view = block.bytes.subarray(this.#used, this.#used + bytes.byteLength);
    view.set(bytes);
    this.#used += bytes.byteLength;
    this.#copied += bytes.byteLength;
    return view;
  }

  #retire(): void {
    const block = this.#current;
    if (block === undefined) return;
    block.end = this.#copied;
    this.#filled.push(block);
    this.#current = undefined;
  }

  /**
   * Starts recycling: blocks whose bytes all lie at or after position `from`
   * (nothing before it was handed to a reader) will go back to the pool; a
   * current block that started earlier is left unfilled.
   */
  startRecycling(from: number): void {
    if (this.#pool === undefined) return;
    this.#recycling = true;
    const adopt = (block: CopyBlock): boolean => block.start >= from && block.bytes.byteLength === COPY_BLOCK_BYTES;
    for (const block of this.#filled) if (adopt(block)) block.pooled = true;
    if (this.#current !== undefined) {
      if (adopt(this.#current)) this.#current.pooled = true;
      else this.#retire();
    }
  }

  /** Stops recycling: blocks still lent (and the current one) are the garbage collector's from now on. */
  stopRecycling(): void {
    this.#recycling = false;
    for (const block of this.#filled) block.pooled = false;
    if (this.#current !== undefined) this.#current.pooled = false;
  }

  /**
   * Nobody reads the bytes before position `through` any more: full blocks
   * within them are let go, recycled ones back to the pool. When that is
   * every byte copied and the block being filled is a recycled one, it is
   * filled again from its start.
   */
  release(through: number): void {
    let n = 0;
    while (n < this.#filled.length && this.#filled[n]!.end <= through) n++;
    if (n > 0) {
      const done = this.#filled.splice(0, n);
      this.#pool?.give(done.filter((block) => block.pooled).map((block) => block.bytes));
    }
    const current = this.#current;
    if (current?.pooled && through >= this.#copied) {
      current.start = this.#copied;
      this.#used = 0;
    }
  }

  /**
   * A new exchange begins: its bytes go into blocks of their own, so that
   * whether they are recycled does not depend on what the last exchange's
   * reader kept (a block holding nothing yet is kept for them).
   */
  beginExchange(): void {
    if (this.#used > 0) this.#retire();
  }
}

/**
 * One TLS connection carrying exchanges one at a time. Parses incoming
 * messages as they arrive and hands them to the current exchange.
 *
 * Connections read into one reused buffer ({@link READ_BUFFER_BYTES}): the
 * owner passes each read to {@link BulkConnection.receiveReused}, and payload
 * bytes are copied out. A server connection on a Node without the internals
 * {@link readIntoReusedBuffer} needs receives through `data` events instead
 * (each chunk its own Buffer, handed on as views).
 */
class BulkConnection {
  readonly socket: tls.TLSSocket;
  /** The exchange receiving DATA and END now, if any. */
  #current: BulkExchange | undefined;
  /** Called with the protocol id of each OPEN (server side). */
  onOpen: ((protocol: string) => void) | undefined;
  #header = Buffer.alloc(5);
  #headerHave = 0;
  #headerNeed = 1;
  /** Payload bytes left of the DATA being received. */
  #dataLeft = 0;
  /** The protocol id of an OPEN being received, and how much of it has arrived. */
  #openId: Buffer | undefined;
  #openHave = 0;
  #failure: Error | undefined;
  #closeListeners = new Set<(error: Error) => void>();
  /** Set when reads arrive in a reused buffer: payload must be copied before it is queued. */
  readonly #copies: CopyBlocks | undefined;

  constructor(socket: tls.TLSSocket, options: { reusedReads?: boolean; blockPool?: BufferPool } = {}) {
    this.socket = socket;
    socket.setNoDelay(true);
    if (options.reusedReads === true) this.#copies = new CopyBlocks(options.blockPool);
    else socket.on("data", (chunk: Buffer) => this.#receive(chunk));
    socket.on("end", () => this.#fail(new DstorError("FARMER_UNREACHABLE", "direct connection closed by the peer")));
    socket.on("error", (error) => this.#fail(error));
    socket.on("close", () => this.#fail(new DstorError("FARMER_UNREACHABLE", "direct connection closed")));
    // Idle deadlines are armed with socket.setTimeout(ms) by the owner.
    socket.on("timeout", () => this.destroy(new DstorError("TIMEOUT", "direct connection idle")));
  }

  get failed(): boolean {
    return this.#failure !== undefined;
  }

  /** Runs `listener` once the connection fails or closes (at once if it already has). */
  onClose(listener: (error: Error) => void): () => void {
    if (this.#failure !== undefined) {
      listener(this.#failure);
      return () => {};
    }
    this.#closeListeners.add(listener);
    return () => this.#closeListeners.delete(listener);
  }

  /** Resets the connection (an abort or a protocol violation). */
  destroy(error: Error): void {
    this.#fail(error);
    this.socket.destroy();
  }

  /** Starts a new exchange on this connection. */
  begin(): BulkExchange {
    // An exchange on a dead connection would wait forever for bytes.
    if (this.#failure !== undefined) throw this.#failure;
    if (this.#current !== undefined && !this.#current.complete) throw new DstorError("INTERNAL", "a direct exchange is still running on this connection");
    this.#copies?.stopRecycling();
    this.#copies?.beginExchange();
    this.#current = new BulkExchange(this, this.#copies?.copied ?? 0);
    return this.#current;
  }

  /** Sends an OPEN for `protocol`. */
  sendOpen(protocol: string): void {
    const id = Buffer.from(protocol, "utf8");
    if (id.byteLength > MAX_PROTOCOL_ID_BYTES) throw new DstorError("INVALID_ARGUMENT", "protocol id too long");
    const head = Buffer.alloc(3);
    head[0] = OPEN;
    head.writeUInt16BE(id.byteLength, 1);
    this.socket.write(Buffer.concat([head, id]));
  }

  #fail(error: Error): void {
    if (this.#failure !== undefined) return;
    this.#failure = error;
    this.#current?.fail(error);
    for (const listener of this.#closeListeners) listener(error);
    this.#closeListeners.clear();
  }

  #violation(message: string): void {
    this.destroy(bulkError(message));
  }

  /** Bytes read into a buffer the socket reuses for its next read (valid only during this call). */
  receiveReused(bytes: Uint8Array): void {
    this.#receive(bytes);
  }

  #receive(chunk: Uint8Array): void {
    let at = 0;
    while (at < chunk.byteLength && this.#failure === undefined) {
      if (this.#dataLeft > 0) {
        const take = Math.min(this.#dataLeft, chunk.byteLength - at);
        this.#dataLeft -= take;
        const part = chunk.subarray(at, at + take);
        if (this.#copies === undefined) this.#current!.push(part);
        else this.#current!.push(this.#copies.copy(part), this.#copies.copied);
        at += take;
        continue;
      }
      const open = this.#openId;
      if (open !== undefined) {
        const take = Math.min(open.byteLength - this.#openHave, chunk.byteLength - at);
        open.set(chunk.subarray(at, at + take), this.#openHave);
        this.#openHave += take;
        at += take;
        if (this.#openHave === open.byteLength) {
          this.#openId = undefined;
          this.#opened(open.toString("utf8"));
        }
        continue;
      }
      const take = Math.min(this.#headerNeed - this.#headerHave, chunk.byteLength - at);
      this.#header.set(chunk.subarray(at, at + take), this.#headerHave);
      this.#headerHave += take;
      at += take;
      if (this.#headerHave === this.#headerNeed) this.#message();
    }
  }

  /** Handles a complete header in #header: either asks for the rest of it or acts on it. */
  #message(): void {
    const type = this.#header[0];
    const need = type === DATA ? 5 : type === OPEN ? 3 : 1;
    if (this.#headerNeed < need) {
      this.#headerNeed = need;
      return;
    }
    this.#headerHave = 0;
    this.#headerNeed = 1;
    if (type === END) {
      if (this.#current === undefined || this.#current.remoteEnded) {
        this.#violation("END outside an exchange");
        return;
      }
      this.#current.end();
    } else if (type === DATA) {
      const length = this.#header.readUInt32BE(1);
      if (this.#current === undefined || this.#current.remoteEnded) {
        this.#violation("DATA outside an exchange");
        return;
      }
      if (length > MAX_DATA_BYTES) {
        this.#violation(`DATA of ${length} bytes`);
        return;
      }
      this.#dataLeft = length;
    } else if (type === OPEN && this.onOpen !== undefined) {
      const length = this.#header.readUInt16BE(1);
      if (length === 0 || length > MAX_PROTOCOL_ID_BYTES) {
        this.#violation("bad protocol id length");
        return;
      }
      this.#openId = Buffer.alloc(length);
      this.#openHave = 0;
    } else {
      this.#violation(`unknown message type ${type}`);
    }
  }

  #opened(protocol: string): void {
    if (this.#current !== undefined && !this.#current.complete) {
        this.#violation("OPEN during an exchange");
        return;
      }
    this.onOpen?.(protocol);
  }

  /**
   * Called by the exchange: its reader's reads are transient from position
   * `from` on (nothing after it was handed out), or no longer; see
   * {@link BulkExchange.transientReads}.
   */
  transientReads(on: boolean, from: number): void {
    if (on) this.#copies?.startRecycling(from);
    else this.#copies?.stopRecycling();
  }

  /** Called by the exchange: its reader no longer reads the first `through` bytes copied on this connection. */
  consumed(through: number): void {
    this.#copies?.release(through);
  }

  /** Called by the exchange when its reader has caught up (resumes a paused socket). */
  resume(): void {
    if (this.socket.isPaused()) this.socket.resume();
  }

  pause(): void {
    this.socket.pause();
  }
}

/** Several received buffers handed over together (read buffer by buffer by the FrameReader, never joined). */
class ChunkList implements Iterable<Uint8Array> {
  readonly #parts: Uint8Array[];

  constructor(parts: Uint8Array[]) {
    this.#parts = parts;
  }

  [Symbol.iterator](): Iterator<Uint8Array> {
    return this.#parts[Symbol.iterator]();
  }

  /** All the bytes as one buffer (a copy; for consumers that cannot take a list). */
  subarray(): Uint8Array {
    return this.#parts.length === 1 ? this.#parts[0]! : Buffer.concat(this.#parts);
  }
}

/**
 * One exchange: a bidirectional byte stream with half-close, as a libp2p
 * stream is to the protocol code (async iterable of received bytes,
 * `send`/`onDrain`, `close`, `abort`).
 */
class BulkExchange implements FarmerStream {
  readonly #conn: BulkConnection;
  #queue: Uint8Array[] = [];
  #queued = 0;
  #wake: (() => void) | undefined;
  #failure: Error | undefined;
  #discarding = false;
  #discarded = 0;
  remoteEnded = false;
  localEnded = false;
  #onComplete: (() => void) | undefined;
  /** The connection's count of copied bytes at the last push. */
  #pushedThrough: number;
  /** The same when the reader last asked for bytes: it has been handed everything before it. */
  #yieldedThrough: number;
  #transient = false;

  /** `copied`: the connection's count of copied bytes when the exchange begins. */
  constructor(conn: BulkConnection, copied: number) {
    this.#conn = conn;
    this.#pushedThrough = copied;
    this.#yieldedThrough = copied;
  }

  /** True once both sides sent END and nothing failed. */
  get complete(): boolean {
    return this.remoteEnded && this.localEnded && this.#failure === undefined;
  }

  /** Runs `fn` once, when the exchange completes cleanly. */
  whenComplete(fn: () => void): void {
    this.#onComplete = fn;
    this.#checkComplete();
  }

  /** `through`: the connection's count of copied bytes once `bytes` was copied (connections that copy). */
  push(bytes: Uint8Array, through?: number): void {
    if (through !== undefined) this.#pushedThrough = through;
    if (this.#discarding) {
      this.#discarded += bytes.byteLength;
      if (this.#discarded > MAX_DISCARD_BYTES) this.#conn.destroy(bulkError("the peer kept sending after the exchange ended"));
      return;
    }
    // Bytes that continue the last queued ones in the same memory (records
    // copied one after another into a block) join them: the reader then
    // takes up to 64 KiB per part instead of one TLS record (16 KiB), and
    // each part costs it promises and bookkeeping.
    const last = this.#queue.length === 0 ? undefined : this.#queue[this.#queue.length - 1]!;
    if (last !== undefined && last.buffer === bytes.buffer && last.byteOffset + last.byteLength === bytes.byteOffset) {
      this.#queue[this.#queue.length - 1] = new Uint8Array(last.buffer, last.byteOffset, last.byteLength + bytes.byteLength);
    } else {
      this.#queue.push(bytes);
    }
    this.#queued += bytes.byteLength;
    if (this.#queued > READ_HIGH_WATER_BYTES) this.#conn.pause();
    this.#wakeUp();
  }

  end(): void {
    this.remoteEnded = true;
    this.#wakeUp();
    this.#checkComplete();
  }

  fail(error: Error): void {
    if (this.complete) return;
    this.#failure ??= error;
    this.#wakeUp();
  }

  /** Drops what the peer still sends until its END (used once our side is done with the exchange). */
  discardRest(): void {
    this.#discarding = true;
    this.#queue = [];
    this.#queued = 0;
    this.#conn.resume();
  }

  #wakeUp(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }

  #checkComplete(): void {
    if (!this.complete || this.#onComplete === undefined) return;
    const fn = this.#onComplete;
    this.#onComplete = undefined;
    fn();
  }

  /**
   * Received bytes, everything queued at once as one {@link ChunkList}: TLS
   * hands over at most 16 KiB per record, and one wake-up per record would
   * cost more than the bytes.
   */
  async *[Symbol.asyncIterator](): AsyncGenerator<ChunkList> {
    for (;;) {
      if (this.#queue.length > 0) {
        const parts = this.#queue;
        this.#yieldedThrough = this.#pushedThrough;
        this.#queue = [];
        this.#queued = 0;
        this.#conn.resume();
        yield new ChunkList(parts);
        // Asked for more: the reader is past every byte yielded so far.
        this.#conn.consumed(this.#yieldedThrough);
        continue;
      }
      if (this.remoteEnded) return;
      if (this.#failure !== undefined) throw this.#failure;
      await new Promise<void>((resolve) => {
        this.#wake = resolve;
      });
    }
  }

  /**
   * See {@link FarmerStream.transientReads}: while on, received bytes the
   * reader has not been handed yet land in pooled blocks, which go back to
   * the pool once the reader asks for more than the batch that held them.
   */
  transientReads(on: boolean): void {
    if (this.#transient === on) return;
    this.#transient = on;
    this.#conn.transientReads(on, this.#yieldedThrough);
  }

  send(data: Uint8Array): boolean {
    return this.#send(data, undefined);
  }

  /**
   * See {@link FarmerStream.sendBorrowed}: `release` runs once the socket
   * is done with `data` — its write callback, which Node also calls (with
   * an error) when the connection is destroyed first. Writable calls them
   * in order, so the callback of the last part covers the whole.
   */
  sendBorrowed(data: Uint8Array, release: () => void): boolean {
    return this.#send(data, release);
  }

  #send(data: Uint8Array, release: (() => void) | undefined): boolean {
    if (this.#failure !== undefined) throw this.#failure;
    if (this.localEnded) throw new DstorError("INTERNAL", "send after close on a direct exchange");
    const socket = this.#conn.socket;
    if (data.byteLength === 0) release?.();
    let at = 0;
    while (at < data.byteLength) {
      const length = Math.min(MAX_DATA_BYTES, data.byteLength - at);
      const head = Buffer.allocUnsafe(5);
      head[0] = DATA;
      head.writeUInt32BE(length, 1);
      const last = at + length >= data.byteLength;
      socket.cork();
      socket.write(head);
      if (last && release !== undefined) socket.write(data.subarray(at, at + length), () => release());
      else socket.write(data.subarray(at, at + length));
      socket.uncork();
      at += length;
    }
    return socket.writableLength < WRITE_HIGH_WATER_BYTES;
  }

  async onDrain(options: AbortOptions = {}): Promise<void> {
    const socket = this.#conn.socket;
    if (this.#failure !== undefined) throw this.#failure;
    if (socket.writableLength < WRITE_HIGH_WATER_BYTES) return;
    const { signal } = options;
    signal?.throwIfAborted();
    await new Promise<void>((resolve, reject) => {
      const done = (error?: Error): void => {
        socket.off("drain", onDrained);
        stopClose();
        signal?.removeEventListener("abort", onAbort);
        if (error === undefined) resolve();
        else reject(error);
      };
      const onDrained = (): void => done();
      const onAbort = (): void => done(signal?.reason instanceof Error ? signal.reason : new DstorError("ABORTED", "aborted"));
      const stopClose = this.#conn.onClose((error) => done(error));
      socket.on("drain", onDrained);
      signal?.addEventListener("abort", onAbort, { once: true });
    });
  }

  /** Half-closes our side (sends END). Idempotent; never waits on the signal. */
  async close(_options?: AbortOptions): Promise<void> {
    if (this.localEnded) return;
    if (this.#failure !== undefined) throw this.#failure;
    this.localEnded = true;
    this.#conn.socket.write(Buffer.of(END));
    this.#checkComplete();
  }

  /** Resets the exchange: destroys the connection, unless the exchange already completed. */
  abort(error: Error): void {
    if (this.complete) return;
    this.#conn.destroy(error);
  }
}

// ---------------------------------------------------------------------------
// Farmer side

/** Options of {@link BulkServer}. */
export interface BulkServerInit {
  /** Address to listen on (the libp2p listen host). */
  host: string;
  /** Port; 0 picks a free one. */
  port: number;
  /** The farmer's handlers, keyed by protocol id (FarmerService.handlers()). */
  handlers: Record<string, FarmerHandler>;
  maxConnections?: number;
  /** Idle time after which a connection is closed, in ms (default {@link BULK_SERVER_IDLE_MS}). */
  idleMs?: number;
  logger?: Logger;
}

/** A farmer's direct-transfer listener and ticket issuer (see the module comment). */
export class BulkServer {
  readonly #init: BulkServerInit;
  readonly #log: Logger;
  readonly #tickets = new Map<string, { peer: string; key: Buffer }>();
  readonly #peerOf = new WeakMap<tls.TLSSocket, string>();
  readonly #connections = new Set<BulkConnection>();
  readonly #perPeer = new Map<string, number>();
  readonly #blocks = new BufferPool(BLOCK_POOL_BYTES, { idleMs: BLOCK_POOL_IDLE_MS });
  #server: Server | undefined;
  #port = 0;
  #accepted = 0;
  #reusedReads = 0;

  constructor(init: BulkServerInit) {
    this.#init = init;
    this.#log = init.logger ?? silentLogger("dstor:farmer:bulk");
  }

  /** The port listened on (after {@link BulkServer.start}). */
  get port(): number {
    return this.#port;
  }

  /** Connections accepted since start (tests and status). */
  get connectionCount(): number {
    return this.#accepted;
  }

  /** Copy blocks allocated so far, i.e. not recycled (tests and status). */
  get blocksAllocated(): number {
    return this.#blocks.allocated;
  }

  /** Of those, the ones that read into one reused buffer (all of them on the Node dstor ships with). */
  get reusedReadCount(): number {
    return this.#reusedReads;
  }

  /** Listens; resolves with the port. */
  async start(): Promise<number> {
    const server = tls.createServer({
      minVersion: "TLSv1.3",
      ciphers: CIPHERS,
      honorCipherOrder: true,
      handshakeTimeout: BULK_HANDSHAKE_TIMEOUT_MS,
      pskCallback: (socket, identity) => {
        const ticket = this.#tickets.get(identity);
        if (ticket === undefined) return null;
        this.#peerOf.set(socket, ticket.peer);
        return ticket.key;
      },
    });
    server.maxConnections = this.#init.maxConnections ?? DEFAULT_MAX_BULK_CONNECTIONS;
    server.on("secureConnection", (socket) => this.#accept(socket));
    server.on("tlsClientError", (error) => this.#log.debug("direct connection refused", { error: String(error) }));
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(this.#init.port, this.#init.host, () => {
        server.off("error", reject);
        resolve();
      });
    });
    this.#server = server;
    const address = server.address();
    this.#port = typeof address === "object" && address !== null ? address.port : 0;
    return this.#port;
  }

  /** Stops listening and resets every connection (handlers in flight see their streams fail). */
  async stop(): Promise<void> {
    const server = this.#server;
    this.#server = undefined;
    for (const conn of this.#connections) conn.destroy(new DstorError("ABORTED", "the farmer is shutting down"));
    this.#connections.clear();
    if (server !== undefined) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  /** The libp2p handler of {@link BULK_TICKET_PROTOCOL}: issues a ticket to `peer`. */
  ticketHandler(): (stream: FarmerStream, peer: string) => Promise<void> {
    return async (stream, peer) => {
      const reader = new FrameReader(stream);
      try {
        await reader.readFrame({ maxBytes: 64, timeoutMs: TICKET_TIMEOUT_MS });
        const identity = randomBytes(16).toString("hex");
        const key = randomBytes(32);
        this.#tickets.set(identity, { peer, key });
        while (this.#tickets.size > MAX_TICKETS) this.#tickets.delete(this.#tickets.keys().next().value!);
        const ticket: BulkTicket = { port: this.#port, identity, key: key.toString("hex") };
        await writeFrame(stream, new TextEncoder().encode(JSON.stringify({ v: 1, ok: true, ...ticket })), { timeoutMs: TICKET_TIMEOUT_MS });
        await stream.close();
      } catch (error) {
        stream.abort(error instanceof Error ? error : new Error(String(error)));
      } finally {
        reader.close();
      }
    };
  }

  #accept(socket: tls.TLSSocket): void {
    const peer = this.#peerOf.get(socket);
    if (peer === undefined || this.#server === undefined) {
      socket.destroy();
      return;
    }
    const count = this.#perPeer.get(peer) ?? 0;
    if (count >= MAX_BULK_CONNECTIONS_PER_PEER) {
      this.#log.debug("too many direct connections from one peer", { peer });
      socket.destroy();
      return;
    }
    this.#perPeer.set(peer, count + 1);
    this.#accepted++;
    const reused = canReadIntoReusedBuffer(socket);
    if (reused) this.#reusedReads++;
    const conn = new BulkConnection(socket, { reusedReads: reused, blockPool: this.#blocks });
    this.#connections.add(conn);
    socket.setTimeout(this.#init.idleMs ?? BULK_SERVER_IDLE_MS);
    conn.onClose(() => {
      this.#connections.delete(conn);
      const left = (this.#perPeer.get(peer) ?? 1) - 1;
      if (left <= 0) this.#perPeer.delete(peer);
      else this.#perPeer.set(peer, left);
    });
    conn.onOpen = (protocol) => void this.#serve(conn, protocol, peer);
    if (reused) readIntoReusedBuffer(socket, (bytes) => conn.receiveReused(bytes));
  }

  async #serve(conn: BulkConnection, protocol: string, peer: string): Promise<void> {
    const handler = this.#init.handlers[protocol];
    if (handler === undefined) {
      conn.destroy(bulkError(`protocol ${protocol} is not served`));
      return;
    }
    const exchange = conn.begin();
    try {
      await handler(exchange, peer);
    } catch (error) {
      exchange.abort(error instanceof Error ? error : new Error(String(error)));
      return;
    }
    if (conn.failed) return;
    // The handler is done: make sure our END went out, and drop whatever
    // the client still sends until its END; then the next OPEN may come.
    if (!exchange.localEnded) await exchange.close().catch(() => {});
    exchange.discardRest();
  }
}

// ---------------------------------------------------------------------------
// Renter side

/** Options of {@link BulkDialer}. */
export interface BulkDialerInit {
  /** The libp2p node: ticket requests, and every exchange that does not go direct. */
  node: StreamDialer;
  /** Idle time after which a pooled connection is closed, in ms (default {@link BULK_CLIENT_IDLE_MS}). */
  idleMs?: number;
  logger?: Logger;
}

interface PeerState {
  ticket: Promise<BulkTicket> | undefined;
  idle: BulkConnection[];
  /** Until when this peer is reached through libp2p only (ms since epoch). */
  fallbackUntil: number;
}

/**
 * A {@link StreamDialer} that sends piece puts and gets over direct TLS
 * connections when the farmer offers them, and everything else (and every
 * farmer that does not) through libp2p.
 */
export class BulkDialer implements StreamDialer {
  readonly #node: StreamDialer;
  readonly #log: Logger;
  readonly #idleMs: number;
  readonly #peers = new Map<string, PeerState>();
  readonly #open = new Set<BulkConnection>();
  readonly #blocks = new BufferPool(BLOCK_POOL_BYTES, { idleMs: BLOCK_POOL_IDLE_MS });
  #stopped = false;

  constructor(init: BulkDialerInit) {
    this.#node = init.node;
    this.#log = init.logger ?? silentLogger("dstor:renter:bulk");
    this.#idleMs = init.idleMs ?? BULK_CLIENT_IDLE_MS;
  }

  /** Direct connections open now (tests and status). */
  get openConnections(): number {
    return this.#open.size;
  }

  /** Copy blocks allocated so far, i.e. not recycled (tests and status). */
  get blocksAllocated(): number {
    return this.#blocks.allocated;
  }

  async dialProtocol(target: PeerId | Multiaddr | Multiaddr[], protocols: string | string[], options: AbortOptions = {}): Promise<Stream> {
    const protocol = typeof protocols === "string" ? protocols : protocols.length === 1 ? protocols[0]! : undefined;
    const ma = !Array.isArray(target) && isMultiaddr(target) ? target : undefined;
    const peer = ma === undefined ? undefined : peerOf(ma.toString());
    const host = ma === undefined ? undefined : hostOf(ma);
    if (this.#stopped || protocol === undefined || !BULK_PROTOCOLS.includes(protocol) || peer === undefined || host === undefined) {
      return this.#node.dialProtocol(target, protocols, options);
    }
    const state = this.#state(peer);
    if (state.fallbackUntil > Date.now()) return this.#node.dialProtocol(target, protocols, options);
    let conn: BulkConnection;
    try {
      conn = state.idle.pop() ?? (await this.#connect(state, ma!, host, options));
    } catch (error) {
      if (options.signal?.aborted) throw error;
      this.#log.info("direct transfers unavailable; using libp2p for this farmer", { peer, error: String(error) });
      state.fallbackUntil = Date.now() + FALLBACK_MS;
      state.ticket = undefined;
      return this.#node.dialProtocol(target, protocols, options);
    }
    // The idle deadline stays armed during exchanges too: one that stalls
    // (a peer that never sends its END) does not hold the socket forever.
    conn.socket.setTimeout(this.#idleMs);
    const exchange = conn.begin();
    conn.sendOpen(protocol);
    exchange.whenComplete(() => {
      if (conn.failed || this.#stopped) return;
      state.idle.push(conn);
    });
    return exchange as unknown as Stream;
  }

  /** Closes every direct connection; later calls go through libp2p. */
  stop(): void {
    this.#stopped = true;
    for (const conn of this.#open) conn.destroy(new DstorError("ABORTED", "the renter is stopping"));
    this.#open.clear();
    this.#peers.clear();
  }

  #state(peer: string): PeerState {
    let state = this.#peers.get(peer);
    if (state === undefined) {
      state = { ticket: undefined, idle: [], fallbackUntil: 0 };
      this.#peers.set(peer, state);
    }
    return state;
  }

  async #connect(state: PeerState, ma: Multiaddr, host: string, options: AbortOptions): Promise<BulkConnection> {
    state.ticket ??= this.#requestTicket(ma, options);
    let ticket: BulkTicket;
    try {
      ticket = await state.ticket;
    } catch (error) {
      state.ticket = undefined;
      throw error;
    }
    const key = Buffer.from(ticket.key, "hex");
    // Reads land in one reused buffer (see READ_BUFFER_BYTES); the
    // farmer sends nothing before our first OPEN, so anything that arrives
    // before the connection object exists is a protocol violation.
    let conn: BulkConnection | undefined;
    let early = false;
    // `onread` is documented for tls.connect (used when no `socket` is given)
    // but missing from @types/node's ConnectionOptions.
    const connectOptions: tls.ConnectionOptions & { onread: OnReadOpts } = {
      host,
      port: ticket.port,
      minVersion: "TLSv1.3",
      ciphers: CIPHERS,
      checkServerIdentity: () => undefined,
      pskCallback: () => ({ psk: key, identity: ticket.identity }),
      onread: {
        buffer: Buffer.allocUnsafe(READ_BUFFER_BYTES),
        callback: (bytes: number, buffer: Uint8Array): boolean => {
          if (conn === undefined) early = true;
          else conn.receiveReused(buffer.subarray(0, bytes));
          return true;
        },
      },
    };
    const socket = tls.connect(connectOptions);
    try {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new DstorError("TIMEOUT", "direct connection handshake timed out")), BULK_HANDSHAKE_TIMEOUT_MS);
        const onAbort = (): void => reject(options.signal?.reason ?? new DstorError("ABORTED", "aborted"));
        options.signal?.addEventListener("abort", onAbort, { once: true });
        const finish = (): void => {
          clearTimeout(timer);
          options.signal?.removeEventListener("abort", onAbort);
        };
        socket.once("secureConnect", () => {
          finish();
          resolve();
        });
        socket.once("error", (error) => {
          finish();
          reject(error);
        });
      });
    } catch (error) {
      socket.destroy();
      // A farmer that restarted forgot its tickets: ask for a new one next time.
      state.ticket = undefined;
      throw error;
    }
    if (early) {
      socket.destroy();
      throw bulkError("the farmer sent data before any exchange");
    }
    conn = new BulkConnection(socket, { reusedReads: true, blockPool: this.#blocks });
    this.#open.add(conn);
    conn.onClose(() => {
      this.#open.delete(conn);
      const at = state.idle.indexOf(conn);
      if (at >= 0) state.idle.splice(at, 1);
    });
    if (this.#stopped) conn.destroy(new DstorError("ABORTED", "the renter is stopping"));
    return conn;
  }

  async #requestTicket(ma: Multiaddr, options: AbortOptions): Promise<BulkTicket> {
    const deadline = AbortSignal.timeout(TICKET_TIMEOUT_MS);
    const signal = options.signal === undefined ? deadline : AbortSignal.any([options.signal, deadline]);
    const stream = await this.#node.dialProtocol(ma, BULK_TICKET_PROTOCOL, { signal });
    const reader = new FrameReader(stream as ByteSource);
    try {
      await writeFrame(stream as ByteSink, new TextEncoder().encode(JSON.stringify({ v: 1 })), { signal });
      await stream.close({ signal });
      const answer: unknown = JSON.parse(new TextDecoder().decode(await reader.readFrame({ signal, maxBytes: 1024 })));
      return parseTicket(answer);
    } catch (error) {
      stream.abort(error instanceof Error ? error : new Error(String(error)));
      throw error;
    } finally {
      reader.close();
    }
  }
}

/** Checks a ticket answer's shape. */
export function parseTicket(answer: unknown): BulkTicket {
  const a = answer as Partial<BulkTicket> & { v?: unknown; ok?: unknown };
  if (
    typeof a !== "object" ||
    a === null ||
    a.v !== 1 ||
    a.ok !== true ||
    !Number.isInteger(a.port) ||
    (a.port as number) < 1 ||
    (a.port as number) > 65535 ||
    typeof a.identity !== "string" ||
    !/^[0-9a-f]{32}$/.test(a.identity) ||
    typeof a.key !== "string" ||
    !/^[0-9a-f]{64}$/.test(a.key)
  ) {
    throw bulkError("malformed ticket");
  }
  return { port: a.port as number, identity: a.identity, key: a.key };
}

function isMultiaddr(value: unknown): value is Multiaddr {
  return typeof value === "object" && value !== null && typeof (value as Multiaddr).getComponents === "function";
}

/** The IP of a /ip4 or /ip6 multiaddr, or undefined for anything else (dns, relays). */
function hostOf(ma: Multiaddr): string | undefined {
  const parts = ma.toString().split("/");
  if ((parts[1] === "ip4" || parts[1] === "ip6") && parts[2] !== undefined && parts[3] === "tcp" && !ma.toString().includes("/p2p-circuit")) return parts[2];
  return undefined;
}

/** The host of the first /ip4 or /ip6 TCP listen multiaddr (where the direct listener listens too). */
export function bulkListenHost(listen: readonly string[]): string | undefined {
  for (const address of listen) {
    const host = hostOf(multiaddr(address));
    if (host !== undefined) return host;
  }
  return undefined;
}
