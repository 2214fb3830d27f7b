/**
 * In-process tests of the farmer daemon's parts: the service's lifecycle and
 * limits over in-memory streams, the chain deal checker against a fake
 * market, and price parsing. The real-process tests are in test/e2e/farmer*.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { test } from "node:test";
import { Wallet } from "ethers";
import { isDstorError } from "../../src/core/errors.js";
import { merkleRoot } from "../../src/crypto/merkle.js";
import { ChainDealChecker, type MarketDealReader, requiredStake } from "../../src/farmer/chain.js";
import { FarmerService, type FarmerStream } from "../../src/farmer/service.js";
import { createMemoryPieceStore } from "../../src/farmer/store/memory-store.js";
import { priceToUnits } from "../../src/node/farmer-node.js";
import { encodeFrame, writeFrame } from "../../src/protocol/codec.js";
import { encodePutRequest } from "../../src/protocol/messages.js";
import { createOrder, OrderAction, signOrder } from "../../src/protocol/orders.js";
import { PIECE_PUT_PROTOCOL } from "../../src/protocol/protocols.js";
import { MemorySerialStore } from "../../src/protocol/serials.js";

/** One direction of an in-memory stream: an async iterable fed by push(). */
class Pipe implements AsyncIterable<Uint8Array> {
  readonly #queue: Uint8Array[] = [];
  #ended = false;
  #wake: (() => void) | undefined;
  push(bytes: Uint8Array): void {
    this.#queue.push(bytes);
    this.#wake?.();
  }
  end(): void {
    this.#ended = true;
    this.#wake?.();
  }
  async *[Symbol.asyncIterator](): AsyncGenerator<Uint8Array> {
    for (;;) {
      const next = this.#queue.shift();
      if (next !== undefined) {
        yield next;
        continue;
      }
      if (this.#ended) return;
      await new Promise<void>((resolve) => {
        this.#wake = resolve;
      });
      this.#wake = undefined;
    }
  }
}

/** A farmer-side stream whose input the test writes and whose output the test reads. */
function memoryStream(): { stream: FarmerStream; input: Pipe; output: Pipe; aborted: () => Error | undefined } {
  const input = new Pipe();
  const output = new Pipe();
  let abortedWith: Error | undefined;
  const stream: FarmerStream = {
    [Symbol.asyncIterator]: () => input[Symbol.asyncIterator](),
    send(data) {
      output.push(data);
      return true;
    },
    onDrain: async () => {},
    close: async () => output.end(),
    abort(error) {
      abortedWith ??= error;
      input.end();
      output.end();
    },
  };
  return { stream, input, output, aborted: () => abortedWith };
}

async function setup(options: { timeoutMs?: number; maxStreamsPerPeer?: number } = {}) {
  const store = createMemoryPieceStore({ quotaBytes: 1 << 20 });
  await store.start();
  const farmer = Wallet.createRandom();
  const renter = Wallet.createRandom();
  const service = new FarmerService({
    store,
    serials: new MemorySerialStore(),
    deals: { isFunded: async () => true },
    chainId: 1n,
    wallet: farmer.address,
    peerId: "12D3KooWTest",
    priceTbMonth: 1n,
    version: "test",
    ...(options.maxStreamsPerPeer === undefined ? {} : { maxStreamsPerPeer: options.maxStreamsPerPeer }),
    ...(options.timeoutMs === undefined ? {} : { timeoutsMs: { [PIECE_PUT_PROTOCOL]: options.timeoutMs } }),
  });
  const put = service.handlers()[PIECE_PUT_PROTOCOL]!;
  const header = async (size: number) => {
    const data = new Uint8Array(randomBytes(size));
    const pieceId = randomBytes(32).toString("hex");
    const order = createOrder({ chainId: 1n, dealId: 1n, renter: renter.address, farmer: farmer.address, pieceId, action: OrderAction.Put, maxBytes: size });
    const signed = await signOrder(renter, 1n, order);
    const root = Buffer.from(merkleRoot(data)).toString("hex");
    return { data, pieceId, renter: renter.address.toLowerCase(), bytes: encodePutRequest({ v: 1, ...signed, pieceId, size, root }) };
  };
  return { store, service, put, header };
}

test("stop() aborts an upload in flight: nothing is kept and no quota stays reserved", async () => {
  const { store, service, put, header } = await setup();
  const { stream, input } = memoryStream();
  const h = await header(100_000);
  input.push(encodeFrame(h.bytes));
  input.push(encodeFrame(h.data.subarray(0, 50_000)));
  const running = put(stream, "peer-a");
  // Wait until the store has reserved the piece's bytes.
  for (let i = 0; i < 200 && store.usage().reserved === 0; i++) await new Promise((r) => setTimeout(r, 5));
  assert.equal(store.usage().reserved, 100_000);
  await service.stop();
  await running;
  assert.deepEqual(store.usage(), { quota: 1 << 20, used: 0, reserved: 0, free: 1 << 20 });
  for await (const entry of store.list()) assert.fail(`unexpected piece ${entry.pieceId}`);
  await store.stop();
});

test("a stalled put is cut off by its deadline and leaves nothing behind", async () => {
  const { store, service, put, header } = await setup({ timeoutMs: 200 });
  const { stream, input, aborted } = memoryStream();
  const h = await header(10_000);
  input.push(encodeFrame(h.bytes));
  await put(stream, "peer-a");
  assert.ok(aborted() !== undefined, "the stream was reset");
  assert.equal(store.usage().reserved, 0);
  assert.equal(store.usage().used, 0);
  await service.stop();
  await store.stop();
});

test("a peer over its concurrent stream cap is reset at once", async () => {
  const { store, service, put } = await setup({ maxStreamsPerPeer: 2 });
  const open = [memoryStream(), memoryStream()];
  const running = open.map((s) => put(s.stream, "peer-a"));
  const third = memoryStream();
  await put(third.stream, "peer-a");
  assert.ok(third.aborted() !== undefined);
  assert.equal(service.stats().refusedOverCap, 1);
  // Another peer is not affected.
  const other = memoryStream();
  const otherRun = put(other.stream, "peer-b");
  assert.equal(other.aborted(), undefined);
  await service.stop();
  await Promise.all([...running, otherRun]);
  await store.stop();
});

/** Reads the farmer's answer frame off `output`. */
async function answerOf(output: Pipe): Promise<{ ok: boolean; code?: string }> {
  const chunks: Uint8Array[] = [];
  for await (const c of output) chunks.push(c);
  const all = Buffer.concat(chunks);
  return JSON.parse(all.subarray(4, 4 + all.readUInt32BE(0)).toString()) as { ok: boolean; code?: string };
}

test("a refused put answers with the code even while the renter keeps sending", async () => {
  const { store, service, put, header } = await setup();
  const { stream, input, output } = memoryStream();
  const h = await header(4096);
  const tampered = new TextDecoder().decode(h.bytes).replace(/"maxBytes":"4096"/, '"maxBytes":"9999"');
  input.push(encodeFrame(new TextEncoder().encode(tampered)));
  const sink = {
    send(d: Uint8Array): boolean {
      input.push(d);
      return true;
    },
    onDrain: async () => {},
  };
  await writeFrame(sink, h.data);
  input.end();
  await put(stream, "peer-a");
  const answer = await answerOf(output);
  assert.deepEqual([answer.ok, answer.code], [false, "ORDER_BAD_SIGNATURE"]);
  assert.equal(store.usage().used, 0);
  await service.stop();
  await store.stop();
});

test("a put is committed once the renter's end follows its data; anything after the data is refused and nothing is kept", async () => {
  const { store, service, put, header } = await setup();
  // The data, then the end: stored.
  const good = memoryStream();
  const a = await header(5000);
  good.input.push(encodeFrame(a.bytes));
  good.input.push(encodeFrame(a.data));
  good.input.end();
  await put(good.stream, "peer-a");
  assert.deepEqual(await answerOf(good.output), { v: 1, ok: true });
  assert.ok(Buffer.from(await store.read(a.renter, a.pieceId, 0, 5000)).equals(a.data));
  // The data, then one more frame: refused, not kept.
  const extra = memoryStream();
  const b = await header(5000);
  extra.input.push(encodeFrame(b.bytes));
  extra.input.push(encodeFrame(b.data));
  extra.input.push(encodeFrame(new Uint8Array([1, 2, 3])));
  extra.input.end();
  await put(extra.stream, "peer-a");
  const answer = await answerOf(extra.output);
  assert.deepEqual([answer.ok, answer.code], [false, "MESSAGE_MALFORMED"]);
  assert.equal(await store.stat(b.renter, b.pieceId), undefined);
  assert.equal(store.usage().used, 5000, "only the first piece counts");
  assert.equal(store.usage().reserved, 0);
  await service.stop();
  await store.stop();
});

test("ChainDealChecker: only an open, funded deal of this renter with this farmer passes; answers are cached", async () => {
  const renter = `0x${"1".repeat(40)}`;
  const farmer = `0x${"2".repeat(40)}`;
  const future = BigInt(Math.floor(Date.now() / 1000) + 3600);
  const deals = new Map<bigint, { renter: string; farmer: string; end: bigint; closed: boolean; escrow: bigint }>([
    [1n, { renter, farmer, end: future, closed: false, escrow: 10n }],
    [2n, { renter, farmer, end: future, closed: true, escrow: 10n }],
    [3n, { renter, farmer, end: 1n, closed: false, escrow: 10n }],
    [4n, { renter, farmer, end: future, closed: false, escrow: 0n }],
    [5n, { renter, farmer: `0x${"3".repeat(40)}`, end: future, closed: false, escrow: 10n }],
  ]);
  let calls = 0;
  const market: MarketDealReader = {
    async deal(id) {
      calls++;
      return deals.get(id) ?? { renter: `0x${"0".repeat(40)}`, farmer: `0x${"0".repeat(40)}`, end: 0n, closed: false };
    },
    async escrowRemaining(id) {
      return deals.get(id)?.escrow ?? 0n;
    },
  };
  const checker = new ChainDealChecker({ market });
  assert.equal(await checker.isFunded(renter, 1n, farmer), true);
  const before = calls;
  assert.equal(await checker.isFunded(renter, 1n, farmer), true);
  assert.equal(calls, before, "a funded answer is cached");
  for (const id of [2n, 3n, 4n, 5n, 6n]) assert.equal(await checker.isFunded(renter, id, farmer), false, `deal ${id}`);
  assert.equal(await checker.isFunded(`0x${"9".repeat(40)}`, 1n, farmer), false, "another renter");
  const broken = new ChainDealChecker({
    market: {
      deal: async () => {
        throw new Error("rpc down");
      },
      escrowRemaining: async () => 0n,
    },
  });
  await assert.rejects(broken.isFunded(renter, 1n, farmer), (e: unknown) => isDstorError(e, "CHAIN_UNAVAILABLE"));
});

test("prices and stakes are computed exactly", () => {
  assert.equal(priceToUnits(1.5), 1_500_000n);
  assert.equal(priceToUnits(0), 0n);
  assert.equal(priceToUnits(2.000001), 2_000_001n);
  assert.throws(() => priceToUnits(-1), (e: unknown) => isDstorError(e, "INVALID_OPTION"));
  assert.equal(requiredStake(10_000_000n, 10n ** 12n), 10_000_000n);
  assert.equal(requiredStake(10_000_000n, 1n), 1n, "rounded up");
});
