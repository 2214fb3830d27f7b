import assert from "node:assert/strict";
import { test } from "node:test";
import { hexlify, sha256, concat } from "ethers";
import { computeChallenge, sampleLeafIndex } from "../../src/chain/proofs.js";
import { buildMerkleTree, leafCount, merkleProof } from "../../src/crypto/merkle.js";
import { eventNames, failReason, honestAnswer, sendAnswer } from "./audit-helpers.js";
import {
  advanceTo,
  assertConservation,
  coSign,
  epochStart,
  expectRevert,
  joinFarmer,
  makePieces,
  openDeal,
  startFixture,
  TEST_PARAMS,
} from "./fixture.js";

const WRONG_ANSWER = 2;
const LATE = 1;
const MISSING = 0;

test("audit answers: wrong leaf, leaf hash, wrong index, wrong depth, other deal's proof and late are refused and counted", async (t) => {
  const f = await startFixture(t, { ...TEST_PARAMS, failureThreshold: 50 });
  const farmer = await f.party();
  const renter = await f.party();
  const stranger = await f.party();
  await joinFarmer(f, farmer);
  const term = 10 * f.params.epochSeconds;
  const dealA = await openDeal(f, renter, farmer, term, 10_000n);
  const dealB = await openDeal(f, stranger, farmer, term, 10_000n);
  const a = makePieces(4, 3000);
  const b = makePieces(4, 3000);
  for (const [id, r, p] of [
    [dealA, renter, a],
    [dealB, stranger, b],
  ] as const) {
    const s = await coSign(f, id, r, farmer, p.pieces, 1n, { totalBytes: 10n ** 11n });
    await (await farmer.c.market.updateState(id, s.state, s.renterSig, s.farmerSig)).wait();
  }
  const deal = await f.c.market.deal(dealA);
  let e = (await f.c.market.epochAt(deal.start)) + 1n;
  const next = async (): Promise<bigint> => {
    await advanceTo(f, epochStart(f, e));
    await f.fixSeed(e);
    return e++;
  };

  // Before the seed is fixed there is nothing to answer; only the farmer may answer.
  await advanceTo(f, epochStart(f, e));
  await expectRevert(farmer.c.market.answerChallenge(dealA, e, []), "SeedNotFixed");
  await f.fixSeed(e);
  await expectRevert(renter.c.market.answerChallenge(dealA, e, await honestAnswer(f, dealA, e, a.pieces, a.data)), "NotFarmer");
  // Honest answer passes.
  const honestEpoch = e++;
  const ok = await sendAnswer(farmer, dealA, honestEpoch, await honestAnswer(f, dealA, honestEpoch, a.pieces, a.data));
  assert.ok(eventNames(f, ok).includes("ChallengePassed"));
  await expectRevert(farmer.c.market.answerChallenge(dealA, honestEpoch, []), "AlreadySettled");

  const failures: bigint[] = [];
  const expectFail = async (epoch: bigint, samples: Awaited<ReturnType<typeof honestAnswer>>, reason: number, what: string) => {
    const receipt = await sendAnswer(farmer, dealA, epoch, samples);
    assert.equal(failReason(f, receipt), reason, what);
    failures.push(epoch);
  };

  // 1. One tampered byte in a leaf.
  let ep = await next();
  let s = await honestAnswer(f, dealA, ep, a.pieces, a.data);
  const leaf = Buffer.from(s[0]!.leaf.slice(2), "hex");
  leaf[0] = leaf[0]! ^ 1;
  s[0]!.leaf = hexlify(leaf);
  await expectFail(ep, s, WRONG_ANSWER, "tampered leaf");

  // 2. The leaf's hash instead of its bytes.
  ep = await next();
  s = await honestAnswer(f, dealA, ep, a.pieces, a.data);
  s[1]!.leaf = sha256(concat(["0x00", s[1]!.leaf]));
  await expectFail(ep, s, WRONG_ANSWER, "leaf hash instead of bytes");

  // 3. A genuine leaf and proof, but for another index than the challenge's.
  ep = await next();
  s = await honestAnswer(f, dealA, ep, a.pieces, a.data);
  {
    const [, hash] = await f.c.market.challengeOf(dealA, ep);
    const piece = a.pieces.find((p) => hexlify(p.pieceId) === s[0]!.pieceId)!;
    const data = a.data.get(hexlify(piece.pieceId))!;
    const asked = sampleLeafIndex(hash, 0, leafCount(piece.size));
    const other = (asked + 1) % leafCount(piece.size);
    const tree = buildMerkleTree(data);
    s[0]!.leaf = hexlify(data.subarray(other * 1024, Math.min(data.length, other * 1024 + 1024)));
    s[0]!.leafProof = merkleProof(tree, other).map((h) => hexlify(h));
  }
  await expectFail(ep, s, WRONG_ANSWER, "wrong index");

  // 4. A proof one level too deep (the right root reached, then an extra sibling).
  ep = await next();
  s = await honestAnswer(f, dealA, ep, a.pieces, a.data);
  s[2]!.leafProof = [...s[2]!.leafProof, hexlify(new Uint8Array(32))];
  await expectFail(ep, s, WRONG_ANSWER, "wrong depth");

  // 5. Another deal's (valid) proofs.
  ep = await next();
  s = await honestAnswer(f, dealB, ep, b.pieces, b.data);
  await expectFail(ep, s, WRONG_ANSWER, "other deal's proof");

  // 6. Too few samples.
  ep = await next();
  s = await honestAnswer(f, dealA, ep, a.pieces, a.data);
  await expectFail(ep, s.slice(0, 3), WRONG_ANSWER, "missing samples");

  // 7. A correct answer sent after the deadline.
  ep = await next();
  const lateSamples = await honestAnswer(f, dealA, ep, a.pieces, a.data);
  await advanceTo(f, await f.c.market.answerDeadline(ep));
  await expectFail(ep, lateSamples, LATE, "late");

  const [successes, failuresCount] = await f.c.registry.reputation(farmer.address);
  assert.equal(successes, 1n);
  assert.equal(failuresCount, BigInt(failures.length));

  // Settling: the honest epoch is paid, each failed epoch refunded to the renter.
  await (await renter.c.market.settle(dealA, failures.at(-1)!)).wait();
  let refunded = 0n;
  for (const fe of failures) refunded += await f.c.market.epochValue(dealA, fe);
  const after = await f.c.market.deal(dealA);
  assert.equal(after.storageRefunded, refunded);
  assert.ok(refunded > 0n);
  assert.equal(await f.c.market.withdrawable(renter.address), refunded);
  await assertConservation(f, [farmer, renter, stranger]);
});

