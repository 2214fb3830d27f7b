/**
 * Shared helpers of the native addon tests: loading the addon (failing
 * loudly when it is not built, unless DSTOR_NO_NATIVE=1 asks for the
 * fallback path) and straightforward reference implementations to compare
 * the kernels against.
 */

import { createHash } from "node:crypto";
import { loadNative, type NativeBindings, nativeLoadError } from "../../src/core/native.js";

/** The addon; throws with the loader's reason when it is unavailable. */
export function requireNative(): NativeBindings {
  const native = loadNative();
  if (native === undefined) {
    throw new Error(`native addon unavailable: ${nativeLoadError()}`);
  }
  return native;
}

/** True when the test run asked for the non-native fallbacks. */
export const NATIVE_DISABLED = process.env.DSTOR_NO_NATIVE === "1";

// GF(2^8) with polynomial 0x11d via log/exp tables, the textbook way.
const GF_EXP = new Uint8Array(512);
const GF_LOG = new Uint8Array(256);
{
  let x = 1;
  for (let i = 0; i < 255; i++) {
    GF_EXP[i] = x;
    GF_LOG[x] = i;
    x <<= 1;
    if (x & 0x100) x ^= 0x11d;
  }
  for (let i = 255; i < 512; i++) GF_EXP[i] = GF_EXP[i - 255]!;
}

/** a ⊗ b in GF(2^8) mod 0x11d. */
export function gfMul(a: number, b: number): number {
  if (a === 0 || b === 0) return 0;
  return GF_EXP[GF_LOG[a]! + GF_LOG[b]!]!;
}

/** Reference region matrix multiply (same contract as `gfMatMul`). */
export function refMatMul(
  matrix: Uint8Array,
  rows: number,
  cols: number,
  inputs: readonly Uint8Array[],
  outputs: readonly Uint8Array[],
  offset: number,
  length: number,
): void {
  for (let r = 0; r < rows; r++) {
    const out = outputs[r]!;
    for (let i = offset; i < offset + length; i++) {
      let acc = 0;
      for (let c = 0; c < cols; c++) acc ^= gfMul(matrix[r * cols + c]!, inputs[c]![i]!);
      out[i] = acc;
    }
  }
}

/** SHA-256 via node:crypto. */
export function sha256(...parts: Uint8Array[]): Uint8Array {
  const h = createHash("sha256");
  for (const p of parts) h.update(p);
  return new Uint8Array(h.digest());
}

/** Merkle leaf size of the shared piece format. */
export const LEAF_SIZE = 1024;

/** Reference leaf hashes per the shared format. */
export function refLeafHashes(data: Uint8Array): Uint8Array[] {
  const count = Math.max(1, Math.ceil(data.length / LEAF_SIZE));
  const leaves: Uint8Array[] = [];
  for (let i = 0; i < count; i++) {
    const leaf = data.subarray(i * LEAF_SIZE, Math.min(data.length, (i + 1) * LEAF_SIZE));
    leaves.push(sha256(Uint8Array.of(0), leaf));
  }
  return leaves;
}

/** Reference piece Merkle root: pair up, promote an odd last node. */
export function refMerkleRoot(data: Uint8Array): Uint8Array {
  let level = refLeafHashes(data);
  while (level.length > 1) {
    const next: Uint8Array[] = [];
    for (let j = 0; j + 1 < level.length; j += 2) {
      next.push(sha256(Uint8Array.of(1), level[j]!, level[j + 1]!));
    }
    if (level.length % 2 === 1) next.push(level[level.length - 1]!);
    level = next;
  }
  return level[0]!;
}

/** Deterministic pseudo-random bytes (xorshift32), so failures reproduce. */
export function pseudoRandomBytes(length: number, seed: number): Uint8Array {
  const out = new Uint8Array(length);
  let x = seed >>> 0 || 0x9e3779b9;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out[i] = x & 0xff;
  }
  return out;
}
