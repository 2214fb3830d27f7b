import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { AbiCoder, keccak256, TypedDataEncoder, toUtf8Bytes, verifyTypedData, Wallet } from "ethers";
import fc from "fast-check";
import { type DstorErrorCode, isDstorError } from "../../src/core/errors.js";
import { MAX_ORDER_TTL_SECONDS } from "../../src/protocol/limits.js";
import {
  createOrder,
  type DealChecker,
  type Order,
  ORDER_DOMAIN_NAME,
  ORDER_DOMAIN_VERSION,
  ORDER_TYPES,
  OrderAction,
  orderDigest,
  orderFromJson,
  orderToJson,
  type SignedOrder,
  signOrder,
  type VerifyOrderContext,
  verifyOrder,
} from "../../src/protocol/orders.js";
import { type LevelSerialStore, MemorySerialStore, openLevelSerialStore, type SerialStore } from "../../src/protocol/serials.js";

const CHAIN_ID = 31337n;
const NOW = 1_800_000_000;

/** Deals funded in memory: `${renter}/${dealId}/${farmer}`. */
class MemoryDeals implements DealChecker {
  readonly funded = new Set<string>();
  calls = 0;
  fund(renter: string, dealId: bigint, farmer: string): void {
    this.funded.add(`${renter.toLowerCase()}/${dealId}/${farmer.toLowerCase()}`);
  }
  async isFunded(renter: string, dealId: bigint, farmer: string): Promise<boolean> {
    this.calls++;
    // Yield to the event loop so concurrent verifications really interleave.
    await new Promise((resolve) => setImmediate(resolve));
    return this.funded.has(`${renter}/${dealId}/${farmer}`);
  }
}

const renterWallet = Wallet.createRandom();
const otherWallet = Wallet.createRandom();
const farmerWallet = Wallet.createRandom();
const renter = renterWallet.address.toLowerCase();
const farmer = farmerWallet.address.toLowerCase();
const pieceId = randomBytes(32).toString("hex");

function newOrder(overrides: Partial<Order> = {}): Order {
  return {
    ...createOrder({ chainId: CHAIN_ID, dealId: 7n, renter, farmer, pieceId, action: OrderAction.Put, maxBytes: 1 << 20, nowSeconds: NOW }),
    ...overrides,
  };
}

function rejectsWith(code: DstorErrorCode) {
  return (error: unknown): boolean => {
    assert.ok(isDstorError(error, code), `expected ${code}, got ${isDstorError(error) ? error.code : String(error)}`);
    return true;
  };
}

