import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { describe, test } from "node:test";
import fc from "fast-check";
import { isDstorError } from "../../src/core/errors.js";
import {
  type ByteSink,
  encodeFrame,
  encodeFramePrefix,
  FrameReader,
  readAllData,
  readData,
  writeData,
  writeFrame,
} from "../../src/protocol/codec.js";
import { MAX_FRAME_BYTES } from "../../src/protocol/limits.js";
import { countingSource, MemoryPipe, socketSink, splitAt, stallingSource, tcpPair } from "./helpers.js";

function concat(parts: readonly Uint8Array[]): Uint8Array {
  return new Uint8Array(Buffer.concat(parts));
}

async function readAll(reader: FrameReader, maxBytes?: number): Promise<Uint8Array[]> {
  const frames: Uint8Array[] = [];
  for (let f = await reader.next({ maxBytes }); f !== null; f = await reader.next({ maxBytes })) frames.push(f.slice());
  return frames;
}

const isCode =
  (...codes: Parameters<typeof isDstorError>[1][]) =>
  (e: unknown): boolean =>
    isDstorError(e, ...codes);

describe("framing", () => {
  test("a frame is a uint32 big-endian length then the payload", () => {
    assert.deepEqual([...encodeFrame(new Uint8Array([7, 8, 9]))], [0, 0, 0, 3, 7, 8, 9]);
    assert.deepEqual([...encodeFramePrefix(0x01020304)], [1, 2, 3, 4]);
    assert.throws(() => encodeFramePrefix(2 ** 32), isCode("MESSAGE_TOO_LARGE"));
  });

  test("frames survive a split at every possible boundary", async () => {
    const frames = [new Uint8Array(0), new Uint8Array([1]), randomBytes(9), new Uint8Array(0), randomBytes(5)];
    const wire = concat(frames.map(encodeFrame));
    for (let a = 0; a <= wire.length; a++) {
      for (let b = a; b <= wire.length; b++) {
        const reader = new FrameReader(countingSource(splitAt(wire, [a, b])));
        assert.deepEqual(await readAll(reader), frames.map((f) => new Uint8Array(f)), `cuts ${a},${b}`);
        assert.ok(reader.ended);
      }
    }
  });

  test("property: random frames through random chunkings come out identical", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.uint8Array({ maxLength: 300 }), { maxLength: 12 }),
        fc.array(fc.nat(), { maxLength: 20 }),
        async (frames, rawCuts) => {
          const wire = concat(frames.map(encodeFrame));
          const cuts = rawCuts.map((c) => c % (wire.length + 1)).sort((x, y) => x - y);
          const reader = new FrameReader(countingSource(splitAt(wire, cuts)));
          assert.deepEqual(await readAll(reader), frames);
        },
      ),
      { numRuns: 300 },
    );
  });

  test("property: any proper prefix of a frame stream is a clean end or MESSAGE_MALFORMED", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.uint8Array({ minLength: 1, maxLength: 50 }), { minLength: 1, maxLength: 5 }), fc.nat(), fc.nat(), async (frames, cutA, cutB) => {
        const wire = concat(frames.map(encodeFrame));
        const end = cutA % wire.length;
        const boundaries = new Set<number>([0]);
        let at = 0;
        for (const f of frames) {
          at += 4 + f.length;
          boundaries.add(at);
        }
        const reader = new FrameReader(countingSource(splitAt(wire.subarray(0, end), [cutB % (end + 1)])));
        if (boundaries.has(end)) {
          await readAll(reader);
        } else {
          await assert.rejects(readAll(reader), isCode("MESSAGE_MALFORMED"));
        }
      }),
      { numRuns: 300 },
    );
  });

  test("a truncated stream is MESSAGE_MALFORMED and poisons the reader", async () => {
    const wire = encodeFrame(randomBytes(100));
    const reader = new FrameReader(countingSource([wire.subarray(0, 50)]));
    await assert.rejects(reader.readFrame(), isCode("MESSAGE_MALFORMED"));
    await assert.rejects(reader.readFrame(), isCode("MESSAGE_MALFORMED"));
    // Inside the prefix too.
    await assert.rejects(new FrameReader(countingSource([wire.subarray(0, 3)])).next(), isCode("MESSAGE_MALFORMED"));
    // And readFrame at a clean end.
    await assert.rejects(new FrameReader(countingSource([])).readFrame(), isCode("MESSAGE_MALFORMED"));
    assert.equal(await new FrameReader(countingSource([])).next(), null);
  });

  test("an oversize frame is refused from its prefix, before the body is read", async () => {
    // Only the prefix exists; the body would never arrive. Reading it would hang.
    const reader = new FrameReader(stallingSource([encodeFramePrefix(1025)]));
    // The timeout only turns a regression into a clear failure instead of a stuck test.
    await assert.rejects(reader.next({ maxBytes: 1024, timeoutMs: 5000 }), isCode("MESSAGE_TOO_LARGE"));
    const huge = new FrameReader(stallingSource([encodeFramePrefix(0xffffffff)]));
    await assert.rejects(huge.next({ timeoutMs: 5000 }), isCode("MESSAGE_TOO_LARGE"));
    // The default limit is MAX_FRAME_BYTES; exactly the limit is allowed.
    const atLimit = new FrameReader(countingSource([encodeFrame(new Uint8Array(MAX_FRAME_BYTES))]));
    assert.equal((await atLimit.readFrame()).byteLength, MAX_FRAME_BYTES);
  });

  test("the reader pulls no more chunks than the frame needs", async () => {
    // Three frames in one chunk, then more chunks: reading one frame pulls one chunk.
    const source = countingSource([concat([encodeFrame(new Uint8Array([1])), encodeFrame(new Uint8Array([2]))]), encodeFrame(new Uint8Array([3]))]);
    const reader = new FrameReader(source);
    assert.deepEqual([...(await reader.readFrame())], [1]);
    assert.equal(source.pulled, 1);
    assert.deepEqual([...(await reader.readFrame())], [2]);
    assert.equal(source.pulled, 1);
    assert.deepEqual([...(await reader.readFrame())], [3]);
    assert.equal(source.pulled, 2);
  });

  test("chunks may be Uint8ArrayList-like objects with subarray()", async () => {
    const wire = encodeFrame(new Uint8Array([4, 5, 6]));
    const list = { subarray: () => wire };
    const source = {
      async *[Symbol.asyncIterator]() {
        yield list;
      },
    };
    assert.deepEqual([...(await new FrameReader(source).readFrame())], [4, 5, 6]);
  });

  test("an iterable list of buffers is read buffer by buffer, never joined", async () => {
    const wire = concat([encodeFrame(new Uint8Array([1, 2, 3, 4, 5])), encodeFrame(new Uint8Array([6]))]);
    // Like libp2p's Uint8ArrayList: iterable over its buffers; joining them would be a copy.
    const list = {
      bufs: [wire.subarray(0, 2), wire.subarray(2, 6), wire.subarray(6)],
      subarray(): Uint8Array {
        throw new Error("the reader joined the list's buffers");
      },
      [Symbol.iterator]() {
        return this.bufs[Symbol.iterator]();
      },
    };
    const reader = new FrameReader({
      async *[Symbol.asyncIterator]() {
        yield list;
      },
    });
    assert.deepEqual([...(await reader.readFrame())], [1, 2, 3, 4, 5]);
    assert.deepEqual([...(await reader.readFrame())], [6]);
    assert.equal(await reader.next(), null);
  });

  test("property: readData yields views on the received buffers that add up to the data", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.uint8Array({ minLength: 1, maxLength: 3000 }),
        fc.integer({ min: 1, max: 700 }),
        fc.array(fc.integer({ min: 1, max: 900 }), { minLength: 1, maxLength: 8 }),
        async (data, frameBytes, cuts) => {
          const frames: Uint8Array[] = [];
          for (let i = 0; i < data.byteLength; i += frameBytes) frames.push(encodeFrame(data.subarray(i, i + frameBytes)));
          const wire = concat(frames);
          const chunks: Uint8Array[] = [];
          for (let at = 0, c = 0; at < wire.byteLength; c++) {
            const n = cuts[c % cuts.length]!;
            chunks.push(wire.subarray(at, at + n));
            at += n;
          }
          const parts: Uint8Array[] = [];
          for await (const part of readData(new FrameReader(countingSource(chunks)), data.byteLength)) parts.push(part);
          assert.deepEqual(concat(parts), data);
          for (const part of parts) assert.equal(part.buffer, wire.buffer, "a part is a view, not a copy");
        },
      ),
      { numRuns: 200 },
    );
  });

  test("readPart hands out a frame in pieces; next() refuses a half-read frame", async () => {
    const wire = concat([encodeFrame(new Uint8Array([1, 2, 3, 4])), encodeFrame(new Uint8Array([5]))]);
    const reader = new FrameReader(countingSource([wire.subarray(0, 6), wire.subarray(6)]));
    assert.deepEqual([...((await reader.readPart()) ?? [])], [1, 2]);
    await assert.rejects(reader.next(), isCode("INTERNAL"));
    const more = new FrameReader(countingSource([wire.subarray(0, 6), wire.subarray(6)]));
    assert.deepEqual([...((await more.readPart()) ?? [])], [1, 2]);
    assert.deepEqual([...((await more.readPart()) ?? [])], [3, 4]);
    assert.deepEqual([...((await more.readPart({ maxBytes: 1 })) ?? [])], [5]);
    assert.equal(await more.readPart(), null);
    const oversize = new FrameReader(countingSource([wire]));
    await assert.rejects(oversize.readPart({ maxBytes: 3 }), isCode("MESSAGE_TOO_LARGE"));
    const cut = new FrameReader(countingSource([wire.subarray(0, 6)]));
    await cut.readPart();
    await assert.rejects(cut.readPart(), isCode("MESSAGE_MALFORMED"));
  });

  test("a stalled stream times out with TIMEOUT; an abort is ABORTED", async () => {
    const reader = new FrameReader(stallingSource([new Uint8Array([0, 0])]));
    await assert.rejects(reader.next({ timeoutMs: 20 }), isCode("TIMEOUT"));
    await assert.rejects(reader.next(), isCode("TIMEOUT"), "poisoned");
    const controller = new AbortController();
    const pending = new FrameReader(stallingSource([])).next({ signal: controller.signal });
    controller.abort();
    await assert.rejects(pending, isCode("ABORTED"));
  });

  test("a failing source becomes MESSAGE_MALFORMED", async () => {
    const source = {
      async *[Symbol.asyncIterator](): AsyncGenerator<Uint8Array> {
        yield new Uint8Array([0, 0, 0, 9, 1]);
        throw new Error("ECONNRESET");
      },
    };
    await assert.rejects(new FrameReader(source).next(), isCode("MESSAGE_MALFORMED"));
  });

  test("readEnd refuses trailing bytes", async () => {
    const ok = new FrameReader(countingSource([encodeFrame(new Uint8Array([1]))]));
    await ok.readFrame();
    await ok.readEnd();
    const extra = new FrameReader(countingSource([encodeFrame(new Uint8Array([1])), new Uint8Array([9])]));
    await extra.readFrame();
    await assert.rejects(extra.readEnd(), isCode("MESSAGE_MALFORMED"));
  });
});

