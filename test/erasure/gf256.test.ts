import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { isDstorError } from "../../src/core/errors.js";
import { gfAdd, gfDiv, gfIdentity, gfInv, gfInvertMatrix, gfMatMul, gfMul, gfPow } from "../../src/erasure/index.js";

/** Independent reference: carry-less multiply reduced by 0x11d, bit by bit (no tables). */
function slowMul(a: number, b: number): number {
  let product = 0;
  for (let i = 0; i < 8; i++) if (b & (1 << i)) product ^= a << i;
  for (let bit = 14; bit >= 8; bit--) if (product & (1 << bit)) product ^= 0x11d << (bit - 8);
  return product;
}

const byte = fc.integer({ min: 0, max: 255 });
const nonZero = fc.integer({ min: 1, max: 255 });

describe("GF(2^8) arithmetic (poly 0x11d)", () => {
  it("multiplication matches a table-free reference for all 65536 pairs", () => {
    for (let a = 0; a < 256; a++) for (let b = 0; b < 256; b++) assert.equal(gfMul(a, b), slowMul(a, b), `${a}·${b}`);
  });

  it("has the known values of this field", () => {
    assert.equal(gfMul(2, 0x80), 0x1d); // x · x^7 = x^8 ≡ x^4+x^3+x^2+1
    assert.equal(gfPow(2, 255), 1); // 2 generates the multiplicative group
    assert.equal(gfPow(2, 8), 0x1d);
    const seen = new Set<number>();
    for (let i = 0; i < 255; i++) seen.add(gfPow(2, i));
    assert.equal(seen.size, 255);
  });

  it("every non-zero element has an inverse, and 0 has none", () => {
    for (let a = 1; a < 256; a++) {
      assert.equal(gfMul(a, gfInv(a)), 1);
      assert.equal(gfDiv(a, a), 1);
    }
    assert.throws(() => gfInv(0), (e) => isDstorError(e, "INVALID_ARGUMENT"));
    assert.throws(() => gfDiv(5, 0), (e) => isDstorError(e, "INVALID_ARGUMENT"));
  });

  it("satisfies the field axioms", () => {
    fc.assert(
      fc.property(byte, byte, byte, (a, b, c) => {
        assert.equal(gfAdd(a, b), gfAdd(b, a));
        assert.equal(gfMul(a, b), gfMul(b, a));
        assert.equal(gfMul(a, gfMul(b, c)), gfMul(gfMul(a, b), c));
        assert.equal(gfAdd(a, gfAdd(b, c)), gfAdd(gfAdd(a, b), c));
        assert.equal(gfMul(a, gfAdd(b, c)), gfAdd(gfMul(a, b), gfMul(a, c)));
        assert.equal(gfMul(a, 1), a);
        assert.equal(gfMul(a, 0), 0);
        assert.equal(gfAdd(a, a), 0);
      }),
      { numRuns: 2000 },
    );
    fc.assert(
      fc.property(byte, nonZero, (a, b) => {
        assert.equal(gfMul(gfDiv(a, b), b), a);
      }),
    );
  });
});

describe("GF(2^8) matrices", () => {
  it("inverts random invertible matrices: M · M⁻¹ = I", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 12 }), fc.infiniteStream(byte), (n, stream) => {
        const m = Uint8Array.from(stream.take(n * n));
        let inverse: Uint8Array;
        try {
          inverse = gfInvertMatrix(m, n);
        } catch (error) {
          assert.ok(isDstorError(error, "ERASURE_INVALID_PARAMS"));
          return;
        }
        assert.deepEqual(gfMatMul(m, n, n, inverse, n), gfIdentity(n));
        assert.deepEqual(gfMatMul(inverse, n, n, m, n), gfIdentity(n));
      }),
      { numRuns: 200 },
    );
  });

  it("rejects singular matrices with a coded error", () => {
    const singular = Uint8Array.from([1, 2, 3, 2, 4, 6, 0, 0, 7]); // row 2 = 2 ⊗ row 1
    assert.equal(gfMul(2, 3), 6);
    assert.throws(
      () => gfInvertMatrix(singular, 3),
      (e) => isDstorError(e, "ERASURE_INVALID_PARAMS") && e.details.reason === "singular",
    );
    assert.throws(() => gfInvertMatrix(new Uint8Array(4), 2), (e) => isDstorError(e, "ERASURE_INVALID_PARAMS"));
  });

  it("checks dimensions", () => {
    assert.throws(() => gfMatMul(new Uint8Array(3), 2, 2, new Uint8Array(4), 2), (e) => isDstorError(e, "INVALID_ARGUMENT"));
    assert.throws(() => gfInvertMatrix(new Uint8Array(3), 2), (e) => isDstorError(e, "INVALID_ARGUMENT"));
  });
});
