import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { describe, it } from "node:test";
import fc from "fast-check";
import { isDstorError } from "../../src/core/errors.js";
import { createLogger, type LogRecord } from "../../src/core/logging.js";
import { availableKernels, buildEncodingMatrix, createErasureCoder, gfInv, gfMul, type KernelChoice, parseRedundancyStrategy } from "../../src/erasure/index.js";
import { keepOnly, pseudoRandomBytes } from "./helpers.js";

describe("erasure coder: layout and frozen vectors", () => {
  it("piece size is ceil(L / k) and data pieces are the zero-padded chunks", () => {
    const coder = createErasureCoder({ k: 4, total: 6 });
    assert.equal(coder.pieceSize(0), 0);
    assert.equal(coder.pieceSize(1), 1);
    assert.equal(coder.pieceSize(8), 2);
    assert.equal(coder.pieceSize(9), 3);
    const pieces = coder.encode(Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8, 9]));
    assert.deepEqual(
      pieces.slice(0, 4).map((p) => [...p]),
      [
        [1, 2, 3],
        [4, 5, 6],
        [7, 8, 9],
        [0, 0, 0],
      ],
    );
  });

  it("parity byte b of piece i is ⊕_j (1 / (i ⊕ j)) ⊗ chunk_j[b], computed independently", () => {
    const k = 5;
    const total = 9;
    const segment = pseudoRandomBytes(1003, 5);
    const pieces = createErasureCoder({ k, total }).encode(segment);
    const size = pieces[0]!.length;
    for (let i = k; i < total; i++) {
      for (let b = 0; b < size; b++) {
        let expected = 0;
        for (let j = 0; j < k; j++) expected ^= gfMul(gfInv(i ^ j), segment[j * size + b] ?? 0);
        assert.equal(pieces[i]![b], expected, `piece ${i} byte ${b}`);
      }
    }
  });

  it("matches the small vector in docs/formats.md (k = 4, total = 6)", () => {
    for (const kernel of availableKernels()) {
      const coder = createErasureCoder({ k: 4, total: 6 }, { kernel: kernel.name as KernelChoice });
      const pieces = coder.encode(Uint8Array.from({ length: 10 }, (_, i) => i));
      assert.equal(pieces.map((p) => Buffer.from(p).toString("hex")).join(" "), "000102 030405 060708 090000 f69a78 ffa7ac", kernel.name);
    }
    assert.equal(Buffer.from(buildEncodingMatrix(4, 6).subarray(16)).toString("hex"), "47a77abaa747ba7a");
  });

  it("keeps the on-farmer format stable (frozen digest for 10/14/20/30)", () => {
    // Pieces live on farmers for years: any change to the matrix or layout must be deliberate.
    const coder = createErasureCoder(parseRedundancyStrategy("10/14/20/30"));
    const hash = createHash("sha256");
    for (const piece of coder.encode(pseudoRandomBytes(65_537, 42))) hash.update(piece);
    assert.equal(hash.digest("hex"), FROZEN_DIGEST);
  });
});

// Computed once from this implementation and cross-checked by the independent
// parity formula above; update only with a format version bump.
const FROZEN_DIGEST = "bb9ee50fe6a5fae5c529319d0f453286aaa6d8d6ce8734882457fd35f556640d";