test("a missing answer is a failure once the deadline passes; the challenge cannot depend on the answering block", async (t) => {
  const f = await startFixture(t);
  const farmer = await f.party();
  const renter = await f.party();
  await joinFarmer(f, farmer);
  const dealId = await openDeal(f, renter, farmer, 5 * f.params.epochSeconds, 10_000n);
  const p = makePieces(3, 5000);
  const s = await coSign(f, dealId, renter, farmer, p.pieces, 1n, { totalBytes: 10n ** 11n });
  await (await renter.c.market.updateState(dealId, s.state, s.renterSig, s.farmerSig)).wait();
  const e = (await f.epoch()) + 1n;
  await advanceTo(f, epochStart(f, e));
  const keeper = await f.party(0n);
  await expectRevert(keeper.c.randomness.fixSeed(e + 1n), "EpochNotStarted");
  const seed = await f.fixSeed(e);
  await expectRevert(keeper.c.randomness.fixSeed(e), "SeedAlreadyFixed");

  // The challenge is the same in every block the farmer could pick.
  const [, first] = await f.c.market.challengeOf(dealId, e);
  const ts = computeChallenge(seed, dealId, e, 3n, BigInt(f.params.challengeProbabilityPpm));
  assert.equal(ts.hash, first);
  for (let i = 0; i < 4; i++) {
    await f.advance(17);
    const [challenged, hash] = await f.c.market.challengeOf(dealId, e);
    assert.equal(hash, first);
    assert.equal(challenged, true);
    assert.equal(await f.c.randomness.seedOf(e), seed);
  }
  // Before the deadline the epoch cannot be settled as failed...
  await advanceTo(f, epochStart(f, e + 1n));
  await (await renter.c.market.settle(dealId, e)).wait();
  assert.equal((await f.c.market.outcomes(dealId, e)), 0n);
  // ...after it, settlement records the failure and refunds.
  await advanceTo(f, await f.c.market.answerDeadline(e));
  const receipt = (await (await renter.c.market.settle(dealId, e)).wait())!;
  assert.equal(failReason(f, receipt), MISSING);
  const [, failures] = await f.c.registry.reputation(farmer.address);
  assert.equal(failures, 1n);
  await expectRevert(farmer.c.market.answerChallenge(dealId, e, await honestAnswer(f, dealId, e, p.pieces, p.data)), "AlreadySettled");
});

