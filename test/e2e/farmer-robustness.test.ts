/**
 * Robustness of the farmer daemon as a real process: kill -9 in the middle of
 * a put, quota to the byte, unconfirmed pieces expiring, piece ids that are
 * not hex, and random or mutated bytes into every handler.
 */
import assert from "node:assert/strict";
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import type { Stream } from "@libp2p/interface";
import fc from "fast-check";
import { marketDomain, recoverDealStateSigner, signDealState } from "../../src/chain/signing.js";
import { isDstorError } from "../../src/core/errors.js";
import { dealRoot } from "../../src/crypto/merkle.js";
import { MIB } from "../../src/core/units.js";
import { DEAL_SIGN_PROTOCOL, encodeDealSignRequest } from "../../src/farmer/deal-sign.js";
import { encodeFrame, FrameReader } from "../../src/protocol/codec.js";
import {
  encodeAuditRequest,
  encodeDeleteRequest,
  encodeGetRequest,
  encodeInfoRequest,
  encodePutRequest,
} from "../../src/protocol/messages.js";
import { OrderAction, orderToJson } from "../../src/protocol/orders.js";
import {
  NODE_INFO_PROTOCOL,
  PIECE_AUDIT_PROTOCOL,
  PIECE_DELETE_PROTOCOL,
  PIECE_GET_PROTOCOL,
  PIECE_PUT_PROTOCOL,
} from "../../src/protocol/protocols.js";
import { startFixture } from "../chain/fixture.js";
import { createRenter, randomPiece, type Renter, spawnFarmer, tempDir } from "../farmer/fixtures/farmer-process.js";

async function rejectsWith(promise: Promise<unknown>, code: string, what: string): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(isDstorError(error), `${what}: expected a DstorError, got ${String(error)}`);
    assert.equal(error.code, code, `${what}: ${error.message}`);
    return true;
  });
}

/** Every file under `dir` (relative paths), excluding the level index's own files. */
async function listFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string, rel: string): Promise<void> => {
    let entries: import("node:fs").Dirent[];
    try {
      entries = await readdir(d, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      const r = rel === "" ? e.name : `${rel}/${e.name}`;
      if (e.isDirectory()) await walk(join(d, e.name), r);
      else out.push(r);
    }
  };
  await walk(dir, "");
  return out.filter((p) => !p.startsWith("index/")).sort();
}

/** Sends raw bytes on a fresh stream and returns whatever comes back (bounded), never throwing. */
async function sendRaw(renter: Renter, addr: string, protocol: string, bytes: Uint8Array): Promise<Uint8Array | undefined> {
  let stream: Stream | undefined;
  try {
    stream = await renter.client.openStream(addr, protocol, { signal: AbortSignal.timeout(5_000) });
    if (bytes.byteLength > 0) stream.send(bytes);
    await stream.close({ signal: AbortSignal.timeout(5_000) });
    const reader = new FrameReader(stream, { maxFrameBytes: 64 * 1024 });
    const frame = await reader.next({ timeoutMs: 5_000 });
    reader.close();
    return frame ?? undefined;
  } catch {
    return undefined;
  } finally {
    stream?.abort(new Error("done"));
  }
}

