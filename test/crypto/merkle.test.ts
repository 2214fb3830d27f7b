import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { describe, it } from "node:test";
import fc from "fast-check";
import { loadNative } from "../../src/core/native.js";
import {
  buildMerkleTree,
  type DealPiece,
  dealLeafHash,
  dealProof,
  dealRoot,
  HASH_BYTES,
  hashLeaf,
  hashNode,
  LEAF_SIZE_BYTES,
  leafCount,
  merkleMultiproof,
  merkleProof,
  merkleProofLength,
  merkleRoot,
  merkleRootAsync,
  merkleRoots,
  multiproofLength,
  sortDealPieces,
  verifyMerkleMultiproof,
  verifyMerkleMultiproofAsync,
  verifyMerkleProof,
  verifyMerkleProofForLeafHash,
} from "../../src/crypto/merkle.js";
import { type DstorVectors, hex, loadVectors, pattern, toHexString } from "./helpers.js";

const V = loadVectors<DstorVectors>("dstor-crypto.json");

function leafBytes(data: Uint8Array, i: number): Uint8Array {
  return data.subarray(i * LEAF_SIZE_BYTES, (i + 1) * LEAF_SIZE_BYTES);
}
function rangeBytes(data: Uint8Array, start: number, end: number): Uint8Array {
  return data.subarray(start * LEAF_SIZE_BYTES, Math.min(data.length, end * LEAF_SIZE_BYTES));
}

describe("Merkle format basics", () => {
  it("leafCount", () => {
    assert.equal(leafCount(0), 1);
    assert.equal(leafCount(1), 1);
    assert.equal(leafCount(1024), 1);
    assert.equal(leafCount(1025), 2);
    assert.equal(leafCount(8 * 1024 * 1024), 8192);
    assert.equal(leafCount(3073n), 4);
  });
  it("a one-leaf root is the leaf hash; two leaves hash with the 0x01 prefix", () => {
    const one = pattern(500);
    assert.deepEqual(merkleRoot(one), hashLeaf(one));
    const two = pattern(1500);
    assert.deepEqual(merkleRoot(two), hashNode(hashLeaf(leafBytes(two, 0)), hashLeaf(leafBytes(two, 1))));
  });
  it("an odd last node is promoted, not duplicated", () => {
    const data = pattern(2049);
    const [a, b, c] = [0, 1, 2].map((i) => hashLeaf(leafBytes(data, i))) as [Uint8Array, Uint8Array, Uint8Array];
    assert.deepEqual(merkleRoot(data), hashNode(hashNode(a, b), c));
  });
});

