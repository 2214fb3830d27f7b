import assert from "node:assert/strict";
import { test } from "node:test";
import { hexlify, keccak256 } from "ethers";
import { peerBindingMessage } from "../../src/chain/proofs.js";
import {
  advanceTo,
  assertConservation,
  expectRevert,
  joinFarmer,
  openDeal,
  peerIdentity,
  startFixture,
} from "./fixture.js";

test("farmers join with stake, cannot take another node's peer id, update price, leave and get the stake back after deals end", async (t) => {
  const f = await startFixture(t);
  const farmer = await f.party();
  const squatter = await f.party();
  const renter = await f.party();
  const renter2 = await f.party();
  const capacity = 2n * 10n ** 12n; // 2 TB needs 20 tokens of stake
  const id = peerIdentity();
  const sig = id.signBinding(peerBindingMessage(f.deployment.chainId, f.deployment.registry, farmer.address));
  await (await farmer.c.token.approve(f.deployment.registry, 10n ** 12n)).wait();
  await expectRevert(farmer.c.registry.join(19_999_999n, 1_500_000n, capacity, id.peerId, sig, []), "StakeTooLow");
  await (await farmer.c.registry.join(20_000_000n, 1_500_000n, capacity, id.peerId, sig, ["/ip4/127.0.0.1/tcp/1"])).wait();
  await expectRevert(farmer.c.registry.join(20_000_000n, 1_500_000n, capacity, id.peerId, sig, []), "AlreadyRegistered");

  const info = await f.c.registry.farmerInfo(farmer.address);
  assert.equal(info.peerId, hexlify(id.peerId));
  assert.equal(info.peerSignature, hexlify(sig));
  assert.deepEqual([...info.multiaddrs], ["/ip4/127.0.0.1/tcp/1"]);
  assert.equal(await f.c.registry.peerOwner(keccak256(id.peerId)), farmer.address);

  // Another wallet cannot register the same libp2p peer id.
  await (await squatter.c.token.approve(f.deployment.registry, 10n ** 12n)).wait();
  await expectRevert(squatter.c.registry.join(20_000_000n, 1n, capacity, id.peerId, sig, []), "PeerIdTaken");

  // Price updates apply to new deals only; capacity needs stake.
  const deal1 = await openDeal(f, renter, farmer, 300, 1_000n);
  await expectRevert(farmer.c.registry.update(2_000_000n, 3n * 10n ** 12n, []), "StakeTooLow");
  await (await farmer.c.registry.update(2_000_000n, capacity, ["/ip4/127.0.0.1/tcp/2"])).wait();
  const deal2 = await openDeal(f, renter2, farmer, 300, 1_000n);
  assert.equal((await f.c.market.deal(deal1)).pricePerTBMonth, 1_500_000n);
  assert.equal((await f.c.market.deal(deal2)).pricePerTBMonth, 2_000_000n);

  // Leaving: no new deals, stake held until every deal has closed.
  await (await farmer.c.registry.beginExit()).wait();
  const renter3 = await f.party();
  await (await renter3.c.token.approve(f.deployment.market, 1_000n)).wait();
  await expectRevert(renter3.c.market.openDeal(farmer.address, 300, 1_000n), "FarmerUnavailable");
  await expectRevert(farmer.c.registry.withdrawStake(), "DealsStillActive");
  await advanceTo(f, (await f.c.market.deal(deal2)).end);
  // Seeds were never fixed: after the answer deadline the epochs count as unchallenged.
  await f.advance(3 * f.params.epochSeconds);
  await (await renter.c.market.closeDeal(deal1)).wait();
  await (await farmer.c.market.closeDeal(deal2)).wait();
  const before = await f.c.token.balanceOf(farmer.address);
  await (await farmer.c.registry.withdrawStake()).wait();
  assert.equal(await f.c.token.balanceOf(farmer.address), before + 20_000_000n);
  await expectRevert(farmer.c.registry.withdrawStake(), "NotActive");
  // The peer id is free again once the farmer left.
  await (await squatter.c.registry.join(20_000_000n, 1n, capacity, id.peerId, sig, [])).wait();
  await assertConservation(f, [farmer, squatter, renter, renter2, renter3]);
});

test("metadata pointer: compare-and-swap on the sequence number and a one-device write lease", async (t) => {
  const f = await startFixture(t);
  const renter = await f.party(0n);
  const deviceA = keccak256(new TextEncoder().encode("device A"));
  const deviceB = keccak256(new TextEncoder().encode("device B"));
  const root1 = keccak256(new TextEncoder().encode("snapshot 1"));
  const root2 = keccak256(new TextEncoder().encode("snapshot 2"));
  await (await renter.c.registry.setPointer(0, deviceA, "0x0102", root1)).wait();
  let p = await f.c.registry.pointer(renter.address);
  assert.equal(p.sequence, 1n);
  assert.equal(p.contentRoot, root1);
  assert.equal(p.location, "0x0102");
  // A writer that read sequence 0 loses the race.
  await expectRevert(renter.c.registry.setPointer(0, deviceA, "0x03", root2), "SequenceMismatch");
  // Device A takes the lease; device B may not write while it lasts.
  await (await renter.c.registry.acquireLease(deviceA, 600)).wait();
  await expectRevert(renter.c.registry.acquireLease(deviceB, 600), "LeaseHeld");
  await expectRevert(renter.c.registry.setPointer(1, deviceB, "0x03", root2), "LeaseHeld");
  await (await renter.c.registry.setPointer(1, deviceA, "0x03", root2)).wait();
  await f.advance(601);
  await (await renter.c.registry.setPointer(2, deviceB, "0x04", root1)).wait();
  p = await f.c.registry.pointer(renter.address);
  assert.equal(p.sequence, 3n);
  assert.equal(p.location, "0x04");
  // Other renters' pointers are independent.
  const other = await f.party(0n);
  assert.equal((await f.c.registry.pointer(other.address)).sequence, 0n);
});

test("joinFarmer helper stakes the minimum for the capacity", async (t) => {
  const f = await startFixture(t);
  const farmer = await f.party();
  await joinFarmer(f, farmer, 1_500_000n, 10n ** 12n + 1n);
  assert.equal((await f.c.registry.farmerInfo(farmer.address)).stake, 10_000_001n);
  const [, , age, dq] = await f.c.registry.reputation(farmer.address);
  assert.ok(age >= 0n);
  assert.equal(dq, false);
});
