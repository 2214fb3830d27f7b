/**
 * Typed loader for the optional native addon (`native-bindings/`): GF(2^8)
 * erasure-coding kernels (GFNI / AVX2 / SSSE3 / scalar, chosen at run time
 * by the addon from CPUID) and SHA-256 / piece Merkle hashing (SHA-NI or
 * scalar).
 *
 * The addon is optional: when it was not built, fails to load, or
 * `DSTOR_NO_NATIVE=1` is set, {@link loadNative} returns `undefined` and
 * callers use the WebAssembly or TypeScript fallbacks, which give identical
 * bytes. {@link nativeLoadError} says why, for a warning at start-up.
 *
 * The file is located from this module's own URL rather than the working
 * directory: this module runs as `dist/src/core/native.js` (or from
 * `src/core/native.ts` under a TypeScript loader), so we walk up to the
 * directory holding `package.json`, the package root.
 */

import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/** Names of the GF(2^8) kernels, best first. */
export type GfKernelName = "gfni" | "avx2" | "ssse3" | "scalar";

/** Every GF kernel name the addon knows, best first. */
export const GF_KERNEL_NAMES: readonly GfKernelName[] = ["gfni", "avx2", "ssse3", "scalar"];

/** Name of the SHA-256 implementation the addon picked for this CPU. */
export type Sha256KernelName = "sha-ni" | "scalar";

/** Path of the compiled addon, relative to the package root. */
export const NATIVE_ADDON_RELATIVE_PATH = "native-bindings/build/Release/dstor_native.node";

/** Environment variable that, when `1`, makes {@link loadNative} return `undefined`. */
export const NO_NATIVE_ENV = "DSTOR_NO_NATIVE";

/**
 * The functions exported by `dstor_native.node`. All byte arguments are
 * `Uint8Array`s (a `Buffer` is one). Every function validates its arguments
 * and throws a `TypeError` (wrong type) or `RangeError` (wrong size, unknown
 * kernel, overlapping buffers) instead of touching memory it should not.
 * All are synchronous and CPU-bound.
 */
export interface NativeBindings {
  /** GF kernels this CPU supports, best first; always ends with `"scalar"`. */
  cpuKernels(): GfKernelName[];
  /**
   * GF(2^8) (polynomial 0x11d) region matrix multiply: for every row r,
   * `outputs[r][offset, offset + length)` is OVERWRITTEN with the XOR over c
   * of `matrix[r * cols + c] ⊗ inputs[c][offset, offset + length)`.
   *
   * Throws for a kernel this CPU does not support, `inputs.length !== cols`,
   * `outputs.length !== rows`, rows or cols outside 1..256, a matrix shorter
   * than `rows * cols`, any buffer shorter than `offset + length`, or an
   * output range overlapping an input, another output or the matrix.
   */
  gfMatMul(
    kernel: GfKernelName,
    matrix: Uint8Array,
    rows: number,
    cols: number,
    inputs: readonly Uint8Array[],
    outputs: readonly Uint8Array[],
    offset: number,
    length: number,
  ): void;
  /** The SHA-256 implementation in use: `"sha-ni"` or `"scalar"`. */
  sha256Kernel(): Sha256KernelName;
  /** SHA-256 of `data` (32 bytes). */
  sha256(data: Uint8Array): Uint8Array;
  /**
   * Writes the `leafCount * 32` bytes of leaf hashes of the piece `data`
   * (1 KiB leaves, `SHA-256(0x00 ‖ leaf)`) into `out`; throws if `out` is
   * shorter. `leafCount = max(1, ceil(data.length / 1024))`.
   */
  merkleLeafHashes(data: Uint8Array, out: Uint8Array): void;
  /** The piece Merkle root of `data` (32 bytes), per docs/formats.md. */
  merkleRoot(data: Uint8Array): Uint8Array;
  /**
   * Piece Merkle roots of many pieces in one call: root i goes to
   * `out[32 * i, 32 * i + 32)`; throws if `out` is shorter than
   * `32 * pieces.length`. Nothing is written when an argument is invalid.
   */
  merkleRoots(pieces: readonly Uint8Array[], out: Uint8Array): void;
  /** `merkleRoot` on libuv's thread pool; `data` must not change until it settles. */
  merkleRootAsync(data: Uint8Array): Promise<Uint8Array>;
  /**
   * secp256k1 public-key recovery: the 64-byte uncompressed key X ‖ Y that
   * signed the 32-byte `hash` with (`r`, `s`, recovery bit `bit`), or null
   * when none exists (r or s outside [1, n−1], r not on the curve).
   */
  ecrecover(hash: Uint8Array, r: Uint8Array, s: Uint8Array, bit: number): Uint8Array | null;
  /**
   * secp256k1 ECDSA signature of the 32-byte `hash` with a 32-byte private
   * key: r ‖ s ‖ recovery bit (65 bytes), RFC 6979 nonce, low s — the same
   * bytes ethers produces. Throws RangeError for a key outside [1, n−1].
   */
  secp256k1Sign(hash: Uint8Array, privateKey: Uint8Array): Uint8Array;
  /**
   * A buffer of `size` bytes (1 … 2^30, uninitialised) whose memory starts
   * on a 4096-byte boundary, as O_DIRECT file I/O needs; freed when collected.
   */
  alignedBytes(size: number): Uint8Array;
}

