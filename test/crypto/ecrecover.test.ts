/**
 * The native secp256k1 recovery behind recoverTypedDataAddress gives exactly
 * ethers' answers: the same signer for valid signatures (fast-check over
 * keys and messages), a different signer for a flipped recovery bit, and an
 * error — never an address — for signatures no key can have made.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { Signature, SigningKey, type TypedDataDomain, Wallet, verifyTypedData } from "ethers";
import fc from "fast-check";
import { loadNative } from "../../src/core/native.js";
import { recoverTypedDataAddress, signDigest, signTypedData } from "../../src/crypto/ecrecover.js";

const N = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n;
const domain: TypedDataDomain = { name: "dstor-test", version: "1", chainId: 31337, verifyingContract: "0x000000000000000000000000000000000000dEaD" };
const types = { Note: [{ name: "n", type: "uint256" }, { name: "text", type: "string" }] };
const hex32 = (v: bigint): string => `0x${v.toString(16).padStart(64, "0")}`;

/** Both implementations' outcome: the address, or "throws". */
function both(value: Record<string, unknown>, signature: string): { ours: string; ethers: string } {
  const run = (fn: () => string): string => {
    try {
      return fn();
    } catch {
      return "throws";
    }
  };
  return { ours: run(() => recoverTypedDataAddress(domain, types, value, signature)), ethers: run(() => verifyTypedData(domain, types, value, signature)) };
}

test("the native addon has ecrecover (the fast path is what runs)", () => {
  assert.equal(typeof loadNative()?.ecrecover, "function");
});

test("recoverTypedDataAddress equals ethers for valid signatures", async () => {
  await fc.assert(
    fc.asyncProperty(fc.uint8Array({ minLength: 32, maxLength: 32 }), fc.bigInt({ min: 0n, max: 2n ** 256n - 1n }), fc.string(), async (seed, n, text) => {
      if (seed.every((b) => b === 0)) return;
      let wallet: Wallet;
      try {
        wallet = new Wallet(`0x${Buffer.from(seed).toString("hex")}`);
      } catch {
        return; // not a valid private key (≥ n)
      }
      const value = { n, text };
      const signature = await wallet.signTypedData(domain, types, value);
      const r = both(value, signature);
      assert.equal(r.ours, wallet.address);
      assert.equal(r.ethers, wallet.address);
      // The other recovery bit names some other key — the same one for both.
      const sig = Signature.from(signature);
      const flipped = Signature.from({ r: sig.r, s: sig.s, v: sig.v === 27 ? 28 : 27 }).serialized;
      const f = both(value, flipped);
      assert.equal(f.ours, f.ethers);
      assert.notEqual(f.ours, wallet.address);
    }),
    { numRuns: 60 },
  );
});

test("signatures no key can have made are refused by both", async () => {
  const wallet = Wallet.createRandom();
  const value = { n: 7n, text: "hostile" };
  const good = Signature.from(await wallet.signTypedData(domain, types, value));
  const forged = (r: bigint, s: bigint, v = 27): string => `${hex32(r)}${hex32(s).slice(2)}${v.toString(16)}`;
  const cases: Array<[string, string]> = [
    ["r = 0", forged(0n, BigInt(good.s))],
    ["s = 0", forged(BigInt(good.r), 0n)],
    ["r = n", forged(N, BigInt(good.s))],
    ["r > n", forged(N + 5n, BigInt(good.s))],
    ["r not an x-coordinate on the curve", forged(5n, BigInt(good.s))],
    ["high s", forged(BigInt(good.r), N - BigInt(good.s))],
    ["truncated", good.serialized.slice(0, 100)],
    ["garbage", `0x${"zz".repeat(65)}`],
  ];
  for (const [name, signature] of cases) {
    const r = both(value, signature);
    assert.equal(r.ours, r.ethers, name);
    if (name !== "r not an x-coordinate on the curve") assert.equal(r.ours, "throws", name);
  }
  // The addon itself: out-of-range scalars and off-curve x give null, bad arguments throw.
  const native = loadNative()!;
  const h = new Uint8Array(32).fill(1);
  const b = (v: bigint): Uint8Array => new Uint8Array(Buffer.from(hex32(v).slice(2), "hex"));
  assert.equal(native.ecrecover(h, b(0n), b(1n), 0), null);
  assert.equal(native.ecrecover(h, b(N), b(1n), 0), null);
  assert.equal(native.ecrecover(h, b(1n), b(N), 0), null);
  assert.throws(() => native.ecrecover(h, b(1n), b(1n), 2), RangeError);
  assert.throws(() => native.ecrecover(h.subarray(1), b(1n), b(1n), 0), TypeError);
});

test("signDigest gives exactly ethers' signatures (RFC 6979, low s), natively", () => {
  assert.equal(typeof loadNative()?.secp256k1Sign, "function");
  fc.assert(
    fc.property(fc.uint8Array({ minLength: 32, maxLength: 32 }), fc.uint8Array({ minLength: 32, maxLength: 32 }), (seed, digest) => {
      let key: SigningKey;
      try {
        key = new SigningKey(`0x${Buffer.from(seed).toString("hex")}`);
      } catch {
        return; // not a valid private key
      }
      assert.equal(signDigest(key.privateKey, digest), key.sign(digest).serialized);
    }),
    { numRuns: 300 },
  );
  for (const bad of [0n, N, 2n ** 256n - 1n]) assert.throws(() => signDigest(hex32(bad), new Uint8Array(32)));
});

test("signTypedData (native from the digest) gives exactly ethers' signTypedData, and a signer without a key still works", async () => {
  const wallet = Wallet.createRandom();
  await fc.assert(
    fc.asyncProperty(fc.bigInt({ min: 0n, max: 2n ** 256n - 1n }), fc.string(), async (n, text) => {
      const value = { n, text };
      assert.equal(await signTypedData(wallet, domain, types, value), await wallet.signTypedData(domain, types, value));
    }),
    { numRuns: 100 },
  );
  const keyless = { signTypedData: (d: TypedDataDomain, t: typeof types, v: Record<string, unknown>) => wallet.signTypedData(d, t, v) };
  const value = { n: 1n, text: "x" };
  assert.equal(await signTypedData(keyless, domain, types, value), await wallet.signTypedData(domain, types, value));
});
