// Manual check that run-time dispatch never runs an unsupported instruction:
// run the addon on emulated CPUs that lack AVX2 / SSSE3 / SHA, e.g.
//   qemu-x86_64 -cpu Nehalem node_modules/.bin/node native-bindings/test/dispatch-check.mjs
//   qemu-x86_64 -cpu qemu64  node_modules/.bin/node native-bindings/test/dispatch-check.mjs
// (apt package qemu-user). Prints the kernels picked and exits non-zero if
// any kernel disagrees with the others or SHA-256 disagrees with node:crypto.
import { createHash } from "node:crypto";
import { createRequire } from "node:module";

const native = createRequire(import.meta.url)("../build/Release/dstor_native.node");
const kernels = native.cpuKernels();
console.log("gf kernels:", kernels.join(", "), "| sha256:", native.sha256Kernel());
let ok = true;
const data = Buffer.alloc(5000);
for (let i = 0; i < data.length; i++) data[i] = (i * 131) & 0xff;
if (Buffer.compare(native.sha256(data), createHash("sha256").update(data).digest()) !== 0) {
  console.log("sha256 mismatch");
  ok = false;
}
const len = 10_007;
const inputs = [data.subarray(0, len > 5000 ? 5000 : len), data.subarray(1, 5000)].map((b) => {
  const x = Buffer.alloc(len);
  for (let i = 0; i < len; i++) x[i] = b[i % b.length];
  return x;
});
const digests = kernels.map((k) => {
  const outs = [Buffer.alloc(len), Buffer.alloc(len), Buffer.alloc(len)];
  native.gfMatMul(k, Uint8Array.of(2, 3, 4, 5, 0x8e, 1), 3, 2, inputs, outs, 0, len);
  return createHash("sha256").update(Buffer.concat(outs)).digest("hex");
});
if (new Set(digests).size !== 1) {
  console.log("kernels disagree:", kernels, digests);
  ok = false;
}
console.log(ok ? "ok" : "FAILED");
process.exit(ok ? 0 : 1);
