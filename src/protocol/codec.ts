/**
 * Length-prefixed framing for dstor streams: every frame is a uint32
 * big-endian length followed by that many payload bytes. A request is one JSON
 * header frame, optionally followed by data frames; a response likewise.
 *
 * Design:
 * - The codec sits on two tiny interfaces declared here, {@link ByteSource}
 *   (an async iterable of chunks, which a libp2p 3 stream is, and so is a
 *   `node:net` socket) and {@link ByteSink} (`send()` returning false when the
 *   caller must `await onDrain()`, as a libp2p 3 stream does). Nothing here
 *   imports libp2p, so tests run over in-memory pipes and real TCP sockets.
 * - {@link FrameReader} pulls one frame at a time. It holds at most one frame
 *   body plus the unread rest of one chunk: a peer cannot make us buffer
 *   more than the per-call limit by sending many frames at once, because we
 *   simply stop pulling from the source until the next read.
 * - The limit is enforced from the length prefix, before a single body byte
 *   is read or allocated (`MESSAGE_TOO_LARGE`). A stream that ends inside a
 *   frame is `MESSAGE_MALFORMED`; one that ends exactly between frames is a
 *   clean end.
 * - Any failure (bad frame, abort, timeout, source error) poisons the reader:
 *   the stream is no longer in sync, so every later read fails the same way
 *   rather than misparsing the middle of a frame as a header.
 */
import { abortReason, type AbortOptions, raceSignal, throwIfAborted } from "../core/abort.js";
import { DstorError } from "../core/errors.js";
import { uninitializedBytes } from "../crypto/bytes.js";
import { DATA_FRAME_BYTES, FRAME_IDLE_TIMEOUT_MS, FRAME_PREFIX_BYTES, MAX_FRAME_BYTES } from "./limits.js";

/** Largest length a uint32 prefix can express. */
const UINT32_MAX = 0xffff_ffff;

/** Frames up to this size are sent as one buffer (prefix copied in front); larger ones as two sends, without copying. */
const COALESCE_LIMIT_BYTES = 16 * 1024;

const EMPTY = new Uint8Array(0);

/**
 * One chunk from a source: a Uint8Array, or a list-like of several (a libp2p
 * `Uint8ArrayList`) whose `subarray()` with no arguments gives the bytes.
 * A list that is also iterable is read buffer by buffer, without joining its
 * buffers into one copy.
 */
export type ByteChunk = Uint8Array | { subarray(): Uint8Array };

/** Where frames are read from: a libp2p 3 stream, a `node:net` socket, or any async iterable of chunks. */
export type ByteSource = AsyncIterable<ByteChunk>;

/**
 * Where frames are written: `send()` queues bytes and returns false when the
 * caller must wait for `onDrain()` before sending more (libp2p 3 streams).
 */
export interface ByteSink {
  /** Queues `data`; false means "wait for {@link ByteSink.onDrain} before the next send". */
  send(data: Uint8Array): boolean;
  /** Resolves when the sink can take more data; rejects if the stream fails or `signal` aborts. */
  onDrain(options?: AbortOptions): Promise<void>;
}

/** Options of one read or write. */
export interface FrameIoOptions extends AbortOptions {
  /** Deadline for this one operation, in ms (in addition to `signal`). */
  timeoutMs?: number | undefined;
}

/** Options of {@link FrameReader.readFrame}. */
export interface ReadFrameOptions extends FrameIoOptions {
  /** Largest payload accepted, in bytes; defaults to the reader's limit. */
  maxBytes?: number | undefined;
}

/** Options of {@link FrameReader}. */
export interface FrameReaderInit {
  /** Default largest payload, in bytes (default {@link MAX_FRAME_BYTES}). */
  maxFrameBytes?: number;
}

/** Options of {@link writeFrame}. */
export interface WriteFrameOptions extends FrameIoOptions {
  /** Refuse to send a payload larger than this, in bytes (default {@link MAX_FRAME_BYTES}). */
  maxBytes?: number | undefined;
}

/** The 4-byte big-endian length prefix of a `length`-byte frame. */
export function encodeFramePrefix(length: number): Uint8Array {
  if (!Number.isSafeInteger(length) || length < 0 || length > UINT32_MAX) {
    throw new DstorError("MESSAGE_TOO_LARGE", `a frame of ${length} bytes cannot be length-prefixed`);
  }
  const prefix = new Uint8Array(FRAME_PREFIX_BYTES);
  new DataView(prefix.buffer).setUint32(0, length, false);
  return prefix;
}

