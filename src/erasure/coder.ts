/**
 * The erasure coder: systematic Reed–Solomon over GF(2^8), in the spirit of
 * Storj's eestream but synchronous and pure (no I/O, no streams).
 *
 * Design notes
 * - Layout: a segment of L bytes is zero-padded to k·s with s = ceil(L/k) and
 *   cut into k chunks of s bytes; piece i < k IS chunk i, pieces k.. are parity.
 *   Byte b of every piece depends only on byte b of each chunk, so any byte
 *   range of the segment is rebuilt from the same range of any k pieces — this
 *   is what makes ranged reads (`decodeRange`) cheap. L itself is kept by the
 *   caller (segment metadata), never inside pieces.
 * - Decoding picks k pieces deterministically (data pieces first, then parity
 *   in index order), inverts the matching k×k sub-matrix of the encoding matrix
 *   and multiplies only the rows for chunks that are actually missing. The
 *   deterministic pick makes the bounded inverse cache hit for repeated
 *   erasure patterns (the common case: the same farmers are down).
 * - All bounds and sizes are validated here, at the boundary, with coded
 *   errors; kernels re-check shapes because native code must never see bad ones.
 */
import { DstorError } from "../core/errors.js";
import { uninitializedBytes } from "../crypto/bytes.js";
import type { Logger } from "../core/logging.js";
import { buildEncodingMatrix } from "./encoding-matrix.js";
import { gfInvertMatrix, gfMatMul } from "./gf256.js";
import type { GfKernel } from "./kernel.js";
import { type KernelChoice, selectKernel } from "./kernels.js";
import type { RedundancyStrategy } from "./strategy.js";
import { createRedundancyStrategy } from "./strategy.js";

/** Pieces handed to a decoder: by piece number in a Map, or a sparse array indexed by piece number. */
export type PieceSet = ReadonlyMap<number, Uint8Array> | readonly (Uint8Array | undefined)[];

/** Options of {@link createErasureCoder}. */
export interface ErasureCoderInit {
  /** Kernel to use; default `auto` (best native, else wasm, else ts). */
  kernel?: KernelChoice;
  /** Receives the one warning when `auto` cannot use the native addon. */
  logger?: Logger;
  /** Bound on cached decode matrices, in bytes of matrix data. Default 4 MiB. */
  decodeCacheBytes?: number;
}

/** A Reed–Solomon coder for one redundancy strategy. Synchronous, pure, reusable. */
export interface ErasureCoder {
  /** The strategy this coder was built for. */
  readonly strategy: RedundancyStrategy;
  /** Name of the kernel in use (`native-avx2`, `wasm`, `ts`, …). */
  readonly kernelName: string;
  /** Bytes in each piece of a segment of `segmentLength` bytes: ceil(segmentLength / k). */
  pieceSize(segmentLength: number): number;
  /**
   * Encodes a segment into `total` pieces of {@link pieceSize} bytes each.
   * The pieces are views into one fresh buffer (one allocation per segment).
   */
  encode(segment: Uint8Array): Uint8Array[];
  /**
   * Encodes into caller-owned pieces (`total` buffers of exactly
   * `pieceSize(segment.length)` bytes, not overlapping `segment`), allocating nothing.
   */
  encodeInto(segment: Uint8Array, pieces: readonly Uint8Array[]): void;
  /**
   * Fills the parity pieces in place: `pieces` are `total` non-overlapping
   * buffers of one size whose first k already hold the data chunks (zero
   * padded). Lets a caller lay a segment out once, straight into its pieces,
   * and encode without any copy or allocation.
   */
  encodeParity(pieces: readonly Uint8Array[]): void;
  /**
   * Rebuilds the original `segmentLength` bytes from any k pieces (more are
   * allowed; only k are read). Throws `ERASURE_TOO_FEW_PIECES` /
   * `ERASURE_SIZE_MISMATCH` / `ERASURE_INVALID_PARAMS`.
   *
   * `into`, if given, is a buffer of at least k × piece size bytes, not
   * overlapping any piece, to rebuild into instead of a fresh allocation; the
   * result is then a view into it (reusing one avoids first-touch page faults
   * on every segment).
   */
  decode(pieces: PieceSet, segmentLength: number, into?: Uint8Array): Uint8Array;
  /**
   * Rebuilds bytes [pieceOffset, pieceOffset+length) of data chunks — all k
   * by default, or only `chunks` (data chunk numbers) — one array of `length`
   * bytes per chunk, in order. Chunk i covers segment bytes [i·s, (i+1)·s).
   * `pieces` are either whole pieces (all the same size, ≥ pieceOffset+length)
   * or exactly the fetched ranges (all `length` bytes).
   */
  decodeRange(pieces: PieceSet, pieceOffset: number, length: number, chunks?: readonly number[]): Uint8Array[];
  /**
   * Which bytes of each piece a read of segment bytes [offset, offset+length)
   * needs: one covering piece range (fetch it from any k pieces) and the data
   * chunks it touches. A read within one chunk needs only that chunk's span;
   * one crossing a chunk boundary needs whole pieces.
   */
  pieceRangeFor(segmentLength: number, offset: number, length: number): PieceRange;
  /**
   * Segment bytes [offset, offset+length) from any k pieces, which are either
   * whole pieces or exactly the range {@link pieceRangeFor} returned.
   */
  decodeSegmentRange(pieces: PieceSet, segmentLength: number, offset: number, length: number): Uint8Array;
  /**
   * Rebuilds the pieces numbered `wanted` (data or parity) from any k whole
   * pieces of equal size — what repair uploads. Returns them in `wanted` order.
   */
  reconstruct(pieces: PieceSet, wanted: readonly number[]): Uint8Array[];
}

