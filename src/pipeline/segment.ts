/**
 * The data path of one segment, both ways.
 *
 *   plaintext ─► seal (AES-256-GCM, 64 KiB blocks, fresh salt) ─► erasure
 *   encode (k data + parity pieces) ─► one Merkle root per piece
 *
 *   k pieces ─► check each against its root ─► erasure decode ─► open
 *
 * Design notes.
 * - One allocation per segment holds all `total` pieces back to back. Since
 *   piece i < k is exactly chunk i of the (zero-padded) sealed segment, AES
 *   writes the ciphertext straight into the data pieces and the coder fills
 *   the parity pieces in place: the plaintext is read once and no byte is
 *   copied or zeroed twice.
 * - Every piece is hashed exactly once: its Merkle root is both its integrity
 *   hash (checked on every download) and the commitment audits prove against.
 * - Salt, plaintext length and piece roots are what metadata keeps per write;
 *   with the file key and file id they are all a reader needs.
 * - This module depends only on the narrow {@link SegmentCoder} and
 *   {@link PieceHasher} interfaces below; src/pipeline/index.ts composes them
 *   from src/erasure and src/crypto.
 */
import { DstorError } from "../core/errors.js";
import { openSegment, sealedLength, sealSegmentInto } from "../crypto/aead.js";
import { bytesEqual, uninitializedBytes } from "../crypto/bytes.js";
import { deriveSegmentKey, generateSegmentSalt, segmentId } from "../crypto/keys.js";
import { derivePieceId } from "../crypto/piece-id.js";

/** The erasure coder as the pipeline needs it. */
export interface SegmentCoder {
  /** k: pieces needed to decode; total: pieces produced by {@link encode}. */
  readonly strategy: { readonly k: number; readonly total: number };
  /** Bytes in each piece of a segment of `segmentLength` bytes. */
  pieceSize(segmentLength: number): number;
  /**
   * Fills the parity pieces in place; `pieces` are `total` equal buffers whose
   * first k already hold the data chunks.
   */
  encodeParity(pieces: readonly Uint8Array[]): void;
  /** Rebuilds the first `segmentLength` bytes from any k pieces (by piece number). */
  decode(pieces: ReadonlyMap<number, Uint8Array>, segmentLength: number): Uint8Array;
}

/** Computes piece Merkle roots (src/crypto/merkle.ts). */
export interface PieceHasher {
  /** The Merkle root of each piece, in order. */
  roots(pieces: readonly Uint8Array[]): Uint8Array[];
  /** The same off the event loop, when the hasher can (the pieces must not change until it settles). */
  rootsAsync?(pieces: readonly Uint8Array[]): Promise<Uint8Array[]>;
}

/** Components of the segment pipeline. */
export interface SegmentPipelineComponents {
  coder: SegmentCoder;
  hasher: PieceHasher;
}

/** The per-file secrets the pipeline needs (from encrypted metadata and the phrase). */
export interface FileSecrets {
  /** The file's random 32-byte key. */
  fileKey: Uint8Array;
  /** The file's random 16-byte id. */
  fileId: Uint8Array;
  /** The renter's piece-id key (from the phrase). */
  pieceIdKey: Uint8Array;
}

/** One piece of an encoded segment. */
export interface EncodedPiece {
  /** Piece number, 0 … total−1 (0 … k−1 are the data pieces). */
  number: number;
  /** The 32-byte piece id farmers know it by. */
  id: Uint8Array;
  /** The piece's Merkle root (integrity hash). */
  root: Uint8Array;
  /** The piece bytes. */
  data: Uint8Array;
}

/** What metadata keeps about one write of a segment. */
export interface SegmentRecord {
  /** Segment index within the file. */
  index: number;
  /** The fresh random salt of this write. */
  salt: Uint8Array;
  /** Plaintext bytes in the segment. */
  plaintextLength: number;
  /** Bytes in each piece. */
  pieceSize: number;
  /** Piece ids, by piece number. */
  pieceIds: Uint8Array[];
  /** Piece Merkle roots, by piece number. */
  pieceRoots: Uint8Array[];
}

/** An encoded segment: its record and the pieces to upload. */
export interface EncodedSegment {
  record: SegmentRecord;
  pieces: EncodedPiece[];
}

/** Options of {@link encodeSegment}. */
export interface EncodeSegmentOptions {
  /**
   * A buffer of at least {@link segmentLayoutBytes} bytes to lay the pieces
   * out in, instead of a fresh allocation. The returned pieces are views into
   * it: the caller may reuse it only once it is done with them. Reusing
   * buffers (a small pool, one per segment in flight) avoids first-touch page
   * faults, which otherwise cost as much as the encryption itself.
   */
  layout?: Uint8Array;
}

/** Bytes of the piece layout of a segment of `plaintextLength` bytes. */
export function segmentLayoutBytes(coder: SegmentCoder, plaintextLength: number): number {
  return coder.pieceSize(sealedLength(plaintextLength)) * coder.strategy.total;
}

/**
 * Seals and encodes one segment under a fresh salt. Every call draws a new
 * salt, so re-encoding the same segment never reuses a key.
 */
export function encodeSegment(
  components: SegmentPipelineComponents,
  secrets: FileSecrets,
  index: number,
  plaintext: Uint8Array,
  options: EncodeSegmentOptions = {},
): EncodedSegment {
  const laid = layOutSegment(components, secrets, index, plaintext, options);
  return describeSegment(laid, components.hasher.roots(laid.datas));
}

/**
 * {@link encodeSegment} with the pieces hashed off the event loop when the
 * hasher can (`rootsAsync`); sealing and parity stay synchronous. Same
 * result; the plaintext may be reused as soon as the promise exists.
 */
