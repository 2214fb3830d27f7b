import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { describe, it } from "node:test";
import fc from "fast-check";
import { isDstorError } from "../../src/core/errors.js";
import { derivePieceId, isPieceIdHex, parsePieceIdHex, pieceIdHex } from "../../src/crypto/piece-id.js";
import { type DstorVectors, hex, loadVectors } from "./helpers.js";

const V = loadVectors<DstorVectors>("dstor-crypto.json");

describe("piece ids", () => {
  it("matches the vector", () => {
    const p = V.pieceId;
    const id = derivePieceId(hex(p.pieceIdKey), hex(p.segmentId), hex(p.salt), p.pieceNumber);
    assert.equal(id.length, 32);
    assert.equal(pieceIdHex(id), p.pieceId);
  });
  it("differs by piece number, salt and segment", () => {
    const key = new Uint8Array(randomBytes(32));
    const seg = new Uint8Array(randomBytes(24));
    const salt = new Uint8Array(randomBytes(16));
    const ids = new Set<string>();
    for (let n = 0; n < 30; n++) ids.add(pieceIdHex(derivePieceId(key, seg, salt, n)));
    ids.add(pieceIdHex(derivePieceId(key, seg, new Uint8Array(randomBytes(16)), 0)));
    ids.add(pieceIdHex(derivePieceId(key, new Uint8Array(randomBytes(24)), salt, 0)));
    assert.equal(ids.size, 32);
  });
  it("validates inputs", () => {
    const k = new Uint8Array(32);
    assert.throws(() => derivePieceId(k, new Uint8Array(24), new Uint8Array(16), 65536), (e: unknown) => isDstorError(e, "INVALID_ARGUMENT"));
    assert.throws(() => derivePieceId(k, new Uint8Array(23), new Uint8Array(16), 0), (e: unknown) => isDstorError(e, "INVALID_ARGUMENT"));
    assert.throws(() => pieceIdHex(new Uint8Array(31)), (e: unknown) => isDstorError(e, "INVALID_ARGUMENT"));
  });
  it("hex round-trips (fast-check)", () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 32, maxLength: 32 }), (id) => {
        const text = pieceIdHex(id);
        assert.match(text, /^[0-9a-f]{64}$/);
        assert.ok(isPieceIdHex(text));
        assert.deepEqual(parsePieceIdHex(text), id);
      }),
    );
  });
  it("parsing is strict", () => {
    const good = V.pieceId.pieceId;
    for (const bad of [
      good.toUpperCase(),
      `0x${good}`,
      good.slice(2),
      `${good}00`,
      ` ${good}`,
      `${good.slice(0, 63)}g`,
      `${good.slice(0, 63)}\n`,
      "../../etc/passwd",
      "",
      42 as unknown as string,
    ]) {
      assert.equal(isPieceIdHex(bad), false);
      assert.throws(() => parsePieceIdHex(bad), (e: unknown) => isDstorError(e, "PIECE_ID_INVALID"));
    }
  });
});