/** The piece bytes a segment range read needs (see {@link ErasureCoder.pieceRangeFor}). */
export interface PieceRange {
  /** First byte to fetch from each piece. */
  readonly pieceOffset: number;
  /** Bytes to fetch from each piece. */
  readonly length: number;
  /** Data chunks (= data piece numbers) the read touches, ascending. */
  readonly chunks: readonly number[];
}

const DEFAULT_DECODE_CACHE_BYTES = 4 * 1024 * 1024;

/** Creates an {@link ErasureCoder} for `strategy` (a validated strategy or its init). */
export function createErasureCoder(
  strategy: RedundancyStrategy | { k: number; repair?: number; optimal?: number; total?: number },
  init: ErasureCoderInit = {},
): ErasureCoder {
  const s = createRedundancyStrategy(strategy);
  const kernel = selectKernel(init.kernel ?? "auto", init.logger);
  return new ReedSolomonCoder(s, kernel, init.decodeCacheBytes ?? DEFAULT_DECODE_CACHE_BYTES);
}

class ReedSolomonCoder implements ErasureCoder {
  readonly strategy: RedundancyStrategy;
  readonly #kernel: GfKernel;
  readonly #k: number;
  readonly #n: number;
  readonly #matrix: Uint8Array;
  readonly #parityMatrix: Uint8Array;
  readonly #inverseCache = new Map<string, Uint8Array>();
  readonly #maxCachedInverses: number;

  constructor(strategy: RedundancyStrategy, kernel: GfKernel, decodeCacheBytes: number) {
    this.strategy = strategy;
    this.#kernel = kernel;
    this.#k = strategy.k;
    this.#n = strategy.total;
    this.#matrix = buildEncodingMatrix(this.#k, this.#n);
    this.#parityMatrix = this.#matrix.subarray(this.#k * this.#k);
    this.#maxCachedInverses = Math.max(1, Math.floor(decodeCacheBytes / (this.#k * this.#k)));
  }

  get kernelName(): string {
    return this.#kernel.name;
  }