/** One whole frame (prefix ‖ payload) as a new buffer. */
export function encodeFrame(payload: Uint8Array): Uint8Array {
  const frame = new Uint8Array(FRAME_PREFIX_BYTES + payload.byteLength);
  frame.set(encodeFramePrefix(payload.byteLength), 0);
  frame.set(payload, FRAME_PREFIX_BYTES);
  return frame;
}

/**
 * A signal that aborts with `signal` or after `timeoutMs`, plus a `dispose()`
 * that clears the timer when the operation finishes first (so no timer
 * outlives the call).
 */
function operationSignal(options: FrameIoOptions, what: string): { signal: AbortSignal | undefined; dispose: () => void } {
  const { signal, timeoutMs } = options;
  if (timeoutMs === undefined) return { signal, dispose: () => {} };
  if (!Number.isFinite(timeoutMs) || timeoutMs < 0) {
    throw new DstorError("INVALID_ARGUMENT", `timeoutMs must be a non-negative number, got ${timeoutMs}`);
  }
  const controller = new AbortController();
  const timer = setTimeout(() => {
    controller.abort(new DstorError("TIMEOUT", `${what} did not finish within ${timeoutMs} ms`, { details: { timeoutMs } }));
  }, timeoutMs);
  const combined = signal === undefined ? controller.signal : AbortSignal.any([signal, controller.signal]);
  return { signal: combined, dispose: () => clearTimeout(timer) };
}

function chunkBytes(chunk: ByteChunk): Uint8Array | Iterable<Uint8Array> {
  if (chunk instanceof Uint8Array) return chunk;
  if (chunk !== null && typeof chunk === "object" && Symbol.iterator in chunk) return chunk as Iterable<Uint8Array>;
  if (chunk !== null && typeof chunk === "object" && typeof chunk.subarray === "function") {
    const bytes = chunk.subarray();
    if (bytes instanceof Uint8Array) return bytes;
  }
  throw new DstorError("INVALID_ARGUMENT", "a stream chunk must be a Uint8Array or have a subarray() returning one");
}

/**
 * Reads length-prefixed frames from a {@link ByteSource}, one at a time.
 * Not safe for concurrent reads: one read at a time per stream (a second
 * concurrent call throws `INTERNAL`).
 */
export class FrameReader {
  readonly #iterator: AsyncIterator<ByteChunk>;
  readonly #maxFrameBytes: number;
  /** Unread rest of the current chunk (a view; never copied). */
  #chunk: Uint8Array = EMPTY;
  /** Buffers of a received list not yet made the current chunk. */
  #queued: Uint8Array[] = [];
  /** Payload bytes of the current frame not yet handed out by {@link FrameReader.readPart}. */
  #partRemaining = 0;
  #ended = false;
  #busy = false;
  #failure: DstorError | undefined;

  constructor(source: ByteSource, init: FrameReaderInit = {}) {
    const max = init.maxFrameBytes ?? MAX_FRAME_BYTES;
    if (!Number.isSafeInteger(max) || max < 0 || max > UINT32_MAX) {
      throw new DstorError("INVALID_ARGUMENT", `maxFrameBytes must be an integer in [0, 2^32), got ${max}`);
    }
    this.#iterator = source[Symbol.asyncIterator]();
    this.#maxFrameBytes = max;
  }

  /** True once the source has ended and every buffered byte was consumed. */
  get ended(): boolean {
    return this.#ended && this.#chunk.byteLength === 0 && this.#queued.length === 0;
  }

