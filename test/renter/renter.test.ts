import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { describe, it } from "node:test";
import fc from "fast-check";
import { isDstorError } from "../../src/core/errors.js";
import { sealedLength } from "../../src/crypto/aead.js";
import { SEGMENTS_IN_FLIGHT } from "../../src/renter/renter.js";
import { chunked, collect, FakeNetwork, fakeRenter, reusedChunks } from "./helpers.js";

const SEGMENT = 64 * 1024;
const sha = (b: Uint8Array): string => createHash("sha256").update(b).digest("hex");

describe("renter over in-memory farmers", () => {
  it("round-trips files of every boundary size", async (t) => {
    const net = new FakeNetwork(10);
    const { renter, metadata } = await fakeRenter(t, net, { segmentSize: SEGMENT });
    const sizes = [0, 1, 4096, 4097, SEGMENT - 1, SEGMENT, SEGMENT + 1, 3 * SEGMENT + 12345];
    for (const size of sizes) {
      const data = new Uint8Array(randomBytes(size));
      const result = await renter.put(`/f-${size}`, chunked(data, 10_000));
      assert.equal(result.size, size);
      assert.equal(result.inline, size <= 4096, `inline for ${size}`);
      const back = await collect(renter.read(`/f-${size}`));
      assert.equal(sha(back), sha(data), `size ${size}`);
    }
    assert.equal((await metadata.readdir("/")).length, sizes.length);
  });

  it("a source that reuses one buffer for every chunk round-trips (put copies each chunk before asking for the next)", async (t) => {
    const net = new FakeNetwork(10);
    const { renter } = await fakeRenter(t, net, { segmentSize: SEGMENT });
    // 1000-byte chunks: deciding on inline storage holds several of them.
    for (const size of [1, 4096, 4097, SEGMENT + 1]) {
      const data = new Uint8Array(randomBytes(size));
      const result = await renter.put(`/reused-${size}`, reusedChunks(data, 1000));
      assert.equal(result.inline, size <= 4096, `inline for ${size}`);
      assert.equal(sha(await collect(renter.read(`/reused-${size}`))), sha(data), `size ${size}`);
    }
  });

  it("transient reads decrypt into a few reused buffers and still give every byte; plain reads never reuse", async (t) => {
    const net = new FakeNetwork(10);
    const { renter } = await fakeRenter(t, net, { segmentSize: SEGMENT });
    const data = new Uint8Array(randomBytes(12 * SEGMENT + 999));
    await renter.put("/transient", [data]);
    const read = async (transient: boolean) => {
      const hash = createHash("sha256");
      const buffers = new Set<ArrayBufferLike>();
      let chunks = 0;
      for await (const chunk of renter.read("/transient", { transient })) {
        hash.update(chunk); // consumed before the next is asked for
        buffers.add(chunk.buffer);
        chunks++;
      }
      return { sha: hash.digest("hex"), buffers: buffers.size, chunks };
    };
    const transient = await read(true);
    assert.equal(transient.sha, sha(data));
    assert.equal(transient.chunks, 13);
    assert.ok(transient.buffers <= SEGMENTS_IN_FLIGHT + 1, `${transient.buffers} buffers for 13 segments`);
    const plain = await read(false);
    assert.equal(plain.sha, sha(data));
    assert.equal(plain.buffers, 13, "every chunk of a plain read is its own memory");
    // Stopping early hands the buffer back; the next read is whole again.
    for await (const chunk of renter.read("/transient", { transient: true })) {
      assert.ok(chunk.byteLength > 0);
      break;
    }
    assert.equal((await read(true)).sha, sha(data));
  });

  it("reads start k gets per segment, and hedge with another holder when one stalls", { timeout: 30_000 }, async (t) => {
    const net = new FakeNetwork(10);
    const { renter, metadata } = await fakeRenter(t, net, { segmentSize: SEGMENT });
    const data = new Uint8Array(randomBytes(6 * SEGMENT + 5));
    await renter.put("/hedged", [data]);
    const gets = () => net.farmers.reduce((n, f) => n + f.gets, 0);
    const before = gets();
    assert.equal(sha(await collect(renter.read("/hedged"))), sha(data));
    assert.equal(gets() - before, 7 * 4, "healthy farmers: exactly k = 4 gets per segment, no extra transfer");
    // Two holders that never answer, made the renter's favourites so they
    // are among the first k gets wherever they hold a piece (8 of the 10
    // farmers hold each segment): every segment still completes, through
    // hedged gets, and the stalled gets are aborted.
    for (const f of [net.farmers[0]!, net.farmers[1]!]) {
      f.behaviour.stallGets = true;
      await metadata.updateFarmer(f.address, (r) => ({ ...r, successes: r.successes + 1000 }));
    }
    const stalledBefore = net.farmers[0]!.gets + net.farmers[1]!.gets;
    const abortedBefore = net.farmers[0]!.aborted + net.farmers[1]!.aborted;
    assert.equal(sha(await collect(renter.read("/hedged"))), sha(data));
    assert.equal(sha(await renter.readRange("/hedged", SEGMENT - 10, 20)), sha(data.subarray(SEGMENT - 10, SEGMENT + 10)));
    const stalled = net.farmers[0]!.gets + net.farmers[1]!.gets - stalledBefore;
    assert.ok(stalled > 0, "the stalled farmers were asked (the reads went through hedging)");
    assert.equal(net.farmers[0]!.aborted + net.farmers[1]!.aborted - abortedBefore, stalled, "every stalled get was aborted once the segment was whole");
  });

  it("stops at optimal and cancels the long tail as a normal outcome", async (t) => {
    const net = new FakeNetwork(10);
    net.farmers[0]!.behaviour.stallPuts = true;
    net.farmers[1]!.behaviour.stallPuts = true;
    const { renter } = await fakeRenter(t, net, { segmentSize: SEGMENT });
    const data = new Uint8Array(randomBytes(2 * SEGMENT));
    const result = await renter.put("/tail", [data]);
    assert.equal(result.longTailCancelled, 4, "2 stalled farmers × 2 segments were cancelled");
    assert.equal(result.piecesStored, 16);
    assert.equal(net.farmers[0]!.aborted + net.farmers[1]!.aborted, 4);
    assert.equal(sha(await collect(renter.read("/tail"))), sha(data));
  });

  it("paces the long tail: on equal farmers the cancelled puts were handed only a head start", async (t) => {
    const net = new FakeNetwork(10);
    const { renter, metadata } = await fakeRenter(t, net, { segmentSize: SEGMENT });
    const data = new Uint8Array(randomBytes(3 * SEGMENT));
    const result = await renter.put("/paced", [data]);
    assert.equal(result.piecesStored, 24);
    assert.equal(result.longTailCancelled, 6, "two puts per segment were still running at optimal");
    const segments = await metadata.segments((await metadata.lookup("/paced")).inode);
    const pieceBytes = segments.reduce((n, s) => n + s.pieceSize, 0);
    const received = net.farmers.reduce((n, f) => n + f.received, 0);
    // Stored: 8 pieces a segment. Unpaced, the two cancelled puts of a segment
    // would have taken about two more whole pieces; paced, a chunk (1/8) or two.
    assert.ok(received < 8.5 * pieceBytes, `farmers were handed ${(received / pieceBytes).toFixed(2)} pieces per segment`);
    for (const s of segments) {
      for (const n of [0, 1, 2, 3]) assert.ok(s.holders[n] !== undefined, `segment ${s.index}: data piece ${n} stored (the spares are the parity pieces started last)`);
    }
    assert.equal(sha(await collect(renter.read("/paced"))), sha(data));
  });

  it("farmers that stall in the middle of a piece are raced by the spares", async (t) => {
    const net = new FakeNetwork(10);
    const { renter, metadata } = await fakeRenter(t, net, { segmentSize: SEGMENT });
    const data = new Uint8Array(randomBytes(2 * SEGMENT));
    const stalled = [net.farmers[0]!, net.farmers[1]!];
    // They stall after the first chunk of their piece (a quarter segment in
    // eight chunks): every put is handed that head start, whether it ends up
    // a leader or a spare — how far a put gets beyond it depends on timing.
    for (const f of stalled) f.behaviour.stallPutsAfterBytes = SEGMENT / 32;
    const result = await renter.put("/stalled", [data]);
    assert.equal(result.piecesStored, 16);
    const holders = new Set((await metadata.segments((await metadata.lookup("/stalled")).inode)).flatMap((s) => Object.values(s.holders)));
    for (const f of stalled) {
      assert.ok(f.received >= SEGMENT / 32, `the stalled farmer took part of a piece first (${f.received} bytes)`);
      assert.ok(!holders.has(f.address), "and holds nothing");
    }
    assert.equal(sha(await collect(renter.read("/stalled"))), sha(data));
  });

  it("replaces failed farmers with spares", async (t) => {
    const net = new FakeNetwork(12);
    for (const i of [0, 1, 2, 3]) net.farmers[i]!.behaviour.failPuts = true;
    const { renter, metadata } = await fakeRenter(t, net, { segmentSize: SEGMENT });
    const data = new Uint8Array(randomBytes(SEGMENT + 7));
    const result = await renter.put("/replaced", [data]);
    assert.ok(result.piecesStored >= 16);
    const failing = new Set(net.farmers.slice(0, 4).map((f) => f.address));
    const record = await metadata.lookup("/replaced");
    for (const s of await metadata.segments(record.inode)) {
      assert.ok(Object.keys(s.holders).length >= 8);
      for (const a of Object.values(s.holders)) assert.ok(!failing.has(a), "no piece recorded on a failing farmer");
    }
    assert.equal(sha(await collect(renter.read("/replaced"))), sha(data));
  });

  it("too few farmers: a clear error and nothing half-written", async (t) => {
    const net = new FakeNetwork(6);
    const { renter, metadata } = await fakeRenter(t, net, { segmentSize: SEGMENT });
    await assert.rejects(renter.put("/x", [new Uint8Array(randomBytes(3 * SEGMENT))]), (e: unknown) => {
      assert.ok(isDstorError(e, "NOT_ENOUGH_FARMERS"));
      assert.match((e as Error).message, /not enough farmers: need 8, found 6/);
      return true;
    });
    await assert.rejects(metadata.lookup("/x"), (e: unknown) => isDstorError(e, "NO_SUCH_FILE"));
    assert.equal(net.storedPieces(), 0);
  });

  it("farmers failing mid-upload: the segment fails, stored pieces are deleted, metadata untouched", async (t) => {
    const net = new FakeNetwork(10);
    for (const i of [0, 1, 2]) net.farmers[i]!.behaviour.failPuts = true;
    const { renter, metadata } = await fakeRenter(t, net, { segmentSize: SEGMENT });
    await assert.rejects(renter.put("/y", [new Uint8Array(randomBytes(2 * SEGMENT))]), (e: unknown) => isDstorError(e, "NOT_ENOUGH_FARMERS"));
    await assert.rejects(metadata.lookup("/y"), (e: unknown) => isDstorError(e, "NO_SUCH_FILE"));
    assert.equal(net.storedPieces(), 0);
  });

  it("downloads with total − k farmers gone, and skips and reports a corrupt farmer", async (t) => {
    const net = new FakeNetwork(10);
    const { renter, metadata } = await fakeRenter(t, net, { segmentSize: SEGMENT });
    const data = new Uint8Array(randomBytes(5 * SEGMENT + 3));
    await renter.put("/d", chunked(data));
    const record = await metadata.lookup("/d");
    const holders = new Set<string>();
    for (const s of await metadata.segments(record.inode)) for (const a of Object.values(s.holders)) holders.add(a);
    const held = net.farmers.filter((f) => holders.has(f.address));
    // Every segment sits on ≥ 8 farmers; take 3 down and make one corrupt: 4 honest pieces remain for each.
    held.slice(0, 3).forEach((f) => {
      f.behaviour.down = true;
    });
    const corrupt = held[3]!;
    corrupt.behaviour.corruptGets = true;
    assert.equal(sha(await collect(renter.read("/d"))), sha(data));
    const rec = await metadata.farmer(corrupt.address);
    if (corrupt.gets > 0) assert.ok((rec?.corrupt ?? 0) > 0, "the corrupt farmer is reported");
  });

  it("a corrupt piece is always detected (every farmer corrupt → error, not wrong bytes)", async (t) => {
    const net = new FakeNetwork(10);
    const { renter, metadata } = await fakeRenter(t, net, { segmentSize: SEGMENT });
    await renter.put("/c", [new Uint8Array(randomBytes(SEGMENT))]);
    for (const f of net.farmers) f.behaviour.corruptGets = true;
    await assert.rejects(collect(renter.read("/c")), (e: unknown) => isDstorError(e, "ERASURE_TOO_FEW_PIECES"));
    const corrupt = (await metadata.farmers()).reduce((n, r) => n + r.corrupt, 0);
    assert.ok(corrupt >= 4);
  });

  it("range reads match the plaintext, at segment and block boundaries", async (t) => {
    const net = new FakeNetwork(10);
    const segmentSize = 200 * 1024;
    const { renter } = await fakeRenter(t, net, { segmentSize });
    const data = new Uint8Array(randomBytes(3 * segmentSize + 777));
    await renter.put("/r", chunked(data));
    const cases: Array<[number, number]> = [
      [0, 1],
      [segmentSize - 1, 2],
      [segmentSize, segmentSize],
      [65535, 2],
      [2 * segmentSize - 10, segmentSize + 20],
      [data.byteLength - 1, 10],
      [0, data.byteLength],
    ];
    for (const [offset, length] of cases) {
      const got = await renter.readRange("/r", offset, length);
      assert.deepEqual(got, data.subarray(offset, Math.min(data.byteLength, offset + length)), `range ${offset}+${length}`);
    }
    await fc.assert(
      fc.asyncProperty(fc.nat(data.byteLength - 1), fc.integer({ min: 1, max: 300_000 }), async (offset, length) => {
        const got = await renter.readRange("/r", offset, length);
        assert.deepEqual(got, data.subarray(offset, Math.min(data.byteLength, offset + length)));
      }),
      { numRuns: 25 },
    );
  });

  it("a small range fetches only part of each piece", async (t) => {
    const net = new FakeNetwork(10);
    const segmentSize = 1024 * 1024;
    const { renter } = await fakeRenter(t, net, { segmentSize });
    await renter.put("/big", [new Uint8Array(randomBytes(segmentSize))]);
    let fetched = 0;
    const get = net.get.bind(net);
    net.get = async (f, r, o) => {
      const res = await get(f, r, o);
      fetched = Math.max(fetched, res.data.byteLength);
      return res;
    };
    await renter.readRange("/big", 100, 10);
    const pieceSize = Math.ceil(sealedLength(segmentSize) / 4);
    assert.ok(fetched > 0 && fetched <= 65 * 1024 + 1024, `fetched ${fetched} bytes of a ${pieceSize}-byte piece; one sealed block is enough`);
  });

  it("rm deletes the pieces on the farmers with delete orders", async (t) => {
    const net = new FakeNetwork(10);
    const { renter, metadata } = await fakeRenter(t, net, { segmentSize: SEGMENT });
    await metadata.mkdir("/dir");
    await renter.put("/dir/a", [new Uint8Array(randomBytes(2 * SEGMENT))]);
    await renter.put("/dir/b", [new Uint8Array(randomBytes(100))]);
    assert.ok(net.storedPieces() >= 16);
    await assert.rejects(renter.remove("/dir"), (e: unknown) => isDstorError(e, "IS_A_DIRECTORY"));
    const result = await renter.remove("/dir", { recursive: true });
    assert.equal(result.files, 2);
    assert.equal(result.remaining, 0);
    assert.equal(net.storedPieces(), 0);
    assert.deepEqual(await metadata.pendingDeletes(), []);
    await assert.rejects(metadata.lookup("/dir"), (e: unknown) => isDstorError(e, "NO_SUCH_FILE"));
  });

  it("overwriting a file deletes the old pieces; a down farmer's deletes stay pending", async (t) => {
    const net = new FakeNetwork(10);
    const { renter, metadata } = await fakeRenter(t, net, { segmentSize: SEGMENT });
    await renter.put("/o", [new Uint8Array(randomBytes(SEGMENT))]);
    const before = net.storedPieces();
    const holder = net.farmers.find((f) => f.pieces.size > 0)!;
    holder.behaviour.down = true;
    const data = new Uint8Array(randomBytes(SEGMENT));
    await renter.put("/o", [data]);
    assert.equal((await metadata.pendingDeletes()).length, 1);
    holder.behaviour.down = false;
    assert.deepEqual(await renter.flushDeletes(), { deleted: 1, remaining: 0 });
    assert.ok(net.storedPieces() <= before);
    assert.equal(sha(await collect(renter.read("/o"))), sha(data));
  });

  it("deal states follow the pieces each farmer holds, through puts and deletes", async (t) => {
    const net = new FakeNetwork(10);
    const { renter } = await fakeRenter(t, net, { segmentSize: SEGMENT });
    const first = await renter.put("/a", [new Uint8Array(randomBytes(2 * SEGMENT))]);
    assert.equal(first.unconfirmedFarmers, 0);
    await renter.put("/b", [new Uint8Array(randomBytes(SEGMENT))]);
    for (const f of net.farmers) {
      const listed = new Set((net.states.get(f.address) ?? []).map((p) => p.pieceId));
      assert.deepEqual(listed, new Set(f.pieces.keys()), `farmer ${f.address}: the co-signed state lists exactly its pieces`);
    }
    await renter.remove("/a");
    for (const f of net.farmers) {
      if (!net.states.has(f.address)) continue;
      assert.deepEqual(new Set(net.states.get(f.address)!.map((p) => p.pieceId)), new Set(f.pieces.keys()));
    }
    net.farmers[0]!.behaviour.down = true;
    const third = await renter.put("/c", [new Uint8Array(randomBytes(SEGMENT))]);
    assert.equal(third.unconfirmedFarmers, 0, "a farmer that took no piece needs no new state");
  });

  it("background deal syncs: puts resolve once committed, close-together puts share syncs, settle waits for them", async (t) => {
    const net = new FakeNetwork(10);
    const { renter } = await fakeRenter(t, net, { segmentSize: SEGMENT });
    const syncs: string[] = [];
    const original = net.syncState.bind(net);
    net.syncState = async (farmer, pieces) => {
      syncs.push(farmer.address);
      await new Promise((r) => setTimeout(r, 20));
      await original(farmer, pieces);
    };
    const files = 12;
    const results = await Promise.all(
      Array.from({ length: files }, (_, i) => renter.put(`/f${i}`, [new Uint8Array(randomBytes(SEGMENT))], { dealSync: "background" })),
    );
    assert.ok(results.every((r) => r.unconfirmedFarmers > 0), "each put reports its holders as not yet co-signed");
    await renter.settle();
    for (const f of net.farmers) {
      const listed = new Set((net.states.get(f.address) ?? []).map((p) => p.pieceId));
      assert.deepEqual(listed, new Set(f.pieces.keys()), `farmer ${f.address}: after settle the co-signed state lists exactly its pieces`);
    }
    const perFarmer = Math.max(...net.farmers.map((f) => syncs.filter((a) => a === f.address).length));
    assert.ok(perFarmer <= files / 2, `${files} puts close together cost at most ${perFarmer} syncs per farmer`);
  });

  it("stat reports segments, pieces, farmers and health", async (t) => {
    const net = new FakeNetwork(10);
    const { renter } = await fakeRenter(t, net, { segmentSize: SEGMENT });
    await renter.put("/s", [new Uint8Array(randomBytes(SEGMENT + 1))]);
    await renter.put("/tiny", [new Uint8Array(3)]);
    const st = await renter.stat("/s");
    assert.equal(st.segments.length, 2);
    assert.ok(st.segments.every((s) => s.healthy >= 8 && s.pieces.length === 10));
    assert.equal(st.health, "healthy");
    assert.equal((await renter.stat("/tiny")).health, "inline");
    assert.equal((await renter.stat("/")).health, "directory");
  });

  it("uploads into a missing directory fail before any transfer", async (t) => {
    const net = new FakeNetwork(10);
    const { renter } = await fakeRenter(t, net, { segmentSize: SEGMENT });
    await assert.rejects(renter.put("/nope/file", [new Uint8Array(10_000)]), (e: unknown) => isDstorError(e, "NO_SUCH_FILE"));
    assert.equal(net.storedPieces(), 0);
  });
});
