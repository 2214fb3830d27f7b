/**
 * Egress vouchers between the renter's accountant and the farmer's voucher
 * book, over the wire format (encoded and decoded both ways) and a real
 * anvil chain: prices and rounding, continuing from a voucher another
 * process signed, refusals, durability, and redemption on chain.
 */
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { marketDomain, signEgressVoucher } from "../../src/chain/signing.js";
import { isDstorError } from "../../src/core/errors.js";
import { EgressVoucherBook } from "../../src/farmer/egress.js";
import {
  decodeEgressVoucherRequest,
  decodeEgressVoucherResponse,
  type EgressVoucherRequest,
  encodeEgressVoucherRequest,
  encodeEgressVoucherResponse,
} from "../../src/protocol/egress.js";
import { jsonBytes } from "../../src/protocol/validate.js";
import { EgressAccountant, type EgressVoucherSender } from "../../src/renter/egress.js";
import type { FarmerRef } from "../../src/renter/types.js";
import { type ChainFixture, type ChainParty, joinFarmer, openDeal, startFixture } from "../chain/fixture.js";

const FARMER_REF = (address: string): FarmerRef => ({ address: address.toLowerCase(), peerId: "12D3KooWtest", multiaddrs: ["/ip4/127.0.0.1/tcp/1"] });

/** A sender that goes through both codecs into `book` (what the libp2p exchange does, minus the stream). */
function wire(book: EgressVoucherBook): EgressVoucherSender {
  return async (_farmer, request) => {
    const answer = decodeEgressVoucherResponse(encodeEgressVoucherResponse(await book.accept(decodeEgressVoucherRequest(encodeEgressVoucherRequest(request)))));
    assert.ok(answer.ok);
    return answer;
  };
}