  pieceSize(segmentLength: number): number {
    if (!Number.isSafeInteger(segmentLength) || segmentLength < 0) {
      throw new DstorError("ERASURE_INVALID_PARAMS", `segment length must be a whole number of bytes ≥ 0, got ${segmentLength}`);
    }
    return Math.ceil(segmentLength / this.#k);
  }

  encode(segment: Uint8Array): Uint8Array[] {
    assertBytes(segment, "segment");
    const size = this.pieceSize(segment.length);
    const backing = new Uint8Array(size * this.#n);
    backing.set(segment); // data chunks in place; the padding tail stays zero
    const pieces: Uint8Array[] = [];
    for (let i = 0; i < this.#n; i++) pieces.push(backing.subarray(i * size, (i + 1) * size));
    this.#encodeParity(pieces, size);
    return pieces;
  }

  encodeInto(segment: Uint8Array, pieces: readonly Uint8Array[]): void {
    assertBytes(segment, "segment");
    const size = this.pieceSize(segment.length);
    this.#checkPieceBuffers(pieces, size, segment);
    for (let i = 0; i < this.#k; i++) {
      const piece = pieces[i]!;
      const from = Math.min(i * size, segment.length);
      const to = Math.min((i + 1) * size, segment.length);
      piece.set(segment.subarray(from, to));
      piece.fill(0, to - from);
    }
    this.#encodeParity(pieces, size);
  }

  encodeParity(pieces: readonly Uint8Array[]): void {
    const size = Array.isArray(pieces) && pieces[0] instanceof Uint8Array ? pieces[0].length : 0;
    this.#checkPieceBuffers(pieces, size, undefined);
    this.#encodeParity(pieces, size);
  }

  /** Validates `total` equal-size, mutually non-overlapping piece buffers (none overlapping `segment`). */
  #checkPieceBuffers(pieces: readonly Uint8Array[], size: number, segment: Uint8Array | undefined): void {
    if (!Array.isArray(pieces) || pieces.length !== this.#n) {
      throw new DstorError("ERASURE_SIZE_MISMATCH", `the encoder needs exactly ${this.#n} piece buffers`, {
        details: { expected: this.#n, got: Array.isArray(pieces) ? pieces.length : typeof pieces },
      });
    }
    pieces.forEach((piece, i) => {
      assertBytes(piece, `piece ${i}`);
      if (piece.length !== size) {
        throw new DstorError("ERASURE_SIZE_MISMATCH", `piece buffer ${i} has ${piece.length} bytes, expected ${size}`, {
          details: { piece: i, expected: size, got: piece.length },
        });
      }
      if (segment !== undefined && piece.buffer === segment.buffer && rangesOverlap(piece, segment)) {
        throw new DstorError("ERASURE_INVALID_PARAMS", `piece buffer ${i} overlaps the segment`);
      }
      // Overlapping outputs would silently produce garbage in the wasm/ts kernels.
      for (let j = 0; j < i; j++) {
        const other = pieces[j]!;
        if (other.buffer === piece.buffer && rangesOverlap(other, piece)) {
          throw new DstorError("ERASURE_INVALID_PARAMS", `piece buffers ${j} and ${i} overlap`);
        }
      }
    });
  }

  #encodeParity(pieces: readonly Uint8Array[], size: number): void {
    const parityCount = this.#n - this.#k;
    if (parityCount === 0 || size === 0) return;
    this.#kernel.matMul(this.#parityMatrix, parityCount, this.#k, pieces.slice(0, this.#k), pieces.slice(this.#k), 0, size);
  }

  decode(pieces: PieceSet, segmentLength: number, into?: Uint8Array): Uint8Array {
    const size = this.pieceSize(segmentLength);
    const present = this.#collect(pieces, size);
    if (into !== undefined && (!(into instanceof Uint8Array) || into.byteLength < size * this.#k)) {
      throw new DstorError("ERASURE_INVALID_PARAMS", `the output buffer must hold at least ${size * this.#k} bytes`);
    }
    // Uninitialised is safe: every byte of the k chunks is copied or rebuilt.
    const out = into?.subarray(0, size * this.#k) ?? uninitializedBytes(size * this.#k);
    const chunks = new Map<number, Uint8Array>();
    for (let i = 0; i < this.#k; i++) chunks.set(i, out.subarray(i * size, (i + 1) * size));
    this.#rebuildData(present, chunks, 0, size);
    return out.subarray(0, segmentLength);
  }

  decodeRange(pieces: PieceSet, pieceOffset: number, length: number, chunks?: readonly number[]): Uint8Array[] {
    if (!Number.isSafeInteger(pieceOffset) || pieceOffset < 0 || !Number.isSafeInteger(length) || length < 0) {
      throw new DstorError("ERASURE_INVALID_PARAMS", `piece range must be whole numbers ≥ 0, got offset ${pieceOffset}, length ${length}`);
    }
    const wanted = chunks ?? [...Array(this.#k).keys()];
    if (!Array.isArray(wanted)) throw new DstorError("ERASURE_INVALID_PARAMS", "chunks must be an array of data chunk numbers");
    for (const c of wanted) {
      if (!Number.isInteger(c) || c < 0 || c >= this.#k) {
        throw new DstorError("ERASURE_INVALID_PARAMS", `data chunk number ${String(c)} is out of range 0..${this.#k - 1}`);
      }
    }
    const present = this.#collect(pieces, undefined);
    const pieceLength = present.values().next().value?.length ?? 0;
    let from = 0;
    if (pieceLength !== length) {
      // Whole pieces: read the range out of them.
      if (pieceOffset + length > pieceLength) {
        throw new DstorError(
          "ERASURE_SIZE_MISMATCH",
          `piece range [${pieceOffset}, ${pieceOffset + length}) exceeds the ${pieceLength}-byte pieces given`,
          { details: { pieceOffset, length, pieceLength } },
        );
      }
      from = pieceOffset;
    }
    const out = new Uint8Array(length * wanted.length);
    const targets = new Map<number, Uint8Array>();
    const results = wanted.map((chunk, i) => {
      const target = targets.get(chunk) ?? out.subarray(i * length, (i + 1) * length);
      targets.set(chunk, target);
      return target;
    });
    this.#rebuildData(present, targets, from, length);
    return results;
  }

  pieceRangeFor(segmentLength: number, offset: number, length: number): PieceRange {
    const size = this.pieceSize(segmentLength);
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > segmentLength) {
      throw new DstorError(
        "ERASURE_INVALID_PARAMS",
        `segment range [${offset}, ${offset + length}) is not inside the ${segmentLength}-byte segment`,
        { details: { offset, length, segmentLength } },
      );
    }
    if (length === 0) return { pieceOffset: 0, length: 0, chunks: [] };
    const first = Math.floor(offset / size);
    const last = Math.floor((offset + length - 1) / size);
    const chunks = [...Array(last - first + 1).keys()].map((i) => first + i);
    if (first === last) return { pieceOffset: offset - first * size, length, chunks };
    // Crossing a boundary: one chunk's tail and the next one's head together span the whole piece.
    return { pieceOffset: 0, length: size, chunks };
  }

  decodeSegmentRange(pieces: PieceSet, segmentLength: number, offset: number, length: number): Uint8Array {
    const size = this.pieceSize(segmentLength);
    const range = this.pieceRangeFor(segmentLength, offset, length);
    const out = new Uint8Array(length);
    if (length === 0) return out;
    const parts = this.decodeRange(pieces, range.pieceOffset, range.length, range.chunks);
    range.chunks.forEach((chunk, i) => {
      // Segment bytes of this chunk that the read wants, clipped to [offset, offset+length).
      const start = Math.max(offset, chunk * size);
      const end = Math.min(offset + length, (chunk + 1) * size);
      const inPart = start - chunk * size - range.pieceOffset;
      out.set(parts[i]!.subarray(inPart, inPart + (end - start)), start - offset);
    });
    return out;
  }

  reconstruct(pieces: PieceSet, wanted: readonly number[]): Uint8Array[] {
    if (!Array.isArray(wanted)) throw new DstorError("ERASURE_INVALID_PARAMS", "wanted must be an array of piece numbers");
    for (const w of wanted) this.#checkIndex(w);
    const present = this.#collect(pieces, undefined);
    const size = present.values().next().value?.length ?? 0;
    const results: Uint8Array[] = wanted.map(() => new Uint8Array(size));
    const missingRows: number[] = [];
    const missingOut: Uint8Array[] = [];
    wanted.forEach((w, i) => {
      const have = present.get(w);
      if (have !== undefined) results[i]!.set(have);
      else {
        missingRows.push(w);
        missingOut.push(results[i]!);
      }
    });
    if (missingRows.length === 0 || size === 0) return results;
    const chosen = this.#choose(present);
    const inverse = this.#inverse(chosen);
    // Row w of the encoding matrix times the inverse maps the chosen pieces straight to piece w.
    const rows = new Uint8Array(missingRows.length * this.#k);
    missingRows.forEach((w, i) => {
      rows.set(gfMatMul(this.#matrix.subarray(w * this.#k, (w + 1) * this.#k), 1, this.#k, inverse, this.#k), i * this.#k);
    });
    this.#kernel.matMul(
      rows,
      missingRows.length,
      this.#k,
      chosen.map((i) => present.get(i)!),
      missingOut,
      0,
      size,
    );
    return results;
  }

  /**
   * Fills each `targets` entry (data chunk number → buffer of `length` bytes)
   * with that chunk's bytes [from, from+length), copied from its piece when
   * present, else rebuilt from k pieces in one kernel call.
   */
  #rebuildData(present: Map<number, Uint8Array>, targets: Map<number, Uint8Array>, from: number, length: number): void {
    const missing: number[] = [];
    for (const [chunk, target] of targets) {
      const piece = present.get(chunk);
      if (piece === undefined) missing.push(chunk);
      else target.set(piece.subarray(from, from + length));
    }
    if (missing.length === 0 || length === 0) return;
    const chosen = this.#choose(present);
    const inverse = this.#inverse(chosen);
    const rows = new Uint8Array(missing.length * this.#k);
    missing.forEach((chunk, r) => {
      rows.set(inverse.subarray(chunk * this.#k, (chunk + 1) * this.#k), r * this.#k);
    });
    this.#kernel.matMul(
      rows,
      missing.length,
      this.#k,
      chosen.map((i) => present.get(i)!.subarray(from, from + length)),
      missing.map((chunk) => targets.get(chunk)!),
      0,
      length,
    );
  }

  /** The k piece numbers used to decode: data pieces first, then parity, ascending. */
  #choose(present: Map<number, Uint8Array>): number[] {
    const indices = [...present.keys()].sort((a, b) => a - b);
    return indices.slice(0, this.#k);
  }

  /** Inverse of the encoding-matrix rows `chosen`, from a bounded LRU cache. */
  #inverse(chosen: number[]): Uint8Array {
    const key = chosen.join(",");
    const hit = this.#inverseCache.get(key);
    if (hit !== undefined) {
      this.#inverseCache.delete(key); // re-insert: Map order is recency order
      this.#inverseCache.set(key, hit);
      return hit;
    }
    const sub = new Uint8Array(this.#k * this.#k);
    chosen.forEach((row, i) => {
      sub.set(this.#matrix.subarray(row * this.#k, (row + 1) * this.#k), i * this.#k);
    });
    const inverse = gfInvertMatrix(sub, this.#k);
    if (this.#inverseCache.size >= this.#maxCachedInverses) {
      const oldest = this.#inverseCache.keys().next().value;
      if (oldest !== undefined) this.#inverseCache.delete(oldest);
    }
    this.#inverseCache.set(key, inverse);
    return inverse;
  }

  #checkIndex(index: number): void {
    if (!Number.isInteger(index) || index < 0 || index >= this.#n) {
      throw new DstorError("ERASURE_INVALID_PARAMS", `piece number ${String(index)} is out of range: pieces are numbered 0..${this.#n - 1}`, {
        details: { index, total: this.#n },
      });
    }
  }

  /**
   * Validates a {@link PieceSet} into a Map of present pieces: numbers in
   * range, all the same size (`expectedSize` if given), at least k of them.
   */
  #collect(pieces: PieceSet, expectedSize: number | undefined): Map<number, Uint8Array> {
    const present = new Map<number, Uint8Array>();
    const add = (index: number, piece: Uint8Array | undefined): void => {
      if (piece === undefined) return;
      this.#checkIndex(index);
      assertBytes(piece, `piece ${index}`);
      const size = expectedSize ?? present.values().next().value?.length ?? piece.length;
      if (piece.length !== size) {
        throw new DstorError(
          "ERASURE_SIZE_MISMATCH",
          `piece ${index} has ${piece.length} bytes but ${expectedSize === undefined ? "other pieces have" : "this segment needs"} ${size}`,
          { details: { piece: index, expected: size, got: piece.length } },
        );
      }
      present.set(index, piece);
    };
    if (pieces instanceof Map) for (const [index, piece] of pieces) add(index, piece);
    else if (Array.isArray(pieces)) {
      for (let index = 0; index < pieces.length; index++) add(index, pieces[index]);
    }
    else throw new DstorError("ERASURE_INVALID_PARAMS", "pieces must be a Map<number, Uint8Array> or an array indexed by piece number");
    if (present.size < this.#k) {
      throw new DstorError(
        "ERASURE_TOO_FEW_PIECES",
        `need ${this.#k} pieces to decode, got ${present.size}; fetch more pieces or repair from another source`,
        { details: { needed: this.#k, got: present.size } },
      );
    }
    return present;
  }
}

function assertBytes(value: unknown, what: string): asserts value is Uint8Array {
  if (!(value instanceof Uint8Array)) {
    throw new DstorError("ERASURE_INVALID_PARAMS", `${what} must be a Uint8Array, got ${value === null ? "null" : typeof value}`);
  }
}

function rangesOverlap(a: Uint8Array, b: Uint8Array): boolean {
  return a.byteOffset < b.byteOffset + b.byteLength && b.byteOffset < a.byteOffset + a.byteLength && a.length > 0 && b.length > 0;
}
