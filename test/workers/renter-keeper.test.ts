/**
 * The renter keeper's escrow top-ups against a real anvil chain: a deal
 * whose escrow barely covers the data stored for its term is topped up
 * (once, to twice the margin), after which a larger co-signed state that the
 * old escrow could not have carried is accepted.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { storageCost } from "../../src/chain/proofs.js";
import { sleep } from "../../src/core/abort.js";
import { silentLogger } from "../../src/core/logging.js";
import { createRenterKeeper, TOP_UP_MARGIN_PPM, topUpAmount } from "../../src/workers/renter-keeper.js";
import { chainNow } from "../../src/workers/worker.js";
import { coSign, expectRevert, joinFarmer, makePieces, openDeal, startFixture, TEST_PARAMS } from "../chain/fixture.js";

test("topUpAmount: nothing while the escrow covers the term plus the margin, else up to twice the margin", () => {
  const price = 2_592_000n * 10n ** 12n; // 1 unit per byte-second
  const deal = { pricePerTBMonth: price, deposited: 1_250n, egressPaid: 0n };
  assert.equal(topUpAmount(deal, 1_000n), 0n, "exactly cost + 25 %");
  assert.equal(topUpAmount({ ...deal, deposited: 1_249n }, 1_000n), 1_500n - 1_249n);
  assert.equal(topUpAmount({ ...deal, egressPaid: 1n }, 1_000n), 1_500n - 1_249n, "redeemed egress is not available for storage");
  assert.equal(topUpAmount({ ...deal, deposited: 0n }, 0n), 0n, "nothing stored, nothing needed");
  assert.equal(TOP_UP_MARGIN_PPM, 250_000n);
});

test("the renter keeper tops up a deal whose escrow would not cover the rest of its term", { timeout: 300_000 }, async (t) => {
  const f = await startFixture(t, { ...TEST_PARAMS, epochSeconds: 5 });
  const farmer = await f.party();
  const renter = await f.party();
  // A price at which 20 kB for the term is worth thousands of units.
  await joinFarmer(f, farmer, 10n ** 15n);
  const term = 1_000n;
  const bytes = 20_000n;
  const cost = storageCost(10n ** 15n, bytes * term);
  // Enough for the state (updateState checks it) but below the margin.
  const dealId = await openDeal(f, renter, farmer, Number(term), cost + cost / 20n);
  const { pieces } = makePieces(4, Number(bytes / 4n));
  const s1 = await coSign(f, dealId, renter, farmer, pieces, 1n);
  await (await renter.c.market.updateState(dealId, s1.state, s1.renterSig, s1.farmerSig)).wait();
  // Twice the data does not fit the escrow as it is.
  const bigger = makePieces(8, Number(bytes / 4n)).pieces;
  const s2 = await coSign(f, dealId, renter, farmer, bigger, 2n);
  await expectRevert(renter.c.market.updateState(dealId, s2.state, s2.renterSig, s2.farmerSig), "InsufficientEscrow");

  const before = await f.c.market.deal(dealId);
  const keeper = createRenterKeeper({
    renter: renter.address,
    market: renter.c.market,
    registry: renter.c.registry,
    randomness: renter.c.randomness,
    token: renter.c.token,
    marketAddress: f.deployment.market,
    dealIds: async () => [dealId],
    now: () => chainNow(f.provider),
    clock: { genesis: f.deployment.genesis, epochSeconds: 5 },
    challengeProbabilityPpm: BigInt(f.params.challengeProbabilityPpm),
    intervalMs: 300,
    logger: silentLogger(),
  });
  keeper.start();
  t.after(() => keeper.stop());
  const deadline = Date.now() + 60_000;
  let events = await f.c.market.queryFilter(f.c.market.filters.EscrowAdded!(dealId), 0, "latest");
  while (events.length === 0) {
    assert.ok(Date.now() < deadline, "the keeper tops up within a minute");
    await sleep(300);
    events = await f.c.market.queryFilter(f.c.market.filters.EscrowAdded!(dealId), 0, "latest");
  }
  // A few more rounds: the escrow now covers the term plus the margin, so no second top-up.
  await sleep(2_000);
  await keeper.stop();
  events = await f.c.market.queryFilter(f.c.market.filters.EscrowAdded!(dealId), 0, "latest");
  assert.equal(events.length, 1, "one top-up, not one per round");
  const amount = (events[0] as unknown as { args: [bigint, bigint, bigint] }).args[1];
  const projected = storageCost(before.pricePerTBMonth, await f.c.market.byteSecondsAt(dealId, before.end));
  const margin = (projected * TOP_UP_MARGIN_PPM + 999_999n) / 1_000_000n;
  assert.equal(amount, projected + 2n * margin - before.deposited, "topped up to the cost of the term plus twice the margin");
  const after = await f.c.market.deal(dealId);
  assert.equal(after.deposited, before.deposited + amount);
  // A state with 25 % more data (over the 5 % the escrow had spare before) now fits.
  const s3 = await coSign(f, dealId, renter, farmer, pieces.slice(0, 3).concat(bigger.slice(0, 2)), 3n);
  await (await renter.c.market.updateState(dealId, s3.state, s3.renterSig, s3.farmerSig)).wait();
  assert.equal((await f.c.market.deal(dealId)).pieceCount, 5n);
});
