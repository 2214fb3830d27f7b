/**
 * The spot-check worker over in-memory farmers (the renter tests' network):
 * a farmer that keeps its pieces but refuses reads, and one that serves bad
 * bytes, are caught by spot checks alone — no user read needed — and
 * selection stops placing new pieces on them.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { test } from "node:test";
import { sleep } from "../../src/core/abort.js";
import { silentLogger } from "../../src/core/logging.js";
import { ineligibleReason } from "../../src/renter/selection.js";
import { createSpotCheckWorker } from "../../src/workers/spot-check.js";
import { FakeNetwork, fakeRenter } from "../renter/helpers.js";

test("spot checks mark a farmer that refuses reads and one that corrupts; selection avoids both", async (t) => {
  const net = new FakeNetwork(12);
  const { renter, metadata } = await fakeRenter(t, net, { segmentSize: 64 * 1024 });
  await renter.put("/a", [new Uint8Array(randomBytes(6 * 64 * 1024))]);
  const refuser = net.farmers.find((f) => f.pieces.size > 0)!;
  const corrupter = net.farmers.find((f) => f.pieces.size > 0 && f !== refuser)!;
  refuser.behaviour.refuseGets = true;
  corrupter.behaviour.corruptGets = true;
  const getsBefore = net.farmers.reduce((n, f) => n + f.gets, 0);

  const worker = createSpotCheckWorker({
    target: { farmers: () => metadata.farmers(), piecesOn: (a) => metadata.piecesOn(a), spotCheck: (...args) => renter.spotCheck(...args) },
    intervalMs: 1,
    checksPerRound: 10,
    logger: silentLogger(),
  });
  worker.start();
  t.after(() => worker.stop());
  // Until selection itself rules both out: the refuser's failures must
  // outweigh the successes its upload gave it, whatever that count was.
  const candidates = await net.list();
  const verdict = async (address: string): Promise<string | undefined> =>
    ineligibleReason(candidates.find((c) => c.address === address)!, await metadata.farmer(address), {}, 1);
  const deadline = Date.now() + 60_000;
  for (;;) {
    if ((await verdict(refuser.address)) === "fails too often" && (await verdict(corrupter.address)) === "returned corrupt data") break;
    assert.ok(Date.now() < deadline, "spot checks catch both farmers within a minute");
    await sleep(20);
  }
  await worker.stop();
  assert.ok(net.farmers.reduce((n, f) => n + f.gets, 0) > getsBefore, "the checks went through the farmers' get path");
  const honest = net.farmers.find((f) => f.pieces.size > 0 && f !== refuser && f !== corrupter)!;
  assert.ok(((await metadata.farmer(honest.address))?.successes ?? 0) > 0, "honest farmers pass");
  assert.equal((await metadata.farmer(honest.address))?.failures, 0);

  const reason = (address: string) => ineligibleReason(candidates.find((c) => c.address === address)!, undefined, {}, 1) ?? "";
  assert.equal(reason(refuser.address), "");
  assert.equal(ineligibleReason(candidates.find((c) => c.address === refuser.address)!, await metadata.farmer(refuser.address), {}, 1), "fails too often");
  assert.equal(ineligibleReason(candidates.find((c) => c.address === corrupter.address)!, await metadata.farmer(corrupter.address), {}, 1), "returned corrupt data");
  // New uploads avoid them.
  const before = [refuser.pieces.size, corrupter.pieces.size];
  await renter.put("/b", [new Uint8Array(randomBytes(4 * 64 * 1024))]);
  assert.deepEqual([refuser.pieces.size, corrupter.pieces.size], before, "no new piece goes to a farmer the spot checks caught");
});

test("a failed spot check requests an on-chain challenge of that farmer, at most once per interval; passing farmers never", async (t) => {
  const net = new FakeNetwork(12);
  const { renter, metadata } = await fakeRenter(t, net, { segmentSize: 64 * 1024 });
  await renter.put("/a", [new Uint8Array(randomBytes(6 * 64 * 1024))]);
  const refuser = net.farmers.find((f) => f.pieces.size > 0)!;
  refuser.behaviour.refuseGets = true;
  const requests: string[] = [];
  let rounds = 0;
  const worker = createSpotCheckWorker({
    target: {
      farmers: () => metadata.farmers(),
      piecesOn: (a) => metadata.piecesOn(a),
      spotCheck: (...args) => renter.spotCheck(...args),
    },
    intervalMs: 1,
    checksPerRound: 10,
    onResult: () => void rounds++,
    requestChallenge: async (farmer) => {
      requests.push(farmer);
      throw new Error("the chain refused (logged, not fatal)");
    },
    requestIntervalMs: 3_600_000,
    logger: silentLogger(),
  });
  worker.start();
  t.after(() => worker.stop());
  const deadline = Date.now() + 60_000;
  while (requests.length === 0 || rounds < 200) {
    assert.ok(Date.now() < deadline, "the refusing farmer is checked and many more checks run within a minute");
    await sleep(20);
  }
  await worker.stop();
  assert.deepEqual(requests, [refuser.address], "one request, for the failing farmer only, although it failed many checks");
});
