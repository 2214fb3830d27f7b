/**
 * The farmer audit worker against a real anvil chain and a real file-system
 * piece store: it fixes seeds and answers every challenge while its pieces
 * are intact; once a piece's bytes are corrupted on disk it refuses to send
 * an answer it knows is wrong, and the missed challenges become recorded
 * failures (refunded to the renter) when the worker settles.
 */
import assert from "node:assert/strict";
import { readFile, writeFile } from "node:fs/promises";
import { test } from "node:test";
import { hexlify } from "ethers";
import { sleep } from "../../src/core/abort.js";
import { silentLogger } from "../../src/core/logging.js";
import { createFarmerAuditWorker } from "../../src/workers/farmer-audit.js";
import { chainNow } from "../../src/workers/worker.js";
import { joinFarmer, openDeal, startFixture, TEST_PARAMS } from "../chain/fixture.js";
import { storedDeal } from "./stored-deal.js";

const PASSED = 1n;
const FAILED = 2n;

test("the farmer audit worker passes with intact pieces and fails (without answering) once a piece is corrupt", { timeout: 300_000 }, async (t) => {
  const f = await startFixture(t, { ...TEST_PARAMS, epochSeconds: 5, failureThreshold: 50 });
  const farmer = await f.party();
  const renter = await f.party();
  await joinFarmer(f, farmer);
  const dealId = await openDeal(f, renter, farmer, 200 * 5, 1_000_000n);
  // One piece: every sample asks it, so corrupting it fails every later challenge.
  const { store, owner, pieces } = await storedDeal(t, f, renter, farmer, dealId, 1);

  const worker = createFarmerAuditWorker({
    farmer: farmer.address,
    market: farmer.c.market,
    randomness: farmer.c.randomness,
    store,
    dealIds: async () => [dealId],
    now: () => chainNow(f.provider),
    clock: { genesis: f.deployment.genesis, epochSeconds: 5 },
    challengeProbabilityPpm: 1_000_000n,
    samplesPerChallenge: 4,
    intervalMs: 300,
    logger: silentLogger(),
  });
  worker.start();
  t.after(() => worker.stop());
  const outcomes = async (): Promise<bigint[]> => {
    const d = await f.c.market.deal(dealId);
    const out: bigint[] = [];
    for (let e = await f.c.market.epochAt(d.start); e < d.nextEpoch; e++) out.push(await f.c.market.outcomes(dealId, e));
    return out;
  };
  const waitFor = async (what: string, ok: (o: bigint[]) => boolean): Promise<bigint[]> => {
    const deadline = Date.now() + 120_000;
    for (;;) {
      const o = await outcomes();
      if (ok(o)) return o;
      assert.ok(Date.now() < deadline, what);
      await sleep(500);
    }
  };
  await waitFor("two challenges passed", (o) => o.filter((x) => x === PASSED).length >= 2);
  // Corrupt the piece on disk behind the store's back.
  const path = store.piecePath(owner, hexlify(pieces[0]!.pieceId).slice(2));
  const bytes = await readFile(path);
  bytes[100] = bytes[100]! ^ 0xff;
  await writeFile(path, bytes);
  const o = await waitFor("two challenges failed after the corruption", (x) => x.filter((y) => y === FAILED).length >= 2);
  // Once failed, never passed again.
  const firstFail = o.indexOf(FAILED);
  assert.ok(o.slice(firstFail).every((x) => x !== PASSED), `outcomes ${o.join(",")}`);
  // No wrong answer was sent: every failure is a missed deadline (reason 0), settled by the worker.
  const failed = await f.c.market.queryFilter(f.c.market.filters.ChallengeFailed!(dealId), 0, "latest");
  assert.ok(failed.length >= 2);
  for (const e of failed) assert.equal((e as unknown as { args: [bigint, bigint, string, bigint] }).args[3], 0n);
  // Failed epochs are settled as refunds: nothing paid for them.
  const settled = await f.c.market.queryFilter(f.c.market.filters.EpochSettled!(dealId), 0, "latest");
  const failedEpochs = new Set(failed.map((e) => (e as unknown as { args: [bigint, bigint] }).args[1]));
  const settledFailed = settled.map((e) => (e as unknown as { args: [bigint, bigint, bigint, bigint] }).args).filter((a) => failedEpochs.has(a[1]));
  assert.ok(settledFailed.length >= 2);
  for (const a of settledFailed) assert.equal(a[2], 0n, `failed epoch ${a[1]} is not paid`);
  await worker.stop();
});