describe("writing with backpressure", () => {
  test("writeFrame waits for onDrain whenever send returns false", async () => {
    const log: string[] = [];
    let draining: (() => void) | undefined;
    const sink: ByteSink = {
      send: (data) => {
        log.push(`send ${data.byteLength}`);
        return false;
      },
      onDrain: () =>
        new Promise<void>((resolve) => {
          log.push("wait");
          draining = resolve;
        }),
    };
    const big = new Uint8Array(100_000);
    const done = writeFrame(sink, big);
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(log, ["send 4", "wait"], "no second send before the drain");
    draining!();
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(log, ["send 4", "wait", "send 100000", "wait"]);
    draining!();
    await done;
  });

  test("writeFrame refuses a payload over its limit without sending anything", async () => {
    let sent = 0;
    const sink: ByteSink = { send: () => ++sent > 0, onDrain: async () => {} };
    await assert.rejects(writeFrame(sink, new Uint8Array(11), { maxBytes: 10 }), isCode("MESSAGE_TOO_LARGE"));
    assert.equal(sent, 0);
  });

  test("an abort while waiting for drain rejects with ABORTED", async () => {
    const sink: ByteSink = { send: () => false, onDrain: () => new Promise(() => {}) };
    const controller = new AbortController();
    const pending = writeFrame(sink, new Uint8Array(10), { signal: controller.signal });
    controller.abort();
    await assert.rejects(pending, isCode("ABORTED"));
    await assert.rejects(writeFrame(sink, new Uint8Array(10), { timeoutMs: 10 }), isCode("TIMEOUT"));
    const closed: ByteSink = {
      send: () => {
        throw new Error("stream closed");
      },
      onDrain: async () => {},
    };
    await assert.rejects(writeFrame(closed, new Uint8Array(1)), isCode("ABORTED"));
  });

  test("data frames through an in-memory pipe with a small high-water mark", async () => {
    const pipe = new MemoryPipe(8 * 1024);
    const data = randomBytes(300_000);
    const writer = (async () => {
      await writeFrame(pipe, new TextEncoder().encode("header"));
      await writeData(pipe, data, { frameBytes: 4096 });
      pipe.end();
    })();
    const reader = new FrameReader(pipe);
    assert.equal(new TextDecoder().decode(await reader.readFrame()), "header");
    const got = await readAllData(reader, data.byteLength);
    await writer;
    await reader.readEnd();
    assert.deepEqual(got, new Uint8Array(data));
    assert.ok(pipe.pressureEvents > 0, "backpressure was exercised");
  });

  test("readAllData receives into a given buffer, and refuses one too small", async () => {
    const data = randomBytes(70_000);
    const into = new Uint8Array(100_000).fill(7);
    const reader = new FrameReader(countingSource([encodeFrame(data.subarray(0, 30_000)), encodeFrame(data.subarray(30_000))]));
    const got = await readAllData(reader, data.byteLength, { into });
    assert.equal(got.buffer, into.buffer, "a view of the given buffer");
    assert.equal(got.byteOffset, 0);
    assert.deepEqual(got, new Uint8Array(data));
    assert.equal(into[data.byteLength], 7, "nothing written past the data");
    const small = new FrameReader(countingSource([encodeFrame(data)]));
    await assert.rejects(readAllData(small, data.byteLength, { into: new Uint8Array(10) }), isCode("INVALID_ARGUMENT"));
  });

  test("readData refuses overshoot, empty frames and early ends", async () => {
    const over = new FrameReader(countingSource([encodeFrame(new Uint8Array(6))]));
    await assert.rejects(readAllData(over, 5), isCode("MESSAGE_TOO_LARGE"));
    const empty = new FrameReader(countingSource([encodeFrame(new Uint8Array(0))]));
    await assert.rejects(readAllData(empty, 5), isCode("MESSAGE_MALFORMED"));
    const short = new FrameReader(countingSource([encodeFrame(new Uint8Array(3))]));
    await assert.rejects(readAllData(short, 5), isCode("MESSAGE_MALFORMED"));
    const none = new FrameReader(countingSource([]));
    assert.equal((await readAllData(none, 0)).byteLength, 0);
    const frames: Uint8Array[] = [];
    for await (const f of readData(new FrameReader(countingSource([])), 0)) frames.push(f);
    assert.equal(frames.length, 0);
  });
});