describe("Merkle vectors", () => {
  for (const [size, root] of Object.entries(V.merkle.roots)) {
    it(`root of ${size} bytes (native if present, and portable)`, () => {
      const data = pattern(Number(size));
      assert.equal(toHexString(merkleRoot(data)), root);
      assert.equal(toHexString(merkleRoot(data, { native: false })), root);
      assert.equal(toHexString(buildMerkleTree(data).root), root);
      assert.equal(toHexString(buildMerkleTree(data, { native: false }).root), root);
    });
  }
  it("single-leaf proof", () => {
    const p = V.merkle.proof;
    const data = pattern(p.size);
    const tree = buildMerkleTree(data);
    assert.equal(tree.leafCount, p.leafCount);
    const proof = merkleProof(tree, p.index);
    assert.deepEqual(proof.map(toHexString), p.proof);
    assert.ok(verifyMerkleProof(tree.root, p.index, p.leafCount, leafBytes(data, p.index), p.proof.map(hex)));
  });
  it("multiproof", () => {
    const m = V.merkle.multiproof;
    const data = pattern(m.size);
    const tree = buildMerkleTree(data);
    const proof = merkleMultiproof(tree, m.startLeaf, m.endLeaf);
    assert.deepEqual(proof.map(toHexString), m.proof);
    assert.ok(verifyMerkleMultiproof(tree.root, m.leafCount, m.startLeaf, rangeBytes(data, m.startLeaf, m.endLeaf), m.proof.map(hex)));
  });
  it("deal tree", () => {
    const d = V.deal;
    const pieces: DealPiece[] = d.pieces.map((p) => ({ pieceId: hex(p.pieceId), pieceRoot: hex(p.pieceRoot), size: BigInt(p.size) }));
    assert.deepEqual(sortDealPieces(pieces).map((p) => toHexString(p.pieceId)), d.sortedPieceIds);
    const sorted = sortDealPieces(pieces);
    assert.deepEqual(sorted.map((p) => toHexString(dealLeafHash(p.pieceId, p.pieceRoot, p.size))), d.leafHashes);
    assert.equal(toHexString(dealRoot(pieces)), d.root);
    assert.equal(toHexString(dealRoot([...pieces].reverse())), d.root, "input order does not matter");
    assert.equal(toHexString(dealRoot([])), d.emptyRoot);
    const proof = dealProof(pieces, d.proofIndex);
    assert.deepEqual(proof.map(toHexString), d.proof);
    const leaf = hex(d.leafHashes[d.proofIndex]!);
    assert.ok(verifyMerkleProofForLeafHash(hex(d.root), d.proofIndex, pieces.length, leaf, proof));
    assert.ok(!verifyMerkleProofForLeafHash(hex(d.root), 0, pieces.length, leaf, proof));
    assert.throws(() => dealRoot([pieces[0]!, pieces[0]!]));
    assert.deepEqual(dealLeafHash(pieces[0]!.pieceId, pieces[0]!.pieceRoot, Number(pieces[0]!.size)), hex(d.leafHashes[d.sortedPieceIds.indexOf(d.pieces[0]!.pieceId)]!));
  });
});

describe("native and portable hashing agree", () => {
  const native = loadNative();
  it(`roots, trees and batch roots are identical (native addon ${native === undefined ? "absent: portable twice" : "present"})`, () => {
    const sizes = [0, 1, 1023, 1024, 1025, 4096, 4097, 100_000, 1_048_576 + 7];
    const pieces = sizes.map((s) => new Uint8Array(randomBytes(s)));
    const portable = pieces.map((p) => merkleRoot(p, { native: false }));
    assert.deepEqual(pieces.map((p) => merkleRoot(p)), portable);
    assert.deepEqual(merkleRoots(pieces), portable);
    assert.deepEqual(merkleRoots(pieces, { native: false }), portable);
    for (const p of pieces) assert.deepEqual(buildMerkleTree(p).levels, buildMerkleTree(p, { native: false }).levels);
  });
  it("DSTOR_NO_NATIVE=1 switches to the portable path with identical roots", () => {
    const data = new Uint8Array(randomBytes(300_000));
    const withDefault = merkleRoot(data);
    const before = process.env.DSTOR_NO_NATIVE;
    process.env.DSTOR_NO_NATIVE = "1";
    try {
      assert.equal(loadNative(), undefined);
      assert.deepEqual(merkleRoot(data), withDefault);
      assert.deepEqual(buildMerkleTree(data).root, withDefault);
    } finally {
      if (before === undefined) delete process.env.DSTOR_NO_NATIVE;
      else process.env.DSTOR_NO_NATIVE = before;
    }
  });
  it("random sizes (fast-check)", () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 0, maxLength: 20_000 }), (data) => {
        assert.deepEqual(merkleRoot(data), merkleRoot(data, { native: false }));
      }),
      { numRuns: 50 },
    );
  });
});

