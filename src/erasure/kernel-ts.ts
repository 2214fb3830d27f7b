/**
 * Plain TypeScript kernel: the reference and last-resort fallback. Each
 * coefficient selects a 256-byte row of the 64 KiB product table; when every
 * buffer is 4-byte aligned the inner loop works on 32-bit words (one load and
 * one store per four bytes, four table lookups), otherwise byte by byte.
 */
import { GF_MUL_TABLE } from "./gf256.js";
import { checkMatMulArgs, type GfKernel } from "./kernel.js";

function aligned(buffers: readonly Uint8Array[], offset: number): boolean {
  for (const b of buffers) if (((b.byteOffset + offset) & 3) !== 0) return false;
  return true;
}

function rowBytes(coef: number, input: Uint8Array, output: Uint8Array, start: number, end: number, first: boolean): void {
  if (coef === 0) {
    if (first) output.fill(0, start, end);
    return;
  }
  if (coef === 1) {
    if (first) output.set(input.subarray(start, end), start);
    else for (let i = start; i < end; i++) output[i]! ^= input[i]!;
    return;
  }
  const t = GF_MUL_TABLE.subarray(coef << 8, (coef << 8) + 256);
  if (first) for (let i = start; i < end; i++) output[i] = t[input[i]!]!;
  else for (let i = start; i < end; i++) output[i]! ^= t[input[i]!]!;
}

function rowWords(coef: number, input: Uint32Array, output: Uint32Array, start: number, end: number, first: boolean): void {
  if (coef === 0) {
    if (first) output.fill(0, start, end);
    return;
  }
  if (coef === 1) {
    if (first) output.set(input.subarray(start, end), start);
    else for (let i = start; i < end; i++) output[i]! ^= input[i]!;
    return;
  }
  const t = GF_MUL_TABLE.subarray(coef << 8, (coef << 8) + 256);
  for (let i = start; i < end; i++) {
    const x = input[i]!;
    const y = t[x & 0xff]! | (t[(x >>> 8) & 0xff]! << 8) | (t[(x >>> 16) & 0xff]! << 16) | (t[x >>> 24]! << 24);
    if (first) output[i] = y;
    else output[i]! ^= y;
  }
}

/** Creates the plain TypeScript kernel (`ts`). */
export function createTsKernel(): GfKernel {
  return {
    name: "ts",
    matMul(matrix, rows, cols, inputs, outputs, offset, length) {
      checkMatMulArgs(matrix, rows, cols, inputs, outputs, offset, length);
      const end = offset + length;
      if (cols === 0) {
        for (const out of outputs) out.fill(0, offset, end);
        return;
      }
      // Word path for the 4-aligned middle; bytes for the unaligned tail.
      const useWords = length >= 64 && aligned(inputs, offset) && aligned(outputs, offset);
      const wordEnd = useWords ? offset + (length & ~3) : offset;
      const ins32 = useWords ? inputs.map((b) => new Uint32Array(b.buffer, b.byteOffset + offset, (wordEnd - offset) >>> 2)) : [];
      for (let r = 0; r < rows; r++) {
        const out = outputs[r]!;
        const out32 = useWords ? new Uint32Array(out.buffer, out.byteOffset + offset, (wordEnd - offset) >>> 2) : undefined;
        for (let c = 0; c < cols; c++) {
          const coef = matrix[r * cols + c]!;
          if (out32 !== undefined) rowWords(coef, ins32[c]!, out32, 0, out32.length, c === 0);
          rowBytes(coef, inputs[c]!, out, wordEnd, end, c === 0);
        }
      }
    },
  };
}
