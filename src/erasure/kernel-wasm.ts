/**
 * WebAssembly SIMD kernel (`wasm`): the portable fast path when the native
 * addon is missing. The module (src/erasure/wasm/gf256.wat, assembled by
 * scripts/build-wasm.mjs into build/wasm/gf256.wasm) works only on its own
 * linear memory, so this wrapper copies each input slice in, runs the
 * row-group functions block by block, and copies each output slice back. The
 * copies are plain `Uint8Array.set` (memcpy) and are part of the measured
 * throughput.
 */
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { DstorError } from "../core/errors.js";
import { GF_MUL_TABLE } from "./gf256.js";
import { checkMatMulArgs, type GfKernel } from "./kernel.js";

/** Path of the assembled module, relative to the package root. */
export const WASM_KERNEL_PATH = "build/wasm/gf256.wasm";

/**
 * Two sizes govern speed. A *copy slice* is how many bytes of each input and
 * output live in linear memory at once: large, so the per-call overhead of the
 * 30-odd `set` copies is amortized. A *block* is how many bytes the kernel
 * processes per group call: small, so the inputs and the outputs of one block
 * stay in L1/L2 while every row group passes over them.
 */
const COPY_BUDGET_BYTES = 512 * 1024;
const BLOCK_BUDGET_BYTES = 64 * 1024;
const MIN_SLICE_BYTES = 1024;
const MAX_SLICE_BYTES = 64 * 1024;
const MIN_BLOCK_BYTES = 256;
const WASM_PAGE_BYTES = 65536;

// The project's TypeScript libs (ES2023 + node) do not declare WebAssembly, so
// the little this module uses is typed here.
interface WasmMemory {
  readonly buffer: ArrayBuffer;
  grow(pages: number): number;
}
type WasmModule = object;
interface WasmApi {
  Module: new (bytes: Uint8Array) => WasmModule;
  Instance: new (module: WasmModule, imports: object) => { exports: object };
}
const wasmApi = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;

type GroupFn = (tab: number, cols: number, inPtr: number, outPtr: number, stride: number, len: number) => void;

interface Gf256Exports {
  memory: WasmMemory;
  rows4: GroupFn;
  rows2: GroupFn;
  rows1: GroupFn;
}

let cachedModule: WasmModule | undefined;
let loadError: Error | undefined;

/** Walks up from this file to the directory holding package.json. */
function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, "package.json"))) return dir;
    const parent = dirname(dir);
    if (parent === dir) throw new DstorError("INTERNAL", "cannot find the dstor package root (no package.json above the erasure module)");
    dir = parent;
  }
}

function loadModule(): WasmModule {
  if (cachedModule !== undefined) return cachedModule;
  if (loadError !== undefined) throw loadError;
  try {
    const path = join(packageRoot(), WASM_KERNEL_PATH);
    if (!existsSync(path)) {
      throw new DstorError("INTERNAL", `WebAssembly kernel ${path} is missing; run \`node scripts/build-wasm.mjs\``);
    }
    // Synchronous compile is fine in Node (no main-thread size limit) and keeps the coder API synchronous.
    cachedModule = new wasmApi.Module(readFileSync(path));
    return cachedModule;
  } catch (error) {
    loadError =
      error instanceof DstorError ? error : new DstorError("INTERNAL", `WebAssembly kernel cannot be loaded: ${String(error)}`, { cause: error });
    throw loadError;
  }
}

/**
 * Why the wasm kernel cannot run here, or `undefined` when it can (the module
 * exists and this runtime supports SIMD + relaxed SIMD).
 */
export function wasmKernelUnavailableReason(): string | undefined {
  try {
    loadModule();
    return undefined;
  } catch (error) {
    return error instanceof Error ? error.message : String(error);
  }
}

