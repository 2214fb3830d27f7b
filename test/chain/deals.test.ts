import assert from "node:assert/strict";
import { test } from "node:test";
import { marketDomain, signEgressVoucher } from "../../src/chain/signing.js";
import {
  advanceTo,
  assertConservation,
  coSign,
  expectRevert,
  joinFarmer,
  makePieces,
  openDeal,
  startFixture,
} from "./fixture.js";

test("deals: open, top up, one per pair and term, close only at term end, refund once", async (t) => {
  const f = await startFixture(t);
  const farmer = await f.party();
  const renter = await f.party();
  await joinFarmer(f, farmer);
  await expectRevert(farmer.c.market.openDeal(farmer.address, 300, 0), "SelfDeal");
  await expectRevert(renter.c.market.openDeal(farmer.address, 10, 0), "TermTooShort");
  const outsider = await f.party(0n);
  await expectRevert(renter.c.market.openDeal(outsider.address, 300, 0), "FarmerUnavailable");
  const dealId = await openDeal(f, renter, farmer, 300, 500n);
  await (await renter.c.token.approve(f.deployment.market, 1_000n)).wait();
  await expectRevert(renter.c.market.openDeal(farmer.address, 300, 100n), "DealExists");
  await (await renter.c.market.topUp(dealId, 250n)).wait();
  let d = await f.c.market.deal(dealId);
  assert.equal(d.deposited, 750n);
  assert.equal(d.term, 1n);
  await expectRevert(renter.c.market.closeDeal(dealId), "TermNotOver");
  await advanceTo(f, d.end);
  await expectRevert(outsider.c.market.closeDeal(dealId), "NotAParty");
  // Epochs whose seed was never fixed settle as unchallenged once their deadline passed.
  await f.advance(2 * f.params.epochSeconds);
  await (await farmer.c.market.closeDeal(dealId)).wait();
  await expectRevert(renter.c.market.closeDeal(dealId), "DealNotActive");
  d = await f.c.market.deal(dealId);
  assert.equal(d.closed, true);
  assert.equal(await f.c.market.withdrawable(renter.address), 750n); // nothing stored, all back
  // The next term is a new deal with a new id.
  const next = await openDeal(f, renter, farmer, 300, 100n);
  assert.notEqual(next, dealId);
  assert.equal((await f.c.market.deal(next)).term, 2n);
  await (await renter.c.market.withdraw()).wait();
  await expectRevert(renter.c.market.withdraw(), "NothingToWithdraw");
  await assertConservation(f, [farmer, renter, outsider]);
});

test("co-signed deal state: replayed, wrong signer, old version, other deal, old term and other chain id are refused", async (t) => {
  const f = await startFixture(t);
  const farmer = await f.party();
  const renter = await f.party();
  const mallory = await f.party();
  await joinFarmer(f, farmer);
  const dealId = await openDeal(f, renter, farmer, 300, 10_000n);
  const { pieces } = makePieces(3, 1500);
  const v1 = await coSign(f, dealId, renter, farmer, pieces, 1n);
  await (await renter.c.market.updateState(dealId, v1.state, v1.renterSig, v1.farmerSig)).wait();
  await expectRevert(renter.c.market.updateState(dealId, v1.state, v1.renterSig, v1.farmerSig), "StaleVersion");
  const v3 = await coSign(f, dealId, renter, farmer, pieces.slice(0, 2), 3n);
  await (await farmer.c.market.updateState(dealId, v3.state, v3.renterSig, v3.farmerSig)).wait();
  const v2 = await coSign(f, dealId, renter, farmer, pieces, 2n);
  await expectRevert(farmer.c.market.updateState(dealId, v2.state, v2.renterSig, v2.farmerSig), "StaleVersion");
  // Mallory signs in the farmer's place; or the renter's signature is used twice.
  const forged = await coSign(f, dealId, renter, farmer, pieces, 4n, { farmerSigner: mallory });
  await expectRevert(renter.c.market.updateState(dealId, forged.state, forged.renterSig, forged.farmerSig), "BadSignature");
  await expectRevert(renter.c.market.updateState(dealId, forged.state, forged.renterSig, forged.renterSig), "BadSignature");
  // Signed for another deal id, another term, or another chain.
  const otherDeal = await coSign(f, dealId, renter, farmer, pieces, 4n, { dealId: dealId + 1n });
  await expectRevert(renter.c.market.updateState(dealId, otherDeal.state, otherDeal.renterSig, otherDeal.farmerSig), "BadSignature");
  const oldTerm = await coSign(f, dealId, renter, farmer, pieces, 4n, { term: 0n });
  await expectRevert(renter.c.market.updateState(dealId, oldTerm.state, oldTerm.renterSig, oldTerm.farmerSig), "BadSignature");
  const otherChain = await coSign(f, dealId, renter, farmer, pieces, 4n, { chainId: f.deployment.chainId + 1 });
  await expectRevert(renter.c.market.updateState(dealId, otherChain.state, otherChain.renterSig, otherChain.farmerSig), "BadSignature");
  // More bytes than the escrow can pay for through the term.
  const huge = await coSign(f, dealId, renter, farmer, pieces, 5n, { totalBytes: 10n ** 15n });
  await expectRevert(renter.c.market.updateState(dealId, huge.state, huge.renterSig, huge.farmerSig), "InsufficientEscrow");
  const d = await f.c.market.deal(dealId);
  assert.equal(d.version, 3n);
  assert.equal(d.pieceCount, 2n);
  assert.equal(d.root, v3.state.root);
  // A later term of the same pair rejects the old term's signatures.
  await advanceTo(f, d.end);
  await f.advance(2 * f.params.epochSeconds);
  await (await renter.c.market.closeDeal(dealId)).wait();
  await expectRevert(renter.c.market.updateState(dealId, forged.state, v1.renterSig, v1.farmerSig), "DealNotActive");
});