export async function encodeSegmentAsync(
  components: SegmentPipelineComponents,
  secrets: FileSecrets,
  index: number,
  plaintext: Uint8Array,
  options: EncodeSegmentOptions = {},
): Promise<EncodedSegment> {
  const laid = layOutSegment(components, secrets, index, plaintext, options);
  const { hasher } = components;
  return describeSegment(laid, hasher.rootsAsync === undefined ? hasher.roots(laid.datas) : await hasher.rootsAsync(laid.datas));
}

interface LaidOutSegment {
  index: number;
  salt: Uint8Array;
  id: Uint8Array;
  pieceIdKey: Uint8Array;
  plaintextLength: number;
  pieceSize: number;
  datas: Uint8Array[];
}

/** Seals `plaintext` into the layout and computes the parity pieces. */
function layOutSegment(
  components: SegmentPipelineComponents,
  secrets: FileSecrets,
  index: number,
  plaintext: Uint8Array,
  options: EncodeSegmentOptions,
): LaidOutSegment {
  const { coder } = components;
  const salt = generateSegmentSalt();
  const id = segmentId(secrets.fileId, index);
  const key = deriveSegmentKey(secrets.fileKey, index, salt);
  const { k, total } = coder.strategy;
  const sealedBytes = sealedLength(plaintext.byteLength);
  const pieceSize = coder.pieceSize(sealedBytes);
  const layoutBytes = pieceSize * total;
  let layout: Uint8Array;
  if (options.layout !== undefined) {
    if (!(options.layout instanceof Uint8Array) || options.layout.byteLength < layoutBytes) {
      throw new DstorError("INVALID_ARGUMENT", `the layout buffer must hold at least ${layoutBytes} bytes for this segment`);
    }
    layout = options.layout.subarray(0, layoutBytes);
  } else {
    // Uninitialised on purpose: AES writes [0, sealedBytes), the padding is
    // zeroed below and the coder writes every parity byte.
    layout = uninitializedBytes(layoutBytes);
  }
  sealSegmentInto(key, id, plaintext, layout.subarray(0, sealedBytes));
  layout.fill(0, sealedBytes, pieceSize * k);
  const datas: Uint8Array[] = [];
  for (let i = 0; i < total; i++) datas.push(layout.subarray(i * pieceSize, (i + 1) * pieceSize));
  coder.encodeParity(datas);
  return { index, salt, id, pieceIdKey: secrets.pieceIdKey, plaintextLength: plaintext.byteLength, pieceSize, datas };
}

function describeSegment(laid: LaidOutSegment, roots: Uint8Array[]): EncodedSegment {
  const pieces = laid.datas.map((data, number) => ({
    number,
    id: derivePieceId(laid.pieceIdKey, laid.id, laid.salt, number),
    root: roots[number]!,
    data,
  }));
  return {
    record: {
      index: laid.index,
      salt: laid.salt,
      plaintextLength: laid.plaintextLength,
      pieceSize: laid.pieceSize,
      pieceIds: pieces.map((p) => p.id),
      pieceRoots: roots,
    },
    pieces,
  };
}

/**
 * Verifies pieces against the record's roots, returning the good ones and
 * the numbers of the bad ones (wrong size or wrong root). A caller that gets
 * fewer than k good pieces fetches more from other farmers.
 */
export function verifyPieces(
  components: SegmentPipelineComponents,
  record: SegmentRecord,
  pieces: ReadonlyMap<number, Uint8Array>,
): { good: Map<number, Uint8Array>; bad: number[] } {
  const good = new Map<number, Uint8Array>();
  const bad: number[] = [];
  const numbers = [...pieces.keys()];
  const sized = numbers.filter((n) => {
    const ok = record.pieceRoots[n] !== undefined && pieces.get(n)!.byteLength === record.pieceSize;
    if (!ok) bad.push(n);
    return ok;
  });
  const roots = components.hasher.roots(sized.map((n) => pieces.get(n)!));
  sized.forEach((n, i) => {
    if (bytesEqual(roots[i]!, record.pieceRoots[n]!)) good.set(n, pieces.get(n)!);
    else bad.push(n);
  });
  return { good, bad };
}

/**
 * Rebuilds a segment's plaintext from any k pieces. Every piece is checked
 * against its Merkle root first; a bad piece gives `INTEGRITY_MISMATCH` naming
 * the bad piece numbers (use {@link verifyPieces} to skip them and fetch
 * others), too few gives `ERASURE_TOO_FEW_PIECES`, and anything that still
 * fails authentication gives `DECRYPT_FAILED`.
 */
export function decodeSegment(
  components: SegmentPipelineComponents,
  secrets: FileSecrets,
  record: SegmentRecord,
  pieces: ReadonlyMap<number, Uint8Array>,
): Uint8Array {
  const { good, bad } = verifyPieces(components, record, pieces);
  if (bad.length > 0) {
    throw new DstorError("INTEGRITY_MISMATCH", `pieces ${bad.join(", ")} of segment ${record.index} do not match their Merkle roots`, {
      details: { segment: record.index, badPieces: bad },
    });
  }
  if (good.size < components.coder.strategy.k) {
    throw new DstorError("ERASURE_TOO_FEW_PIECES", `segment ${record.index} needs ${components.coder.strategy.k} pieces, got ${good.size}`, {
      details: { segment: record.index, need: components.coder.strategy.k, have: good.size },
    });
  }
  const sealedBytes = sealedLength(record.plaintextLength);
  const sealed = components.coder.decode(good, sealedBytes);
  const key = deriveSegmentKey(secrets.fileKey, record.index, record.salt);
  return openSegment(key, segmentId(secrets.fileId, record.index), sealed);
}
