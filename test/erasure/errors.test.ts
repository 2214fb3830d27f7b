import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { type DstorErrorCode, isDstorError } from "../../src/core/errors.js";
import { buildEncodingMatrix, createErasureCoder } from "../../src/erasure/index.js";
import { keepOnly, pseudoRandomBytes } from "./helpers.js";

const code =
  (c: DstorErrorCode) =>
  (e: unknown): boolean =>
    isDstorError(e, c);

describe("erasure coder: invalid input gives coded errors", () => {
  const coder = createErasureCoder({ k: 4, repair: 5, optimal: 6, total: 8 });
  const segment = pseudoRandomBytes(1001, 11);
  const pieces = coder.encode(segment);

  it("ERASURE_INVALID_PARAMS for bad strategies and matrices", () => {
    assert.throws(() => createErasureCoder({ k: 5, total: 4 }), code("ERASURE_INVALID_PARAMS"));
    assert.throws(() => createErasureCoder({ k: 0, total: 4 }), code("ERASURE_INVALID_PARAMS"));
    assert.throws(() => createErasureCoder({ k: 4, total: 256 }), code("ERASURE_INVALID_PARAMS"));
    assert.throws(() => createErasureCoder({ k: 4, repair: 3, total: 8 }), code("ERASURE_INVALID_PARAMS"));
    assert.throws(() => buildEncodingMatrix(3, 2), code("ERASURE_INVALID_PARAMS"));
  });

  it("ERASURE_INVALID_PARAMS for bad lengths, piece numbers and non-byte inputs", () => {
    assert.throws(() => coder.pieceSize(-1), code("ERASURE_INVALID_PARAMS"));
    assert.throws(() => coder.pieceSize(1.5), code("ERASURE_INVALID_PARAMS"));
    assert.throws(() => coder.decode(pieces, -3), code("ERASURE_INVALID_PARAMS"));
    assert.throws(() => coder.encode("hello" as unknown as Uint8Array), code("ERASURE_INVALID_PARAMS"));
    const tooMany = [...pieces, pieces[0]!];
    assert.throws(() => coder.decode(tooMany, 1001), code("ERASURE_INVALID_PARAMS"));
    assert.throws(() => coder.decode(new Map([[-1, pieces[0]!]]), 1001), code("ERASURE_INVALID_PARAMS"));
    assert.throws(() => coder.decode(new Map([[8, pieces[0]!]]), 1001), code("ERASURE_INVALID_PARAMS"));
    assert.throws(() => coder.reconstruct(pieces, [8]), code("ERASURE_INVALID_PARAMS"));
    assert.throws(() => coder.reconstruct(pieces, [0.5]), code("ERASURE_INVALID_PARAMS"));
    assert.throws(() => coder.decodeRange(pieces, -1, 2), code("ERASURE_INVALID_PARAMS"));
    assert.throws(() => coder.decode({} as unknown as Map<number, Uint8Array>, 1001), code("ERASURE_INVALID_PARAMS"));
  });

  it("ERASURE_TOO_FEW_PIECES when fewer than k pieces are present", () => {
    assert.throws(() => coder.decode(keepOnly(pieces, [0, 5, 7]), 1001), code("ERASURE_TOO_FEW_PIECES"));
    assert.throws(() => coder.decode([], 1001), code("ERASURE_TOO_FEW_PIECES"));
    assert.throws(() => coder.decodeRange(keepOnly(pieces, [1, 2]), 0, 10), code("ERASURE_TOO_FEW_PIECES"));
    assert.throws(() => coder.reconstruct(keepOnly(pieces, [1, 2, 3]), [0]), code("ERASURE_TOO_FEW_PIECES"));
  });

  it("ERASURE_SIZE_MISMATCH for pieces of different or wrong sizes", () => {
    const short = keepOnly(pieces, [0, 1, 2, 3]);
    short[2] = short[2]!.subarray(1);
    assert.throws(() => coder.decode(short, 1001), code("ERASURE_SIZE_MISMATCH"));
    // All the same size, but not the size this segment length implies.
    assert.throws(() => coder.decode(pieces, 1200), code("ERASURE_SIZE_MISMATCH"));
    assert.throws(() => coder.reconstruct(short, [5]), code("ERASURE_SIZE_MISMATCH"));
    assert.throws(() => coder.decodeRange(short, 0, 5), code("ERASURE_SIZE_MISMATCH"));
    assert.throws(() => coder.decodeRange(pieces, 200, 100), code("ERASURE_SIZE_MISMATCH"));
    const buffers = Array.from({ length: 8 }, () => new Uint8Array(coder.pieceSize(1001)));
    assert.throws(() => coder.encodeInto(segment, buffers.slice(1)), code("ERASURE_SIZE_MISMATCH"));
    const shared = new Uint8Array(coder.pieceSize(1001) * 8);
    const overlapping = buffers.map((_, i) => shared.subarray(i * 10, i * 10 + coder.pieceSize(1001)));
    assert.throws(() => coder.encodeInto(segment, overlapping), code("ERASURE_INVALID_PARAMS"));
    assert.throws(() => coder.encodeInto(shared.subarray(0, 1001), buffers.map((_, i) => shared.subarray(i * 251, (i + 1) * 251))), code("ERASURE_INVALID_PARAMS"));
    assert.throws(() => coder.encodeParity(overlapping), code("ERASURE_INVALID_PARAMS"));
    assert.throws(() => coder.encodeParity(buffers.slice(2)), code("ERASURE_SIZE_MISMATCH"));
    buffers[3] = new Uint8Array(7);
    assert.throws(() => coder.encodeInto(segment, buffers), code("ERASURE_SIZE_MISMATCH"));
    assert.throws(() => coder.encodeParity(buffers), code("ERASURE_SIZE_MISMATCH"));
  });

  it("an empty segment encodes to empty pieces and decodes back", () => {
    const empty = coder.encode(new Uint8Array(0));
    assert.equal(empty.length, 8);
    assert.ok(empty.every((p) => p.length === 0));
    assert.equal(coder.decode(keepOnly(empty, [4, 5, 6, 7]), 0).length, 0);
    assert.deepEqual(coder.reconstruct(keepOnly(empty, [4, 5, 6, 7]), [0]), [new Uint8Array(0)]);
  });
});