async function setup(t: Parameters<typeof startFixture>[0]): Promise<{ f: ChainFixture; renter: ChainParty; farmer: ChainParty; dealId: bigint; dir: string }> {
  const f = await startFixture(t);
  const farmer = await f.party();
  const renter = await f.party();
  await joinFarmer(f, farmer);
  const dealId = await openDeal(f, renter, farmer, 3600, 1_000_000n);
  const dir = await mkdtemp(join(tmpdir(), "dstor-egress-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return { f, renter, farmer, dealId, dir };
}

test("egress messages: round trip; unknown fields, other versions and malformed signatures are refused", () => {
  const request: EgressVoucherRequest = { v: 1, dealId: 7n, cumulativeAmount: 12345n, renterSignature: `0x${"ab".repeat(65)}` };
  assert.deepEqual(decodeEgressVoucherRequest(encodeEgressVoucherRequest(request)), request);
  const wireRequest = { v: 1, dealId: "7", cumulativeAmount: "12345", renterSignature: `0x${"ab".repeat(65)}` };
  assert.throws(() => decodeEgressVoucherRequest(jsonBytes({ ...wireRequest, bytes: "5" })), (e) => isDstorError(e, "MESSAGE_MALFORMED"));
  assert.throws(() => decodeEgressVoucherRequest(jsonBytes({ ...wireRequest, v: 2 })), (e) => isDstorError(e, "UNSUPPORTED_VERSION"));
  assert.throws(() => decodeEgressVoucherRequest(jsonBytes({ ...wireRequest, renterSignature: "0x12" })), (e) => isDstorError(e, "MESSAGE_MALFORMED"));
  assert.throws(() => decodeEgressVoucherRequest(jsonBytes({ ...wireRequest, cumulativeAmount: "-1" })), (e) => isDstorError(e, "MESSAGE_MALFORMED"));
  const none = { v: 1 as const, ok: true as const, accepted: false, egressPricePerGb: 10n, cumulativeAmount: 0n, renterSignature: "0x" };
  assert.deepEqual(decodeEgressVoucherResponse(encodeEgressVoucherResponse(none)), none);
  // "0x" stands for "no voucher" only with a zero amount.
  assert.throws(
    () => decodeEgressVoucherResponse(jsonBytes({ v: 1, ok: true, accepted: false, egressPricePerGb: "10", cumulativeAmount: "5", renterSignature: "0x" })),
    (e) => isDstorError(e, "MESSAGE_MALFORMED"),
  );
  const refused = { v: 1 as const, ok: false as const, code: "ORDER_BAD_SIGNATURE", message: "no" };
  assert.deepEqual(decodeEgressVoucherResponse(encodeEgressVoucherResponse(refused)), refused);
});

test("egress vouchers: the renter pays exactly its verified bytes × price, continues from the held voucher, and the farmer redeems it", { timeout: 120_000 }, async (t) => {
  const { f, renter, farmer, dealId, dir } = await setup(t);
  const domain = marketDomain(f.deployment.chainId, f.deployment.market);
  const path = join(dir, "vouchers.json");
  const price = 10_000n; // token units per GB
  const book = await EgressVoucherBook.open({ path, market: f.c.market, farmer: farmer.address, domain, egressPricePerGb: price });
  const renterWallet = { signTypedData: renter.wallet.signTypedData.bind(renter.wallet), address: renter.address };
  const accountant = new EgressAccountant({ wallet: renterWallet, domain, send: wire(book), maxEgressPricePerGb: 100_000n });
  const ref = FARMER_REF(farmer.address);

  // 123,456,789 bytes at 10,000 per GB: 1,234 units, 0.56789 GB·unit carried.
  accountant.received(ref, dealId, 123_456_789);
  accountant.received(ref, 0n, 1_000_000_000); // no deal: not paid
  const first = await accountant.flush();
  assert.deepEqual(first, { vouchers: 1, amount: 1234n, failed: 0 });
  assert.equal(book.latest(dealId)?.cumulativeAmount, 1234n);
  // The carry makes the next flush exact: 123,456,789 + 876,543,211 bytes = 1 GB... plus the first 0.123 GB.
  accountant.received(ref, dealId, 876_543_211);
  assert.deepEqual(await accountant.flush(), { vouchers: 1, amount: 10_000n - 1234n, failed: 0 });
  assert.equal(book.latest(dealId)?.cumulativeAmount, 10_000n, "1 GB read is exactly 10,000 units, whatever the split");

  // Another process of the same wallet (no memory) continues from the voucher the farmer holds.
  const second = new EgressAccountant({ wallet: renterWallet, domain, send: wire(book), maxEgressPricePerGb: 100_000n });
  second.received(ref, dealId, 500_000_000);
  assert.deepEqual(await second.flush(), { vouchers: 1, amount: 5_000n, failed: 0 });
  assert.equal(book.latest(dealId)?.cumulativeAmount, 15_000n);
  // And the first process, which missed that, adopts it instead of signing a lower amount.
  accountant.received(ref, dealId, 100_000_000);
  assert.deepEqual(await accountant.flush(), { vouchers: 1, amount: 1_000n, failed: 0 });
  assert.equal(book.latest(dealId)?.cumulativeAmount, 16_000n);

  // The farmer keeps nothing it should not: an older amount, another signer, another deal.
  const stale = await book.accept({ v: 1, dealId, cumulativeAmount: 9_000n, renterSignature: (await signEgressVoucher(renter.wallet, domain, { dealId, cumulativeAmount: 9_000n })).toLowerCase() });
  assert.ok(stale.ok && !stale.accepted && stale.cumulativeAmount === 16_000n);
  const byFarmer = (await signEgressVoucher(farmer.wallet, domain, { dealId, cumulativeAmount: 99_000n })).toLowerCase();
  await assert.rejects(book.accept({ v: 1, dealId, cumulativeAmount: 99_000n, renterSignature: byFarmer }), (e) => isDstorError(e, "ORDER_BAD_SIGNATURE"));
  const forOther = (await signEgressVoucher(renter.wallet, domain, { dealId: dealId + 1n, cumulativeAmount: 99_000n })).toLowerCase();
  await assert.rejects(book.accept({ v: 1, dealId, cumulativeAmount: 99_000n, renterSignature: forOther }), (e) => isDstorError(e, "ORDER_BAD_SIGNATURE"));
  await assert.rejects(book.accept({ v: 1, dealId: dealId + 5n, cumulativeAmount: 1n, renterSignature: forOther }), (e) => isDstorError(e, "ORDER_NO_DEAL"));

  // A farmer claiming to hold a voucher the renter never signed is not believed.
  const liar: EgressVoucherSender = async (_farmer, request) => ({
    v: 1,
    ok: true,
    accepted: false,
    egressPricePerGb: price,
    cumulativeAmount: request.cumulativeAmount + 1_000_000n,
    renterSignature: byFarmer,
  });
  const fooled = new EgressAccountant({ wallet: renterWallet, domain, send: liar, maxEgressPricePerGb: 100_000n });
  fooled.received(ref, dealId, 1_000_000_000);
  assert.deepEqual(await fooled.flush(), { vouchers: 0, amount: 0n, failed: 1 });
  assert.equal(fooled.pendingBytes(), 1_000_000_000n, "unpaid bytes stay pending");

  // Durable: a restarted farmer holds the same voucher.
  const reopened = await EgressVoucherBook.open({ path, market: f.c.market, farmer: farmer.address, domain, egressPricePerGb: price });
  assert.deepEqual(reopened.latest(dealId), book.latest(dealId));
  assert.match(await readFile(path, "utf8"), /"16000"/);

  // Redeemed on chain: the farmer is paid exactly the voucher, the escrow goes down by it.
  const held = reopened.latest(dealId)!;
  const before = await f.c.market.escrowRemaining(dealId);
  await (await farmer.c.market.redeemVoucher(dealId, held.cumulativeAmount, held.renterSignature)).wait();
  assert.equal((await f.c.market.deal(dealId)).egressPaid, 16_000n);
  assert.equal(await f.c.market.withdrawable(farmer.address), 16_000n);
  assert.equal(await f.c.market.escrowRemaining(dealId), before - 16_000n);
});

test("egress vouchers: a farmer asking more than the renter's ceiling is paid the ceiling", { timeout: 120_000 }, async (t) => {
  const { f, renter, farmer, dealId, dir } = await setup(t);
  const domain = marketDomain(f.deployment.chainId, f.deployment.market);
  const book = await EgressVoucherBook.open({ path: join(dir, "v.json"), market: f.c.market, farmer: farmer.address, domain, egressPricePerGb: 5_000_000n });
  const accountant = new EgressAccountant({
    wallet: { signTypedData: renter.wallet.signTypedData.bind(renter.wallet), address: renter.address },
    domain,
    send: wire(book),
    maxEgressPricePerGb: 100_000n,
  });
  accountant.received(FARMER_REF(farmer.address), dealId, 2_000_000_000);
  assert.deepEqual(await accountant.flush(), { vouchers: 1, amount: 200_000n, failed: 0 });
  assert.equal(book.latest(dealId)?.cumulativeAmount, 200_000n);
});
