/**
 * Streaming over whole files with bounded memory: a file of any size is cut
 * into fixed-size segments as bytes arrive, and each segment is encoded (or
 * decoded) only when the consumer asks for it, so at most one segment's
 * plaintext and its pieces are held at a time by this layer. Callers that want
 * several segments in flight pull ahead explicitly (the renter's uploader).
 */
import { throwIfAborted } from "../core/abort.js";
import { assertArgument } from "../core/errors.js";
import type { BufferPool } from "../crypto/bytes.js";
import {
  decodeSegment,
  type EncodedSegment,
  encodeSegment,
  type FileSecrets,
  type SegmentPipelineComponents,
  type SegmentRecord,
} from "./segment.js";

/** Bytes-like chunks as Node streams and libp2p yield them. */
export type ByteChunk = Uint8Array;

/**
 * Bytes a segment buffer starts with: a stream that ends before filling it
 * (most files are small) never pays for zeroing and collecting a whole
 * segment-sized buffer; a longer one moves to a segment-sized buffer once,
 * copying at most this much again.
 */
export const FIRST_BUFFER_BYTES = 64 * 1024;

/**
 * Re-cuts a byte stream into segments of exactly `segmentSize` bytes (the
 * last may be shorter; an empty stream yields nothing). Each yielded buffer is
 * owned by the consumer: new, or with `pool`, a full-size buffer taken from it
 * (uninitialised there, but every yielded byte was written), which the
 * consumer may give back once done with it.
 */
export async function* segmentChunks(
  source: AsyncIterable<ByteChunk> | Iterable<ByteChunk>,
  segmentSize: number,
  options: { signal?: AbortSignal; pool?: BufferPool } = {},
): AsyncGenerator<Uint8Array> {
  assertArgument(Number.isSafeInteger(segmentSize) && segmentSize > 0, `segment size must be a positive integer, got ${segmentSize}`);
  const { pool } = options;
  const whole = (): Uint8Array => (pool === undefined ? new Uint8Array(segmentSize) : pool.take(segmentSize));
  let current: Uint8Array | undefined;
  let filled = 0;
  for await (const chunk of source) {
    throwIfAborted(options.signal);
    let offset = 0;
    while (offset < chunk.byteLength) {
      if (current === undefined) {
        const first = Math.min(segmentSize, Math.max(FIRST_BUFFER_BYTES, chunk.byteLength - offset));
        current = first === segmentSize ? whole() : new Uint8Array(first);
      } else if (filled === current.byteLength) {
        const grown = whole();
        grown.set(current.subarray(0, filled));
        current = grown;
      }
      const take = Math.min(current.byteLength - filled, chunk.byteLength - offset);
      current.set(chunk.subarray(offset, offset + take), filled);
      filled += take;
      offset += take;
      if (filled === segmentSize) {
        yield current;
        current = undefined;
        filled = 0;
      }
    }
  }
  if (current !== undefined && filled > 0) yield current.subarray(0, filled);
}

/** Encodes a byte stream segment by segment (see {@link encodeSegment}). */
export async function* encodeStream(
  components: SegmentPipelineComponents,
  secrets: FileSecrets,
  source: AsyncIterable<ByteChunk> | Iterable<ByteChunk>,
  segmentSize: number,
  options: { signal?: AbortSignal } = {},
): AsyncGenerator<EncodedSegment> {
  let index = 0;
  for await (const segment of segmentChunks(source, segmentSize, options)) {
    yield encodeSegment(components, secrets, index++, segment);
  }
}

/** Fetches at least k pieces of a segment, by piece number. */
export type PieceFetcher = (record: SegmentRecord, options: { signal?: AbortSignal }) => Promise<ReadonlyMap<number, Uint8Array>>;

/** Decodes segments in order, fetching each one's pieces only when reached. */
export async function* decodeStream(
  components: SegmentPipelineComponents,
  secrets: FileSecrets,
  records: Iterable<SegmentRecord> | AsyncIterable<SegmentRecord>,
  fetch: PieceFetcher,
  options: { signal?: AbortSignal } = {},
): AsyncGenerator<Uint8Array> {
  for await (const record of records) {
    throwIfAborted(options.signal);
    const pieces = await fetch(record, options);
    yield decodeSegment(components, secrets, record, pieces);
  }
}
