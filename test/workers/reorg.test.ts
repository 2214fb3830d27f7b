/**
 * Confirmations and reorgs against a real anvil chain: the farmer's audit
 * worker runs with 3 confirmations while the test is the only block
 * producer (automine off, one block at a time). The first block holding an
 * answer to a challenge is reorged out (`anvil_reorg`: the answer is gone
 * from the chain and from the pool) before it is final; the worker notices
 * the lost transaction, resets its nonce and answers the challenge again
 * before the deadline, so the epoch passes. Likewise the renter keeper's
 * escrow top-up: reorged out, it is computed again from the chain and sent
 * once more — and only once.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { sleep } from "../../src/core/abort.js";
import { storageCost } from "../../src/chain/proofs.js";
import { createLogger, formatLogRecord, silentLogger } from "../../src/core/logging.js";
import { createFarmerAuditWorker } from "../../src/workers/farmer-audit.js";
import { createRenterKeeper } from "../../src/workers/renter-keeper.js";
import { chainNow, followTransaction, resolveConfirmations } from "../../src/workers/worker.js";
import { coSign, joinFarmer, makePieces, openDeal, startFixture, TEST_PARAMS } from "../chain/fixture.js";
import { storedDeal } from "./stored-deal.js";

const PASSED = 1n;
const EPOCH_SECONDS = 10;

test("confirmations: a transaction is final only that deep; a reorged-out one is lost", { timeout: 120_000 }, async (t) => {
  const f = await startFixture(t);
  const a = await f.party();
  const tx = await a.signer.sendTransaction({ to: a.address, value: 1n });
  await tx.wait();
  const finality = { confirmations: 3, chain: f.provider, timeoutMs: 1_000, pollMs: 50 };
  assert.equal(await followTransaction(tx.hash, finality), "pending", "one block deep is not final at 3 confirmations");
  await f.mine();
  await f.mine();
  assert.equal(await followTransaction(tx.hash, finality), "final");
  const tx2 = await a.signer.sendTransaction({ to: a.address, value: 2n });
  await tx2.wait();
  await f.provider.send("anvil_reorg", [1, []]);
  assert.equal(await followTransaction(tx2.hash, finality), "lost");
  assert.equal(resolveConfirmations(undefined, true), 0);
  assert.equal(resolveConfirmations(undefined, false), 2);
  assert.throws(() => resolveConfirmations(-1, false), /confirmations/);
});

test("an answered challenge reorged out before it is final is answered again and passes", { timeout: 300_000 }, async (t) => {
  const f = await startFixture(t, { ...TEST_PARAMS, epochSeconds: EPOCH_SECONDS, challengeProbabilityPpm: 1_000_000, failureThreshold: 50 });
  const farmer = await f.party();
  const renter = await f.party();
  await joinFarmer(f, farmer);
  const dealId = await openDeal(f, renter, farmer, 100 * EPOCH_SECONDS, 1_000_000n);
  const { store } = await storedDeal(t, f, renter, farmer, dealId, 2);

  // From here on the test makes every block.
  await f.provider.send("evm_setAutomine", [false]);
  const lines: string[] = [];
  const logger = createLogger("dstor:farmer", { defaultLevel: "debug", enable: "", sink: (r) => lines.push(formatLogRecord(r)) });
  let lost = 0;
  const worker = createFarmerAuditWorker({
    farmer: farmer.address,
    market: farmer.c.market,
    randomness: farmer.c.randomness,
    store,
    dealIds: async () => [dealId],
    now: () => chainNow(f.provider),
    clock: { genesis: f.deployment.genesis, epochSeconds: EPOCH_SECONDS },
    challengeProbabilityPpm: 1_000_000n,
    samplesPerChallenge: Number(f.params.samplesPerChallenge),
    finality: {
      confirmations: 3,
      chain: f.provider,
      timeoutMs: 2_000,
      pollMs: 100,
      onLost: () => {
        lost++;
        farmer.signer.reset();
      },
    },
    intervalMs: 300,
    logger,
  });
  worker.start();
  // Stopped in `finally`, while the chain is still up (the fixture's t.after runs first).
  try {
    await reorgAndReanswer();
  } finally {
    await worker.stop();
    await f.provider.send("evm_setAutomine", [true]);
  }
  async function reorgAndReanswer(): Promise<void> {

  const passedIn = async (block: number): Promise<Array<{ epoch: bigint; hash: string }>> =>
    (await f.c.market.queryFilter(f.c.market.filters.ChallengePassed!(dealId), block, block)).map((e) => ({
      epoch: (e as unknown as { args: [bigint, bigint, string] }).args[1],
      hash: e.transactionHash,
    }));
  let reorged: { epoch: bigint; hash: string } | undefined;
  let reanswered: { epoch: bigint; hash: string } | undefined;
  const deadline = Date.now() + 180_000;
  while (reanswered === undefined) {
    assert.ok(Date.now() < deadline, `the reorged answer is answered again within three minutes (log: ${lines.slice(-5).join(" | ")})`);
    await f.mine();
    const head = await f.provider.getBlockNumber();
    for (const answer of await passedIn(head)) {
      if (reorged === undefined) {
        // The answer is one block deep: take that block away, answer and all.
        reorged = answer;
        await f.provider.send("anvil_reorg", [1, []]);
        assert.equal(await f.provider.getTransaction(answer.hash), null, "the reorg dropped the answer");
        assert.equal(await f.c.market.outcomes(dealId, answer.epoch), 0n, "the epoch is unanswered again");
      } else if (answer.epoch === reorged.epoch) {
        reanswered = answer;
      }
    }
    await sleep(150);
  }
  assert.notEqual(reanswered.hash, reorged!.hash, "a new transaction");
  assert.ok(lost >= 1, "the worker noticed the lost transaction");
  assert.ok(lines.some((l) => l.includes("dropped or reorged out")), "and logged it");
  // Let the new answer become final and the epoch settle as passed (not late, not missing).
  for (let i = 0; i < 4; i++) {
    await f.mine();
    await sleep(150);
  }
  assert.equal(await f.c.market.outcomes(dealId, reanswered.epoch), PASSED);
  const failed = await f.c.market.queryFilter(f.c.market.filters.ChallengeFailed!(dealId), 0, "latest");
  assert.equal(failed.length, 0, "no failure recorded");
}
});

test("a keeper's escrow top-up reorged out before it is final is sent again, once", { timeout: 300_000 }, async (t) => {
  const f = await startFixture(t, { ...TEST_PARAMS, epochSeconds: EPOCH_SECONDS });
  const farmer = await f.party();
  const renter = await f.party();
  await joinFarmer(f, farmer, 10n ** 15n);
  const term = 1_000n;
  const cost = storageCost(10n ** 15n, 20_000n * term);
  const dealId = await openDeal(f, renter, farmer, Number(term), cost + cost / 20n);
  const s = await coSign(f, dealId, renter, farmer, makePieces(4, 5_000).pieces, 1n);
  await (await renter.c.market.updateState(dealId, s.state, s.renterSig, s.farmerSig)).wait();
  const before = await f.c.market.deal(dealId);

  await f.provider.send("evm_setAutomine", [false]);
  let lost = 0;
  const keeper = createRenterKeeper({
    renter: renter.address,
    market: renter.c.market,
    registry: renter.c.registry,
    randomness: renter.c.randomness,
    token: renter.c.token,
    marketAddress: f.deployment.market,
    dealIds: async () => [dealId],
    now: () => chainNow(f.provider),
    clock: { genesis: f.deployment.genesis, epochSeconds: EPOCH_SECONDS },
    challengeProbabilityPpm: BigInt(f.params.challengeProbabilityPpm),
    finality: {
      confirmations: 3,
      chain: f.provider,
      timeoutMs: 2_000,
      pollMs: 100,
      onLost: () => {
        lost++;
        renter.signer.reset();
      },
    },
    intervalMs: 300,
    logger: silentLogger(),
  });
  keeper.start();
  const topUpsIn = async (from: number, to: number | "latest"): Promise<Array<{ amount: bigint; hash: string }>> =>
    (await f.c.market.queryFilter(f.c.market.filters.EscrowAdded!(dealId), from, to)).map((e) => ({
      amount: (e as unknown as { args: [bigint, bigint, bigint] }).args[1],
      hash: e.transactionHash,
    }));
  let reorged: { amount: bigint; hash: string } | undefined;
  let again: { amount: bigint; hash: string } | undefined;
  try {
    const deadline = Date.now() + 120_000;
    while (again === undefined) {
      assert.ok(Date.now() < deadline, "the reorged top-up is sent again within two minutes");
      await f.mine();
      const head = await f.provider.getBlockNumber();
      for (const added of await topUpsIn(head, head)) {
        if (reorged === undefined) {
          reorged = added;
          await f.provider.send("anvil_reorg", [1, []]);
          assert.equal((await f.c.market.deal(dealId)).deposited, before.deposited, "the top-up is gone");
        } else {
          again = added;
        }
      }
      await sleep(150);
    }
    // A few more rounds with blocks: the new top-up becomes final and no third one follows.
    for (let i = 0; i < 12; i++) {
      await f.mine();
      await sleep(250);
    }
  } finally {
    await keeper.stop();
    await f.provider.send("evm_setAutomine", [true]);
  }
  assert.ok(lost >= 1, "the keeper noticed the lost top-up");
  assert.notEqual(again.hash, reorged!.hash);
  assert.equal(again.amount, reorged!.amount, "the same top-up, computed again from the chain");
  assert.equal((await topUpsIn(0, "latest")).length, 1, "one top-up on the chain");
  assert.equal((await f.c.market.deal(dealId)).deposited, before.deposited + again.amount);
});
