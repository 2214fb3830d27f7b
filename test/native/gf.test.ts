/**
 * Native GF(2^8) kernels: every kernel this CPU supports must produce the
 * same bytes as a plain log/exp-table reference, for any shape, offset and
 * length, and must reject bad arguments with a JS exception (never crash).
 */

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { GF_KERNEL_NAMES, loadNative, nativeLoadError } from "../../src/core/native.js";
import { NATIVE_DISABLED, pseudoRandomBytes, refMatMul, requireNative } from "./helpers.js";

interface Case {
  rows: number;
  cols: number;
  offset: number;
  length: number;
  slack: number;
  seed: number;
}

/** Runs one case through `kernel` and the reference; compares whole buffers. */
function checkCase(kernel: string, c: Case): void {
  const native = requireNative();
  const size = c.offset + c.length + c.slack;
  const matrix = pseudoRandomBytes(c.rows * c.cols, c.seed);
  const inputs = Array.from({ length: c.cols }, (_, i) => pseudoRandomBytes(size, c.seed + 1 + i));
  // Outputs start as garbage: the kernel must overwrite, not accumulate, and
  // must not touch bytes outside [offset, offset + length).
  const outputs = Array.from({ length: c.rows }, (_, i) => pseudoRandomBytes(size, c.seed + 1000 + i));
  const expected = outputs.map((o) => o.slice());
  refMatMul(matrix, c.rows, c.cols, inputs, expected, c.offset, c.length);
  native.gfMatMul(kernel as never, matrix, c.rows, c.cols, inputs, outputs, c.offset, c.length);
  for (let r = 0; r < c.rows; r++) {
    assert.deepEqual(outputs[r], expected[r], `${kernel} row ${r} of ${JSON.stringify(c)}`);
  }
}