  /**
   * The next frame's payload, or `null` when the stream ended cleanly between
   * frames. The payload may be a view into the source's chunk; it is never
   * reused by the reader.
   *
   * @throws `MESSAGE_TOO_LARGE` (from the prefix, before reading the body),
   * `MESSAGE_MALFORMED` (stream ended inside a frame or failed), `ABORTED`, `TIMEOUT`.
   */
  async next(options: ReadFrameOptions = {}): Promise<Uint8Array | null> {
    const maxBytes = options.maxBytes ?? this.#maxFrameBytes;
    if (!Number.isSafeInteger(maxBytes) || maxBytes < 0) {
      throw new DstorError("INVALID_ARGUMENT", `maxBytes must be a non-negative integer, got ${maxBytes}`);
    }
    if (this.#partRemaining > 0 && this.#failure === undefined) throw new DstorError("INTERNAL", "a frame is half read by readPart");
    return this.#exclusive(options, "reading a frame", (signal) => this.#readOne(maxBytes, signal));
  }

  /**
   * Runs one read operation: refuses it after a failure or during another
   * read, gives it a signal with the operation's deadline, and records its
   * failure (which poisons the reader) before rethrowing it as a DstorError.
   */
  async #exclusive<T>(options: FrameIoOptions, what: string, read: (signal: AbortSignal | undefined) => Promise<T>): Promise<T> {
    if (this.#failure !== undefined) throw this.#failure;
    if (this.#busy) throw new DstorError("INTERNAL", "FrameReader does not support concurrent reads");
    this.#busy = true;
    const op = operationSignal(options, what);
    try {
      throwIfAborted(op.signal);
      return await read(op.signal);
    } catch (error) {
      throw this.#fail(error);
    } finally {
      op.dispose();
      this.#busy = false;
    }
  }

  /**
   * The next bytes of frame payload, for bulk data whose frame boundaries do
   * not matter: a view on the received bytes (never a copy), at most the rest
   * of the current frame; at a frame boundary the next frame's prefix is read
   * first, and `maxBytes` applies to that frame. `null` when the stream ended
   * cleanly between frames; an empty frame is `MESSAGE_MALFORMED`. Otherwise
   * the same errors as {@link FrameReader.next}.
   */
  async readPart(options: ReadFrameOptions = {}): Promise<Uint8Array | null> {
    const maxBytes = options.maxBytes ?? this.#maxFrameBytes;
    return this.#exclusive(options, "reading a frame", async (signal) => {
      if (this.#partRemaining === 0) {
        const length = await this.#readPrefix(maxBytes, signal);
        if (length === null) return null;
        if (length === 0) throw new DstorError("MESSAGE_MALFORMED", "empty data frame");
        this.#partRemaining = length;
      }
      if (this.#chunk.byteLength === 0 && !(await this.#pull(signal))) {
        throw new DstorError("MESSAGE_MALFORMED", `the stream ended inside a frame (${this.#partRemaining} bytes missing)`);
      }
      const take = Math.min(this.#partRemaining, this.#chunk.byteLength);
      const part = this.#chunk.subarray(0, take);
      this.#chunk = this.#chunk.subarray(take);
      this.#partRemaining -= take;
      return part;
    });
  }

  /**
   * The next frame's payload; a stream that ends before it is `MESSAGE_MALFORMED`.
   * Same errors as {@link FrameReader.next}.
   */
  async readFrame(options: ReadFrameOptions = {}): Promise<Uint8Array> {
    const frame = await this.next(options);
    if (frame === null) {
      throw this.#fail(new DstorError("MESSAGE_MALFORMED", "the stream ended where a frame was expected"));
    }
    return frame;
  }

  /**
   * Waits for the stream to end with no further bytes; anything more is
   * `MESSAGE_MALFORMED` (a peer sending past the end of its message).
   */
  async readEnd(options: FrameIoOptions = {}): Promise<void> {
    await this.#exclusive(options, "waiting for the end of the stream", async (signal) => {
      if (this.#chunk.byteLength > 0 || this.#partRemaining > 0 || (await this.#pull(signal))) {
        throw new DstorError("MESSAGE_MALFORMED", "the peer sent bytes after the end of its message");
      }
    });
  }

  /**
   * Stops reading: releases the source (its iterator's `return()`), and makes
   * every later read fail with `ABORTED`. Idempotent.
   */
  close(): void {
    if (this.#failure === undefined) this.#fail(new DstorError("ABORTED", "the frame reader was closed"));
  }

  /** Records the first failure, releases the source, and returns the failure to throw. */
  #fail(error: unknown): DstorError {
    if (this.#failure === undefined) {
      this.#failure =
        error instanceof DstorError
          ? error
          : new DstorError("MESSAGE_MALFORMED", "the stream failed before the frame was complete", { cause: error });
      this.#chunk = EMPTY;
      if (!this.#ended) {
        this.#ended = true;
        // A pending next() may still be outstanding after an abort; return()
        // asks the source to stop and must never surface as an unhandled rejection.
        try {
          const done = this.#iterator.return?.();
          if (done !== undefined) void Promise.resolve(done).catch(() => {});
        } catch {
          // The source refused to close; nothing more to release.
        }
      }
    }
    return this.#failure;
  }

  /** Loads the next non-empty chunk into #chunk; false when the source has ended. */
  async #pull(signal: AbortSignal | undefined): Promise<boolean> {
    for (;;) {
      const queued = this.#queued.shift();
      if (queued !== undefined) {
        if (queued.byteLength === 0) continue;
        this.#chunk = queued;
        return true;
      }
      if (this.#ended) return false;
      const result = await raceSignal(this.#iterator.next(), signal);
      if (result.done === true) {
        this.#ended = true;
        return false;
      }
      const bytes = chunkBytes(result.value);
      if (bytes instanceof Uint8Array) this.#queued.push(bytes);
      else for (const buf of bytes) this.#queued.push(buf);
    }
  }

  async #readOne(maxBytes: number, signal: AbortSignal | undefined): Promise<Uint8Array | null> {
    const length = await this.#readPrefix(maxBytes, signal);
    if (length === null) return null;
    // Whole body in the current chunk: hand out a view, no copy.
    if (this.#chunk.byteLength >= length) {
      const body = this.#chunk.subarray(0, length);
      this.#chunk = this.#chunk.subarray(length);
      return body;
    }
    const body = new Uint8Array(length);
    let have = 0;
    while (have < length) {
      if (this.#chunk.byteLength === 0 && !(await this.#pull(signal))) {
        throw new DstorError("MESSAGE_MALFORMED", `the stream ended inside a frame (${have} of ${length} bytes)`, {
          details: { have, length },
        });
      }
      const take = Math.min(length - have, this.#chunk.byteLength);
      body.set(this.#chunk.subarray(0, take), have);
      this.#chunk = this.#chunk.subarray(take);
      have += take;
    }
    return body;
  }

  /** Reads the next frame's length prefix: the payload length, or null at a clean end of stream. */
  async #readPrefix(maxBytes: number, signal: AbortSignal | undefined): Promise<number | null> {
    // Length prefix: usually inside the current chunk, but may straddle chunks.
    let length: number;
    if (this.#chunk.byteLength >= FRAME_PREFIX_BYTES) {
      length = new DataView(this.#chunk.buffer, this.#chunk.byteOffset, FRAME_PREFIX_BYTES).getUint32(0, false);
      this.#chunk = this.#chunk.subarray(FRAME_PREFIX_BYTES);
    } else {
      const prefix = new Uint8Array(FRAME_PREFIX_BYTES);
      let have = 0;
      while (have < FRAME_PREFIX_BYTES) {
        if (this.#chunk.byteLength === 0 && !(await this.#pull(signal))) {
          if (have === 0) return null;
          throw new DstorError("MESSAGE_MALFORMED", `the stream ended inside a frame's length prefix (${have} of 4 bytes)`);
        }
        const take = Math.min(FRAME_PREFIX_BYTES - have, this.#chunk.byteLength);
        prefix.set(this.#chunk.subarray(0, take), have);
        this.#chunk = this.#chunk.subarray(take);
        have += take;
      }
      length = new DataView(prefix.buffer).getUint32(0, false);
    }
    if (length > maxBytes) {
      throw new DstorError("MESSAGE_TOO_LARGE", `the peer announced a ${length}-byte frame; at most ${maxBytes} bytes are allowed here`, {
        details: { length, maxBytes },
      });
    }
    return length;
  }
}

/** Sends `bytes` (with `send`, default the sink's), then waits for the sink to drain when it asks us to (backpressure). */
async function sendRespectingBackpressure(
  sink: ByteSink,
  bytes: Uint8Array,
  signal: AbortSignal | undefined,
  send: (bytes: Uint8Array) => boolean = (b) => sink.send(b),
): Promise<void> {
  throwIfAborted(signal);
  if (!send(bytes)) {
    await raceSignal(sink.onDrain(signal === undefined ? {} : { signal }), signal);
  }
}

/**
 * Writes one frame, waiting on `onDrain()` whenever the sink says so.
 * A payload over `maxBytes` is refused (`MESSAGE_TOO_LARGE`) before anything
 * is sent; a sink that throws or whose drain rejects gives `ABORTED`, a
 * deadline `TIMEOUT`.
 */
export function writeFrame(sink: ByteSink, payload: Uint8Array, options: WriteFrameOptions = {}): Promise<void> {
  return writeFrameVia(payload, options, (bytes, signal) => sendRespectingBackpressure(sink, bytes, signal));
}

/** A sink that can send memory it does not keep. */
export interface BorrowingByteSink extends ByteSink {
  /**
   * Sends `data` like `send` but does not keep it past `release`, which the
   * transport calls once it no longer reads `data` (sent, or the stream
   * failed), so the caller may reuse the memory. If it throws, `release` is
   * not called and the caller still owns `data`.
   */
  sendBorrowed(data: Uint8Array, release: () => void): boolean;
}

/**
 * {@link writeFrame} of a payload whose memory the caller wants back:
 * `release` is called exactly once, when nothing reads `payload` any more —
 * by the sink once it sent it, or here if it was never handed over.
 */
export async function writeBorrowedFrame(sink: BorrowingByteSink, payload: Uint8Array, release: () => void, options: WriteFrameOptions = {}): Promise<void> {
  let owned = true;
  try {
    await writeFrameVia(payload, options, (bytes, signal) => {
      // The prefix, or a small frame copied whole, goes as usual.
      if (bytes !== payload) return sendRespectingBackpressure(sink, bytes, signal);
      return sendRespectingBackpressure(sink, bytes, signal, (b) => {
        const ready = sink.sendBorrowed(b, release);
        owned = false;
        return ready;
      });
    });
  } finally {
    if (owned) release();
  }
}

async function writeFrameVia(
  payload: Uint8Array,
  options: WriteFrameOptions,
  send: (bytes: Uint8Array, signal: AbortSignal | undefined) => Promise<void>,
): Promise<void> {
  const maxBytes = options.maxBytes ?? MAX_FRAME_BYTES;
  if (payload.byteLength > maxBytes) {
    throw new DstorError("MESSAGE_TOO_LARGE", `refusing to send a ${payload.byteLength}-byte frame; the limit is ${maxBytes} bytes`, {
      details: { length: payload.byteLength, maxBytes },
    });
  }
  const op = operationSignal(options, "writing a frame");
  try {
    if (payload.byteLength <= COALESCE_LIMIT_BYTES) {
      await send(encodeFrame(payload), op.signal);
    } else {
      await send(encodeFramePrefix(payload.byteLength), op.signal);
      await send(payload, op.signal);
    }
  } catch (error) {
    if (op.signal?.aborted) throw abortReason(op.signal);
    if (error instanceof DstorError) throw error;
    // The sink threw or its drain rejected: the stream was closed or reset
    // under us, which ends the exchange just as a cancellation would.
    throw new DstorError("ABORTED", "the stream was closed or reset while writing a frame", { cause: error });
  } finally {
    op.dispose();
  }
}

/** Options of {@link writeData}. */
export interface WriteDataOptions extends FrameIoOptions {
  /** Payload size of each data frame, in bytes (default {@link DATA_FRAME_BYTES}, at most {@link MAX_FRAME_BYTES}). */
  frameBytes?: number;
}

/**
 * Writes `data` as data frames of `frameBytes` (the last one shorter). Empty
 * data writes no frame at all. `timeoutMs` applies to each frame (default
 * {@link FRAME_IDLE_TIMEOUT_MS}), so a peer that stops reading cannot park
 * the writer forever.
 *
 * A peer may answer before it has read everything (a farmer refusing a put
 * after its header); callers should read the answer concurrently and abort
 * the upload through `signal` when it arrives.
 */
export async function writeData(sink: ByteSink, data: Uint8Array, options: WriteDataOptions = {}): Promise<void> {
  const frameBytes = options.frameBytes ?? DATA_FRAME_BYTES;
  if (!Number.isSafeInteger(frameBytes) || frameBytes < 1 || frameBytes > MAX_FRAME_BYTES) {
    throw new DstorError("INVALID_ARGUMENT", `frameBytes must be an integer in [1, ${MAX_FRAME_BYTES}], got ${frameBytes}`);
  }
  for (let offset = 0; offset < data.byteLength; offset += frameBytes) {
    await writeFrame(sink, data.subarray(offset, offset + frameBytes), {
      signal: options.signal,
      timeoutMs: options.timeoutMs ?? FRAME_IDLE_TIMEOUT_MS,
      maxBytes: MAX_FRAME_BYTES,
    });
  }
}

/** Options of {@link readData}. */
export interface ReadDataOptions extends AbortOptions {
  /** Longest wait for each data frame, in ms (default {@link FRAME_IDLE_TIMEOUT_MS}). */
  frameTimeoutMs?: number;
  /** Largest data frame accepted, in bytes (default {@link MAX_FRAME_BYTES}). */
  maxFrameBytes?: number;
}

/**
 * Yields the data that follows a header, in data frames, until exactly
 * `totalBytes` bytes have arrived. A frame that would overshoot `totalBytes`
 * is `MESSAGE_TOO_LARGE` (seen from its prefix); an empty frame or an early
 * end of stream is `MESSAGE_MALFORMED`. Bytes are yielded as they arrive, as
 * views on the received buffers (no copy; a yielded part may be any piece of
 * a frame), so a 256 MiB piece streams through little memory.
 */
export async function* readData(reader: FrameReader, totalBytes: number, options: ReadDataOptions = {}): AsyncGenerator<Uint8Array, void, undefined> {
  if (!Number.isSafeInteger(totalBytes) || totalBytes < 0) {
    throw new DstorError("INVALID_ARGUMENT", `totalBytes must be a non-negative integer, got ${totalBytes}`);
  }
  const maxBytes = options.maxFrameBytes ?? MAX_FRAME_BYTES;
  const timeoutMs = options.frameTimeoutMs ?? FRAME_IDLE_TIMEOUT_MS;
  if (!Number.isFinite(timeoutMs) || timeoutMs < 0) {
    throw new DstorError("INVALID_ARGUMENT", `frameTimeoutMs must be a non-negative number, got ${timeoutMs}`);
  }
  // One idle deadline for the whole transfer, re-armed before each wait,
  // instead of a timer and a composite signal per part (a part is often one
  // 16 KiB TLS record: that bookkeeping cost more than moving the bytes).
  // It only counts time spent waiting for bytes, not the consumer's time.
  const idle = new AbortController();
  let waiting = false;
  const timer = setTimeout(() => {
    if (waiting) idle.abort(new DstorError("TIMEOUT", `reading a frame did not finish within ${timeoutMs} ms`, { details: { timeoutMs } }));
  }, timeoutMs);
  const signal = options.signal === undefined ? idle.signal : AbortSignal.any([options.signal, idle.signal]);
  let received = 0;
  try {
    while (received < totalBytes) {
      waiting = true;
      timer.refresh();
      const part = await reader.readPart({ signal, maxBytes: Math.min(maxBytes, totalBytes - received) });
      waiting = false;
      if (part === null) {
        throw new DstorError("MESSAGE_MALFORMED", `the stream ended after ${received} of ${totalBytes} data bytes`, {
          details: { received, totalBytes },
        });
      }
      received += part.byteLength;
      yield part;
    }
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Reads exactly `totalBytes` of data frames into one buffer (a piece a get
 * returns; tests): `into`'s first `totalBytes` bytes when given (reused
 * receive buffers; at least that long), else a new buffer. On failure the
 * contents of `into` are unspecified.
 */
export async function readAllData(reader: FrameReader, totalBytes: number, options: ReadDataOptions & { into?: Uint8Array | undefined } = {}): Promise<Uint8Array> {
  const { into } = options;
  if (into !== undefined && into.byteLength < totalBytes) {
    throw new DstorError("INVALID_ARGUMENT", `the receive buffer holds ${into.byteLength} bytes, ${totalBytes} are coming`);
  }
  // Uninitialised is safe: readData yields exactly totalBytes or throws (and
  // then the buffer is dropped).
  const out = into === undefined ? uninitializedBytes(totalBytes) : into.subarray(0, totalBytes);
  let offset = 0;
  for await (const frame of readData(reader, totalBytes, options)) {
    out.set(frame, offset);
    offset += frame.byteLength;
  }
  return out;
}