describe("single-leaf proofs", () => {
  it("verify for every index of random trees and fail on any tamper (fast-check)", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 40 * LEAF_SIZE_BYTES }), fc.nat(), (size, pick) => {
        const data = new Uint8Array(randomBytes(size));
        const tree = buildMerkleTree(data);
        const n = tree.leafCount;
        for (let i = 0; i < n; i++) {
          const proof = merkleProof(tree, i);
          assert.equal(proof.length, merkleProofLength(i, n));
          assert.ok(verifyMerkleProof(tree.root, i, n, leafBytes(data, i), proof), `leaf ${i} of ${n}`);
        }
        const i = pick % n;
        const proof = merkleProof(tree, i);
        const leaf = leafBytes(data, i);
        // wrong index, wrong leaf count, tampered leaf, tampered proof, short / long proof
        if (n > 1) assert.ok(!verifyMerkleProof(tree.root, (i + 1) % n, n, leaf, proof));
        assert.ok(!verifyMerkleProof(tree.root, i, n + 1, leaf, proof) || merkleProofLength(i, n + 1) === proof.length);
        if (leaf.length > 0) {
          const bad = leaf.slice();
          bad[pick % bad.length]! ^= 1;
          assert.ok(!verifyMerkleProof(tree.root, i, n, bad, proof));
        }
        assert.ok(!verifyMerkleProof(tree.root, i, n, new Uint8Array([...leaf, 0]), proof));
        for (let k = 0; k < proof.length; k++) {
          const badProof = proof.map((h) => h.slice());
          badProof[k]![pick % HASH_BYTES]! ^= 0x80;
          assert.ok(!verifyMerkleProof(tree.root, i, n, leaf, badProof));
        }
        if (proof.length > 0) assert.ok(!verifyMerkleProof(tree.root, i, n, leaf, proof.slice(1)));
        assert.ok(!verifyMerkleProof(tree.root, i, n, leaf, [...proof, new Uint8Array(32)]));
        const badRoot = tree.root.slice();
        badRoot[0]! ^= 1;
        assert.ok(!verifyMerkleProof(badRoot, i, n, leaf, proof));
      }),
      { numRuns: 30 },
    );
  });
  it("rejects wrong leaf lengths", () => {
    const data = pattern(3000); // leaves 1024, 1024, 952
    const tree = buildMerkleTree(data);
    assert.ok(!verifyMerkleProof(tree.root, 0, 3, leafBytes(data, 0).subarray(0, 1000), merkleProof(tree, 0)));
    assert.ok(!verifyMerkleProof(tree.root, 2, 3, new Uint8Array(0), merkleProof(tree, 2)));
    const empty = buildMerkleTree(new Uint8Array(0));
    assert.ok(verifyMerkleProof(empty.root, 0, 1, new Uint8Array(0), []));
    assert.ok(!verifyMerkleProof(empty.root, 0, 1, new Uint8Array(1), []));
  });
  it("never throws on garbage", () => {
    const tree = buildMerkleTree(pattern(5000));
    const garbage: unknown[] = [undefined, null, 1, "x", {}, [], new Uint8Array(31)];
    for (const g of garbage) {
      assert.equal(verifyMerkleProof(g as Uint8Array, 0, 5, pattern(1024), merkleProof(tree, 0)), false);
      assert.equal(verifyMerkleProof(tree.root, g as number, 5, pattern(1024), merkleProof(tree, 0)), false);
      assert.equal(verifyMerkleProof(tree.root, 0, g as number, pattern(1024), merkleProof(tree, 0)), false);
      assert.equal(verifyMerkleProof(tree.root, 0, 5, g as Uint8Array, merkleProof(tree, 0)), false);
      assert.equal(verifyMerkleProof(tree.root, 0, 5, pattern(1024), g as Uint8Array[]), false);
      assert.equal(verifyMerkleProof(tree.root, 0, 5, pattern(1024), [g as Uint8Array, ...merkleProof(tree, 0).slice(1)]), false);
    }
  });
});

