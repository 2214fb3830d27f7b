import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { test } from "node:test";
import { Contract, ContractFactory, hexlify } from "ethers";
import fc from "fast-check";
import { MerkleHarnessAbi, MerkleHarnessBytecode, type MerkleHarnessContract } from "../../src/chain/contracts.js";
import { nonceSafe } from "../../src/chain/signer.js";
import {
  buildMerkleTree,
  type DealPiece,
  dealLeafHash,
  dealProof,
  dealRoot,
  merkleProof,
  merkleProofLength,
  sortDealPieces,
} from "../../src/crypto/merkle.js";
import { startFixture } from "./fixture.js";

test("Merkle proofs built by src/crypto verify on-chain; one tampered byte or a wrong length fails", async (t) => {
  const f = await startFixture(t);
  const signer = nonceSafe(await f.provider.getSigner(0));
  const factory = new ContractFactory(MerkleHarnessAbi, MerkleHarnessBytecode, signer);
  const deployed = await factory.deploy();
  await deployed.waitForDeployment();
  const h = new Contract(await deployed.getAddress(), MerkleHarnessAbi, f.provider) as unknown as MerkleHarnessContract;

  await fc.assert(
    fc.asyncProperty(fc.integer({ min: 0, max: 40 * 1024 }), fc.nat(), fc.nat(), async (size, rawIndex, rawByte) => {
      const data = new Uint8Array(randomBytes(size));
      const tree = buildMerkleTree(data);
      const index = rawIndex % tree.leafCount;
      const leaf = data.subarray(index * 1024, Math.min(size, index * 1024 + 1024));
      const proof = merkleProof(tree, index).map((x) => hexlify(x));
      const root = hexlify(tree.root);
      assert.equal(await h.proofLength(index, tree.leafCount), BigInt(merkleProofLength(index, tree.leafCount)));
      assert.equal(await h.verifyLeaf(root, leaf, index, tree.leafCount, proof), true);
      if (leaf.length > 0) {
        const bad = new Uint8Array(leaf);
        bad[rawByte % bad.length] ^= 0x01;
        assert.equal(await h.verifyLeaf(root, bad, index, tree.leafCount, proof), false);
      }
      if (proof.length > 0) {
        const p2 = [...proof];
        const bytes = Buffer.from(p2[0]!.slice(2), "hex");
        bytes[rawByte % 32] ^= 0x80;
        p2[0] = hexlify(bytes);
        assert.equal(await h.verifyLeaf(root, leaf, index, tree.leafCount, p2), false);
        assert.equal(await h.verifyLeaf(root, leaf, index, tree.leafCount, proof.slice(1)), false);
      }
      assert.equal(await h.verifyLeaf(root, leaf, index, tree.leafCount, [...proof, root]), false);
      if (tree.leafCount > 1) {
        assert.equal(await h.verifyLeaf(root, leaf, (index + 1) % tree.leafCount, tree.leafCount, proof), false);
      }
    }),
    { numRuns: 40 },
  );

  // Deal trees: leaves H(0x02‖id‖root‖u64 size), sorted by id, odd nodes promoted.
  await fc.assert(
    fc.asyncProperty(fc.integer({ min: 1, max: 23 }), fc.nat(), async (count, rawIndex) => {
      const pieces: DealPiece[] = Array.from({ length: count }, () => ({
        pieceId: new Uint8Array(randomBytes(32)),
        pieceRoot: new Uint8Array(randomBytes(32)),
        size: BigInt(randomBytes(4).readUInt32BE()),
      }));
      const sorted = sortDealPieces(pieces);
      const index = rawIndex % count;
      const p = sorted[index]!;
      const leaf = hexlify(dealLeafHash(p.pieceId, p.pieceRoot, p.size));
      assert.equal(await h.dealLeafHash(p.pieceId, p.pieceRoot, p.size), leaf);
      const proof = dealProof(pieces, index).map((x) => hexlify(x));
      const root = hexlify(dealRoot(pieces));
      assert.equal(await h.verifyHash(root, leaf, index, count, proof), true);
      const wrongSize = hexlify(dealLeafHash(p.pieceId, p.pieceRoot, BigInt(p.size) + 1n));
      assert.equal(await h.verifyHash(root, wrongSize, index, count, proof), false);
    }),
    { numRuns: 25 },
  );
});
