import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { describe, test } from "node:test";
import fc from "fast-check";
import { isDstorError } from "../../src/core/errors.js";
import { sealedLength } from "../../src/crypto/aead.js";
import { BufferPool } from "../../src/crypto/bytes.js";
import { generateFileId, generateFileKey } from "../../src/crypto/keys.js";
import { merkleRoot } from "../../src/crypto/merkle.js";
import { createRedundancyStrategy } from "../../src/erasure/strategy.js";
import {
  createSegmentPipeline,
  decodeSegment,
  decodeStream,
  type EncodedSegment,
  encodeSegment,
  encodeSegmentAsync,
  encodeStream,
  type FileSecrets,
  segmentChunks,
  segmentLayoutBytes,
  verifyPieces,
} from "../../src/pipeline/index.js";

const strategy = createRedundancyStrategy({ k: 4, repair: 6, optimal: 8, total: 10 });
const pipeline = createSegmentPipeline({ strategy });

function secrets(): FileSecrets {
  return { fileKey: generateFileKey(), fileId: generateFileId(), pieceIdKey: new Uint8Array(randomBytes(32)) };
}

function pick(encoded: EncodedSegment, numbers: number[]): Map<number, Uint8Array> {
  return new Map(numbers.map((n) => [n, encoded.pieces[n]!.data]));
}

