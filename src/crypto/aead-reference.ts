/**
 * The reference implementation of the segment AEAD format (aead.ts) on
 * @noble/ciphers' audited pure-TypeScript AES-GCM. It is slow and exists so
 * tests can prove the node:crypto fast path produces exactly the bytes the
 * format describes, independently of OpenSSL.
 */
import { gcm } from "@noble/ciphers/aes.js";
import { assertArgument, DstorError } from "../core/errors.js";
import {
  AEAD_BLOCK_BYTES,
  blockAad,
  blockCount,
  blockNonce,
  plaintextLength,
  SEALED_BLOCK_BYTES,
  sealedLength,
} from "./aead.js";
import { assertBytes } from "./bytes.js";
import { KEY_BYTES, SEGMENT_ID_BYTES } from "./keys.js";

/** Reference twin of `sealSegment` (aead.ts); identical output. */
export function sealSegmentReference(key: Uint8Array, segmentId: Uint8Array, plaintext: Uint8Array): Uint8Array {
  assertBytes(key, KEY_BYTES, "segment key");
  assertBytes(segmentId, SEGMENT_ID_BYTES, "segment id");
  assertArgument(plaintext instanceof Uint8Array, "plaintext must be a Uint8Array");
  const blocks = blockCount(plaintext.byteLength);
  const out = new Uint8Array(sealedLength(plaintext.byteLength));
  for (let b = 0; b < blocks; b++) {
    const chunk = plaintext.subarray(b * AEAD_BLOCK_BYTES, (b + 1) * AEAD_BLOCK_BYTES);
    out.set(gcm(key, blockNonce(b), blockAad(segmentId, b, b === blocks - 1)).encrypt(chunk), b * SEALED_BLOCK_BYTES);
  }
  return out;
}

/** Reference twin of `openSegment` (aead.ts); throws `DECRYPT_FAILED` on any failure. */
export function openSegmentReference(key: Uint8Array, segmentId: Uint8Array, sealed: Uint8Array): Uint8Array {
  assertBytes(key, KEY_BYTES, "segment key");
  assertBytes(segmentId, SEGMENT_ID_BYTES, "segment id");
  let length: number;
  try {
    length = plaintextLength(sealed.byteLength);
  } catch (error) {
    throw new DstorError("DECRYPT_FAILED", "sealed segment has an impossible length (truncated)", { cause: error });
  }
  const blocks = blockCount(length);
  const out = new Uint8Array(length);
  for (let b = 0; b < blocks; b++) {
    const chunk = sealed.subarray(b * SEALED_BLOCK_BYTES, (b + 1) * SEALED_BLOCK_BYTES);
    try {
      out.set(gcm(key, blockNonce(b), blockAad(segmentId, b, b === blocks - 1)).decrypt(chunk), b * AEAD_BLOCK_BYTES);
    } catch (error) {
      throw new DstorError("DECRYPT_FAILED", `segment data failed authentication at block ${b}`, { cause: error, details: { block: b } });
    }
  }
  return out;
}