const align16 = (n: number): number => (n + 15) & ~15;
const clamp = (n: number, lo: number, hi: number): number => Math.max(lo, Math.min(hi, n));
const align32 = (n: number): number => (n + 31) & ~31;

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Creates a WebAssembly SIMD kernel with its own instance and memory. Throws `INTERNAL` if unavailable. */
export function createWasmKernel(): GfKernel {
  const instance = new wasmApi.Instance(loadModule(), {});
  const ex = instance.exports as unknown as Gf256Exports;
  let heap = new Uint8Array(ex.memory.buffer);
  let lastMatrix: Uint8Array | undefined;
  let lastRows = -1;
  let lastCols = -1;

  const ensure = (bytes: number): void => {
    if (heap.length >= bytes) return;
    ex.memory.grow(Math.ceil((bytes - heap.length) / WASM_PAGE_BYTES));
    heap = new Uint8Array(ex.memory.buffer); // growing detaches the old view
  };

  return {
    name: "wasm",
    matMul(matrix, rows, cols, inputs, outputs, offset, length) {
      checkMatMulArgs(matrix, rows, cols, inputs, outputs, offset, length);
      if (length === 0 || rows === 0) return;
      if (cols === 0) {
        for (const out of outputs) out.fill(0, offset, offset + length);
        return;
      }
      const streams = rows + cols;
      const slice = Math.min(align32(length), clamp(Math.floor(COPY_BUDGET_BYTES / streams) & ~31, MIN_SLICE_BYTES, MAX_SLICE_BYTES));
      const block = Math.min(slice, clamp(Math.floor(BLOCK_BUDGET_BYTES / streams) & ~31, MIN_BLOCK_BYTES, MAX_SLICE_BYTES));
      const tablesBytes = rows * cols * 32;
      const inBase = align16(tablesBytes);
      const outBase = inBase + cols * slice;
      ensure(outBase + rows * slice);

      // Split-nibble tables in the group layout gf256.wat documents: groups of 4 rows, then 2, then 1.
      // They sit at the bottom of memory and survive between calls, so a call with the same matrix as
      // the previous one (every encode; decodes of a repeated erasure pattern) skips rebuilding them.
      const reuse = lastRows === rows && lastCols === cols && lastMatrix !== undefined && equalBytes(lastMatrix, matrix);
      const groups: { row: number; size: 4 | 2 | 1; tab: number }[] = [];
      let tab = 0;
      for (let row = 0; row < rows; ) {
        const size = rows - row >= 4 ? 4 : rows - row >= 2 ? 2 : 1;
        groups.push({ row, size, tab });
        for (let c = 0; c < cols && !reuse; c++) {
          for (let j = 0; j < size; j++) {
            const coefRow = matrix[(row + j) * cols + c]! << 8;
            const at = tab + (c * size + j) * 32;
            for (let i = 0; i < 16; i++) {
              heap[at + i] = GF_MUL_TABLE[coefRow | i]!;
              heap[at + 16 + i] = GF_MUL_TABLE[coefRow | (i << 4)]!;
            }
          }
        }
        tab += cols * size * 32;
        row += size;
      }
      if (!reuse) {
        lastMatrix = Uint8Array.from(matrix);
        lastRows = rows;
        lastCols = cols;
      }

      for (let done = 0; done < length; done += slice) {
        const n = Math.min(slice, length - done);
        const start = offset + done;
        for (let c = 0; c < cols; c++) heap.set(inputs[c]!.subarray(start, start + n), inBase + c * slice);
        // Bytes past n in the last block are stale but harmless: every byte position is independent.
        const padded = align32(n);
        for (let b = 0; b < padded; b += block) {
          const len = Math.min(block, padded - b);
          for (const g of groups) {
            const outPtr = outBase + g.row * slice + b;
            if (g.size === 4) ex.rows4(g.tab, cols, inBase + b, outPtr, slice, len);
            else if (g.size === 2) ex.rows2(g.tab, cols, inBase + b, outPtr, slice, len);
            else ex.rows1(g.tab, cols, inBase + b, outPtr, slice, len);
          }
        }
        for (let r = 0; r < rows; r++) {
          const from = outBase + r * slice;
          outputs[r]!.set(heap.subarray(from, from + n), start);
        }
      }
    },
  };
}