describe("segment pipeline", () => {
  test("encode produces total pieces with roots, ids and the right sizes", () => {
    const s = secrets();
    const plaintext = new Uint8Array(randomBytes(300_000));
    const encoded = encodeSegment(pipeline, s, 3, plaintext);
    assert.equal(encoded.pieces.length, 10);
    assert.equal(encoded.record.pieceSize, Math.ceil(sealedLength(plaintext.length) / 4));
    for (const piece of encoded.pieces) {
      assert.equal(piece.data.length, encoded.record.pieceSize);
      assert.deepEqual(piece.root, merkleRoot(piece.data));
      assert.equal(piece.id.length, 32);
    }
    assert.equal(new Set(encoded.pieces.map((p) => Buffer.from(p.id).toString("hex"))).size, 10);
    // The data pieces are ciphertext: the plaintext does not appear in them.
    const needle = Buffer.from(plaintext.subarray(1000, 1032));
    assert.ok(!encoded.pieces.some((p) => Buffer.from(p.data).includes(needle)));
  });

  test("encodeSegmentAsync hashes on the thread pool and gives what encodeSegment gives, also without rootsAsync", async () => {
    const s = secrets();
    const plaintext = new Uint8Array(randomBytes(700_001));
    const syncOnly = { coder: pipeline.coder, hasher: { roots: pipeline.hasher.roots } };
    assert.ok(pipeline.hasher.rootsAsync !== undefined, "the real pipeline hashes off the event loop");
    for (const components of [pipeline, syncOnly]) {
      const layout = new Uint8Array(segmentLayoutBytes(pipeline.coder, plaintext.length));
      const encoded = await encodeSegmentAsync(components, s, 5, plaintext, { layout });
      assert.equal(encoded.pieces.length, 10);
      assert.equal(encoded.pieces[0]!.data.buffer, layout.buffer);
      encoded.pieces.forEach((piece, n) => {
        assert.deepEqual(piece.root, merkleRoot(piece.data), `piece ${n}`);
        assert.deepEqual(encoded.record.pieceRoots[n], piece.root);
      });
      assert.deepEqual(decodeSegment(pipeline, s, encoded.record, pick(encoded, [9, 2, 7, 4])), plaintext);
      assert.equal(new Set(encoded.record.pieceIds.map((id) => Buffer.from(id).toString("hex"))).size, 10);
    }
    await assert.rejects(encodeSegmentAsync(pipeline, s, 1, plaintext, { layout: new Uint8Array(10) }), (e: unknown) => isDstorError(e, "INVALID_ARGUMENT"));
  });

  test("a caller-provided layout buffer is used and may be reused; a short one is refused", () => {
    const s = secrets();
    const plaintext = new Uint8Array(randomBytes(100_000));
    const layout = new Uint8Array(segmentLayoutBytes(pipeline.coder, plaintext.length) + 5).fill(0xee);
    const encoded = encodeSegment(pipeline, s, 1, plaintext, { layout });
    assert.equal(encoded.pieces[0]!.data.buffer, layout.buffer);
    assert.deepEqual(decodeSegment(pipeline, s, encoded.record, pick(encoded, [1, 3, 5, 7])), plaintext);
    const again = encodeSegment(pipeline, s, 2, plaintext.subarray(0, 5000), { layout });
    assert.deepEqual(decodeSegment(pipeline, s, again.record, pick(again, [0, 9, 4, 6])), plaintext.subarray(0, 5000));
    assert.throws(
      () => encodeSegment(pipeline, s, 1, plaintext, { layout: new Uint8Array(10) }),
      (e: unknown) => isDstorError(e, "INVALID_ARGUMENT"),
    );
  });

  test("every write of a segment gets a fresh salt, so fresh keys and piece ids", () => {
    const s = secrets();
    const plaintext = new Uint8Array(1000);
    const a = encodeSegment(pipeline, s, 0, plaintext);
    const b = encodeSegment(pipeline, s, 0, plaintext);
    assert.notDeepEqual(a.record.salt, b.record.salt);
    assert.notDeepEqual(a.pieces[0]!.data, b.pieces[0]!.data);
    assert.notDeepEqual(a.pieces[0]!.id, b.pieces[0]!.id);
  });

  test("any k pieces decode to the plaintext (property)", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 200_000 }),
        fc.shuffledSubarray([0, 1, 2, 3, 4, 5, 6, 7, 8, 9], { minLength: 4, maxLength: 4 }),
        (length, numbers) => {
          const s = secrets();
          const plaintext = new Uint8Array(randomBytes(length));
          const encoded = encodeSegment(pipeline, s, 7, plaintext);
          assert.deepEqual(decodeSegment(pipeline, s, encoded.record, pick(encoded, numbers)), plaintext);
        },
      ),
      { numRuns: 25 },
    );
  });

  test("a corrupt piece is named; the good ones still decode; too few are refused", () => {
    const s = secrets();
    const plaintext = new Uint8Array(randomBytes(70_000));
    const encoded = encodeSegment(pipeline, s, 0, plaintext);
    const pieces = pick(encoded, [0, 2, 5, 7, 9]);
    const corrupt = new Uint8Array(pieces.get(5)!);
    corrupt[17] = (corrupt[17] ?? 0) ^ 1;
    pieces.set(5, corrupt);
    assert.throws(
      () => decodeSegment(pipeline, s, encoded.record, pieces),
      (e: unknown) => isDstorError(e, "INTEGRITY_MISMATCH") && (e.details.badPieces as number[]).includes(5),
    );
    const { good, bad } = verifyPieces(pipeline, encoded.record, pieces);
    assert.deepEqual(bad, [5]);
    assert.deepEqual(decodeSegment(pipeline, s, encoded.record, good), plaintext);
    good.delete(0);
    assert.throws(() => decodeSegment(pipeline, s, encoded.record, good), (e: unknown) => isDstorError(e, "ERASURE_TOO_FEW_PIECES"));
  });

  test("a wrong file key or a record from another write fails authentication", () => {
    const s = secrets();
    const encoded = encodeSegment(pipeline, s, 0, new Uint8Array(randomBytes(5000)));
    const pieces = pick(encoded, [0, 1, 2, 3]);
    assert.throws(
      () => decodeSegment(pipeline, { ...s, fileKey: generateFileKey() }, encoded.record, pieces),
      (e: unknown) => isDstorError(e, "DECRYPT_FAILED"),
    );
    const other = encodeSegment(pipeline, s, 0, new Uint8Array(5000));
    assert.throws(
      () => decodeSegment(pipeline, s, { ...encoded.record, salt: other.record.salt }, pieces),
      (e: unknown) => isDstorError(e, "DECRYPT_FAILED"),
    );
  });
});

