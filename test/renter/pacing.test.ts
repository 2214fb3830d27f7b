import assert from "node:assert/strict";
import { setImmediate as tick } from "node:timers/promises";
import { describe, it, type TestContext } from "node:test";
import { isDstorError } from "../../src/core/errors.js";
import { LongTailPacer, type LongTailPacerInit } from "../../src/renter/pacing.js";

const PIECE = 100;
const CHUNK = 10;

/** A pacer whose waiting puts are aborted when the test ends (as the renter aborts a segment's long tail). */
function pacer(t: TestContext, init: Partial<LongTailPacerInit> = {}): { p: LongTailPacer; signal: AbortSignal } {
  const end = new AbortController();
  t.after(() => end.abort());
  return { p: new LongTailPacer({ optimal: 3, total: 5, chunkBytes: CHUNK, stallMs: 60_000, keepAliveMs: 60_000, ...init }), signal: end.signal };
}

/** One put pulling its chunks as fast as the pacer lets it; `received` counts what it got. */
class Put {
  received = 0;
  readonly parts: Uint8Array[] = [];
  waiting = false;
  done = false;
  error: unknown;
  readonly #it: AsyncGenerator<Uint8Array>;

  constructor({ p, signal }: { p: LongTailPacer; signal: AbortSignal }, number: number, data: Uint8Array) {
    this.#it = p.chunks(number, data, signal);
  }

  /** Asks for the next chunk; resolves once it came (or the put ended). */
  async pull(): Promise<void> {
    this.waiting = true;
    try {
      const next = await this.#it.next();
      if (next.done) this.done = true;
      else {
        this.received += next.value.byteLength;
        this.parts.push(next.value);
      }
    } catch (error) {
      this.error = error;
    } finally {
      this.waiting = false;
    }
  }
}

/** Lets every put that can move pull until none can (the event loop settles). */
async function runFreely(puts: Put[]): Promise<void> {
  const pending = new Map<Put, Promise<void>>();
  for (;;) {
    for (const put of puts) if (!put.done && put.error === undefined && !pending.has(put)) pending.set(put, put.pull().then(() => void pending.delete(put)));
    const before = puts.map((p) => p.received + (p.done ? 1 : 0));
    await tick();
    await tick();
    if (puts.every((p, i) => p.received + (p.done ? 1 : 0) === before[i])) return;
  }
}

const data = (): Uint8Array => Uint8Array.from({ length: PIECE }, (_, i) => i);

describe("long-tail pacer", () => {
  it("lets the optimal puts furthest ahead send everything and holds the spares at their head start", async (t) => {
    const pc = pacer(t);
    const piece = data();
    const puts = [0, 1, 2, 3, 4].map((n) => new Put(pc, n, piece));
    await runFreely(puts);
    assert.deepEqual(
      puts.map((x) => x.received),
      [PIECE, PIECE, PIECE, CHUNK, CHUNK],
    );
    assert.ok(puts[3]!.waiting && puts[4]!.waiting, "the spares wait for the pacer");
    // Every chunk is a view of the piece, in order.
    assert.deepEqual(Buffer.concat(puts[0]!.parts), Buffer.from(piece));
    assert.ok(puts[0]!.parts.every((part) => part.buffer === piece.buffer), "no copies");
  });

  it("keeps pacing while puts move or succeed, and ends it when nothing has moved for stallMs", async (t) => {
    const pc = pacer(t, { stallMs: 50 });
    const { p } = pc;
    const puts = [0, 1, 2, 3, 4].map((n) => new Put(pc, n, data()));
    await runFreely(puts);
    p.succeeded(0);
    p.succeeded(1);
    await runFreely(puts);
    assert.equal(puts[3]!.received, CHUNK, "two of three succeeded: the spares still wait");
    assert.equal(p.released, false);
    // Put 2 has sent everything but its farmer never answers: nothing moves.
    await new Promise((r) => setTimeout(r, 150));
    assert.equal(p.released, true);
    await runFreely(puts);
    assert.equal(puts[3]!.received, PIECE);
    assert.equal(puts[4]!.received, PIECE);
  });

  it("ends the pacing when a put fails; its replacement runs freely", async (t) => {
    const pc = pacer(t);
    const { p } = pc;
    const puts = [0, 1, 2, 3, 4].map((n) => new Put(pc, n, data()));
    await runFreely(puts);
    p.failed(2);
    await runFreely(puts);
    assert.deepEqual(
      puts.map((x) => x.received),
      [PIECE, PIECE, PIECE, PIECE, PIECE],
    );
    const replacement = new Put(pc, 2, data());
    await runFreely([replacement]);
    assert.equal(replacement.received, PIECE);
  });

  it("a put whose farmer is slow to take its first bytes becomes the spare; the others run", async (t) => {
    const pc = pacer(t, { optimal: 4 });
    const piece = data();
    const puts = [0, 1, 2, 3, 4].map((n) => new Put(pc, n, piece));
    // Put 0's farmer takes its first chunk, then nothing for a while: the others pull.
    await puts[0]!.pull();
    await runFreely(puts.slice(1));
    assert.deepEqual(
      puts.map((x) => x.received),
      [CHUNK, PIECE, PIECE, PIECE, PIECE],
    );
    await runFreely(puts);
    assert.equal(puts[0]!.received, CHUNK, "put 0 is now a spare: it waits");
    assert.ok(puts[0]!.waiting);
  });

  it("a waiting put is handed a chunk every keepAliveMs, and the pacing goes on", async (t) => {
    const pc = pacer(t, { keepAliveMs: 20 });
    const puts = [0, 1, 2, 3, 4].map((n) => new Put(pc, n, data()));
    await runFreely(puts);
    assert.equal(puts[4]!.received, CHUNK);
    await new Promise((r) => setTimeout(r, 60));
    assert.equal(puts[4]!.received, 2 * CHUNK, "the waiting pull got one chunk");
    assert.equal(pc.p.released, false);
    await runFreely(puts);
    assert.ok(puts[4]!.waiting, "and waits again");
  });

  it("an abort rejects a waiting put with the signal's reason", async (t) => {
    const pc = pacer(t);
    const { p } = pc;
    const controller = new AbortController();
    const puts = [0, 1, 2].map((n) => new Put(pc, n, data()));
    await runFreely(puts);
    const spare = p.chunks(3, data(), controller.signal);
    assert.equal((await spare.next()).value?.byteLength, CHUNK, "the head start");
    const waiting = spare.next();
    controller.abort(new Error("stop"));
    await assert.rejects(waiting, (e: unknown) => isDstorError(e, "ABORTED") && (e.cause as Error).message === "stop");
  });

  it("with no spares (optimal = total) nothing ever waits", async (t) => {
    const pc = pacer(t, { optimal: 5 });
    const { p } = pc;
    assert.equal(p.released, true);
    const puts = [0, 1, 2, 3, 4].map((n) => new Put(pc, n, data()));
    await runFreely(puts.slice(2));
    assert.deepEqual(
      puts.map((x) => x.received),
      [0, 0, PIECE, PIECE, PIECE],
    );
  });

  it("rejects a zero chunk size", (t) => {
    assert.throws(() => pacer(t, { chunkBytes: 0 }), RangeError);
  });
});
