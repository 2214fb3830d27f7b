/**
 * One compliance suite run against every kernel this machine offers (ts, wasm,
 * every native kernel the CPU supports): each must match a table-free
 * reference and therefore each other, byte for byte.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { isDstorError } from "../../src/core/errors.js";
import { availableKernels, createErasureCoder, type GfKernel, gfMul } from "../../src/erasure/index.js";
import { pseudoRandomBytes } from "./helpers.js";

function referenceMatMul(
  matrix: Uint8Array,
  rows: number,
  cols: number,
  inputs: Uint8Array[],
  offset: number,
  length: number,
): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let r = 0; r < rows; r++) {
    const row = new Uint8Array(length);
    for (let c = 0; c < cols; c++) {
      const coef = matrix[r * cols + c]!;
      for (let i = 0; i < length; i++) row[i]! ^= gfMul(coef, inputs[c]![offset + i]!);
    }
    out.push(row);
  }
  return out;
}

const kernels = availableKernels();

describe("kernel registry", () => {
  it("always offers ts and wasm; native kernels come first when present", () => {
    const names = kernels.map((k) => k.name);
    assert.ok(names.includes("ts"));
    assert.ok(names.includes("wasm"), "build/wasm/gf256.wasm must be built (node scripts/build-wasm.mjs)");
    assert.equal(names.at(-1), "ts");
    const firstNonNative = names.findIndex((n) => !n.startsWith("native-"));
    assert.ok(names.slice(firstNonNative).every((n) => !n.startsWith("native-")));
    assert.equal(new Set(names).size, names.length);
  });
});

for (const kernel of kernels) {
  describe(`kernel ${kernel.name}`, () => {
    it("matches the reference on random shapes, offsets, lengths and unaligned views", () => {
      fc.assert(
        fc.property(
          fc.integer({ min: 1, max: 12 }),
          fc.integer({ min: 1, max: 12 }),
          fc.integer({ min: 0, max: 70 }),
          fc.integer({ min: 0, max: 300 }),
          fc.integer({ min: 0, max: 3 }),
          fc.integer(),
          (rows, cols, offset, length, misalign, seed) => {
            const matrix = pseudoRandomBytes(rows * cols, seed);
            if (seed % 3 === 0) matrix[0] = 0; // special coefficients 0 and 1
            if (seed % 5 === 0) matrix[matrix.length - 1] = 1;
            const size = offset + length + 5;
            const inputs = Array.from({ length: cols }, (_, c) => pseudoRandomBytes(size + misalign, seed + c + 1).subarray(misalign));
            const outputs = Array.from({ length: rows }, () => new Uint8Array(size + misalign).fill(0xaa).subarray(misalign));
            kernel.matMul(matrix, rows, cols, inputs, outputs, offset, length);
            const expected = referenceMatMul(matrix, rows, cols, inputs, offset, length);
            for (let r = 0; r < rows; r++) {
              // Outputs are overwritten in range and untouched outside it.
              assert.deepEqual(outputs[r]!.subarray(offset, offset + length), expected[r]);
              assert.ok(outputs[r]!.subarray(0, offset).every((b) => b === 0xaa));
              assert.ok(outputs[r]!.subarray(offset + length).every((b) => b === 0xaa));
            }
          },
        ),
        { numRuns: 150 },
      );
    });

    it("handles lengths spanning many blocks and slices", () => {
      const rows = 7;
      const cols = 5;
      const length = 300_001;
      const matrix = pseudoRandomBytes(rows * cols, 99);
      const inputs = Array.from({ length: cols }, (_, c) => pseudoRandomBytes(length + 3, c + 7));
      const outputs = Array.from({ length: rows }, () => new Uint8Array(length + 3));
      kernel.matMul(matrix, rows, cols, inputs, outputs, 3, length);
      const expected = referenceMatMul(matrix, rows, cols, inputs, 3, length);
      for (let r = 0; r < rows; r++) assert.deepEqual(outputs[r]!.subarray(3), expected[r]);
    });

    it("never reuses state from a previous call with the same shape but another matrix", () => {
      const inputs = [pseudoRandomBytes(96, 1), pseudoRandomBytes(96, 2)];
      for (const seed of [10, 11, 10, 12]) {
        const matrix = pseudoRandomBytes(6, seed);
        const outputs = [new Uint8Array(96), new Uint8Array(96), new Uint8Array(96)];
        kernel.matMul(matrix, 3, 2, inputs, outputs, 0, 96);
        assert.deepEqual(outputs, referenceMatMul(matrix, 3, 2, inputs, 0, 96));
      }
    });

    it("rejects shapes that would read or write out of bounds", () => {
      const sizeError = (e: unknown): boolean => isDstorError(e, "ERASURE_SIZE_MISMATCH");
      const one = [new Uint8Array(8)];
      assert.throws(() => kernel.matMul(new Uint8Array(1), 1, 1, one, [new Uint8Array(4)], 0, 8), sizeError);
      assert.throws(() => kernel.matMul(new Uint8Array(1), 1, 1, [new Uint8Array(4)], one, 0, 8), sizeError);
      assert.throws(() => kernel.matMul(new Uint8Array(2), 1, 1, one, one, 0, 8), sizeError);
      assert.throws(() => kernel.matMul(new Uint8Array(1), 1, 1, one, one, 4, 5), sizeError);
      assert.throws(() => kernel.matMul(new Uint8Array(1), 1, 1, one, [], 0, 8), sizeError);
      assert.throws(() => kernel.matMul(new Uint8Array(1), 1, 1, one, one, -1, 2), sizeError);
    });
  });
}

describe("all kernels agree through the coder", () => {
  const choices = kernels.map((k: GfKernel) => k.name);

  it("encode, decode, decodeRange and reconstruct are byte-identical across kernels", () => {
    for (const [k, total, length] of [
      [10, 30, 100_003],
      [4, 10, 4096],
      [29, 80, 12_345],
      [1, 3, 77],
    ] as const) {
      const segment = pseudoRandomBytes(length, k * total);
      const coders = choices.map((name) => createErasureCoder({ k, total }, { kernel: name as "ts" }));
      const reference = coders[0]!.encode(segment);
      for (const coder of coders) {
        const pieces = coder.encode(segment);
        assert.equal(coder.kernelName, choices[coders.indexOf(coder)]);
        pieces.forEach((p, i) => {
          assert.deepEqual(p, reference[i], `${coder.kernelName} piece ${i}`);
        });
        // Lose the first (total − k) pieces: the hardest case, only parity left.
        const survivors = new Map<number, Uint8Array>();
        for (let i = total - k; i < total; i++) survivors.set(i, reference[i]!);
        assert.deepEqual(coder.decode(survivors, length), segment, coder.kernelName);
        const rebuilt = coder.reconstruct(survivors, [0, total - k - 1]);
        assert.deepEqual(rebuilt[0], reference[0]);
        assert.deepEqual(rebuilt[1], reference[total - k - 1]);
      }
    }
  });
});
