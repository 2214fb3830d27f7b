/**
 * Native SHA-256 and piece Merkle hashing, checked against node:crypto and a
 * straightforward TypeScript Merkle tree written from the shared format.
 */

import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { describe, it } from "node:test";
import fc from "fast-check";
import { loadNative } from "../../src/core/native.js";
import {
  LEAF_SIZE,
  NATIVE_DISABLED,
  pseudoRandomBytes,
  refLeafHashes,
  refMerkleRoot,
  requireNative,
  sha256,
} from "./helpers.js";

const MIB = 1024 * 1024;

describe("native SHA-256 and Merkle", () => {
  if (NATIVE_DISABLED) {
    it("is unavailable under DSTOR_NO_NATIVE=1", () => {
      assert.equal(loadNative(), undefined);
    });
    return;
  }

  it("reports its SHA-256 kernel", () => {
    assert.ok(["sha-ni", "scalar"].includes(requireNative().sha256Kernel()));
  });

  it("matches node:crypto for every length 0..5000", () => {
    const native = requireNative();
    const data = pseudoRandomBytes(5000, 42);
    for (let len = 0; len <= 5000; len++) {
      const view = data.subarray(0, len);
      assert.deepEqual(new Uint8Array(native.sha256(view)), sha256(view), `length ${len}`);
    }
  });

  it("matches node:crypto on unaligned views and a few MiB", () => {
    const native = requireNative();
    const big = randomBytes(3 * MIB + 17);
    for (const [start, end] of [
      [0, big.length],
      [1, big.length],
      [13, 2 * MIB + 5],
      [64, MIB],
    ] as const) {
      const view = big.subarray(start, end);
      assert.deepEqual(new Uint8Array(native.sha256(view)), sha256(view));
    }
  });

  it("computes the known SHA-256 test vectors", () => {
    const native = requireNative();
    const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");
    assert.equal(hex(native.sha256(new Uint8Array(0))), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    assert.equal(
      hex(native.sha256(new TextEncoder().encode("abc"))),
      "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
    );
  });

  it("Merkle roots match the reference at leaf boundaries", () => {
    const native = requireNative();
    for (const len of [0, 1, 63, 64, 1023, 1024, 1025, 2047, 2048, 2049, 3072, 3073, 5 * 1024, 7 * 1024 + 1]) {
      const data = pseudoRandomBytes(len, len + 1);
      assert.deepEqual(new Uint8Array(native.merkleRoot(data)), refMerkleRoot(data), `length ${len}`);
    }
  });

  it("Merkle roots match the reference for random lengths up to 100 KiB", () => {
    const native = requireNative();
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 100 * 1024 }), fc.integer({ min: 1, max: 1 << 30 }), (len, seed) => {
        const data = pseudoRandomBytes(len, seed);
        assert.deepEqual(new Uint8Array(native.merkleRoot(data)), refMerkleRoot(data));
      }),
      { numRuns: 40 },
    );
  });

  it("Merkle roots match the reference on a few MiB (odd leaf counts on many levels)", () => {
    const native = requireNative();
    for (const len of [MIB, 3 * MIB + 1025, 2 * MIB - 1]) {
      const data = randomBytes(len);
      assert.deepEqual(new Uint8Array(native.merkleRoot(data)), refMerkleRoot(data), `length ${len}`);
    }
  });

  it("a one-leaf tree's root is its leaf hash; the empty piece has one empty leaf", () => {
    const native = requireNative();
    assert.deepEqual(new Uint8Array(native.merkleRoot(new Uint8Array(0))), sha256(Uint8Array.of(0)));
    const leaf = pseudoRandomBytes(LEAF_SIZE, 5);
    assert.deepEqual(new Uint8Array(native.merkleRoot(leaf)), sha256(Uint8Array.of(0), leaf));
  });

  it("merkleLeafHashes writes every leaf hash and nothing past them", () => {
    const native = requireNative();
    for (const len of [0, 1, 1024, 1025, 10_000, 65_537]) {
      const data = pseudoRandomBytes(len, 3 + len);
      const leaves = refLeafHashes(data);
      const out = new Uint8Array(leaves.length * 32 + 7).fill(0xaa);
      native.merkleLeafHashes(data, out);
      leaves.forEach((h, i) => {
        assert.deepEqual(out.subarray(32 * i, 32 * i + 32), h, `leaf ${i} of ${len}`);
      });
      assert.ok(out.subarray(leaves.length * 32).every((v) => v === 0xaa));
    }
  });

  it("merkleRoots equals merkleRoot for each piece", () => {
    const native = requireNative();
    const pieces = [0, 1, 1024, 3000, 100_000, 838_861, 5].map((len, i) => pseudoRandomBytes(len, 50 + i));
    const out = new Uint8Array(32 * pieces.length + 32).fill(0x55);
    native.merkleRoots(pieces, out);
    pieces.forEach((p, i) => {
      assert.deepEqual(out.subarray(32 * i, 32 * i + 32), refMerkleRoot(p), `piece ${i}`);
    });
    assert.ok(out.subarray(32 * pieces.length).every((v) => v === 0x55));
    native.merkleRoots([], new Uint8Array(0));
  });

  it("merkleRootAsync resolves to merkleRoot's root, computed off the event loop", async () => {
    const native = requireNative();
    for (const len of [0, 1, 1024, 65_537, 2 * 1024 * 1024]) {
      const data = pseudoRandomBytes(len, 70 + len);
      const pending = native.merkleRootAsync(data);
      assert.ok(pending instanceof Promise);
      assert.deepEqual(new Uint8Array(await pending), refMerkleRoot(data), `length ${len}`);
    }
  });

  it("rejects bad arguments with TypeError or RangeError", () => {
    const native = requireNative();
    const n = native as unknown as Record<string, (...a: unknown[]) => unknown>;
    assert.throws(() => n.merkleRootAsync!("abc"), TypeError);
    assert.throws(() => n.merkleRootAsync!(), TypeError);
    assert.throws(() => n.gcmOpenBlocksAsync!(new Uint8Array(32), new Uint8Array(24), new Uint8Array(15), 0, 1, new Uint8Array(0)), TypeError);
    const overlapping = new Uint8Array(40);
    assert.throws(() => n.gcmOpenBlocksAsync!(new Uint8Array(32), new Uint8Array(24), overlapping.subarray(0, 26), 0, 1, overlapping.subarray(20, 30)), RangeError);
    assert.throws(() => n.sha256!("abc"), TypeError);
    assert.throws(() => n.sha256!(), TypeError);
    assert.throws(() => n.sha256!(new Float64Array(2)), TypeError);
    assert.throws(() => n.merkleRoot!(null), TypeError);
    assert.throws(() => n.merkleLeafHashes!(new Uint8Array(1025), new Uint8Array(63)), RangeError);
    assert.throws(() => n.merkleLeafHashes!(new Uint8Array(0), new Uint8Array(31)), RangeError);
    assert.throws(() => n.merkleLeafHashes!(new Uint8Array(10), "out"), TypeError);
    const shared = new Uint8Array(4096);
    assert.throws(() => n.merkleLeafHashes!(shared.subarray(0, 2048), shared.subarray(2000)), RangeError);
    assert.throws(() => n.merkleRoots!([new Uint8Array(1), new Uint8Array(1)], new Uint8Array(63)), RangeError);
    const out = new Uint8Array(64).fill(1);
    assert.throws(() => n.merkleRoots!([new Uint8Array(1), "x"], out), TypeError);
    assert.ok(out.every((v) => v === 1), "nothing written when an entry is invalid");
    assert.throws(() => n.merkleRoots!("pieces", out), TypeError);
    assert.throws(() => n.merkleRoots!([new Uint8Array(1)]), TypeError);
  });
});