describe("multiproofs", () => {
  it("give the same verdicts on the native and the portable path (fast-check)", () => {
    const portable = <T>(fn: () => T): T => {
      const before = process.env.DSTOR_NO_NATIVE;
      process.env.DSTOR_NO_NATIVE = "1";
      try {
        return fn();
      } finally {
        if (before === undefined) delete process.env.DSTOR_NO_NATIVE;
        else process.env.DSTOR_NO_NATIVE = before;
      }
    };
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 40 * LEAF_SIZE_BYTES }), fc.nat(), fc.nat(), fc.nat(), fc.boolean(), (size, a, b, pick, tamper) => {
        const data = new Uint8Array(randomBytes(size));
        const tree = buildMerkleTree(data);
        const n = tree.leafCount;
        const start = a % n;
        const end = start + 1 + (b % (n - start));
        const proof = merkleMultiproof(tree, start, end);
        const bytes = rangeBytes(data, start, end).slice();
        if (tamper && bytes.length > 0) bytes[pick % bytes.length]! ^= 1;
        const fast = verifyMerkleMultiproof(tree.root, n, start, bytes, proof);
        assert.equal(portable(() => verifyMerkleMultiproof(tree.root, n, start, bytes, proof)), fast);
        assert.equal(fast, !(tamper && bytes.length > 0));
      }),
    );
  });

  it("verify for random ranges and fail on tamper (fast-check)", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 70 * LEAF_SIZE_BYTES }), fc.nat(), fc.nat(), fc.nat(), (size, a, b, pick) => {
        const data = new Uint8Array(randomBytes(size));
        const tree = buildMerkleTree(data);
        const n = tree.leafCount;
        const start = a % n;
        const end = start + 1 + (b % (n - start));
        const proof = merkleMultiproof(tree, start, end);
        const bytes = rangeBytes(data, start, end);
        assert.equal(proof.length, multiproofLength(n, start, end));
        assert.ok(verifyMerkleMultiproof(tree.root, n, start, bytes, proof));
        // minimality: never more hashes than separate single proofs would need
        assert.ok(proof.length <= merkleProofLength(start, n) + merkleProofLength(end - 1, n));
        if (start === 0 && end === n) assert.equal(proof.length, 0);
        if (bytes.length > 0) {
          const bad = bytes.slice();
          bad[pick % bad.length]! ^= 1 << (pick % 8);
          assert.ok(!verifyMerkleMultiproof(tree.root, n, start, bad, proof));
        }
        for (let k = 0; k < proof.length; k++) {
          const badProof = proof.slice();
          badProof[k] = badProof[k]!.slice();
          badProof[k]![pick % HASH_BYTES]! ^= 1;
          assert.ok(!verifyMerkleMultiproof(tree.root, n, start, bytes, badProof));
        }
        if (proof.length > 0) {
          assert.ok(!verifyMerkleMultiproof(tree.root, n, start, bytes, proof.slice(0, -1)));
          const swapped = [...proof].reverse();
          if (proof.length > 1 && toHexString(swapped[0]!) !== toHexString(proof[0]!)) {
            assert.ok(!verifyMerkleMultiproof(tree.root, n, start, bytes, swapped));
          }
        }
        assert.ok(!verifyMerkleMultiproof(tree.root, n, start, bytes, [...proof, tree.root]));
        if (n > 1 && start + 1 < n) assert.ok(!verifyMerkleMultiproof(tree.root, n, start + 1, bytes, proof));
        // a shortened range must not verify with the longer range's proof
        if (end - start > 1) assert.ok(!verifyMerkleMultiproof(tree.root, n, start, bytes.subarray(0, bytes.length - LEAF_SIZE_BYTES), proof));
      }),
      { numRuns: 60 },
    );
  });
  it("rejects wrong range lengths", () => {
    const data = pattern(5 * LEAF_SIZE_BYTES + 10); // 6 leaves, the last 10 bytes
    const tree = buildMerkleTree(data);
    const proof = merkleMultiproof(tree, 1, 3);
    const bytes = rangeBytes(data, 1, 3);
    assert.ok(verifyMerkleMultiproof(tree.root, 6, 1, bytes, proof));
    assert.ok(!verifyMerkleMultiproof(tree.root, 6, 1, bytes.subarray(0, bytes.length - 1), proof));
    assert.ok(!verifyMerkleMultiproof(tree.root, 6, 1, new Uint8Array([...bytes, 0]), proof));
    const tail = merkleMultiproof(tree, 4, 6);
    assert.ok(verifyMerkleMultiproof(tree.root, 6, 4, rangeBytes(data, 4, 6), tail));
    assert.ok(!verifyMerkleMultiproof(tree.root, 6, 4, rangeBytes(data, 4, 5), tail));
    assert.ok(!verifyMerkleMultiproof(tree.root, 6, 6, new Uint8Array(0), []));
    assert.throws(() => merkleMultiproof(tree, 3, 3));
    assert.throws(() => merkleMultiproof(tree, 0, 7));
  });
  it("a single-leaf multiproof equals the single-leaf proof", () => {
    const tree = buildMerkleTree(pattern(9 * LEAF_SIZE_BYTES));
    for (let i = 0; i < 9; i++) assert.deepEqual(merkleMultiproof(tree, i, i + 1), merkleProof(tree, i));
  });
});

