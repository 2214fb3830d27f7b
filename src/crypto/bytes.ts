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

/**
 * Reusable buffers of one size, for bulk data that is received, used and
 * dropped again and again (network batches, segments, fetched pieces). Fresh
 * memory costs a page fault per 4 KiB (dear on virtual machines), and fresh
 * Buffers count as external memory that drives V8 toward full GCs. Buffers
 * come back uninitialised. The pool keeps at most `maxBytes` of free
 * buffers, drops them when asked for another size, and, with `idleMs`,
 * when none was given back for that long (an idle process keeps no bulk memory).
 */
export class BufferPool {
  readonly #maxBytes: number;
  readonly #idleMs: number | undefined;
  readonly #allocate: (size: number) => Uint8Array;
  readonly #free: Uint8Array[] = [];
  #size = 0;
  #allocated = 0;
  #idle: NodeJS.Timeout | undefined;

  /** `allocate`: how a new buffer is made (default {@link uninitializedBytes}; e.g. aligned memory for direct I/O). */
  constructor(maxBytes: number, options: { idleMs?: number; allocate?: (size: number) => Uint8Array } = {}) {
    assertArgument(Number.isSafeInteger(maxBytes) && maxBytes >= 0, `maxBytes must be a non-negative integer, got ${maxBytes}`);
    assertArgument(options.idleMs === undefined || (Number.isFinite(options.idleMs) && options.idleMs > 0), "idleMs must be a positive number");
    this.#maxBytes = maxBytes;
    this.#idleMs = options.idleMs;
    this.#allocate = options.allocate ?? uninitializedBytes;
  }

  /** A buffer of `size` bytes, uninitialised, owned by the caller until {@link BufferPool.give}. */
  take(size: number): Uint8Array {
    if (size !== this.#size) {
      this.#free.length = 0;
      this.#size = size;
    }
    const reused = this.#free.pop();
    if (reused !== undefined) return reused;
    this.#allocated++;
    return this.#allocate(size);
  }

  /** Returns buffers {@link BufferPool.take} gave, once nothing reads or writes them any more. */
  give(buffers: Iterable<Uint8Array>): void {
    for (const buffer of buffers) {
      if (buffer.byteLength !== this.#size || (this.#free.length + 1) * this.#size > this.#maxBytes || this.#free.includes(buffer)) continue;
      this.#free.push(buffer);
    }
    if (this.#idleMs === undefined || this.#free.length === 0) return;
    if (this.#idle === undefined) {
      this.#idle = setTimeout(() => {
        this.#idle = undefined;
        this.#free.length = 0;
      }, this.#idleMs);
      this.#idle.unref();
    } else {
      this.#idle.refresh();
    }
  }

  /** Bytes held in free buffers. */
  get freeBytes(): number {
    return this.#free.length * this.#size;
  }

  /** Buffers {@link BufferPool.take} had to allocate because none was free (tests and status). */
  get allocated(): number {
    return this.#allocated;
  }
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
