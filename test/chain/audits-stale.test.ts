/**
 * Answers that were right once or for someone else: a proof built against
 * the deal's previous root (a stale proof), and another farmer's valid
 * answer for its own deal, are both refused (recorded as wrong answers);
 * another farmer cannot answer for the deal at all.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { failReason, honestAnswer, sendAnswer } from "./audit-helpers.js";
import { advanceTo, coSign, epochStart, expectRevert, joinFarmer, makePieces, openDeal, startFixture, TEST_PARAMS } from "./fixture.js";

const WRONG_ANSWER = 2;

test("a stale proof (previous deal root) and another farmer's proof are refused", async (t) => {
  const f = await startFixture(t, { ...TEST_PARAMS, failureThreshold: 50 });
  const farmer = await f.party();
  const other = await f.party();
  const renter = await f.party();
  await joinFarmer(f, farmer);
  await joinFarmer(f, other);
  const term = 10 * f.params.epochSeconds;
  const deal = await openDeal(f, renter, farmer, term, 10_000n);
  const otherDeal = await openDeal(f, renter, other, term, 10_000n);
  const v1 = makePieces(3, 3000);
  const s1 = await coSign(f, deal, renter, farmer, v1.pieces, 1n, { totalBytes: 10n ** 11n });
  await (await renter.c.market.updateState(deal, s1.state, s1.renterSig, s1.farmerSig)).wait();
  const o = makePieces(3, 3000);
  const so = await coSign(f, otherDeal, renter, other, o.pieces, 1n, { totalBytes: 10n ** 11n });
  await (await renter.c.market.updateState(otherDeal, so.state, so.renterSig, so.farmerSig)).wait();

  let e = (await f.c.market.epochAt((await f.c.market.deal(deal)).start)) + 1n;
  await advanceTo(f, epochStart(f, e));
  await f.fixSeed(e);
  // Built against version 1 …
  const stale = await honestAnswer(f, deal, e, v1.pieces, v1.data);
  // … then the state moves on (two more pieces) before the answer is sent.
  const more = makePieces(2, 3000);
  const all = { pieces: [...v1.pieces, ...more.pieces], data: new Map([...v1.data, ...more.data]) };
  const s2 = await coSign(f, deal, renter, farmer, all.pieces, 2n, { totalBytes: 10n ** 11n });
  await (await renter.c.market.updateState(deal, s2.state, s2.renterSig, s2.farmerSig)).wait();
  assert.equal(failReason(f, await sendAnswer(farmer, deal, e, stale)), WRONG_ANSWER, "stale proof");

  // Another farmer's valid answer for its own deal, submitted for ours.
  e++;
  await advanceTo(f, epochStart(f, e));
  await f.fixSeed(e);
  const theirs = await honestAnswer(f, otherDeal, e, o.pieces, o.data);
  await expectRevert(other.c.market.answerChallenge(deal, e, theirs), "NotFarmer");
  assert.equal(failReason(f, await sendAnswer(farmer, deal, e, theirs)), WRONG_ANSWER, "another farmer's proof");
  // The honest answer against the current root still passes in the next epoch.
  e++;
  await advanceTo(f, epochStart(f, e));
  await f.fixSeed(e);
  const ok = await sendAnswer(farmer, deal, e, await honestAnswer(f, deal, e, all.pieces, all.data));
  assert.equal(failReason(f, ok), undefined);
  assert.equal(await f.c.market.outcomes(deal, e), 1n);
  const [successes, failures] = await f.c.registry.reputation(farmer.address);
  assert.equal(successes, 1n);
  assert.equal(failures, 2n);
});
