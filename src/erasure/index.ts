/**
 * Erasure coding for dstor: systematic Reed–Solomon over GF(2^8) (0x11d) with
 * a Cauchy MDS matrix, behind one synchronous {@link ErasureCoder}. Kernels:
 * native (GFNI/AVX2/SSSE3/scalar via the N-API addon), WebAssembly SIMD, and
 * plain TypeScript — all byte-identical.
 */
export { createErasureCoder, type ErasureCoder, type ErasureCoderInit, type PieceRange, type PieceSet } from "./coder.js";
export { buildEncodingMatrix } from "./encoding-matrix.js";
export { gfAdd, gfDiv, gfIdentity, gfInv, gfInvertMatrix, gfMatMul, gfMul, gfPow, GF_POLYNOMIAL } from "./gf256.js";
export type { GfKernel } from "./kernel.js";
export { availableKernels, type KernelChoice, selectKernel } from "./kernels.js";
export {
  createRedundancyStrategy,
  formatRedundancyStrategy,
  MAX_TOTAL_PIECES,
  parseRedundancyStrategy,
  type RedundancyStrategy,
  type RedundancyStrategyInit,
} from "./strategy.js";