describe("erasure coder: properties", () => {
  const strategy = fc
    .tuple(fc.integer({ min: 1, max: 64 }), fc.integer({ min: 0, max: 191 }))
    .map(([k, extra]) => ({ k, total: Math.min(255, k + extra) }));

  it("any k of n pieces decode; decodeRange and reconstruct agree with encode", () => {
    fc.assert(
      fc.property(
        strategy,
        fc.integer({ min: 0, max: 3000 }),
        fc.integer(),
        fc.infiniteStream(fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true })),
        ({ k, total }, length, seed, randoms) => {
          const coder = createErasureCoder({ k, total });
          const segment = pseudoRandomBytes(length, seed);
          const pieces = coder.encode(segment);
          const size = coder.pieceSize(length);
          assert.equal(pieces.length, total);
          for (const p of pieces) assert.equal(p.length, size);

          // A random set of exactly k survivors (Fisher–Yates prefix).
          const order = [...Array(total).keys()];
          const r = randoms[Symbol.iterator]();
          for (let i = 0; i < k; i++) {
            const j = i + Math.floor((r.next().value as number) * (total - i));
            [order[i], order[j]] = [order[j]!, order[i]!];
          }
          const survivors = order.slice(0, k);
          const sparse = keepOnly(pieces, survivors);
          assert.deepEqual(coder.decode(sparse, length), segment);

          // A random piece range, as whole pieces and as the fetched ranges.
          const from = Math.floor((r.next().value as number) * (size + 1));
          const len = Math.floor((r.next().value as number) * (size - from + 1));
          const padded = new Uint8Array(k * size);
          padded.set(segment);
          const expected = Array.from({ length: k }, (_, i) => padded.subarray(i * size + from, i * size + from + len));
          assert.deepEqual(coder.decodeRange(sparse, from, len), expected);
          const ranged = new Map(survivors.map((i) => [i, pieces[i]!.slice(from, from + len)] as const));
          assert.deepEqual(coder.decodeRange(ranged, from, len), expected);

          // Rebuild everything that is missing, in a shuffled order.
          const missing = order.slice(k).reverse();
          const rebuilt = coder.reconstruct(sparse, missing);
          missing.forEach((m, i) => {
            assert.deepEqual(rebuilt[i], pieces[m], `piece ${m}`);
          });
        },
      ),
      { numRuns: 60 },
    );
  });

  it("segment range reads: pieceRangeFor + decodeSegmentRange, from whole pieces or fetched ranges", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 20 }),
        fc.integer({ min: 0, max: 10 }),
        fc.integer({ min: 1, max: 2000 }),
        fc.integer(),
        fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }),
        fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }),
        (k, parity, segmentLength, seed, u, v) => {
          const total = k + parity;
          const coder = createErasureCoder({ k, total });
          const segment = pseudoRandomBytes(segmentLength, seed);
          const pieces = coder.encode(segment);
          const offset = Math.floor(u * (segmentLength + 1));
          const length = Math.floor(v * (segmentLength - offset + 1));
          // Survivors: the last k pieces, so data chunks must be rebuilt whenever parity > 0.
          const keep = [...Array(k).keys()].map((i) => i + parity);
          const range = coder.pieceRangeFor(segmentLength, offset, length);
          const expected = segment.subarray(offset, offset + length);
          assert.deepEqual(coder.decodeSegmentRange(keepOnly(pieces, keep), segmentLength, offset, length), expected);
          const fetched = new Map(keep.map((i) => [i, pieces[i]!.slice(range.pieceOffset, range.pieceOffset + range.length)] as const));
          assert.deepEqual(coder.decodeSegmentRange(fetched, segmentLength, offset, length), expected);
          // Only the chunks the read touches are named, and the fetched span is as small as promised.
          const size = coder.pieceSize(segmentLength);
          for (const c of range.chunks) assert.ok(c * size < offset + length && (c + 1) * size > offset);
          if (range.chunks.length === 1) assert.equal(range.length, length);
        },
      ),
      { numRuns: 100 },
    );
  });

  it("decodeRange can rebuild just the chunks asked for", () => {
    const coder = createErasureCoder({ k: 5, total: 9 });
    const segment = pseudoRandomBytes(5000, 77);
    const pieces = coder.encode(segment);
    const sparse = keepOnly(pieces, [1, 5, 6, 7, 8]);
    const [c3, c1] = coder.decodeRange(sparse, 100, 50, [3, 1]);
    assert.deepEqual(c3, segment.subarray(3000 + 100, 3000 + 150));
    assert.deepEqual(c1, segment.subarray(1000 + 100, 1000 + 150));
    assert.throws(() => coder.decodeRange(sparse, 0, 10, [5]), (e) => isDstorError(e, "ERASURE_INVALID_PARAMS"));
    assert.throws(() => coder.pieceRangeFor(5000, 4990, 11), (e) => isDstorError(e, "ERASURE_INVALID_PARAMS"));
  });

  it("k up to 255 works (255 of 255, and 200 of 255)", () => {
    for (const [k, total] of [
      [255, 255],
      [200, 255],
    ] as const) {
      const coder = createErasureCoder({ k, total });
      const segment = pseudoRandomBytes(k * 3 + 1, k);
      const pieces = coder.encode(segment);
      const keep = [...Array(total).keys()].slice(total - k);
      assert.deepEqual(coder.decode(keepOnly(pieces, keep), segment.length), segment);
    }
  });

  it("encodeInto writes the same pieces as encode into caller buffers", () => {
    const coder = createErasureCoder({ k: 6, total: 11 });
    const segment = pseudoRandomBytes(1000, 3);
    const size = coder.pieceSize(segment.length);
    const buffers = Array.from({ length: 11 }, () => new Uint8Array(size).fill(0x5a));
    coder.encodeInto(segment, buffers);
    assert.deepEqual(buffers, coder.encode(segment));
  });

  it("encodeParity fills parity in place over one back-to-back layout", () => {
    const coder = createErasureCoder({ k: 6, total: 11 });
    const segment = pseudoRandomBytes(1000, 4);
    const size = coder.pieceSize(segment.length);
    const layout = new Uint8Array(size * 11).fill(0x77);
    layout.set(segment);
    layout.fill(0, segment.length, size * 6);
    const views = Array.from({ length: 11 }, (_, i) => layout.subarray(i * size, (i + 1) * size));
    coder.encodeParity(views);
    assert.deepEqual(views, coder.encode(segment));
  });

  it("decodes from more than k pieces and from a Map", () => {
    const coder = createErasureCoder({ k: 3, total: 7 });
    const segment = pseudoRandomBytes(500, 8);
    const pieces = coder.encode(segment);
    assert.deepEqual(coder.decode(pieces, 500), segment);
    assert.deepEqual(coder.decode(new Map([[6, pieces[6]!], [1, pieces[1]!], [4, pieces[4]!]]), 500), segment);
  });

  it("decodes into a caller's buffer, reused across segments, and refuses one too small", () => {
    const coder = createErasureCoder({ k: 3, total: 7 });
    const scratch = new Uint8Array(coder.pieceSize(500) * 3 + 10).fill(0xee);
    for (const [seed, keep] of [[1, [0, 1, 2]], [2, [6, 1, 4]], [3, [3, 5, 6]]] as const) {
      const segment = pseudoRandomBytes(500, seed);
      const out = coder.decode(keepOnly(coder.encode(segment), [...keep]), 500, scratch);
      assert.deepEqual(out, segment);
      assert.equal(out.buffer, scratch.buffer);
    }
    assert.throws(
      () => coder.decode(coder.encode(pseudoRandomBytes(500, 4)), 500, new Uint8Array(coder.pieceSize(500) * 3 - 1)),
      (e: unknown) => isDstorError(e) && e.code === "ERASURE_INVALID_PARAMS",
    );
  });

  it("reuses cached inverses without changing results", () => {
    const coder = createErasureCoder({ k: 8, total: 16 }, { decodeCacheBytes: 64 * 2 });
    const segment = pseudoRandomBytes(4000, 1);
    const pieces = coder.encode(segment);
    for (let round = 0; round < 3; round++) {
      for (let start = 0; start <= 8; start++) {
        const keep = [...Array(8).keys()].map((i) => i + start);
        assert.deepEqual(coder.decode(keepOnly(pieces, keep), 4000), segment);
      }
    }
  });
});

