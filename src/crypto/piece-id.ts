/**
 * Piece ids. A piece id is a pseudo-random 32-byte name derived from the
 * renter's secret piece-id key, so a farmer cannot tell which of its pieces
 * belong to one segment, one file or even one renter's naming scheme:
 *
 *   pieceId = HKDF-SHA256(pieceIdKey, "dstor/v1",
 *             label32("piece-id") ‖ segmentId (24) ‖ salt (16) ‖ pieceNumber (u16be))
 *
 * The salt is the segment write's salt, so rewriting a segment yields new
 * piece ids and old and new pieces never collide on a farmer. On disk and on
 * the wire a piece id is 64 lowercase hex characters.
 */
import { DstorError } from "../core/errors.js";
import { assertBytes, uint16be } from "./bytes.js";
import { hkdfLabel } from "./hkdf.js";
import { KEY_BYTES, SEGMENT_ID_BYTES, SEGMENT_SALT_BYTES } from "./keys.js";

/** Bytes of a piece id. */
export const PIECE_ID_BYTES = 32;
/** The HKDF label of piece ids. */
export const PIECE_ID_LABEL = "piece-id";

/** Derives the 32-byte id of piece `pieceNumber` (0..65535) of one write of a segment. */
export function derivePieceId(pieceIdKey: Uint8Array, segmentId: Uint8Array, salt: Uint8Array, pieceNumber: number): Uint8Array {
  assertBytes(pieceIdKey, KEY_BYTES, "piece-id key");
  assertBytes(segmentId, SEGMENT_ID_BYTES, "segment id");
  assertBytes(salt, SEGMENT_SALT_BYTES, "segment salt");
  return hkdfLabel(pieceIdKey, PIECE_ID_LABEL, segmentId, salt, uint16be(pieceNumber));
}

/** The on-disk form of a piece id: 64 lowercase hex characters. */
export function pieceIdHex(pieceId: Uint8Array): string {
  assertBytes(pieceId, PIECE_ID_BYTES, "piece id");
  return Buffer.from(pieceId.buffer, pieceId.byteOffset, pieceId.byteLength).toString("hex");
}

const PIECE_ID_HEX = /^[0-9a-f]{64}$/;

/** True when `text` is a well-formed piece id (exactly 64 lowercase hex characters). */
export function isPieceIdHex(text: unknown): text is string {
  return typeof text === "string" && PIECE_ID_HEX.test(text);
}

/**
 * Parses a piece id strictly: exactly 64 lowercase hex characters, nothing
 * else (no `0x`, no uppercase, no whitespace) — one id has one spelling, so
 * it can name a file on disk safely. Otherwise throws `PIECE_ID_INVALID`.
 */
export function parsePieceIdHex(text: string): Uint8Array {
  if (typeof text !== "string" || !PIECE_ID_HEX.test(text)) {
    const shown = typeof text === "string" ? JSON.stringify(text.length > 80 ? `${text.slice(0, 80)}…` : text) : typeof text;
    throw new DstorError("PIECE_ID_INVALID", `piece id ${shown} is not 64 lowercase hex characters`);
  }
  return new Uint8Array(Buffer.from(text, "hex"));
}
