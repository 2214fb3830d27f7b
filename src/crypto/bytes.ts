/**
 * Small byte helpers shared by the crypto modules: fixed-width big-endian
 * integers, concatenation, strict hex and constant-time comparison. Kept here
 * so every HKDF `info` field and every AAD is built by the same code.
 */
import { timingSafeEqual } from "node:crypto";
import { assertArgument } from "../core/errors.js";

/**
 * A new `Uint8Array` of `length` bytes whose contents are NOT initialised
 * (no zero fill): only for buffers the caller overwrites completely before
 * anyone reads them. Unpooled, so it owns its whole ArrayBuffer.
 */
export function uninitializedBytes(length: number): Uint8Array {
  return new Uint8Array(Buffer.allocUnsafeSlow(length).buffer, 0, length);
}

/** Largest value a uint64 field may carry. */
const UINT64_MAX = (1n << 64n) - 1n;

/** Encodes `value` as 8 bytes, big-endian. Accepts safe integers and bigints in [0, 2^64). */
export function uint64be(value: number | bigint): Uint8Array {
  const v = toUint64(value, "value");
  const out = new Uint8Array(8);
  new DataView(out.buffer).setBigUint64(0, v, false);
  return out;
}

/** Validates and converts a uint64 given as number or bigint. */
export function toUint64(value: number | bigint, what: string): bigint {
  if (typeof value === "number") {
    assertArgument(Number.isSafeInteger(value) && value >= 0, `${what} must be a non-negative safe integer, got ${value}`);
    return BigInt(value);
  }
  assertArgument(typeof value === "bigint" && value >= 0n && value <= UINT64_MAX, `${what} must fit in a uint64, got ${String(value)}`);
  return value;
}

/** Encodes `value` as 2 bytes, big-endian. */
export function uint16be(value: number): Uint8Array {
  assertArgument(Number.isInteger(value) && value >= 0 && value <= 0xffff, `value must fit in a uint16, got ${value}`);
  return new Uint8Array([value >>> 8, value & 0xff]);
}

/** Concatenates byte arrays into one new array. */
export function concatBytes(...parts: Uint8Array[]): Uint8Array {
  let length = 0;
  for (const p of parts) length += p.byteLength;
  const out = new Uint8Array(length);
  let offset = 0;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.byteLength;
  }
  return out;
}

/** Lowercase hex of `bytes`. */
export function toHex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("hex");
}

/**
 * Parses lowercase or uppercase hex (no `0x`) strictly: even length, hex digits
 * only. Throws `INVALID_ARGUMENT` otherwise.
 */
export function fromHex(hex: string): Uint8Array {
  assertArgument(typeof hex === "string" && hex.length % 2 === 0 && /^[0-9a-fA-F]*$/.test(hex), "expected an even-length hex string");
  return new Uint8Array(Buffer.from(hex, "hex"));
}

/** Constant-time equality of two byte arrays (false when lengths differ). */
export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.byteLength !== b.byteLength) return false;
  return timingSafeEqual(a, b);
}

/** Throws `INVALID_ARGUMENT` unless `value` is a Uint8Array of exactly `length` bytes. */
export function assertBytes(value: unknown, length: number, what: string): asserts value is Uint8Array {
  assertArgument(value instanceof Uint8Array, `${what} must be a Uint8Array`);
  assertArgument(value.byteLength === length, `${what} must be ${length} bytes, got ${value.byteLength}`);
}