describe("over real TCP sockets on 127.0.0.1", () => {
  test("headers and 8 MiB of data frames, both directions, with backpressure", async () => {
    const pair = await tcpPair();
    try {
      const data = randomBytes(8 * 1024 * 1024);
      const expected = createHash("sha256").update(data).digest("hex");
      const clientSink = socketSink(pair.client);
      const serverSink = socketSink(pair.server);
      const serverReader = new FrameReader(pair.server);
      const clientReader = new FrameReader(pair.client);

      const server = (async () => {
        const header = new TextDecoder().decode(await serverReader.readFrame({ maxBytes: 1024 }));
        const hash = createHash("sha256");
        let total = 0;
        for await (const frame of readData(serverReader, Number(header))) {
          hash.update(frame);
          total += frame.byteLength;
        }
        await writeFrame(serverSink, new TextEncoder().encode(`${total}:${hash.digest("hex")}`));
        // Echo the data back so the client's reader is exercised too.
        await writeData(serverSink, data, { frameBytes: MAX_FRAME_BYTES });
        pair.server.end();
      })();

      await writeFrame(clientSink, new TextEncoder().encode(String(data.byteLength)));
      await writeData(clientSink, data);
      const answer = new TextDecoder().decode(await clientReader.readFrame({ timeoutMs: 30_000 }));
      assert.equal(answer, `${data.byteLength}:${expected}`);
      const echoed = await readAllData(clientReader, data.byteLength);
      assert.equal(createHash("sha256").update(echoed).digest("hex"), expected);
      await clientReader.readEnd({ timeoutMs: 30_000 });
      await server;
    } finally {
      await pair.close();
    }
  });

  test("a peer that hangs up mid-frame gives MESSAGE_MALFORMED", async () => {
    const pair = await tcpPair();
    try {
      const reader = new FrameReader(pair.server);
      pair.client.end(encodeFrame(randomBytes(1000)).subarray(0, 500));
      await assert.rejects(reader.readFrame({ timeoutMs: 10_000 }), isCode("MESSAGE_MALFORMED"));
    } finally {
      await pair.close();
    }
  });

  test("an announced oversize frame is refused over TCP", async () => {
    const pair = await tcpPair();
    try {
      const reader = new FrameReader(pair.server);
      pair.client.write(encodeFramePrefix(MAX_FRAME_BYTES + 1));
      await assert.rejects(reader.readFrame({ timeoutMs: 10_000 }), isCode("MESSAGE_TOO_LARGE"));
    } finally {
      await pair.close();
    }
  });
});
