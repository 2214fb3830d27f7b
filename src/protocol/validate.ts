/**
 * Hand-written validators for wire messages. Every decoder in this folder
 * goes through these, so "what is a well-formed field" is decided once: a
 * value is either returned with a precise TypeScript type or rejected with
 * `MESSAGE_MALFORMED` naming the field. Nothing of type `any` leaves here.
 *
 * Spelling rules (one value, one spelling — so signatures, keys and
 * comparisons never depend on case or padding):
 * - dstor hashes (piece ids, roots, proofs, serials) are lowercase hex with no
 *   `0x`, of an exact length;
 * - Ethereum values (addresses, signatures) are `0x` + lowercase hex;
 * - integers that may exceed 2^53 (chain ids, deal ids, uint64 fields, token
 *   amounts) are decimal strings without leading zeros; small sizes and
 *   indexes are JSON numbers that must be safe non-negative integers.
 */
import { DstorError } from "../core/errors.js";

/** A validated JSON object (own, enumerable string keys). */
export type JsonObject = Readonly<Record<string, unknown>>;

/** A `MESSAGE_MALFORMED` error about `what`. */
export function malformed(what: string, problem: string): DstorError {
  return new DstorError("MESSAGE_MALFORMED", `${what} ${problem}`);
}

const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
const utf8Encoder = new TextEncoder();

/**
 * Parses a JSON header frame: at most `maxBytes` (checked before decoding,
 * `MESSAGE_TOO_LARGE`), valid UTF-8, valid JSON, a plain object.
 */
export function parseJsonObject(bytes: Uint8Array, maxBytes: number, what: string): JsonObject {
  if (!(bytes instanceof Uint8Array)) throw malformed(what, "is not a byte array");
  if (bytes.byteLength > maxBytes) {
    throw new DstorError("MESSAGE_TOO_LARGE", `${what} is ${bytes.byteLength} bytes; at most ${maxBytes} are allowed`, {
      details: { length: bytes.byteLength, maxBytes },
    });
  }
  let text: string;
  let value: unknown;
  try {
    text = utf8.decode(bytes);
  } catch (error) {
    throw new DstorError("MESSAGE_MALFORMED", `${what} is not valid UTF-8`, { cause: error });
  }
  try {
    value = JSON.parse(text);
  } catch (error) {
    // SyntaxError, or RangeError for absurd nesting: both are a bad message.
    throw new DstorError("MESSAGE_MALFORMED", `${what} is not valid JSON`, { cause: error });
  }
  return expectObject(value, what);
}

/** Serializes a wire object to UTF-8 JSON. */
export function jsonBytes(value: unknown): Uint8Array {
  return utf8Encoder.encode(JSON.stringify(value));
}

/** `value` as a plain JSON object (not null, not an array). */
export function expectObject(value: unknown, what: string): JsonObject {
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw malformed(what, "must be a JSON object");
  return value as JsonObject;
}

/**
 * Rejects keys outside `allowed` (strict messages: a field we do not know is
 * a field we would silently ignore, and a new field means a new version).
 */
export function expectKeys(object: JsonObject, allowed: readonly string[], what: string): void {
  for (const key of Object.keys(object)) {
    if (!allowed.includes(key)) throw malformed(what, `has an unknown field ${JSON.stringify(key.slice(0, 40))}`);
  }
}

/** True when `object` has its own property `key` (ignores prototypes). */
export function hasField(object: JsonObject, key: string): boolean {
  return Object.hasOwn(object, key);
}

/** The own property `key` of `object`, or undefined. */
export function field(object: JsonObject, key: string): unknown {
  return Object.hasOwn(object, key) ? object[key] : undefined;
}

/** Lowercase hex, no `0x`, of exactly `bytes` bytes. */
export function expectHex(value: unknown, bytes: number, what: string): string {
  if (typeof value !== "string" || value.length !== bytes * 2 || !/^[0-9a-f]*$/.test(value)) {
    throw malformed(what, `must be ${bytes * 2} lowercase hex characters`);
  }
  return value;
}

/** `0x` + lowercase hex of exactly `bytes` bytes. */
export function expectPrefixedHex(value: unknown, bytes: number, what: string): string {
  if (typeof value !== "string" || value.length !== 2 + bytes * 2 || !/^0x[0-9a-f]*$/.test(value)) {
    throw malformed(what, `must be 0x followed by ${bytes * 2} lowercase hex characters`);
  }
  return value;
}

/** An Ethereum address: `0x` + 40 lowercase hex characters. */
export function expectAddress(value: unknown, what: string): string {
  return expectPrefixedHex(value, 20, what);
}

/** A safe integer in [min, max]. */
export function expectInteger(value: unknown, min: number, max: number, what: string): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < min || value > max) {
    throw malformed(what, `must be an integer in [${min}, ${max}]`);
  }
  return value;
}

/** A decimal string (no sign, no leading zeros) of an integer in [0, 2^bits). */
export function expectUintString(value: unknown, bits: number, what: string): bigint {
  // 78 digits hold any uint256; checking length first keeps BigInt() cheap.
  if (typeof value !== "string" || value.length > 78 || !/^(0|[1-9][0-9]*)$/.test(value)) {
    throw malformed(what, "must be a decimal string without sign or leading zeros");
  }
  const n = BigInt(value);
  if (n >= 1n << BigInt(bits)) throw malformed(what, `must fit in ${bits} bits`);
  return n;
}

/** Decimal string form of a non-negative bigint (the inverse of {@link expectUintString}). */
export function uintString(value: bigint): string {
  return value.toString(10);
}

/** A string of 1..maxLength characters matching `pattern`. */
export function expectString(value: unknown, maxLength: number, pattern: RegExp, what: string): string {
  if (typeof value !== "string" || value.length === 0 || value.length > maxLength || !pattern.test(value)) {
    throw malformed(what, "is not a well-formed string");
  }
  return value;
}

/** Canonical padded base64 of at most `maxBytes` bytes, decoded. */
export function expectBase64(value: unknown, maxBytes: number, what: string): Uint8Array {
  const maxChars = Math.ceil(maxBytes / 3) * 4;
  if (typeof value !== "string" || value.length > maxChars || value.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(value)) {
    throw malformed(what, "must be padded base64");
  }
  const bytes = Buffer.from(value, "base64");
  // Node's decoder is lenient (ignores stray bits); demand the one canonical spelling.
  if (bytes.toString("base64") !== value || bytes.byteLength > maxBytes) {
    throw malformed(what, `must be canonical base64 of at most ${maxBytes} bytes`);
  }
  return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** Base64 of `bytes`. */
export function base64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("base64");
}

/** An array of at most `maxItems` items, each validated by `item`. */
export function expectArray<T>(value: unknown, maxItems: number, what: string, item: (v: unknown, w: string) => T): T[] {
  if (!Array.isArray(value)) throw malformed(what, "must be an array");
  if (value.length > maxItems) throw malformed(what, `has more than ${maxItems} items`);
  const out: T[] = [];
  for (let i = 0; i < value.length; i++) out.push(item(value[i] as unknown, `${what}[${i}]`));
  return out;
}