test("farmer daemon robustness", { timeout: 180_000 }, async (t) => {
  const f = await startFixture(t);
  const renter = await createRenter(t, f);

  await t.test("kill -9 in the middle of a put: no partial piece, consistent index, the retry succeeds", async () => {
    const home = await tempDir(t, "dstor-farmer-kill-");
    let farmer = await spawnFarmer(t, f, { home });
    const farmerAddr = farmer.wallet.toLowerCase();
    const dealId = await renter.openDeal(farmer.wallet);
    const size = 64 * MIB;
    const piece = randomPiece(size);
    const put = await renter.order(dealId, farmerAddr, OrderAction.Put, piece.pieceId, size);
    const victim = farmer;
    let killed: Promise<void> | undefined;
    async function* slowly(): AsyncGenerator<Uint8Array> {
      for (let offset = 0; offset < size; offset += MIB) {
        if (offset === 24 * MIB) {
          killed = victim.kill9();
          await killed;
        }
        yield piece.data.subarray(offset, offset + MIB);
      }
    }
    // The put may fail (the connection drops) before the source has seen the kill through: wait for it.
    await assert.rejects(renter.client.put(farmer.addr, { ...put, pieceId: piece.pieceId, size, root: piece.root }, slowly()));
    await killed;
    assert.equal(victim.child.signalCode, "SIGKILL");
    // The killed process left a temp file behind (or none); never a piece.
    assert.deepEqual((await listFiles(farmer.storage)).filter((p) => p.startsWith("pieces/")), []);

    farmer = await spawnFarmer(t, f, { home });
    assert.deepEqual(await listFiles(farmer.storage), [], "restart reconciled the temp file away");
    const info = await renter.client.info(farmer.addr);
    assert.equal(info.free, info.capacity, "nothing reserved or used after the restart");
    const g = await renter.order(dealId, farmerAddr, OrderAction.Get, piece.pieceId, size);
    await rejectsWith(renter.client.get(farmer.addr, { ...g, pieceId: piece.pieceId, root: piece.root }), "PIECE_NOT_FOUND", "no partial piece");

    const retry = await renter.order(dealId, farmerAddr, OrderAction.Put, piece.pieceId, size);
    await renter.client.put(farmer.addr, { ...retry, pieceId: piece.pieceId, size, root: piece.root }, piece.data);
    const g2 = await renter.order(dealId, farmerAddr, OrderAction.Get, piece.pieceId, size);
    const back = await renter.client.get(farmer.addr, { ...g2, pieceId: piece.pieceId, root: piece.root, size });
    assert.equal(Buffer.compare(back.data, piece.data), 0);

    // SIGTERM in the middle of a put: the daemon aborts the upload and exits cleanly.
    const other = randomPiece(size);
    const o2 = await renter.order(dealId, farmerAddr, OrderAction.Put, other.pieceId, size);
    const running = farmer;
    let stopped: Promise<void> | undefined;
    async function* thenStop(): AsyncGenerator<Uint8Array> {
      for (let offset = 0; offset < size; offset += MIB) {
        if (offset === 24 * MIB) stopped = running.stop();
        yield other.data.subarray(offset, offset + MIB);
      }
    }
    await assert.rejects(renter.client.put(farmer.addr, { ...o2, pieceId: other.pieceId, size, root: other.root }, thenStop()));
    await stopped;
    assert.equal(running.child.exitCode, 0, `clean exit; stderr:\n${running.stderr()}`);
    const files = await listFiles(farmer.storage);
    assert.equal(files.filter((p) => p.startsWith("tmp/")).length, 0, "the aborted upload left no temp file");
    assert.equal(files.filter((p) => p.startsWith("pieces/")).length, 1, "only the committed piece is there");
  });

  const home = await tempDir(t, "dstor-farmer-small-");
  const quota = 10_240;
  const farmer = await spawnFarmer(t, f, { home, quota: String(quota) });
  const farmerAddr = farmer.wallet.toLowerCase();
  const dealId = await renter.openDeal(farmer.wallet);

  await t.test("quota exactly reached is accepted; one byte more is refused cleanly", async () => {
    const a = randomPiece(quota - 1024);
    const b = randomPiece(1024);
    for (const p of [a, b]) {
      const o = await renter.order(dealId, farmerAddr, OrderAction.Put, p.pieceId, p.data.byteLength);
      await renter.client.put(farmer.addr, { ...o, pieceId: p.pieceId, size: p.data.byteLength, root: p.root }, p.data);
    }
    assert.equal((await renter.client.info(farmer.addr)).free, 0n);
    const c = randomPiece(1);
    const o = await renter.order(dealId, farmerAddr, OrderAction.Put, c.pieceId, 1);
    await rejectsWith(renter.client.put(farmer.addr, { ...o, pieceId: c.pieceId, size: 1, root: c.root }, c.data), "QUOTA_EXCEEDED", "one byte over");
    const d = await renter.order(dealId, farmerAddr, OrderAction.Delete, b.pieceId, 0);
    await renter.client.delete(farmer.addr, { ...d, pieceId: b.pieceId });
    assert.equal((await renter.client.info(farmer.addr)).free, 1024n);
    const again = await renter.order(dealId, farmerAddr, OrderAction.Put, c.pieceId, 1);
    await renter.client.put(farmer.addr, { ...again, pieceId: c.pieceId, size: 1, root: c.root }, c.data);
  });

  await t.test("piece ids that are not 32-byte hex never touch the file system", async () => {
    const before = await listFiles(farmer.storage);
    const valid = randomPiece(100);
    const o = await renter.order(dealId, farmerAddr, OrderAction.Put, valid.pieceId, 100);
    for (const bad of ["../../../../tmp/dstor-escape", "ab", `${valid.pieceId}00`, valid.pieceId.toUpperCase(), `${valid.pieceId.slice(0, 62)}/x`]) {
      for (const protocol of [PIECE_PUT_PROTOCOL, PIECE_GET_PROTOCOL, PIECE_AUDIT_PROTOCOL, PIECE_DELETE_PROTOCOL]) {
        const header: Record<string, unknown> = { v: 1, order: { ...orderToJson(o.order), pieceId: bad }, signature: o.signature, pieceId: bad };
        if (protocol === PIECE_PUT_PROTOCOL) Object.assign(header, { size: 100, root: valid.root });
        if (protocol === PIECE_AUDIT_PROTOCOL) header.leafIndex = 0;
        const answer = await sendRaw(renter, farmer.addr, protocol, encodeFrame(new TextEncoder().encode(JSON.stringify(header))));
        assert.ok(answer !== undefined, `an answer for ${protocol} with ${bad}`);
        const parsed = JSON.parse(new TextDecoder().decode(answer)) as { ok: boolean; code: string };
        assert.equal(parsed.ok, false);
        assert.equal(parsed.code, "MESSAGE_MALFORMED", `${protocol} with ${JSON.stringify(bad)}`);
      }
    }
    assert.deepEqual(await listFiles(farmer.storage), before);
  });

  await t.test("fuzz: random bytes and mutated messages into every handler leave the farmer up and the store unchanged", async () => {
    const before = await listFiles(farmer.storage);
    const infoBefore = await renter.client.info(farmer.addr);
    const piece = randomPiece(2048);
    const orderFor = (action: (typeof OrderAction)[keyof typeof OrderAction]) => renter.order(dealId, farmerAddr, action, piece.pieceId, 2048);
    const valid: Array<[string, Uint8Array]> = [
      [PIECE_PUT_PROTOCOL, encodePutRequest({ v: 1, ...(await orderFor(OrderAction.Put)), pieceId: piece.pieceId, size: 2048, root: piece.root })],
      [PIECE_GET_PROTOCOL, encodeGetRequest({ v: 1, ...(await orderFor(OrderAction.Get)), pieceId: piece.pieceId })],
      [PIECE_AUDIT_PROTOCOL, encodeAuditRequest({ v: 1, ...(await orderFor(OrderAction.Audit)), pieceId: piece.pieceId, leafIndex: 1 })],
      [PIECE_DELETE_PROTOCOL, encodeDeleteRequest({ v: 1, ...(await orderFor(OrderAction.Delete)), pieceId: piece.pieceId })],
      [NODE_INFO_PROTOCOL, encodeInfoRequest()],
      [
        DEAL_SIGN_PROTOCOL,
        encodeDealSignRequest({
          v: 1,
          dealId,
          term: 1n,
          version: 1n,
          pieces: [{ pieceId: piece.pieceId, root: piece.root, size: 2048 }],
          renterSignature: `0x${"11".repeat(64)}1b`,
        }),
      ],
    ];
    const input = fc.oneof(
      fc.record({ kind: fc.constant("random" as const), bytes: fc.uint8Array({ maxLength: 4096 }) }),
      fc.record({
        kind: fc.constant("mutated" as const),
        flips: fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 8 }),
        cut: fc.option(fc.nat(), { nil: undefined }),
        tail: fc.uint8Array({ maxLength: 64 }),
      }),
    );
    for (const [protocol, header] of valid) {
      await fc.assert(
        fc.asyncProperty(input, async (x) => {
          let bytes: Uint8Array;
          if (x.kind === "random") bytes = x.bytes;
          else {
            const frame = Uint8Array.from(encodeFrame(header));
            for (const [i, b] of x.flips) frame[i % frame.byteLength] = b;
            const cut = x.cut === undefined ? frame.byteLength : x.cut % (frame.byteLength + 1);
            bytes = new Uint8Array([...frame.subarray(0, cut), ...x.tail]);
          }
          await sendRaw(renter, farmer.addr, protocol, bytes);
        }),
        { numRuns: 40 },
      );
    }
    const infoAfter = await renter.client.info(farmer.addr);
    assert.equal(infoAfter.free, infoBefore.free, "no space taken or freed");
    assert.deepEqual(await listFiles(farmer.storage), before, "no file created or removed");
    assert.equal(farmer.child.exitCode, null, "the farmer is still running");
  });

  await t.test("unconfirmed pieces expire and free their quota; pieces in a co-signed deal state stay", async () => {
    const ehome = await tempDir(t, "dstor-farmer-ttl-");
    const short = await spawnFarmer(t, f, { home: ehome, unconfirmedTtlSeconds: 3 });
    const addr = short.wallet.toLowerCase();
    const deal = await renter.openDeal(short.wallet);
    const a = randomPiece(4096);
    const b = randomPiece(4096);
    for (const p of [a, b]) {
      const o = await renter.order(deal, addr, OrderAction.Put, p.pieceId, 4096);
      await renter.client.put(short.addr, { ...o, pieceId: p.pieceId, size: 4096, root: p.root }, p.data);
    }
    const info = await renter.client.info(short.addr);
    assert.equal(info.capacity - info.free, 8192n);

    // Co-sign a deal state holding piece a only.
    const onChain = await f.c.market.deal(deal);
    const domain = marketDomain(renter.chainId, f.deployment.market);
    const listed = [{ pieceId: a.pieceId, root: a.root, size: 4096 }];
    const state = {
      dealId: deal,
      term: onChain.term,
      root: dealRoot(listed.map((p) => ({ pieceId: Buffer.from(p.pieceId, "hex"), pieceRoot: Buffer.from(p.root, "hex"), size: p.size }))),
      pieceCount: 1n,
      totalBytes: 4096n,
      version: 1n,
    };
    const renterSignature = (await signDealState(renter.party.wallet, domain, state)).toLowerCase();
    const request = { v: 1 as const, dealId: deal, term: onChain.term, version: 1n, pieces: listed, renterSignature };
    const farmerSignature = await renter.client.signDealState(short.addr, request);
    assert.equal(recoverDealStateSigner(domain, state, farmerSignature).toLowerCase(), addr);
    await (
      await renter.party.c.market.updateState(
        deal,
        { root: `0x${Buffer.from(state.root).toString("hex")}`, pieceCount: 1n, totalBytes: 4096n, version: 1n },
        renterSignature,
        farmerSignature,
      )
    ).wait();
    assert.equal((await f.c.market.deal(deal)).version, 1n, "the co-signed state was accepted on-chain");
    await rejectsWith(renter.client.signDealState(short.addr, request), "ORDER_REPLAYED", "the same version again");
    const missing = { ...request, version: 2n, pieces: [...listed, { pieceId: "ab".repeat(32), root: a.root, size: 4096 }] };
    await rejectsWith(renter.client.signDealState(short.addr, missing), "ORDER_BAD_SIGNATURE", "pieces other than the renter signed");

    let free = info.free;
    for (let i = 0; i < 60 && free !== info.capacity - 4096n; i++) {
      await new Promise((r) => setTimeout(r, 250));
      free = (await renter.client.info(short.addr)).free;
    }
    assert.equal(free, info.capacity - 4096n, "only the unconfirmed piece's bytes are freed");
    const gb = await renter.order(deal, addr, OrderAction.Get, b.pieceId, 4096);
    await rejectsWith(renter.client.get(short.addr, { ...gb, pieceId: b.pieceId, root: b.root }), "PIECE_NOT_FOUND", "expired piece");
    const ga = await renter.order(deal, addr, OrderAction.Get, a.pieceId, 4096);
    const back = await renter.client.get(short.addr, { ...ga, pieceId: a.pieceId, root: a.root });
    assert.equal(Buffer.compare(back.data, a.data), 0, "the confirmed piece is kept");

    // A confirmed piece is deleted only after a co-signed state without it.
    const d1 = await renter.order(deal, addr, OrderAction.Delete, a.pieceId, 0);
    await rejectsWith(renter.client.delete(short.addr, { ...d1, pieceId: a.pieceId }), "INVALID_ARGUMENT", "delete of a confirmed piece");
    const empty = { dealId: deal, term: onChain.term, root: new Uint8Array(32), pieceCount: 0n, totalBytes: 0n, version: 2n };
    const emptySig = (await signDealState(renter.party.wallet, domain, empty)).toLowerCase();
    await renter.client.signDealState(short.addr, { v: 1, dealId: deal, term: onChain.term, version: 2n, pieces: [], renterSignature: emptySig });
    const d2 = await renter.order(deal, addr, OrderAction.Delete, a.pieceId, 0);
    await renter.client.delete(short.addr, { ...d2, pieceId: a.pieceId });
    assert.equal((await renter.client.info(short.addr)).free, info.capacity);
    await short.stop();
  });
});
