// Quick throughput measurement of the native kernels (not a test).
// Usage: node native-bindings/bench.mjs [MiB]   (default 64 MiB of input)
import { createHash, randomBytes } from "node:crypto";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const n = require("./build/Release/dstor_native.node");
const mib = Number(process.argv[2] ?? 64);
const k = 10;
const m = 20;
const len = Math.floor((mib * 1024 * 1024) / k);
const inputs = Array.from({ length: k }, () => randomBytes(len));
const matrix = randomBytes(k * m);
const outs = (kern) => Array.from({ length: m }, () => Buffer.alloc(len, kern.length));

console.log("cpuKernels", n.cpuKernels(), "sha256Kernel", n.sha256Kernel());
let ref;
for (const kern of n.cpuKernels()) {
  const o = outs(kern);
  n.gfMatMul(kern, matrix, m, k, inputs, o, 0, len); // warm-up
  let best = Infinity;
  for (let rep = 0; rep < 3; rep++) {
    const t = process.hrtime.bigint();
    n.gfMatMul(kern, matrix, m, k, inputs, o, 0, len);
    best = Math.min(best, Number(process.hrtime.bigint() - t) / 1e9);
  }
  const h = createHash("sha256");
  for (const b of o) h.update(b);
  const digest = h.digest("hex");
  ref ??= digest;
  console.log(`${kern.padEnd(7)} ${k}+${m} ${((k * len) / 1e6 / best).toFixed(0)} MB/s input  same=${digest === ref}`);
}
const big = randomBytes(mib * 1024 * 1024);
for (const [name, fn] of [
  ["merkleRoot", () => n.merkleRoot(big)],
  ["sha256", () => n.sha256(big)],
  ["node:crypto sha256", () => createHash("sha256").update(big).digest()],
]) {
  fn();
  let best = Infinity;
  for (let rep = 0; rep < 3; rep++) {
    const t = process.hrtime.bigint();
    fn();
    best = Math.min(best, Number(process.hrtime.bigint() - t) / 1e9);
  }
  console.log(`${name.padEnd(18)} ${(big.length / 1e6 / best).toFixed(0)} MB/s`);
}
const pieces = Array.from({ length: 30 }, () => randomBytes(Math.ceil((8 << 20) / 10)));
const out = new Uint8Array(30 * 32);
n.merkleRoots(pieces, out);
let best = Infinity;
for (let rep = 0; rep < 5; rep++) {
  const t = process.hrtime.bigint();
  n.merkleRoots(pieces, out);
  best = Math.min(best, Number(process.hrtime.bigint() - t) / 1e9);
}
console.log(`merkleRoots 30x${pieces[0].length} ${((30 * pieces[0].length) / 1e6 / best).toFixed(0)} MB/s`);