describe("orders", () => {
  let deals: MemoryDeals;
  let serials: SerialStore;
  const ctx = (overrides: Partial<VerifyOrderContext> = {}): VerifyOrderContext => ({
    chainId: CHAIN_ID,
    farmerAddress: farmerWallet.address, // checksummed on purpose: compared case-insensitively
    nowSeconds: NOW,
    expectedAction: OrderAction.Put,
    expectedPieceId: pieceId,
    bytesRequested: 1000,
    serials,
    deals,
    ...overrides,
  });
  const freshState = (): void => {
    deals = new MemoryDeals();
    deals.fund(renter, 7n, farmer);
    serials = new MemorySerialStore();
  };

  test("the digest is the EIP-712 hash, computed independently", async () => {
    const order = newOrder();
    const abi = AbiCoder.defaultAbiCoder();
    const domainType = keccak256(toUtf8Bytes("EIP712Domain(string name,string version,uint256 chainId)"));
    const domainSeparator = keccak256(
      abi.encode(["bytes32", "bytes32", "bytes32", "uint256"], [domainType, keccak256(toUtf8Bytes("dstor-order")), keccak256(toUtf8Bytes("1")), CHAIN_ID]),
    );
    const orderType = keccak256(
      toUtf8Bytes(
        "Order(uint256 chainId,uint256 dealId,address renter,address farmer,bytes32 pieceId,uint8 action,uint64 maxBytes,uint64 expiry,bytes16 serial)",
      ),
    );
    const structHash = keccak256(
      abi.encode(
        ["bytes32", "uint256", "uint256", "address", "address", "bytes32", "uint8", "uint64", "uint64", "bytes32"],
        [orderType, order.chainId, order.dealId, order.renter, order.farmer, `0x${order.pieceId}`, order.action, order.maxBytes, order.expiry, `0x${order.serial}${"0".repeat(32)}`],
      ),
    );
    const digest = keccak256(`0x1901${domainSeparator.slice(2)}${structHash.slice(2)}`);
    assert.equal(orderDigest(order), digest);
  });

  test("orders survive the wire and refuse bad spellings", () => {
    const order = newOrder();
    assert.deepEqual(orderFromJson(JSON.parse(JSON.stringify(orderToJson(order)))), order);
    const json = orderToJson(order);
    const bad: Record<string, unknown>[] = [
      { ...json, renter: renterWallet.address }, // checksummed case
      { ...json, pieceId: pieceId.toUpperCase() },
      { ...json, pieceId: `0x${pieceId}` },
      { ...json, dealId: "07" },
      { ...json, dealId: 7 },
      { ...json, maxBytes: (1n << 64n).toString() },
      { ...json, action: 5 },
      { ...json, serial: "00" },
      { ...json, extra: 1 },
    ];
    for (const value of bad) assert.throws(() => orderFromJson(value), rejectsWith("MESSAGE_MALFORMED"), JSON.stringify(value));
  });

  test("signOrder refuses another wallet or another chain id", async () => {
    await assert.rejects(signOrder(otherWallet, CHAIN_ID, newOrder()), rejectsWith("INVALID_ARGUMENT"));
    await assert.rejects(signOrder(renterWallet, 1n, newOrder()), rejectsWith("INVALID_ARGUMENT"));
    assert.throws(() => createOrder({ chainId: 1n, dealId: 1n, renter, farmer, pieceId, action: 1, maxBytes: 1, ttlSeconds: MAX_ORDER_TTL_SECONDS + 1 }), rejectsWith("INVALID_ARGUMENT"));
    assert.throws(() => createOrder({ chainId: 1n, dealId: 1n, renter, farmer, pieceId: "xyz", action: 1, maxBytes: 1 }), rejectsWith("INVALID_ARGUMENT"));
  });

  describe("verifyOrder rejections, one code each", () => {
    before(freshState);

    test("valid: passes once and returns the renter, then ORDER_REPLAYED", async () => {
      const signed = await signOrder(renterWallet, CHAIN_ID, newOrder());
      const verified = await verifyOrder(signed, ctx());
      assert.equal(verified.renter, renter);
      await assert.rejects(verifyOrder(signed, ctx()), rejectsWith("ORDER_REPLAYED"));
    });

    test("ORDER_BAD_SIGNATURE: tampered order, another signer, malformed signatures", async () => {
      const signed = await signOrder(renterWallet, CHAIN_ID, newOrder());
      await assert.rejects(verifyOrder({ ...signed, order: { ...signed.order, maxBytes: 1n << 40n } }, ctx()), rejectsWith("ORDER_BAD_SIGNATURE"));
      // Someone else signs an order that claims to be the renter's.
      const forged = await otherWallet.signTypedData(
        { name: "dstor-order", version: "1", chainId: CHAIN_ID },
        {
          Order: [
            { name: "chainId", type: "uint256" },
            { name: "dealId", type: "uint256" },
            { name: "renter", type: "address" },
            { name: "farmer", type: "address" },
            { name: "pieceId", type: "bytes32" },
            { name: "action", type: "uint8" },
            { name: "maxBytes", type: "uint64" },
            { name: "expiry", type: "uint64" },
            { name: "serial", type: "bytes16" },
          ],
        },
        { ...signed.order, pieceId: `0x${signed.order.pieceId}`, serial: `0x${signed.order.serial}` },
      );
      await assert.rejects(verifyOrder({ order: signed.order, signature: forged }, ctx()), rejectsWith("ORDER_BAD_SIGNATURE"));
      for (const signature of ["0x1234", "", `${signed.signature.slice(0, -2)}00`, signed.signature.toUpperCase(), `0x${"00".repeat(65)}`]) {
        await assert.rejects(verifyOrder({ order: signed.order, signature }, ctx()), rejectsWith("ORDER_BAD_SIGNATURE"), signature);
      }
      // None of the refused attempts burned the serial.
      await verifyOrder(signed, ctx());
    });

    test("ORDER_WRONG_CHAIN: validly signed for another chain", async () => {
      const order = newOrder({ chainId: 1n });
      const signed = await signOrder(renterWallet, 1n, order);
      await assert.rejects(verifyOrder(signed, ctx()), rejectsWith("ORDER_WRONG_CHAIN"));
    });

    test("ORDER_WRONG_FARMER", async () => {
      const signed = await signOrder(renterWallet, CHAIN_ID, newOrder({ farmer: otherWallet.address.toLowerCase() }));
      await assert.rejects(verifyOrder(signed, ctx()), rejectsWith("ORDER_WRONG_FARMER"));
    });

    test("ORDER_WRONG_PIECE", async () => {
      const signed = await signOrder(renterWallet, CHAIN_ID, newOrder());
      await assert.rejects(verifyOrder(signed, ctx({ expectedPieceId: randomBytes(32).toString("hex") })), rejectsWith("ORDER_WRONG_PIECE"));
    });

    test("ORDER_WRONG_ACTION", async () => {
      const signed = await signOrder(renterWallet, CHAIN_ID, newOrder({ action: OrderAction.Get }));
      await assert.rejects(verifyOrder(signed, ctx()), rejectsWith("ORDER_WRONG_ACTION"));
      await verifyOrder(signed, ctx({ expectedAction: OrderAction.Get }));
    });

    test("MESSAGE_TOO_LARGE when the request moves more than maxBytes", async () => {
      const signed = await signOrder(renterWallet, CHAIN_ID, newOrder({ maxBytes: 999n }));
      await assert.rejects(verifyOrder(signed, ctx({ bytesRequested: 1000 })), rejectsWith("MESSAGE_TOO_LARGE"));
      await verifyOrder(signed, ctx({ bytesRequested: 999 }));
    });

    test("ORDER_EXPIRED: past, exactly now, and too far in the future", async () => {
      for (const expiry of [BigInt(NOW - 1), BigInt(NOW), BigInt(NOW + MAX_ORDER_TTL_SECONDS + 1)]) {
        const signed = await signOrder(renterWallet, CHAIN_ID, newOrder({ expiry }));
        await assert.rejects(verifyOrder(signed, ctx()), rejectsWith("ORDER_EXPIRED"), String(expiry));
      }
      const edge = await signOrder(renterWallet, CHAIN_ID, newOrder({ expiry: BigInt(NOW + MAX_ORDER_TTL_SECONDS) }));
      await verifyOrder(edge, ctx());
    });

    test("ORDER_NO_DEAL, and the refusal does not burn the serial", async () => {
      const signed = await signOrder(renterWallet, CHAIN_ID, newOrder({ dealId: 8n }));
      await assert.rejects(verifyOrder(signed, ctx()), rejectsWith("ORDER_NO_DEAL"));
      deals.fund(renter, 8n, farmer);
      await verifyOrder(signed, ctx());
      await assert.rejects(verifyOrder(signed, ctx()), rejectsWith("ORDER_REPLAYED"));
    });

    test("checks run in the documented order (first failing check wins)", async () => {
      const wrongAll = await signOrder(renterWallet, 1n, newOrder({ chainId: 1n, farmer: otherWallet.address.toLowerCase(), action: OrderAction.Delete }));
      await assert.rejects(verifyOrder(wrongAll, ctx()), rejectsWith("ORDER_WRONG_CHAIN"));
      const wrongFarmerAndPiece = await signOrder(renterWallet, CHAIN_ID, newOrder({ farmer: otherWallet.address.toLowerCase() }));
      await assert.rejects(verifyOrder(wrongFarmerAndPiece, ctx({ expectedPieceId: "00".repeat(32) })), rejectsWith("ORDER_WRONG_FARMER"));
      const expiredNoDeal = await signOrder(renterWallet, CHAIN_ID, newOrder({ dealId: 99n, expiry: BigInt(NOW - 5) }));
      const before = deals.calls;
      await assert.rejects(verifyOrder(expiredNoDeal, ctx()), rejectsWith("ORDER_EXPIRED"));
      assert.equal(deals.calls, before, "the deal lookup (a chain call) is not made for an order already refused");
    });
  });

  describe("replay protection with the level store", () => {
    let dir: string;
    before(async () => {
      dir = await mkdtemp(join(tmpdir(), "dstor-orders-"));
      deals = new MemoryDeals();
      deals.fund(renter, 7n, farmer);
    });
    after(async () => {
      await rm(dir, { recursive: true, force: true });
    });

    test("a used order is refused after the store is closed and reopened", async () => {
      const path = join(dir, "serials");
      let store: LevelSerialStore = await openLevelSerialStore({ path });
      serials = store;
      const signed: SignedOrder = await signOrder(renterWallet, CHAIN_ID, newOrder());
      await verifyOrder(signed, ctx());
      await store.close();
      store = await openLevelSerialStore({ path });
      serials = store;
      try {
        await assert.rejects(verifyOrder(signed, ctx()), rejectsWith("ORDER_REPLAYED"));
        // A fresh order still works.
        await verifyOrder(await signOrder(renterWallet, CHAIN_ID, newOrder()), ctx());
      } finally {
        await store.close();
      }
    });

    test("concurrent requests with one serial: exactly one passes", async () => {
      const store = await openLevelSerialStore({ path: join(dir, "concurrent") });
      serials = store;
      try {
        const signed = await signOrder(renterWallet, CHAIN_ID, newOrder());
        const results = await Promise.allSettled(Array.from({ length: 12 }, () => verifyOrder(signed, ctx())));
        const passed = results.filter((r) => r.status === "fulfilled");
        assert.equal(passed.length, 1);
        for (const r of results) if (r.status === "rejected") assert.ok(isDstorError(r.reason, "ORDER_REPLAYED"));
      } finally {
        await store.close();
      }
    });
  });
});