describe("erasure coder: kernel choice", () => {
  it("auto picks the best native kernel when the addon loads, with no warning", () => {
    const records: LogRecord[] = [];
    const logger = createLogger("dstor:test", { sink: (r) => records.push(r), enable: "" });
    const coder = createErasureCoder({ k: 2, total: 4 }, { logger });
    const natives = availableKernels().filter((k) => k.name.startsWith("native-"));
    if (natives.length > 0) {
      assert.equal(coder.kernelName, natives[0]!.name);
      assert.equal(records.length, 0);
    } else {
      // No addon on this machine: the fallback path below is then the one under test here too.
      assert.equal(coder.kernelName, "wasm");
      assert.equal(records.length, 1);
    }
  });

  it("without the addon, auto falls back to wasm and warns exactly once per logger, saying why", () => {
    const saved = process.env.DSTOR_NO_NATIVE;
    process.env.DSTOR_NO_NATIVE = "1";
    try {
      const records: LogRecord[] = [];
      const logger = createLogger("dstor:test", { sink: (r) => records.push(r), enable: "" });
      const a = createErasureCoder({ k: 2, total: 4 }, { logger });
      const b = createErasureCoder({ k: 3, total: 5 }, { kernel: "auto", logger });
      assert.equal(a.kernelName, "wasm");
      assert.equal(b.kernelName, "wasm");
      assert.equal(records.length, 1);
      assert.equal(records[0]!.level, "warn");
      assert.match(records[0]!.message, /native erasure addon unavailable \(.*DSTOR_NO_NATIVE.*\)/);
      assert.throws(
        () => createErasureCoder({ k: 2, total: 3 }, { kernel: "native" }),
        (e) => isDstorError(e, "NATIVE_UNAVAILABLE"),
      );
      assert.ok(availableKernels().every((k) => !k.name.startsWith("native-")));
    } finally {
      if (saved === undefined) delete process.env.DSTOR_NO_NATIVE;
      else process.env.DSTOR_NO_NATIVE = saved;
    }
  });

  it("explicit choices are honoured, unknown ones rejected", () => {
    assert.equal(createErasureCoder({ k: 2, total: 3 }, { kernel: "ts" }).kernelName, "ts");
    assert.equal(createErasureCoder({ k: 2, total: 3 }, { kernel: "wasm" }).kernelName, "wasm");
    assert.throws(
      () => createErasureCoder({ k: 2, total: 3 }, { kernel: "fast" as "ts" }),
      (e) => isDstorError(e, "INVALID_OPTION"),
    );
    assert.throws(
      () => createErasureCoder({ k: 2, total: 3 }, { kernel: "native-quantum" }),
      (e) => isDstorError(e, "NATIVE_UNAVAILABLE"),
    );
  });
});
