/**
 * libp2p protocol ids of dstor. The trailing number is the protocol's major
 * version: a change that an old peer cannot parse gets a new id (and both are
 * served during a transition), while the `v` field inside each message lets a
 * peer answer `UNSUPPORTED_VERSION` instead of failing obscurely.
 */
import {
  AUDIT_STREAM_TIMEOUT_MS,
  DELETE_STREAM_TIMEOUT_MS,
  GET_STREAM_TIMEOUT_MS,
  INFO_STREAM_TIMEOUT_MS,
  PUT_STREAM_TIMEOUT_MS,
} from "./limits.js";

/** Upload one piece under a put order. */
export const PIECE_PUT_PROTOCOL = "/dstor/piece/put/1";
/** Download a leaf-aligned range of a piece with a Merkle multiproof. */
export const PIECE_GET_PROTOCOL = "/dstor/piece/get/1";
/** Prove possession of one leaf of a piece. */
export const PIECE_AUDIT_PROTOCOL = "/dstor/piece/audit/1";
/** Delete a piece (farmer honours it once a co-signed deal state without it exists). */
export const PIECE_DELETE_PROTOCOL = "/dstor/piece/delete/1";
/** Ask a farmer who it is, what it offers and on which chain. */
export const NODE_INFO_PROTOCOL = "/dstor/node/info/1";

/** Every dstor protocol id. */
export const DSTOR_PROTOCOLS = [
  PIECE_PUT_PROTOCOL,
  PIECE_GET_PROTOCOL,
  PIECE_AUDIT_PROTOCOL,
  PIECE_DELETE_PROTOCOL,
  NODE_INFO_PROTOCOL,
] as const;

/** One dstor protocol id. */
export type DstorProtocolId = (typeof DSTOR_PROTOCOLS)[number];

/** Whole-stream deadline of each protocol, in ms (see limits.ts for why). */
export const PROTOCOL_TIMEOUT_MS: Readonly<Record<DstorProtocolId, number>> = {
  [PIECE_PUT_PROTOCOL]: PUT_STREAM_TIMEOUT_MS,
  [PIECE_GET_PROTOCOL]: GET_STREAM_TIMEOUT_MS,
  [PIECE_AUDIT_PROTOCOL]: AUDIT_STREAM_TIMEOUT_MS,
  [PIECE_DELETE_PROTOCOL]: DELETE_STREAM_TIMEOUT_MS,
  [NODE_INFO_PROTOCOL]: INFO_STREAM_TIMEOUT_MS,
};

/** True when `id` is one of the dstor protocol ids. */
export function isDstorProtocolId(id: unknown): id is DstorProtocolId {
  return typeof id === "string" && (DSTOR_PROTOCOLS as readonly string[]).includes(id);
}
