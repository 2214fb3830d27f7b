import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { describe, test } from "node:test";
import fc from "fast-check";
import { isDstorError } from "../../src/core/errors.js";
import { merkleRoot } from "../../src/crypto/merkle.js";
import { IncrementalMerkleRoot, pieceMerkleRoot } from "../../src/farmer/store/root.js";
import { pieceBytes, referenceMerkleRoot } from "./helpers.js";

function sha256(...parts: Uint8Array[]): Uint8Array {
  const h = createHash("sha256");
  for (const p of parts) h.update(p);
  return new Uint8Array(h.digest());
}

/** Feeds `data` cut at the given cut points (sorted, deduplicated). */
function chunkedRoot(data: Uint8Array, cuts: number[]): Uint8Array {
  const hasher = new IncrementalMerkleRoot();
  let previous = 0;
  for (const cut of [...new Set(cuts.map((c) => c % (data.byteLength + 1)))].sort((a, b) => a - b)) {
    hasher.update(data.subarray(previous, cut));
    previous = cut;
  }
  hasher.update(data.subarray(previous));
  assert.equal(hasher.bytesHashed, data.byteLength);
  return hasher.digest();
}

describe("incremental piece Merkle root", () => {
  test("hand-computed trees: empty piece, one leaf, two leaves, promotion of an odd node", () => {
    const leaf = (bytes: Uint8Array): Uint8Array => sha256(Uint8Array.of(0), bytes);
    const node = (l: Uint8Array, r: Uint8Array): Uint8Array => sha256(Uint8Array.of(1), l, r);
    assert.deepEqual(pieceMerkleRoot(new Uint8Array(0)), leaf(new Uint8Array(0)));
    const d = pieceBytes(3 * 1024 + 5);
    assert.deepEqual(pieceMerkleRoot(d.subarray(0, 1024)), leaf(d.subarray(0, 1024)));
    const l = [0, 1, 2, 3].map((i) => leaf(d.subarray(i * 1024, Math.min(d.byteLength, (i + 1) * 1024))));
    assert.deepEqual(pieceMerkleRoot(d.subarray(0, 1025)), node(leaf(d.subarray(0, 1024)), leaf(d.subarray(1024, 1025))));
    // 3 leaves: the third is promoted, then paired with the first pair's node.
    assert.deepEqual(pieceMerkleRoot(d.subarray(0, 3 * 1024)), node(node(l[0]!, l[1]!), l[2]!));
    // 4 leaves, the last one 5 bytes (short, not padded).
    assert.deepEqual(pieceMerkleRoot(d), node(node(l[0]!, l[1]!), node(l[2]!, l[3]!)));
    // 5 leaves: the fifth is promoted twice.
    const e = pieceBytes(4 * 1024 + 1, 2);
    const m = [0, 1, 2, 3, 4].map((i) => leaf(e.subarray(i * 1024, Math.min(e.byteLength, (i + 1) * 1024))));
    assert.deepEqual(pieceMerkleRoot(e), node(node(node(m[0]!, m[1]!), node(m[2]!, m[3]!)), m[4]!));
  });

  test("matches the whole-buffer reference at leaf-boundary sizes, fed in one chunk and byte-odd chunks", () => {
    const sizes = [0, 1, 2, 1023, 1024, 1025, 2047, 2048, 2049, 3072, 3073, 4096, 5 * 1024 + 1, 7 * 1024, 8 * 1024, 9 * 1024 - 1, 17 * 1024 + 3, 33 * 1024];
    for (const size of sizes) {
      const data = pieceBytes(size, size + 1);
      const expected = referenceMerkleRoot(data);
      assert.deepEqual(pieceMerkleRoot(data), expected, `size ${size}`);
      const cuts: number[] = [];
      for (let c = 0; c < size; c += 333) cuts.push(c);
      assert.deepEqual(chunkedRoot(data, cuts), expected, `size ${size}, 333-byte chunks`);
    }
  });

  test("property: any size and any chunking gives the reference root", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 40 * 1024 }),
        fc.integer({ min: 1, max: 2 ** 31 - 1 }),
        fc.array(fc.nat(), { maxLength: 24 }),
        (size, seed, cuts) => {
          const data = pieceBytes(size, seed);
          assert.deepEqual(chunkedRoot(data, cuts), referenceMerkleRoot(data));
        },
      ),
      { numRuns: 150 },
    );
  });

  test("property: agrees with the shared whole-buffer merkleRoot of src/crypto/merkle.ts", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 20 * 1024 }), fc.integer({ min: 1, max: 2 ** 31 - 1 }), fc.array(fc.nat(), { maxLength: 8 }), (size, seed, cuts) => {
        const data = pieceBytes(size, seed);
        assert.deepEqual(chunkedRoot(data, cuts), new Uint8Array(merkleRoot(data)));
      }),
      { numRuns: 100 },
    );
  });

  test("property: differing bytes give differing roots", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 5000 }), fc.nat(), (size, where) => {
        const data = pieceBytes(size, 3);
        const other = new Uint8Array(data);
        other[where % size] = other[where % size]! ^ 0x80;
        assert.notDeepEqual(pieceMerkleRoot(other), pieceMerkleRoot(data));
      }),
      { numRuns: 50 },
    );
  });

  test("cannot be used after digest()", () => {
    const hasher = new IncrementalMerkleRoot();
    hasher.update(new Uint8Array(5));
    hasher.digest();
    assert.throws(() => hasher.update(new Uint8Array(1)), (e: unknown) => isDstorError(e, "INVALID_ARGUMENT"));
    assert.throws(() => hasher.digest(), (e: unknown) => isDstorError(e, "INVALID_ARGUMENT"));
  });
});
