/**
 * Test plumbing for the protocol suite: an in-memory pipe with real
 * backpressure, and a node:net socket pair on 127.0.0.1 adapted to the
 * codec's ByteSink/ByteSource interfaces.
 */
import { once } from "node:events";
import { connect, createServer, type Server, type Socket } from "node:net";
import type { AbortOptions } from "../../src/core/abort.js";
import type { ByteSink } from "../../src/protocol/codec.js";

/** A one-way in-memory byte pipe: `send()` returns false once `highWaterBytes` are queued and unread. */
export class MemoryPipe implements ByteSink, AsyncIterable<Uint8Array> {
  readonly #highWaterBytes: number;
  readonly #queue: Uint8Array[] = [];
  #queued = 0;
  #ended = false;
  #reader: (() => void) | undefined;
  #drainers: (() => void)[] = [];
  /** Sends that returned false. */
  pressureEvents = 0;

  constructor(highWaterBytes = 64 * 1024) {
    this.#highWaterBytes = highWaterBytes;
  }

  send(data: Uint8Array): boolean {
    if (this.#ended) throw new Error("send after end");
    this.#queue.push(data.slice());
    this.#queued += data.byteLength;
    this.#reader?.();
    const ok = this.#queued < this.#highWaterBytes;
    if (!ok) this.pressureEvents++;
    return ok;
  }

  onDrain(options: AbortOptions = {}): Promise<void> {
    if (this.#queued < this.#highWaterBytes) return Promise.resolve();
    return new Promise((resolve, reject) => {
      this.#drainers.push(resolve);
      options.signal?.addEventListener("abort", () => reject(options.signal?.reason), { once: true });
    });
  }

  end(): void {
    this.#ended = true;
    this.#reader?.();
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<Uint8Array> {
    while (true) {
      const chunk = this.#queue.shift();
      if (chunk !== undefined) {
        this.#queued -= chunk.byteLength;
        if (this.#queued < this.#highWaterBytes) {
          const drainers = this.#drainers;
          this.#drainers = [];
          for (const d of drainers) d();
        }
        yield chunk;
        continue;
      }
      if (this.#ended) return;
      await new Promise<void>((resolve) => {
        this.#reader = resolve;
      });
      this.#reader = undefined;
    }
  }
}

/** A ByteSink over a node:net socket: `write()` is `send()`, the `drain` event is `onDrain()`. */
export function socketSink(socket: Socket): ByteSink {
  return {
    send: (data) => socket.write(data),
    onDrain: async (options: AbortOptions = {}) => {
      if (!socket.writableNeedDrain) return;
      await once(socket, "drain", options.signal === undefined ? {} : { signal: options.signal });
    },
  };
}

/** A connected TCP socket pair on 127.0.0.1; `close()` destroys both and the server. */
export async function tcpPair(): Promise<{ client: Socket; server: Socket; close(): Promise<void> }> {
  const listener: Server = createServer();
  listener.listen(0, "127.0.0.1");
  await once(listener, "listening");
  const address = listener.address();
  if (address === null || typeof address === "string") throw new Error("no TCP address");
  const accepted = once(listener, "connection") as Promise<[Socket]>;
  const client = connect(address.port, "127.0.0.1");
  await once(client, "connect");
  const [server] = await accepted;
  // Errors (EPIPE, ECONNRESET) surface through the reader and writer; without
  // a listener node would also throw them as uncaught exceptions.
  client.on("error", () => {});
  server.on("error", () => {});
  return {
    client,
    server,
    close: async () => {
      client.destroy();
      server.destroy();
      await new Promise<void>((resolve) => listener.close(() => resolve()));
    },
  };
}

/** Splits `bytes` at the given sorted cut points into chunks (empty chunks included on duplicate cuts). */
export function splitAt(bytes: Uint8Array, cuts: readonly number[]): Uint8Array[] {
  const chunks: Uint8Array[] = [];
  let last = 0;
  for (const cut of cuts) {
    chunks.push(bytes.subarray(last, cut));
    last = cut;
  }
  chunks.push(bytes.subarray(last));
  return chunks;
}

/** An async iterable over `chunks` that counts how many were pulled. */
export function countingSource(chunks: readonly Uint8Array[]): AsyncIterable<Uint8Array> & { pulled: number } {
  const source = {
    pulled: 0,
    async *[Symbol.asyncIterator](): AsyncGenerator<Uint8Array> {
      for (const chunk of chunks) {
        source.pulled++;
        yield chunk;
      }
    },
  };
  return source;
}

/** A source that yields `chunks` and then never ends (until `return()`). */
export function stallingSource(chunks: readonly Uint8Array[]): AsyncIterable<Uint8Array> {
  return {
    [Symbol.asyncIterator](): AsyncIterator<Uint8Array> {
      let i = 0;
      return {
        next: () => (i < chunks.length ? Promise.resolve({ done: false, value: chunks[i++]! }) : new Promise(() => {})),
        return: () => Promise.resolve({ done: true, value: undefined }),
      };
    },
  };
}
