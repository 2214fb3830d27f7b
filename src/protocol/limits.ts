/**
 * Wire limits of the dstor protocols, with their units in their names. Every
 * number a remote peer could use to make us allocate, wait or work is bounded
 * here, in one place, so the farmer, the renter and the fuzz tests agree.
 *
 * Why these values:
 * - Headers are small JSON objects; the largest is a get answer with a
 *   multiproof (≤ 2·log2(leaves) hashes of 64 hex characters, ~2.5 KiB for a
 *   256 MiB piece), so 16 KiB leaves room without letting a peer park much
 *   memory per stream.
 * - Data frames are capped at 1 MiB: big enough that framing costs nothing,
 *   small enough that one frame of buffering per stream stays cheap.
 * - Orders live at most one hour: a serial must be remembered until its order
 *   expires, so the TTL bounds the replay database.
 */
import { KIB, MIB } from "../core/units.js";

/** Largest JSON header frame (request or response), in bytes. */
export const MAX_HEADER_BYTES = 16 * KIB;

/** Largest piece a farmer accepts, in bytes (a piece is one erasure-coded chunk of a segment). */
export const MAX_PIECE_BYTES = 256 * MIB;

/** Largest data frame payload, in bytes. */
export const MAX_FRAME_BYTES = 1 * MIB;

/**
 * Payload size writers use for data frames, in bytes: a multiple of the 1 KiB
 * Merkle leaf so frames line up with leaves, and small enough to interleave
 * well with other streams on a multiplexed connection.
 */
export const DATA_FRAME_BYTES = 256 * KIB;

/** Bytes in the length prefix of every frame (uint32, big-endian). */
export const FRAME_PREFIX_BYTES = 4;

/** Longest an order may stay valid, counted from the farmer's clock, in seconds. */
export const MAX_ORDER_TTL_SECONDS = 60 * 60;

/**
 * Most hashes a multiproof may carry. A 256 MiB piece has 2^18 leaves, and a
 * range multiproof holds at most two hashes per level (36); 64 leaves margin.
 */
export const MAX_PROOF_HASHES = 64;

/** Most streams one peer may have open to us at once, across all dstor protocols. */
export const MAX_CONCURRENT_STREAMS_PER_PEER = 16;

/** Time allowed for the request header to arrive after a stream opens, in ms. */
export const HEADER_TIMEOUT_MS = 10_000;

/**
 * Time allowed between two data frames, in ms. A stalled sender is cut off
 * after this even when the whole-stream deadline is far away.
 */
export const FRAME_IDLE_TIMEOUT_MS = 30_000;

/** Whole-stream deadline of a put (header, up to 256 MiB of data, answer), in ms. */
export const PUT_STREAM_TIMEOUT_MS = 10 * 60_000;

/** Whole-stream deadline of a get, in ms. */
export const GET_STREAM_TIMEOUT_MS = 10 * 60_000;

/** Whole-stream deadline of an audit (one leaf and its proof), in ms. */
export const AUDIT_STREAM_TIMEOUT_MS = 30_000;

/** Whole-stream deadline of a delete, in ms. */
export const DELETE_STREAM_TIMEOUT_MS = 30_000;

/** Whole-stream deadline of a node-info exchange, in ms. */
export const INFO_STREAM_TIMEOUT_MS = 10_000;