describe("native GF(2^8) kernels", () => {
  if (NATIVE_DISABLED) {
    it("DSTOR_NO_NATIVE=1 makes loadNative() return undefined", () => {
      assert.equal(loadNative(), undefined);
      assert.match(nativeLoadError() ?? "", /DSTOR_NO_NATIVE/);
    });
    return;
  }

  it("lists supported kernels best first, ending with scalar", () => {
    const kernels = requireNative().cpuKernels();
    assert.ok(kernels.length >= 1);
    assert.equal(kernels[kernels.length - 1], "scalar");
    const order = kernels.map((k) => GF_KERNEL_NAMES.indexOf(k));
    assert.ok(order.every((v) => v >= 0));
    assert.deepEqual(order, [...order].sort((a, b) => a - b));
  });

  for (const kernel of requireNative().cpuKernels()) {
    describe(`kernel ${kernel}`, () => {
      it("matches the reference on random shapes, offsets and lengths", () => {
        fc.assert(
          fc.property(
            fc.record({
              rows: fc.integer({ min: 1, max: 32 }),
              cols: fc.integer({ min: 1, max: 32 }),
              offset: fc.integer({ min: 0, max: 100 }),
              length: fc.integer({ min: 0, max: 2000 }),
              slack: fc.integer({ min: 0, max: 40 }),
              seed: fc.integer({ min: 1, max: 0x7fffffff }),
            }),
            (c) => checkCase(kernel, c),
          ),
          { numRuns: 60 },
        );
      });

      it("matches the reference on mid-size regions at random alignments", () => {
        // Long enough for the kernels' cache-line alignment head (>= 4 KiB).
        fc.assert(
          fc.property(
            fc.record({
              rows: fc.integer({ min: 1, max: 12 }),
              cols: fc.integer({ min: 1, max: 12 }),
              offset: fc.integer({ min: 0, max: 200 }),
              length: fc.integer({ min: 4096, max: 20_000 }),
              slack: fc.integer({ min: 0, max: 70 }),
              seed: fc.integer({ min: 1, max: 0x7fffffff }),
            }),
            (c) => checkCase(kernel, c),
          ),
          { numRuns: 12 },
        );
      });

      it("matches the reference around every vector-width boundary", () => {
        for (let length = 0; length <= 130; length++) {
          checkCase(kernel, { rows: 3, cols: 2, offset: length % 7, length, slack: 3, seed: length + 7 });
        }
      });

      it("matches the reference on large regions (RS 10+20 and decode shapes)", () => {
        checkCase(kernel, { rows: 20, cols: 10, offset: 3, length: 100_003, slack: 5, seed: 11 });
        checkCase(kernel, { rows: 10, cols: 10, offset: 64, length: 65_536, slack: 0, seed: 12 });
        checkCase(kernel, { rows: 1, cols: 32, offset: 1, length: 50_001, slack: 1, seed: 13 });
        checkCase(kernel, { rows: 32, cols: 1, offset: 0, length: 20_000, slack: 0, seed: 14 });
        // More than 1024 coefficients: the kernels' expanded tables move to the heap.
        checkCase(kernel, { rows: 48, cols: 32, offset: 5, length: 5_001, slack: 2, seed: 15 });
        checkCase(kernel, { rows: 256, cols: 5, offset: 0, length: 4_163, slack: 0, seed: 16 });
      });

      it("multiplies by 0 and 1 correctly (identity and zero rows)", () => {
        const native = requireNative();
        const a = pseudoRandomBytes(1000, 1);
        const b = pseudoRandomBytes(1000, 2);
        const outs = [new Uint8Array(1000).fill(7), new Uint8Array(1000).fill(7)];
        native.gfMatMul(kernel, Uint8Array.of(1, 0, 0, 0), 2, 2, [a, b], outs, 0, 1000);
        assert.deepEqual(outs[0], a);
        assert.deepEqual(outs[1], new Uint8Array(1000));
      });
    });
  }

  it("gives identical bytes across all supported kernels on a 1 MiB region", () => {
    const native = requireNative();
    const len = (1 << 20) + 37;
    const matrix = pseudoRandomBytes(200, 99);
    const inputs = Array.from({ length: 10 }, (_, i) => pseudoRandomBytes(len, 100 + i));
    let first: Uint8Array[] | undefined;
    for (const kernel of native.cpuKernels()) {
      const outputs = Array.from({ length: 20 }, () => new Uint8Array(len));
      native.gfMatMul(kernel, matrix, 20, 10, inputs, outputs, 0, len);
      if (first === undefined) first = outputs;
      else
        outputs.forEach((o, r) => {
          assert.deepEqual(o, first![r], `${kernel} row ${r}`);
        });
    }
  });

  describe("argument validation", () => {
    const native = requireNative();
    const m = new Uint8Array(4).fill(3);
    const ins = () => [new Uint8Array(64), new Uint8Array(64)];
    const outs = () => [new Uint8Array(64), new Uint8Array(64)];

    it("rejects unknown or unsupported kernels", () => {
      assert.throws(() => native.gfMatMul("avx9" as never, m, 2, 2, ins(), outs(), 0, 64), RangeError);
      assert.throws(() => native.gfMatMul("" as never, m, 2, 2, ins(), outs(), 0, 64), RangeError);
      assert.throws(
        () => native.gfMatMul("scalar-and-a-very-long-name" as never, m, 2, 2, ins(), outs(), 0, 64),
        RangeError,
      );
      assert.throws(() => native.gfMatMul(7 as never, m, 2, 2, ins(), outs(), 0, 64), TypeError);
      for (const name of GF_KERNEL_NAMES) {
        if (native.cpuKernels().includes(name)) continue;
        assert.throws(() => native.gfMatMul(name, m, 2, 2, ins(), outs(), 0, 64), RangeError);
      }
    });

    it("rejects wrong array counts and bad shapes", () => {
      assert.throws(() => native.gfMatMul("scalar", m, 2, 2, [new Uint8Array(64)], outs(), 0, 64), RangeError);
      assert.throws(() => native.gfMatMul("scalar", m, 2, 2, ins(), [new Uint8Array(64)], 0, 64), RangeError);
      assert.throws(() => native.gfMatMul("scalar", m, 0, 2, ins(), [], 0, 64), RangeError);
      assert.throws(() => native.gfMatMul("scalar", m, 2, 257, ins(), outs(), 0, 64), RangeError);
      assert.throws(() => native.gfMatMul("scalar", m, 2.5, 2, ins(), outs(), 0, 64), RangeError);
      assert.throws(() => native.gfMatMul("scalar", m, -1, 2, ins(), outs(), 0, 64), RangeError);
      assert.throws(() => native.gfMatMul("scalar", m, Number.NaN, 2, ins(), outs(), 0, 64), RangeError);
      assert.throws(() => native.gfMatMul("scalar", new Uint8Array(3), 2, 2, ins(), outs(), 0, 64), RangeError);
    });

    it("rejects wrong types", () => {
      assert.throws(() => native.gfMatMul("scalar", [1, 2, 3, 4] as never, 2, 2, ins(), outs(), 0, 64), TypeError);
      assert.throws(() => native.gfMatMul("scalar", new Uint16Array(4) as never, 2, 2, ins(), outs(), 0, 64), TypeError);
      assert.throws(() => native.gfMatMul("scalar", m, "2" as never, 2, ins(), outs(), 0, 64), TypeError);
      assert.throws(() => native.gfMatMul("scalar", m, 2, 2, "ab" as never, outs(), 0, 64), TypeError);
      assert.throws(() => native.gfMatMul("scalar", m, 2, 2, [new Uint8Array(64), {}] as never, outs(), 0, 64), TypeError);
      assert.throws(() => native.gfMatMul("scalar", m, 2, 2, ins(), [null, null] as never, 0, 64), TypeError);
      assert.throws(() => native.gfMatMul("scalar", m, 2, 2, ins(), outs(), 0n as never, 64), TypeError);
      assert.throws(() => (native.gfMatMul as (...a: unknown[]) => void)("scalar", m, 2, 2), TypeError);
    });

    it("rejects buffers shorter than offset + length", () => {
      assert.throws(() => native.gfMatMul("scalar", m, 2, 2, ins(), outs(), 1, 64), RangeError);
      assert.throws(() => native.gfMatMul("scalar", m, 2, 2, ins(), outs(), 0, 65), RangeError);
      assert.throws(() => native.gfMatMul("scalar", m, 2, 2, [new Uint8Array(64), new Uint8Array(63)], outs(), 0, 64), RangeError);
      assert.throws(() => native.gfMatMul("scalar", m, 2, 2, ins(), outs(), 2 ** 53, 1), RangeError);
      assert.throws(() => native.gfMatMul("scalar", m, 2, 2, ins(), outs(), Number.POSITIVE_INFINITY, 0), RangeError);
    });

    it("rejects outputs that overlap inputs, each other or the matrix", () => {
      const buf = new Uint8Array(256);
      const a = buf.subarray(0, 64);
      const b = buf.subarray(32, 96);
      const c = buf.subarray(128, 192);
      const d = buf.subarray(192, 256);
      assert.throws(() => native.gfMatMul("scalar", m, 2, 2, [a, c], [b, d], 0, 64), RangeError);
      assert.throws(() => native.gfMatMul("scalar", m, 2, 2, [c, d], [a, b], 0, 64), RangeError);
      const mat = buf.subarray(100, 104);
      assert.throws(() => native.gfMatMul("scalar", mat, 2, 2, [c, d], [buf.subarray(64, 128), a], 0, 64), RangeError);
      // Adjacent, non-overlapping views are fine, and so is reading one input twice.
      native.gfMatMul("scalar", m, 2, 2, [c, c], [a, buf.subarray(64, 128)], 0, 64);
    });

    it("accepts zero length without touching anything", () => {
      const o = outs();
      o[0]!.fill(9);
      native.gfMatMul("scalar", m, 2, 2, ins(), o, 64, 0);
      assert.ok(o[0]!.every((v) => v === 9));
    });
  });
});
