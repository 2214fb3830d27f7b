/**
 * `npm run bench:pipeline`: single-threaded throughput of the data path on
 * 64 MiB of random input, one JSON object per line. MB/s are of INPUT data
 * (10^6 bytes per second); every line carries its ratio to a `memcpy` line
 * (Buffer.copy of the same size) measured in the same run, because these
 * machines are shared and noisy and the ratios are what compare across runs.
 *
 * Lines: memcpy; rs-encode-10+20/<impl> and rs-decode-10+20/<impl> (pieces
 * 0–19 lost, rebuilt from 20–29) for native (dispatched best, with `kernel`),
 * native-gfni, native-avx2, native-ssse3, native-scalar, wasm, ts;
 * aead-seal/dstor and aead-seal/node-crypto; merkle-1KiB/dstor;
 * pipeline-encode; pipeline-decode. A kernel this CPU cannot run prints a line
 * with `skipped` and the reason instead of figures.
 */
import "../../src/core/v8-flags.js";
import { createCipheriv, randomBytes } from "node:crypto";
import { isDstorError } from "../../src/core/errors.js";
import { GF_KERNEL_NAMES, loadNative } from "../../src/core/native.js";
import { sealSegment } from "../../src/crypto/aead.js";
import { generateFileId, generateFileKey } from "../../src/crypto/keys.js";
import { merkleRoot } from "../../src/crypto/merkle.js";
import { createErasureCoder, type ErasureCoder, type KernelChoice } from "../../src/erasure/index.js";
import { createRedundancyStrategy } from "../../src/erasure/strategy.js";
import { createSegmentPipeline, decodeSegment, type EncodedSegment, encodeSegment, segmentLayoutBytes } from "../../src/pipeline/index.js";
import { emit, mbps, measure, round } from "./harness.js";

const INPUT_BYTES = 64 * 1024 * 1024;
const SEGMENT_BYTES = 8 * 1024 * 1024;
const input = new Uint8Array(randomBytes(INPUT_BYTES));

const copyTarget = Buffer.allocUnsafe(INPUT_BYTES);
const memcpy = await measure(() => Buffer.from(input.buffer, input.byteOffset, input.byteLength).copy(copyTarget), { minRuns: 5 });
const memcpyMBps = mbps(INPUT_BYTES, memcpy.bestMs);
emit({ name: "memcpy", MBps: round(memcpyMBps, 1), ratioToMemcpy: 1 });

function line(name: string, ms: number, bytes: number, extra: Record<string, unknown> = {}): void {
  const rate = mbps(bytes, ms);
  emit({ name, MBps: round(rate, 1), ratioToMemcpy: round(rate / memcpyMBps, 4), ...extra });
}