test("disqualification: failures beyond the threshold slash the stake into claims renters withdraw once; no new deals", async (t) => {
  const f = await startFixture(t);
  const farmer = await f.party();
  const renterA = await f.party();
  const renterB = await f.party();
  const late = await f.party();
  await joinFarmer(f, farmer, 1_500_000n, 3n * 10n ** 12n); // stake 30 tokens
  const stake = (await f.c.registry.farmerInfo(farmer.address)).stake;
  const term = 6 * f.params.epochSeconds;
  const dealA = await openDeal(f, renterA, farmer, term, 100_000n);
  const dealB = await openDeal(f, renterB, farmer, term, 100_000n);
  for (const [id, r] of [
    [dealA, renterA],
    [dealB, renterB],
  ] as const) {
    const s = await coSign(f, id, r, farmer, makePieces(2, 2048).pieces, 1n, { totalBytes: 10n ** 11n });
    await (await r.c.market.updateState(id, s.state, s.renterSig, s.farmerSig)).wait();
  }
  // Epoch e: both deals miss; epoch e+1: deal B misses → 3 failures (A:1, B:2).
  const e = (await f.epoch()) + 1n;
  await advanceTo(f, epochStart(f, e));
  await f.fixSeed(e);
  await advanceTo(f, epochStart(f, e + 1n));
  await f.fixSeed(e + 1n);
  await advanceTo(f, await f.c.market.answerDeadline(e));
  await (await renterA.c.market.settle(dealA, e)).wait();
  await (await renterB.c.market.settle(dealB, e)).wait();
  assert.equal((await f.c.registry.reputation(farmer.address))[3], false);
  await advanceTo(f, await f.c.market.answerDeadline(e + 1n));
  await (await renterB.c.market.settle(dealB, e + 1n)).wait();
  const [, failures, , dq] = await f.c.registry.reputation(farmer.address);
  assert.equal(failures, 3n);
  assert.equal(dq, true);
  assert.equal(await f.c.registry.slashedStake(farmer.address), stake);

  // Claims: pro rata to failures, each withdrawn once by the renter itself.
  const shareA = (stake * 1n) / 3n;
  const shareB = (stake * 2n) / 3n;
  assert.equal(await f.c.registry.claimable(farmer.address, renterA.address), shareA);
  assert.equal(await f.c.registry.claimable(farmer.address, renterB.address), shareB);
  const balA = await f.c.token.balanceOf(renterA.address);
  await (await renterA.c.registry.claim(farmer.address)).wait();
  assert.equal(await f.c.token.balanceOf(renterA.address), balA + shareA);
  await expectRevert(renterA.c.registry.claim(farmer.address), "AlreadyClaimed");
  await (await renterB.c.registry.claim(farmer.address)).wait();
  await expectRevert(late.c.registry.claim(farmer.address), "NothingToClaim");
  assert.ok(shareA + shareB <= stake);
  await expectRevert(farmer.c.registry.withdrawStake(), "NotActive");

  // No new deals; existing deals end now and refund every unsettled epoch.
  await (await late.c.token.approve(f.deployment.market, 1_000n)).wait();
  await expectRevert(late.c.market.openDeal(farmer.address, term, 1_000n), "FarmerUnavailable");
  await expectRevert(farmer.c.market.updateState(dealA, { root: hexlify(new Uint8Array(32)), pieceCount: 0, totalBytes: 0, version: 9 }, "0x", "0x"), "DealNotActive");
  await (await renterA.c.market.closeDeal(dealA)).wait();
  await (await renterB.c.market.closeDeal(dealB)).wait();
  for (const id of [dealA, dealB]) {
    const d = await f.c.market.deal(id);
    assert.equal(d.closed, true);
    // Only the opening epoch (no seed was fixed for it) was paid; nothing after the failures.
    const opening = await f.c.market.epochAt(d.start);
    assert.equal(d.storagePaid, await f.c.market.epochValue(id, opening));
    assert.ok(d.storageRefunded > 0n);
  }
  // The rest of the escrow is back: withdraw, and a second withdraw is refused.
  const w = await f.c.market.withdrawable(renterA.address);
  assert.equal(w, 100_000n - (await f.c.market.deal(dealA)).storagePaid);
  await (await renterA.c.market.withdraw()).wait();
  await expectRevert(renterA.c.market.withdraw(), "NothingToWithdraw");
  await assertConservation(f, [farmer, renterA, renterB, late]);
});