describe("merkleRootAsync (the native hashing on libuv's thread pool)", () => {
  it("gives merkleRoot's root for every shape of piece, many in flight at once", async () => {
    const sizes = [0, 1, LEAF_SIZE_BYTES - 1, LEAF_SIZE_BYTES, LEAF_SIZE_BYTES + 1, 64 * LEAF_SIZE_BYTES, 65 * LEAF_SIZE_BYTES + 3, 2 * 1024 * 1024];
    const pieces = sizes.map((n) => new Uint8Array(randomBytes(n)));
    const roots = await Promise.all(pieces.map((p) => merkleRootAsync(p)));
    for (let i = 0; i < pieces.length; i++) {
      assert.deepEqual(roots[i], merkleRoot(pieces[i]!), `${sizes[i]} bytes`);
      assert.deepEqual(await merkleRootAsync(pieces[i]!, { native: false }), roots[i], `${sizes[i]} bytes without the addon`);
    }
  });

  it("hashes a view of a larger buffer, not the buffer", async () => {
    const big = new Uint8Array(randomBytes(10 * LEAF_SIZE_BYTES));
    const view = big.subarray(LEAF_SIZE_BYTES + 7, 6 * LEAF_SIZE_BYTES);
    assert.deepEqual(await merkleRootAsync(view), merkleRoot(view.slice()));
  });

  it("verifyMerkleMultiproofAsync agrees with verifyMerkleMultiproof: whole pieces, ranges, tampered bytes, proofs and shapes (fast-check)", async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 0, max: 40 * LEAF_SIZE_BYTES }), fc.nat(), fc.nat(), fc.nat(), fc.boolean(), fc.integer({ min: 0, max: 3 }), async (size, a, b, pick, whole, how) => {
        const data = new Uint8Array(randomBytes(size));
        const tree = buildMerkleTree(data);
        const n = tree.leafCount;
        const start = whole ? 0 : a % n;
        const end = whole ? n : start + 1 + (b % (n - start));
        let proof = merkleMultiproof(tree, start, end);
        let bytes = rangeBytes(data, start, end).slice();
        let root = tree.root;
        // Only flipping a hash can spoil an empty range (the empty piece): there is no byte to flip or drop.
        const intact = how === 0 || (bytes.length === 0 && how !== 2);
        // 0: as served; 1: a flipped byte; 2: a flipped proof hash or root; 3: one byte short.
        if (how === 1 && bytes.length > 0) bytes[pick % bytes.length]! ^= 1;
        if (how === 2) {
          if (proof.length > 0) proof = proof.map((h, i) => (i === pick % proof.length ? h.map((x, j) => (j === 0 ? x ^ 1 : x)) : h));
          else root = root.map((x, j) => (j === 0 ? x ^ 1 : x));
        }
        if (how === 3 && bytes.length > 0) bytes = bytes.subarray(0, bytes.length - 1);
        const expected = verifyMerkleMultiproof(root, n, start, bytes, proof);
        assert.equal(expected, intact, "the synchronous check");
        assert.equal(await verifyMerkleMultiproofAsync(root, n, start, bytes, proof), expected);
      }),
      { numRuns: 80 },
    );
    assert.equal(await verifyMerkleMultiproofAsync(new Uint8Array(31), 1, 0, new Uint8Array(0), []), false, "a root of the wrong size");
  });

  it("rejects what is not bytes", async () => {
    await assert.rejects(merkleRootAsync("abc" as unknown as Uint8Array), (e: unknown) => (e as { code?: string }).code === "INVALID_ARGUMENT");
  });
});
