/**
 * Benchmark (not a test: no timing assertions in tests). Compares sealing an
 * 8 MiB segment in 64 KiB AEAD blocks with one plain node:crypto
 * AES-256-GCM stream over the same bytes. Goal: ratio ≥ 0.9. Shows the
 * native kernels (when the addon has them) and the node:crypto path.
 *
 *   node dist/test/crypto/bench-aead.js [segmentMiB] [rounds]
 */
import { createCipheriv, randomBytes } from "node:crypto";
import { aeadImplementation, openSegment, sealSegment, sealSegmentInto, sealedLength } from "../../src/crypto/aead.js";

const segmentBytes = Number(process.argv[2] ?? 8) * 1024 * 1024;
const rounds = Number(process.argv[3] ?? 30);
const key = new Uint8Array(randomBytes(32));
const id = new Uint8Array(randomBytes(24));
const plaintext = new Uint8Array(randomBytes(segmentBytes));
const out = new Uint8Array(sealedLength(segmentBytes));

function plainStream(): number {
  const cipher = createCipheriv("aes-256-gcm", key, new Uint8Array(12));
  const ct = cipher.update(plaintext);
  cipher.final();
  return ct.length + cipher.getAuthTag().length;
}

const candidates: [string, () => unknown][] = [
  ["node:crypto one stream", plainStream],
  [`sealSegment (${aeadImplementation()})`, () => sealSegment(key, id, plaintext)],
  [`sealSegmentInto (${aeadImplementation()})`, () => sealSegmentInto(key, id, plaintext, out)],
  ["sealSegment (node:crypto)", () => sealSegment(key, id, plaintext, { native: false })],
  ["sealSegmentInto (node:crypto)", () => sealSegmentInto(key, id, plaintext, out, { native: false })],
];

/** Median and minimum: the machine is shared, so the minimum shows the intrinsic cost. */
function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

const times = new Map<string, number[]>(candidates.map(([name]) => [name, []]));
for (const [, fn] of candidates) for (let i = 0; i < 3; i++) fn();
// Interleave the candidates so background load hits them all alike.
for (let r = 0; r < rounds; r++) {
  for (const [name, fn] of candidates) {
    const t0 = process.hrtime.bigint();
    fn();
    times.get(name)!.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
}
const base = median(times.get("node:crypto one stream")!);
const baseMin = Math.min(...times.get("node:crypto one stream")!);
for (const [name] of candidates) {
  const ms = median(times.get(name)!);
  const min = Math.min(...times.get(name)!);
  const mibps = segmentBytes / 1024 / 1024 / (ms / 1000);
  process.stdout.write(
    `${name.padEnd(34)} median ${ms.toFixed(2).padStart(7)} ms ${mibps.toFixed(0).padStart(6)} MiB/s ratio ${(base / ms).toFixed(3)} | min ${min.toFixed(2)} ms ratio ${(baseMin / min).toFixed(3)}\n`,
  );
}
const sealed = sealSegment(key, id, plaintext);
const t0 = process.hrtime.bigint();
for (let r = 0; r < rounds; r++) openSegment(key, id, sealed);
// (openSegment uses the same implementation as sealSegment.)
const openMs = Number(process.hrtime.bigint() - t0) / 1e6 / rounds;
process.stdout.write(`${`openSegment (${aeadImplementation()})`.padEnd(34)} ${openMs.toFixed(2).padStart(8)} ms  ${(segmentBytes / 1024 / 1024 / (openMs / 1000)).toFixed(0).padStart(6)} MiB/s\n`);