test("a renter's requested challenge: only the renter, the next epoch is challenged at 0 ppm, answered or failed like any other", async (t) => {
  const f = await startFixture(t, { ...TEST_PARAMS, challengeProbabilityPpm: 0 });
  const farmer = await f.party();
  const renter = await f.party();
  await joinFarmer(f, farmer);
  const dealId = await openDeal(f, renter, farmer, 8 * f.params.epochSeconds, 10_000n);
  const p = makePieces(3, 5000);
  const s = await coSign(f, dealId, renter, farmer, p.pieces, 1n, { totalBytes: 10n ** 11n });
  await (await renter.c.market.updateState(dealId, s.state, s.renterSig, s.farmerSig)).wait();
  await expectRevert(farmer.c.market.requestChallenge(dealId), "NotRenter");
  const now = await f.epoch();
  // Nothing is challenged by chance at 0 ppm.
  await advanceTo(f, epochStart(f, now + 1n));
  await f.fixSeed(now + 1n);
  assert.equal((await f.c.market.challengeOf(dealId, now + 1n))[0], false);
  // Requested in epoch now+1: epoch now+2 is challenged, now+3 is not.
  const receipt = (await (await renter.c.market.requestChallenge(dealId)).wait())!;
  assert.deepEqual(eventNames(f, receipt), ["ChallengeRequested"]);
  assert.equal(await f.c.market.requestedChallenges(dealId, now + 2n), true);
  const e = now + 2n;
  await advanceTo(f, epochStart(f, e));
  const seed = await f.fixSeed(e);
  assert.equal((await f.c.market.challengeOf(dealId, e))[0], true);
  assert.equal(computeChallenge(seed, dealId, e, 3n, 0n, true).challenged, true);
  assert.equal(computeChallenge(seed, dealId, e, 3n, 0n, false).challenged, false);
  // An honest answer passes; a farmer that does not answer fails after the deadline.
  const answered = (await (await farmer.c.market.answerChallenge(dealId, e, await honestAnswer(f, dealId, e, p.pieces, p.data))).wait())!;
  assert.ok(eventNames(f, answered).includes("ChallengePassed"));
  await (await renter.c.market.requestChallenge(dealId)).wait();
  const e2 = e + 1n;
  await advanceTo(f, epochStart(f, e2));
  await f.fixSeed(e2);
  assert.equal((await f.c.market.challengeOf(dealId, e2))[0], true);
  await advanceTo(f, await f.c.market.answerDeadline(e2));
  const settled = (await (await renter.c.market.settle(dealId, e2)).wait())!;
  assert.equal(failReason(f, settled), MISSING);
  assert.equal((await f.c.market.challengeOf(dealId, e2 + 1n))[0], false, "a request covers one epoch");
});
