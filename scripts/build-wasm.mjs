#!/usr/bin/env node
// Assembles the hand-written WebAssembly text kernels (src/erasure/wasm/*.wat)
// into build/wasm/*.wasm with the `wabt` npm package. Plain JS so it runs
// before (and independently of) the TypeScript build; nothing is downloaded.
//
//   node scripts/build-wasm.mjs
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import initWabt from "wabt";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const sources = [{ wat: "src/erasure/wasm/gf256.wat", wasm: "build/wasm/gf256.wasm" }];
// Only the features the kernels use; relaxed SIMD is needed for
// i8x16.relaxed_swizzle (plain pshufb on x86; our indices are always < 16, so
// its result is fully determined and identical to i8x16.swizzle).
const features = { simd: true, relaxed_simd: true };

const wabt = await initWabt();
for (const { wat, wasm } of sources) {
  const text = readFileSync(join(root, wat), "utf8");
  const module = wabt.parseWat(wat, text, features);
  try {
    module.resolveNames();
    module.validate();
    const { buffer } = module.toBinary({ log: false, write_debug_names: false });
    const out = join(root, wasm);
    mkdirSync(dirname(out), { recursive: true });
    writeFileSync(out, buffer);
    process.stdout.write(`build-wasm: ${wat} -> ${wasm} (${buffer.length} bytes)\n`);
  } finally {
    module.destroy();
  }
}