// Erasure coding 10+20 over 8 MiB segments of the input.
const strategy10 = createRedundancyStrategy({ k: 10, repair: 15, optimal: 20, total: 30 });
const native = loadNative();
const impls: { label: string; choice: KernelChoice }[] = [
  { label: "native", choice: "native" },
  ...GF_KERNEL_NAMES.map((k) => ({ label: `native-${k}`, choice: `native-${k}` as KernelChoice })),
  { label: "wasm", choice: "wasm" },
  { label: "ts", choice: "ts" },
];
for (const impl of impls) {
  let coder: ErasureCoder;
  try {
    coder = createErasureCoder(strategy10, { kernel: impl.choice });
  } catch (error) {
    const reason = isDstorError(error) ? error.message : String(error);
    emit({ name: `rs-encode-10+20/${impl.label}`, skipped: reason });
    emit({ name: `rs-decode-10+20/${impl.label}`, skipped: reason });
    continue;
  }
  // The slow kernels get one pass over a smaller input so the bench stays short.
  const bytes = impl.label === "ts" ? 16 * 1024 * 1024 : INPUT_BYTES;
  const segments: Uint8Array[] = [];
  for (let offset = 0; offset < bytes; offset += SEGMENT_BYTES) segments.push(input.subarray(offset, offset + SEGMENT_BYTES));
  const extra = impl.label === "native" ? { kernel: coder.kernelName } : {};
  // Piece buffers are allocated once and reused, as a pipeline with a buffer
  // pool would: the line measures coding, not the kernel's page faults.
  const encoded = segments.map((segment) => {
    const size = coder.pieceSize(segment.length);
    return Array.from({ length: strategy10.total }, () => new Uint8Array(size));
  });
  const enc = await measure(
    () => {
      for (const [i, segment] of segments.entries()) coder.encodeInto(segment, encoded[i]!);
    },
    { minRuns: impl.label === "ts" ? 1 : 3, budgetMs: impl.label === "ts" ? 0 : 1500 },
  );
  line(`rs-encode-10+20/${impl.label}`, enc.bestMs, bytes, extra);
  const survivors = encoded.map((pieces) => new Map(pieces.map((p, i) => [i, p] as const).filter(([i]) => i >= 20)));
  const dec = await measure(
    () => {
      for (const [i, pieces] of survivors.entries()) coder.decode(pieces, segments[i]!.length);
    },
    { minRuns: impl.label === "ts" ? 1 : 3, budgetMs: impl.label === "ts" ? 0 : 1500 },
  );
  line(`rs-decode-10+20/${impl.label}`, dec.bestMs, bytes, extra);
}

// AEAD: our 64 KiB-block segment sealing vs one plain node:crypto GCM stream.
const key = new Uint8Array(randomBytes(32));
const segId = new Uint8Array(24);
const sealDstor = await measure(() => {
  for (let offset = 0; offset < INPUT_BYTES; offset += SEGMENT_BYTES) sealSegment(key, segId, input.subarray(offset, offset + SEGMENT_BYTES));
});
line("aead-seal/dstor", sealDstor.bestMs, INPUT_BYTES);
const sealNode = await measure(() => {
  const cipher = createCipheriv("aes-256-gcm", key, new Uint8Array(12));
  cipher.update(input);
  cipher.final();
  cipher.getAuthTag();
});
line("aead-seal/node-crypto", sealNode.bestMs, INPUT_BYTES);

// Merkle root over 1 KiB leaves.
const merkle = await measure(() => merkleRoot(input));
line("merkle-1KiB/dstor", merkle.bestMs, INPUT_BYTES, { sha256: native?.sha256Kernel() ?? "node:crypto" });

// The whole pipeline at 10/15/20/30 with the best kernels.
const pipeline = createSegmentPipeline({ strategy: strategy10 });
const secrets = { fileKey: generateFileKey(), fileId: generateFileId(), pieceIdKey: new Uint8Array(randomBytes(32)) };
// One layout buffer per segment, reused across runs: the renter keeps such a
// pool for the segments it has in flight.
const layouts = Array.from({ length: INPUT_BYTES / SEGMENT_BYTES }, () => new Uint8Array(segmentLayoutBytes(pipeline.coder, SEGMENT_BYTES)));
let encodedSegments: EncodedSegment[] = [];
const pEnc = await measure(() => {
  encodedSegments = [];
  for (let offset = 0, index = 0; offset < INPUT_BYTES; offset += SEGMENT_BYTES, index++) {
    encodedSegments.push(encodeSegment(pipeline, secrets, index, input.subarray(offset, offset + SEGMENT_BYTES), { layout: layouts[index]! }));
  }
});
line("pipeline-encode", pEnc.bestMs, INPUT_BYTES, { kernel: (pipeline.coder as ErasureCoder).kernelName });
const pDec = await measure(() => {
  for (const segment of encodedSegments) {
    const pieces = new Map(segment.pieces.filter((p) => p.number >= 20).map((p) => [p.number, p.data] as const));
    decodeSegment(pipeline, secrets, segment.record, pieces);
  }
});
line("pipeline-decode", pDec.bestMs, INPUT_BYTES);
