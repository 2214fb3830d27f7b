/**
 * The one interface every GF(2^8) matrix-multiply kernel implements (plain
 * TypeScript, WebAssembly SIMD, native GFNI/AVX2/SSSE3/scalar). All of them
 * must produce identical bytes; test/erasure/kernels.test.ts proves it.
 */
import { DstorError } from "../core/errors.js";

/** A GF(2^8) matrix × byte-vectors kernel. */
export interface GfKernel {
  /** Stable identifier: `ts`, `wasm`, `native-avx2`, … */
  readonly name: string;
  /**
   * For each row r: `outputs[r][offset, offset+length) = ⊕_c matrix[r·cols+c] ⊗ inputs[c][offset, offset+length)`.
   * Outputs are overwritten, not accumulated. `matrix` is `rows × cols`, row-major.
   * Inputs and outputs must not overlap.
   */
  matMul(
    matrix: Uint8Array,
    rows: number,
    cols: number,
    inputs: readonly Uint8Array[],
    outputs: readonly Uint8Array[],
    offset: number,
    length: number,
  ): void;
}

/**
 * Boundary check shared by the kernels: a wrong shape here would make a
 * native or wasm kernel read or write out of bounds, so it is always checked.
 */
export function checkMatMulArgs(
  matrix: Uint8Array,
  rows: number,
  cols: number,
  inputs: readonly Uint8Array[],
  outputs: readonly Uint8Array[],
  offset: number,
  length: number,
): void {
  const fail = (why: string): never => {
    throw new DstorError("ERASURE_SIZE_MISMATCH", `GF matrix multiply: ${why}`, {
      details: { rows, cols, inputs: inputs.length, outputs: outputs.length, offset, length },
    });
  };
  if (!Number.isInteger(rows) || !Number.isInteger(cols) || rows < 0 || cols < 0) fail("rows and cols must be whole numbers");
  if (matrix.length !== rows * cols) fail(`matrix has ${matrix.length} entries, expected ${rows * cols}`);
  if (inputs.length !== cols) fail(`expected ${cols} inputs`);
  if (outputs.length !== rows) fail(`expected ${rows} outputs`);
  if (!Number.isInteger(offset) || !Number.isInteger(length) || offset < 0 || length < 0) fail("offset and length must be whole numbers ≥ 0");
  const end = offset + length;
  for (const input of inputs) if (!(input instanceof Uint8Array) || input.length < end) fail("an input is shorter than offset + length");
  for (const output of outputs) if (!(output instanceof Uint8Array) || output.length < end) fail("an output is shorter than offset + length");
}
