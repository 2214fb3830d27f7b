import assert from "node:assert/strict";
import { test } from "node:test";
import { storageCost } from "../../src/chain/proofs.js";
import { BYTES_PER_TB, SECONDS_PER_MONTH } from "../../src/core/units.js";
import { honestAnswer, eventNames, sendAnswer } from "./audit-helpers.js";
import { advanceTo, coSign, epochStart, joinFarmer, makePieces, openDeal, startFixture } from "./fixture.js";

test("honest deal: every epoch answered, pay is exactly price x bytes x time, no rounding to zero", async (t) => {
  const f = await startFixture(t);
  const farmer = await f.party();
  const renter = await f.party();
  const price = 1_500_000n; // 1.5 tokens (6 decimals) per TB-month
  await joinFarmer(f, farmer, price);
  const term = 3 * f.params.epochSeconds;
  const escrow = 1_000n;
  const dealId = await openDeal(f, renter, farmer, term, escrow);
  const { pieces, data } = makePieces(5, 3000);
  // Declared bytes are what the parties co-sign; large enough that one 100 s
  // epoch is worth 5.79 units: per-epoch rounding would lose ~2 units here.
  const { state: declared, renterSig: rSig, farmerSig: fSig } = await coSign(f, dealId, renter, farmer, pieces, 1n, {
    totalBytes: 100_000_000_000n,
  });
  const rc = await (await farmer.c.market.updateState(dealId, declared, rSig, fSig)).wait();
  const t1 = BigInt((await f.provider.getBlock(rc!.blockNumber))!.timestamp);

  const deal = await f.c.market.deal(dealId);
  const first = await f.c.market.epochAt(deal.start);
  const last = await f.c.market.lastEpoch(dealId);
  for (let e = first; e <= last; e++) {
    await advanceTo(f, epochStart(f, e));
    await f.fixSeed(e);
    const samples = await honestAnswer(f, dealId, e, pieces, data);
    const receipt = await sendAnswer(farmer, dealId, e, samples);
    assert.ok(eventNames(f, receipt).includes("ChallengePassed"), `epoch ${e} passed`);
  }
  await advanceTo(f, deal.end);
  await (await renter.c.market.closeDeal(dealId)).wait();

  const expected = (price * declared.totalBytes * (deal.end - t1)) / (BYTES_PER_TB * SECONDS_PER_MONTH);
  assert.equal(expected, storageCost(price, declared.totalBytes * (deal.end - t1)));
  assert.ok(expected > 0n);
  const after = await f.c.market.deal(dealId);
  assert.equal(after.storagePaid, expected, "farmer paid exactly the cumulative amount");
  assert.equal(after.storageRefunded, 0n);
  assert.equal(await f.c.market.withdrawable(farmer.address), expected);
  assert.equal(await f.c.market.withdrawable(renter.address), escrow - expected);
  const [successes, failures] = await f.c.registry.reputation(farmer.address);
  assert.equal(successes, last - first + 1n);
  assert.equal(failures, 0n);

  const before = await f.c.token.balanceOf(farmer.address);
  await (await farmer.c.market.withdraw()).wait();
  assert.equal(await f.c.token.balanceOf(farmer.address), before + expected);
});
