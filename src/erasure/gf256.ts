/**
 * Arithmetic in GF(2^8) with the reducing polynomial x^8 + x^4 + x^3 + x^2 + 1
 * (0x11d), the field used by most Reed–Solomon storage codes (ISA-L, Backblaze,
 * klauspost/reedsolomon). Addition is XOR; multiplication goes through
 * log/exp tables (generator 2), and a full 64 KiB product table backs the
 * byte-at-a-time TypeScript kernel.
 *
 * Matrices are row-major `Uint8Array`s with explicit `rows`/`cols`, because the
 * kernels take exactly that shape and a flat array copies cheaply.
 */
import { DstorError } from "../core/errors.js";

/** The reducing polynomial of the field, including the x^8 term. */
export const GF_POLYNOMIAL = 0x11d;

/** `GF_EXP[i] = 2^i` for i in [0, 510): doubled so `exp[log a + log b]` needs no modulo. */
export const GF_EXP: Uint8Array = new Uint8Array(510);
/** `GF_LOG[a]` = discrete log base 2 of a (a ≠ 0); `GF_LOG[0]` is unused (0). */
export const GF_LOG: Uint8Array = new Uint8Array(256);
/** `GF_MUL_TABLE[a * 256 + b] = a ⊗ b`: 64 KiB, so row `a` is a 256-byte lookup table. */
export const GF_MUL_TABLE: Uint8Array = new Uint8Array(256 * 256);
/** `GF_INV[a]` = multiplicative inverse of a (a ≠ 0); `GF_INV[0]` is 0 and never used. */
export const GF_INV: Uint8Array = new Uint8Array(256);

{
  let x = 1;
  for (let i = 0; i < 255; i++) {
    GF_EXP[i] = x;
    GF_LOG[x] = i;
    x <<= 1;
    if (x & 0x100) x ^= GF_POLYNOMIAL;
  }
  for (let i = 255; i < 510; i++) GF_EXP[i] = GF_EXP[i - 255]!;
  for (let a = 1; a < 256; a++) {
    const la = GF_LOG[a]!;
    for (let b = 1; b < 256; b++) GF_MUL_TABLE[a * 256 + b] = GF_EXP[la + GF_LOG[b]!]!;
    GF_INV[a] = GF_EXP[255 - la]!;
  }
}

/** a ⊕ b (field addition and subtraction are the same XOR). */
export function gfAdd(a: number, b: number): number {
  return (a ^ b) & 0xff;
}

/** a ⊗ b in GF(2^8). */
export function gfMul(a: number, b: number): number {
  return GF_MUL_TABLE[((a & 0xff) << 8) | (b & 0xff)]!;
}

/** Multiplicative inverse; throws `INVALID_ARGUMENT` for 0, which has none. */
export function gfInv(a: number): number {
  if ((a & 0xff) === 0) throw new DstorError("INVALID_ARGUMENT", "0 has no inverse in GF(2^8)");
  return GF_INV[a & 0xff]!;
}

/** a / b; throws `INVALID_ARGUMENT` when b is 0. */
export function gfDiv(a: number, b: number): number {
  return gfMul(a, gfInv(b));
}

/** a^n for n ≥ 0 (0^0 = 1). */
export function gfPow(a: number, n: number): number {
  if (n === 0) return 1;
  if ((a & 0xff) === 0) return 0;
  return GF_EXP[(GF_LOG[a & 0xff]! * n) % 255]!;
}

/** The `n × n` identity matrix. */
export function gfIdentity(n: number): Uint8Array {
  const m = new Uint8Array(n * n);
  for (let i = 0; i < n; i++) m[i * n + i] = 1;
  return m;
}

/** Product of `a` (`aRows × inner`) and `b` (`inner × bCols`), row-major. */
export function gfMatMul(a: Uint8Array, aRows: number, inner: number, b: Uint8Array, bCols: number): Uint8Array {
  if (a.length !== aRows * inner || b.length !== inner * bCols) {
    throw new DstorError("INVALID_ARGUMENT", "matrix dimensions do not match their data", {
      details: { aLength: a.length, aRows, inner, bLength: b.length, bCols },
    });
  }
  const out = new Uint8Array(aRows * bCols);
  for (let r = 0; r < aRows; r++) {
    for (let i = 0; i < inner; i++) {
      const coef = a[r * inner + i]!;
      if (coef === 0) continue;
      const row = coef << 8;
      for (let c = 0; c < bCols; c++) out[r * bCols + c]! ^= GF_MUL_TABLE[row | b[i * bCols + c]!]!;
    }
  }
  return out;
}

/**
 * Inverse of the `n × n` matrix `m` by Gauss–Jordan elimination with row
 * swaps. Throws `ERASURE_INVALID_PARAMS` (details.reason = "singular") when `m`
 * has no inverse — for an MDS code that can only mean a bug or corrupted
 * parameters, never a normal erasure pattern.
 */
export function gfInvertMatrix(m: Uint8Array, n: number): Uint8Array {
  if (m.length !== n * n) {
    throw new DstorError("INVALID_ARGUMENT", `expected a ${n}×${n} matrix, got ${m.length} entries`);
  }
  const work = Uint8Array.from(m);
  const inv = gfIdentity(n);
  for (let col = 0; col < n; col++) {
    let pivot = col;
    while (pivot < n && work[pivot * n + col] === 0) pivot++;
    if (pivot === n) {
      throw new DstorError("ERASURE_INVALID_PARAMS", "matrix is singular and cannot be inverted", {
        details: { reason: "singular", size: n, column: col },
      });
    }
    if (pivot !== col) {
      swapRows(work, n, pivot, col);
      swapRows(inv, n, pivot, col);
    }
    // Scale the pivot row so the pivot becomes 1.
    const scale = GF_INV[work[col * n + col]!]! << 8;
    for (let c = 0; c < n; c++) {
      work[col * n + c] = GF_MUL_TABLE[scale | work[col * n + c]!]!;
      inv[col * n + c] = GF_MUL_TABLE[scale | inv[col * n + c]!]!;
    }
    // Eliminate the column from every other row.
    for (let r = 0; r < n; r++) {
      if (r === col) continue;
      const factor = work[r * n + col]!;
      if (factor === 0) continue;
      const f = factor << 8;
      for (let c = 0; c < n; c++) {
        work[r * n + c]! ^= GF_MUL_TABLE[f | work[col * n + c]!]!;
        inv[r * n + c]! ^= GF_MUL_TABLE[f | inv[col * n + c]!]!;
      }
    }
  }
  return inv;
}

function swapRows(m: Uint8Array, n: number, a: number, b: number): void {
  for (let c = 0; c < n; c++) {
    const t = m[a * n + c]!;
    m[a * n + c] = m[b * n + c]!;
    m[b * n + c] = t;
  }
}
