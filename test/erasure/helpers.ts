/** Shared helpers for the erasure tests. */

/** Deterministic pseudo-random bytes (xorshift32), so failures reproduce. */
export function pseudoRandomBytes(length: number, seed: number): Uint8Array {
  const out = new Uint8Array(length);
  let x = seed | 0 || 0x9e3779b9;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

/** Calls `visit` with every k-subset of [0, n), in lexicographic order. */
export function forEachSubset(n: number, k: number, visit: (subset: number[]) => void): void {
  const subset: number[] = [];
  const walk = (start: number): void => {
    if (subset.length === k) {
      visit([...subset]);
      return;
    }
    for (let i = start; i <= n - (k - subset.length); i++) {
      subset.push(i);
      walk(i + 1);
      subset.pop();
    }
  };
  walk(0);
}

/** The given pieces as a sparse array with only `keep` present. */
export function keepOnly(pieces: readonly Uint8Array[], keep: readonly number[]): (Uint8Array | undefined)[] {
  const out: (Uint8Array | undefined)[] = new Array(pieces.length).fill(undefined);
  for (const i of keep) out[i] = pieces[i];
  return out;
}