test("egress vouchers: cumulative, renter-signed; replay, wrong signer and over-redeem are refused", async (t) => {
  const f = await startFixture(t);
  const farmer = await f.party();
  const renter = await f.party();
  await joinFarmer(f, farmer);
  const dealId = await openDeal(f, renter, farmer, 300, 10_000n);
  const other = await openDeal(f, await (async () => {
    const r2 = await f.party();
    return r2;
  })(), farmer, 300, 10_000n);
  const domain = marketDomain(f.deployment.chainId, f.deployment.market);
  // Storage reserve: 10^12 bytes for 300 s at 1.5 tokens/TB-month = 173 units stay reserved.
  const s = await coSign(f, dealId, renter, farmer, makePieces(1, 100).pieces, 1n, { totalBytes: 10n ** 12n });
  await (await renter.c.market.updateState(dealId, s.state, s.renterSig, s.farmerSig)).wait();
  const v100 = await signEgressVoucher(renter.wallet, domain, { dealId, cumulativeAmount: 100n });
  await (await farmer.c.market.redeemVoucher(dealId, 100n, v100)).wait();
  assert.equal(await f.c.market.withdrawable(farmer.address), 100n);
  await expectRevert(farmer.c.market.redeemVoucher(dealId, 100n, v100), "VoucherNotNewer");
  const v50 = await signEgressVoucher(renter.wallet, domain, { dealId, cumulativeAmount: 50n });
  await expectRevert(farmer.c.market.redeemVoucher(dealId, 50n, v50), "VoucherNotNewer");
  const byFarmer = await signEgressVoucher(farmer.wallet, domain, { dealId, cumulativeAmount: 200n });
  await expectRevert(farmer.c.market.redeemVoucher(dealId, 200n, byFarmer), "BadSignature");
  const forOther = await signEgressVoucher(renter.wallet, domain, { dealId: other, cumulativeAmount: 200n });
  await expectRevert(farmer.c.market.redeemVoucher(dealId, 200n, forOther), "BadSignature");
  const d = await f.c.market.deal(dealId);
  const reserve = await f.c.market.byteSecondsAt(dealId, d.end);
  const reservedUnits = (d.pricePerTBMonth * reserve) / (10n ** 12n * 2_592_000n);
  const max = 10_000n - reservedUnits;
  const tooMuch = await signEgressVoucher(renter.wallet, domain, { dealId, cumulativeAmount: max + 1n });
  await expectRevert(farmer.c.market.redeemVoucher(dealId, max + 1n, tooMuch), "InsufficientEscrow");
  const all = await signEgressVoucher(renter.wallet, domain, { dealId, cumulativeAmount: max });
  await (await farmer.c.market.redeemVoucher(dealId, max, all)).wait();
  assert.equal(await f.c.market.withdrawable(farmer.address), max);
  assert.equal((await f.c.market.deal(dealId)).egressPaid, max);
  await (await farmer.c.market.withdraw()).wait();
  await expectRevert(farmer.c.market.withdraw(), "NothingToWithdraw");
});