test("property: the direct order digest equals ethers' TypedDataEncoder, and fast-path signatures verify with ethers", async () => {
  const hex = (bytes: number) => fc.uint8Array({ minLength: bytes, maxLength: bytes }).map((b) => Buffer.from(b).toString("hex"));
  const uint = (bits: number) => fc.bigInt({ min: 0n, max: (1n << BigInt(bits)) - 1n });
  const order = fc.record({
    chainId: fc.oneof(fc.constant(1n), fc.constant(CHAIN_ID), uint(256)),
    dealId: uint(256),
    renter: hex(20).map((h) => `0x${h}`),
    farmer: hex(20).map((h) => `0x${h}`),
    pieceId: hex(32),
    action: fc.constantFrom(OrderAction.Put, OrderAction.Get, OrderAction.Audit, OrderAction.Delete),
    maxBytes: uint(64),
    expiry: uint(64),
    serial: hex(16),
  });
  fc.assert(
    fc.property(order, (o) => {
      const value = { ...o, pieceId: `0x${o.pieceId}`, serial: `0x${o.serial}` };
      const domain = { name: ORDER_DOMAIN_NAME, version: ORDER_DOMAIN_VERSION, chainId: o.chainId };
      assert.equal(orderDigest(o), TypedDataEncoder.hash(domain, ORDER_TYPES, value));
    }),
    { numRuns: 300 },
  );
  const wallet = Wallet.createRandom();
  for (let i = 0; i < 5; i++) {
    const o = newOrder({ renter: wallet.address.toLowerCase(), dealId: BigInt(i) });
    const signed = await signOrder(wallet, CHAIN_ID, o);
    const value = { ...o, pieceId: `0x${o.pieceId}`, serial: `0x${o.serial}` };
    assert.equal(verifyTypedData({ name: ORDER_DOMAIN_NAME, version: ORDER_DOMAIN_VERSION, chainId: CHAIN_ID }, ORDER_TYPES, value, signed.signature), wallet.address);
  }
});