describe("streaming", () => {
  test("segmentChunks re-cuts any chunking into fixed segments", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.integer({ min: 0, max: 300 }), { maxLength: 20 }), fc.integer({ min: 1, max: 200 }), async (sizes, segmentSize) => {
        const chunks = sizes.map((n) => new Uint8Array(randomBytes(n)));
        const whole = Buffer.concat(chunks);
        const out: Uint8Array[] = [];
        for await (const segment of segmentChunks(chunks, segmentSize)) out.push(segment);
        assert.deepEqual(Buffer.concat(out), whole);
        for (const segment of out.slice(0, -1)) assert.equal(segment.length, segmentSize);
        if (whole.length === 0) assert.equal(out.length, 0);
      }),
      { numRuns: 100 },
    );
  });

  test("segmentChunks: segments larger than the first buffer grow into whole segments", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.integer({ min: 0, max: 90_000 }), { maxLength: 8 }), fc.integer({ min: 1, max: 200_000 }), async (sizes, segmentSize) => {
        const chunks = sizes.map((n) => new Uint8Array(randomBytes(n)));
        const whole = Buffer.concat(chunks);
        const out: Uint8Array[] = [];
        for await (const segment of segmentChunks(chunks, segmentSize)) out.push(segment);
        assert.deepEqual(Buffer.concat(out), whole);
        for (const segment of out.slice(0, -1)) assert.equal(segment.length, segmentSize);
        assert.equal(out.length, Math.ceil(whole.length / segmentSize));
      }),
      { numRuns: 60 },
    );
  });

  test("segmentChunks with a pool: reused buffers, given back after use, still cut the same bytes", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.integer({ min: 0, max: 90_000 }), { maxLength: 8 }), fc.integer({ min: 1, max: 100_000 }), async (sizes, segmentSize) => {
        const chunks = sizes.map((n) => new Uint8Array(randomBytes(n)));
        const whole = Buffer.concat(chunks);
        const pool = new BufferPool(4 * segmentSize);
        // Poison the pool: a reused buffer holds stale bytes, never seen in the output.
        const stale = pool.take(segmentSize).fill(0xee);
        pool.give([stale]);
        const out: Buffer[] = [];
        const seen = new Set<ArrayBufferLike>();
        let held: Uint8Array | undefined; // the consumer keeps each segment until it has the next
        for await (const segment of segmentChunks(chunks, segmentSize, { pool })) {
          assert.notEqual(segment.buffer, held?.buffer, "a buffer still in use is never handed out again");
          out.push(Buffer.from(segment)); // a copy: the segment goes back to the pool
          seen.add(segment.buffer);
          if (held !== undefined) pool.give([held]);
          held = segment;
        }
        assert.deepEqual(Buffer.concat(out), whole);
        for (const segment of out.slice(0, -1)) assert.equal(segment.length, segmentSize);
        if (whole.length >= 3 * segmentSize) assert.ok(seen.size < out.length, "full segments reuse pooled buffers");
      }),
      { numRuns: 60 },
    );
  });

  test("a multi-segment file streams through encode and decode, pulling one segment at a time", async () => {
    const s = secrets();
    const segmentSize = 256 * 1024;
    const data = new Uint8Array(randomBytes(3 * segmentSize + 12345));
    const source = (function* () {
      for (let i = 0; i < data.length; i += 100_000) yield data.subarray(i, i + 100_000);
    })();
    const stored = new Map<number, EncodedSegment>();
    for await (const segment of encodeStream(pipeline, s, source, segmentSize)) stored.set(segment.record.index, segment);
    assert.equal(stored.size, 4);
    const records = [...stored.values()].map((e) => e.record);
    let fetched = 0;
    const out: Uint8Array[] = [];
    const decoded = decodeStream(pipeline, s, records, async (record) => {
      fetched++;
      return pick(stored.get(record.index)!, [9, 8, 7, 6]);
    });
    for await (const plain of decoded) {
      out.push(plain);
      assert.equal(fetched, out.length, "pieces are fetched only when the segment is reached");
    }
    assert.equal(createHash("sha256").update(Buffer.concat(out)).digest("hex"), createHash("sha256").update(data).digest("hex"));
  });

  test("an aborted signal stops the stream with ABORTED", async () => {
    const controller = new AbortController();
    controller.abort();
    const s = secrets();
    await assert.rejects(async () => {
      for await (const _ of encodeStream(pipeline, s, [new Uint8Array(10)], 4, { signal: controller.signal })) {
        assert.fail("nothing should be produced");
      }
    }, (e: unknown) => isDstorError(e, "ABORTED"));
  });
});
