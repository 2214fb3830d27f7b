/**
 * End-to-end tests of the farmer daemon: a real `dstor farm` process, a real
 * anvil, and this test process as the renter (its own libp2p node), all on
 * 127.0.0.1.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { test } from "node:test";
import { isDstorError } from "../../src/core/errors.js";
import { MIB } from "../../src/core/units.js";
import { OrderAction } from "../../src/protocol/orders.js";
import { startFixture } from "../chain/fixture.js";
import { createRenter, randomPiece, spawnFarmer, strangerWallet, tempDir } from "../farmer/fixtures/farmer-process.js";

/** Asserts that `promise` rejects with a DstorError of `code`. */
async function rejectsWith(promise: Promise<unknown>, code: string, what: string): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(isDstorError(error), `${what}: expected a DstorError, got ${String(error)}`);
    assert.equal(error.code, code, `${what}: ${error.message}`);
    return true;
  });
}

test("farmer daemon: round trips, orders, restart replay", { timeout: 180_000 }, async (t) => {
  const f = await startFixture(t);
  const home = await tempDir(t, "dstor-farmer-");
  let farmer = await spawnFarmer(t, f, { home });
  const renter = await createRenter(t, f);
  const farmerAddr = farmer.wallet.toLowerCase();
  const dealId = await renter.openDeal(farmer.wallet);

  await t.test("info", async () => {
    const info = await renter.client.info(farmer.addr);
    assert.equal(info.peerId, farmer.peerId);
    assert.equal(info.wallet, farmerAddr);
    assert.equal(info.chainId, renter.chainId);
    assert.equal(info.capacity, 1_000_000_000n);
    assert.equal(info.priceTbMonth, 1_500_000n);
  });

  await t.test("put/get/range-get/audit/delete with random data of edge sizes", async () => {
    for (const size of [0, 1, 1023, 1024, 1025, 64 * MIB]) {
      const piece = randomPiece(size);
      const put = await renter.order(dealId, farmerAddr, OrderAction.Put, piece.pieceId, size);
      await renter.client.put(farmer.addr, { ...put, pieceId: piece.pieceId, size, root: piece.root }, piece.data);

      const get = await renter.order(dealId, farmerAddr, OrderAction.Get, piece.pieceId, size);
      const whole = await renter.client.get(farmer.addr, { ...get, pieceId: piece.pieceId, root: piece.root, size });
      assert.equal(Buffer.compare(whole.data, piece.data), 0, `whole get of ${size} bytes`);

      if (size > 1024) {
        // A range starting at leaf 1 and running to the end, and one inner leaf when there is one.
        const ranges: Array<[number, number | undefined]> = [[1024, undefined]];
        if (size >= 3 * 1024) ranges.push([2048, 1024]);
        for (const [offset, length] of ranges) {
          const want = length ?? size - offset;
          const o = await renter.order(dealId, farmerAddr, OrderAction.Get, piece.pieceId, want);
          const part = await renter.client.get(farmer.addr, {
            ...o,
            pieceId: piece.pieceId,
            root: piece.root,
            offset,
            ...(length === undefined ? {} : { length }),
          });
          assert.equal(Buffer.compare(part.data, piece.data.subarray(offset, offset + want)), 0, `range [${offset}, +${want}) of ${size}`);
        }
      }

      const leafIndex = Math.max(0, Math.ceil(size / 1024) - 1);
      const a = await renter.order(dealId, farmerAddr, OrderAction.Audit, piece.pieceId, 1024);
      const audit = await renter.client.audit(farmer.addr, { ...a, pieceId: piece.pieceId, leafIndex, root: piece.root });
      assert.equal(Buffer.compare(audit.leaf, piece.data.subarray(leafIndex * 1024, leafIndex * 1024 + 1024)), 0);

      const d = await renter.order(dealId, farmerAddr, OrderAction.Delete, piece.pieceId, 0);
      await renter.client.delete(farmer.addr, { ...d, pieceId: piece.pieceId });
      const g2 = await renter.order(dealId, farmerAddr, OrderAction.Get, piece.pieceId, size);
      await rejectsWith(renter.client.get(farmer.addr, { ...g2, pieceId: piece.pieceId, root: piece.root }), "PIECE_NOT_FOUND", "get after delete");
    }
    const info = await renter.client.info(farmer.addr);
    assert.equal(info.free, info.capacity, "every byte is free again after the deletes");
  });

  await t.test("a put whose data does not match the declared root is refused and nothing is kept", async () => {
    const piece = randomPiece(5000);
    const wrongRoot = randomBytes(32).toString("hex");
    const put = await renter.order(dealId, farmerAddr, OrderAction.Put, piece.pieceId, 5000);
    await rejectsWith(renter.client.put(farmer.addr, { ...put, pieceId: piece.pieceId, size: 5000, root: wrongRoot }, piece.data), "INTEGRITY_MISMATCH", "bad root");
    const g = await renter.order(dealId, farmerAddr, OrderAction.Get, piece.pieceId, 5000);
    await rejectsWith(renter.client.get(farmer.addr, { ...g, pieceId: piece.pieceId, root: piece.root }), "PIECE_NOT_FOUND", "get after bad put");
    const info = await renter.client.info(farmer.addr);
    assert.equal(info.free, info.capacity);
  });

  const kept = randomPiece(3000);
  const keptPut = await renter.order(dealId, farmerAddr, OrderAction.Put, kept.pieceId, 3000);
  await renter.client.put(farmer.addr, { ...keptPut, pieceId: kept.pieceId, size: 3000, root: kept.root }, kept.data);

  await t.test("orders: every kind of bad order is refused with its own code", async () => {
    const p = randomPiece(2000);
    const req = { pieceId: p.pieceId, size: 2000, root: p.root };
    const put = (o: { order: import("../../src/protocol/orders.js").Order; signature: string }) => renter.client.put(farmer.addr, { ...o, ...req }, p.data);
    const now = Math.floor(Date.now() / 1000);

    const expired = await renter.order(dealId, farmerAddr, OrderAction.Put, p.pieceId, 2000, { expiry: BigInt(now - 10) });
    await rejectsWith(put(expired), "ORDER_EXPIRED", "expired");

    const forged = await renter.order(dealId, farmerAddr, OrderAction.Put, p.pieceId, 2000);
    const stranger = strangerWallet();
    const strangerSig = await stranger.signTypedData(
      { name: "dstor-order", version: "1", chainId: renter.chainId },
      { Order: [...(await import("../../src/protocol/orders.js")).ORDER_TYPES.Order!] },
      { ...forged.order, pieceId: `0x${forged.order.pieceId}`, serial: `0x${forged.order.serial}` },
    );
    await rejectsWith(put({ order: forged.order, signature: strangerSig.toLowerCase() }), "ORDER_BAD_SIGNATURE", "signed by another key");

    const otherPiece = await renter.order(dealId, farmerAddr, OrderAction.Put, randomBytes(32).toString("hex"), 2000);
    await rejectsWith(put(otherPiece), "ORDER_WRONG_PIECE", "another piece");

    const otherFarmer = await renter.order(dealId, strangerWallet().address.toLowerCase(), OrderAction.Put, p.pieceId, 2000);
    await rejectsWith(put(otherFarmer), "ORDER_WRONG_FARMER", "another farmer");

    const otherChain = await renter.order(dealId, farmerAddr, OrderAction.Put, p.pieceId, 2000, { chainId: 999n });
    await rejectsWith(put(otherChain), "ORDER_WRONG_CHAIN", "another chain");

    const wrongAction = await renter.order(dealId, farmerAddr, OrderAction.Get, p.pieceId, 2000);
    await rejectsWith(put(wrongAction), "ORDER_WRONG_ACTION", "another action");

    const tooSmall = await renter.order(dealId, farmerAddr, OrderAction.Put, p.pieceId, 1999);
    await rejectsWith(put(tooSmall), "MESSAGE_TOO_LARGE", "more bytes than the order allows");

    const noDeal = await renter.order(dealId + 1000n, farmerAddr, OrderAction.Put, p.pieceId, 2000);
    await rejectsWith(put(noDeal), "ORDER_NO_DEAL", "no such deal");
    const other = await createRenter(t, f);
    const otherRenterOrder = await other.order(dealId, farmerAddr, OrderAction.Put, p.pieceId, 2000);
    await rejectsWith(
      other.client.put(farmer.addr, { ...otherRenterOrder, ...req }, p.data),
      "ORDER_NO_DEAL",
      "a renter without a funded deal",
    );

    const ok = await renter.order(dealId, farmerAddr, OrderAction.Put, p.pieceId, 2000);
    await put(ok);
    await rejectsWith(put(ok), "ORDER_REPLAYED", "replayed");
    // None of the refusals left anything behind.
    const info = await renter.client.info(farmer.addr);
    assert.equal(info.capacity - info.free, 5000n);
  });

  await t.test("a replayed order is still refused after a farmer restart; pieces survive it", async () => {
    const g = await renter.order(dealId, farmerAddr, OrderAction.Get, kept.pieceId, 3000);
    const first = await renter.client.get(farmer.addr, { ...g, pieceId: kept.pieceId, root: kept.root });
    assert.equal(Buffer.compare(first.data, kept.data), 0);
    await farmer.stop();
    assert.equal(farmer.child.exitCode, 0, `clean exit on SIGTERM; stderr:\n${farmer.stderr()}`);
    farmer = await spawnFarmer(t, f, { home });
    await rejectsWith(renter.client.get(farmer.addr, { ...g, pieceId: kept.pieceId, root: kept.root }), "ORDER_REPLAYED", "replay after restart");
    const g2 = await renter.order(dealId, farmerAddr, OrderAction.Get, kept.pieceId, 3000);
    const again = await renter.client.get(farmer.addr, { ...g2, pieceId: kept.pieceId, root: kept.root });
    assert.equal(Buffer.compare(again.data, kept.data), 0);
  });
});
