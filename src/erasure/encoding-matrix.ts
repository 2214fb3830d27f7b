/**
 * The systematic MDS encoding matrix: `total × k`, top k rows the identity
 * (pieces 0..k-1 are the data chunks themselves), parity rows a Cauchy matrix
 * `C[i][j] = 1 / (x_i ⊕ y_j)` with `x_i = k + i` and `y_j = j`.
 *
 * Why Cauchy: every square sub-matrix of a Cauchy matrix is non-singular, so
 * `[I; C]` is MDS — any k rows are invertible, i.e. any k pieces decode. The
 * tempting "identity stacked on a plain Vandermonde" is NOT MDS and loses
 * data for some erasure patterns. The x's and y's are the distinct field
 * elements 0..total-1, so x_i ⊕ y_j is never 0; total ≤ 255 keeps them in range.
 */
import { DstorError } from "../core/errors.js";
import { GF_INV } from "./gf256.js";
import { MAX_TOTAL_PIECES } from "./strategy.js";

/** Returns the `total × k` systematic Cauchy encoding matrix (row-major). */
export function buildEncodingMatrix(k: number, total: number): Uint8Array {
  if (!Number.isInteger(k) || !Number.isInteger(total) || k < 1 || k > total || total > MAX_TOTAL_PIECES) {
    throw new DstorError("ERASURE_INVALID_PARAMS", `cannot build a ${total}×${k} code: need 1 ≤ k ≤ total ≤ ${MAX_TOTAL_PIECES}`, {
      details: { k, total },
    });
  }
  const m = new Uint8Array(total * k);
  for (let i = 0; i < k; i++) m[i * k + i] = 1;
  for (let i = k; i < total; i++) {
    for (let j = 0; j < k; j++) m[i * k + j] = GF_INV[i ^ j]!;
  }
  return m;
}
