import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { availableKernels, buildEncodingMatrix, createErasureCoder, gfInv, type KernelChoice } from "../../src/erasure/index.js";
import { forEachSubset, keepOnly, pseudoRandomBytes } from "./helpers.js";

const MAX_N = 12;

describe("exhaustive MDS check, 1 ≤ k ≤ n ≤ 12", () => {
  it("the encoding matrix is [identity; Cauchy 1/(x_i ⊕ y_j)]", () => {
    for (let n = 1; n <= MAX_N; n++) {
      for (let k = 1; k <= n; k++) {
        const m = buildEncodingMatrix(k, n);
        for (let i = 0; i < n; i++) {
          for (let j = 0; j < k; j++) assert.equal(m[i * k + j], i < k ? Number(i === j) : gfInv(i ^ j));
        }
      }
    }
  });

  for (const kernel of availableKernels().map((k) => k.name as KernelChoice)) {
    it(`every k-subset of the n pieces decodes to the original segment (kernel ${kernel})`, () => {
      let decodes = 0;
      for (let n = 1; n <= MAX_N; n++) {
        for (let k = 1; k <= n; k++) {
          const coder = createErasureCoder({ k, total: n }, { kernel });
          // Not a multiple of k (when k > 1), so padding is exercised too.
          const length = 3 * k + (k > 1 ? 1 : 0);
          const segment = pseudoRandomBytes(length, n * 100 + k);
          const pieces = coder.encode(segment);
          assert.equal(pieces.length, n);
          // Systematic: piece i < k is chunk i of the zero-padded segment.
          const size = coder.pieceSize(length);
          const padded = new Uint8Array(k * size);
          padded.set(segment);
          for (let i = 0; i < k; i++) assert.deepEqual(pieces[i], padded.subarray(i * size, (i + 1) * size));
          forEachSubset(n, k, (subset) => {
            const decoded = coder.decode(keepOnly(pieces, subset), length);
            assert.deepEqual(decoded, segment, `k=${k} n=${n} pieces=${subset.join(",")}`);
            decodes++;
          });
        }
      }
      // Σ_{n ≤ 12} (2^n − 1): proves the loops really visited every subset.
      assert.equal(decodes, 8178);
    });
  }
});