const REQUIRED_FUNCTIONS: readonly (keyof NativeBindings)[] = [
  "cpuKernels",
  "gfMatMul",
  "sha256Kernel",
  "sha256",
  "merkleLeafHashes",
  "merkleRoot",
  "merkleRoots",
  "ecrecover",
  "secp256k1Sign",
  "alignedBytes",
];

// The outcome of the one real load attempt; the addon can only be loaded
// once per process anyway (dlopen), so a failure is final too.
let loaded: { bindings: NativeBindings | undefined; error: string | undefined } | undefined;

/**
 * The directory that holds `package.json`, found by walking up from `start`;
 * `undefined` at the file-system root.
 */
export function findPackageRoot(start: string): string | undefined {
  let dir = start;
  for (;;) {
    if (existsSync(join(dir, "package.json"))) return dir;
    const parent = dirname(dir);
    if (parent === dir) return undefined;
    dir = parent;
  }
}

function attemptLoad(): { bindings: NativeBindings | undefined; error: string | undefined } {
  const here = dirname(fileURLToPath(import.meta.url));
  const root = findPackageRoot(here);
  if (root === undefined) {
    return { bindings: undefined, error: `no package.json above ${here}` };
  }
  const file = join(root, NATIVE_ADDON_RELATIVE_PATH);
  if (!existsSync(file)) {
    return {
      bindings: undefined,
      error: `${file} does not exist; build it with: bash native-bindings/build.sh`,
    };
  }
  try {
    const mod = createRequire(import.meta.url)(file) as Partial<NativeBindings>;
    // A stale build from an older source tree could lack newer functions.
    const missing = REQUIRED_FUNCTIONS.filter((name) => typeof mod[name] !== "function");
    if (missing.length > 0) {
      return {
        bindings: undefined,
        error: `${file} lacks ${missing.join(", ")}; rebuild it with: bash native-bindings/build.sh`,
      };
    }
    return { bindings: mod as NativeBindings, error: undefined };
  } catch (cause) {
    const reason = cause instanceof Error ? cause.message : String(cause);
    return { bindings: undefined, error: `${file} failed to load: ${reason}` };
  }
}

/**
 * Loads the native addon once and returns it, or `undefined` when it is
 * missing, fails to load, or `DSTOR_NO_NATIVE=1` is set (checked on every
 * call, so tests can switch to the fallbacks at any time).
 */
export function loadNative(): NativeBindings | undefined {
  if (process.env[NO_NATIVE_ENV] === "1") return undefined;
  loaded ??= attemptLoad();
  return loaded.bindings;
}

/**
 * Why {@link loadNative} returns (or would return) `undefined`, or
 * `undefined` when the addon is loaded. Tries the load if it was not tried.
 */
export function nativeLoadError(): string | undefined {
  if (process.env[NO_NATIVE_ENV] === "1") return `disabled by ${NO_NATIVE_ENV}=1`;
  loaded ??= attemptLoad();
  return loaded.error;
}
