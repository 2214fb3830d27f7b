/**
 * HKDF-SHA256 (RFC 5869) with dstor's fixed salt and fixed-width `info`
 * fields. Every derivation in dstor goes through {@link hkdfLabel}: the info
 * begins with a 32-byte field holding an ASCII label, zero-padded, followed by
 * fixed-width binary fields. Fixed widths mean no two (label, fields) tuples
 * can ever encode to the same info bytes, so derived keys never collide across
 * purposes without any length prefixes or separators.
 */
import { hkdfSync } from "node:crypto";
import { assertArgument } from "../core/errors.js";

/** The HKDF salt of every dstor derivation (ASCII). Changing it is a format break. */
export const HKDF_SALT = new TextEncoder().encode("dstor/v1");
/** Width of the label field at the start of every HKDF `info`. */
export const HKDF_LABEL_BYTES = 32;
/** Bytes produced by every dstor derivation. */
export const DERIVED_KEY_BYTES = 32;

/**
 * HKDF-SHA256 as in RFC 5869: `length` bytes of output keying material from
 * `ikm`, `salt`, `info`. Thin wrapper around node:crypto for the RFC vectors
 * and for {@link hkdfLabel}.
 */
export function hkdfSha256(ikm: Uint8Array, salt: Uint8Array, info: Uint8Array, length: number): Uint8Array {
  assertArgument(Number.isInteger(length) && length > 0 && length <= 255 * 32, `HKDF output length must be 1..8160, got ${length}`);
  return new Uint8Array(hkdfSync("sha256", ikm, salt, info, length));
}

/**
 * The 32-byte label field: `label` as ASCII, zero-padded. Labels are printable
 * ASCII, 1..32 characters.
 */
export function labelField(label: string): Uint8Array {
  assertArgument(
    typeof label === "string" && label.length >= 1 && label.length <= HKDF_LABEL_BYTES && /^[\x21-\x7e]+$/.test(label),
    `an HKDF label must be 1..${HKDF_LABEL_BYTES} printable ASCII characters, got ${JSON.stringify(label)}`,
  );
  const field = new Uint8Array(HKDF_LABEL_BYTES);
  for (let i = 0; i < label.length; i++) field[i] = label.charCodeAt(i);
  return field;
}

/**
 * Derives 32 bytes: HKDF-SHA256(ikm, salt = "dstor/v1",
 * info = labelField(label) ‖ fields…). Callers pass only fixed-width fields.
 */
export function hkdfLabel(ikm: Uint8Array, label: string, ...fields: Uint8Array[]): Uint8Array {
  assertArgument(ikm instanceof Uint8Array && ikm.byteLength >= 16, "HKDF input key material must be at least 16 bytes");
  let infoLength = HKDF_LABEL_BYTES;
  for (const f of fields) infoLength += f.byteLength;
  const info = new Uint8Array(infoLength);
  info.set(labelField(label), 0);
  let offset = HKDF_LABEL_BYTES;
  for (const f of fields) {
    info.set(f, offset);
    offset += f.byteLength;
  }
  return hkdfSha256(ikm, HKDF_SALT, info, DERIVED_KEY_BYTES);
}
