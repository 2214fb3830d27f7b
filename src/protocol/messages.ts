/**
 * Typed request and response messages of every dstor protocol.
 *
 * Each message is one JSON header frame (at most {@link MAX_HEADER_BYTES}),
 * followed on put requests and get responses by data frames. Decoders are
 * strict and hand-written: the frame is size-checked before parsing, the
 * version is checked before anything else (so a future `v: 2` message of a
 * different shape is `UNSUPPORTED_VERSION`, not "malformed"), unknown fields
 * are refused, and every field's type and spelling is checked (see
 * validate.ts). A decoder returns a fully typed value or throws a
 * `DstorError` with code `MESSAGE_MALFORMED`, `MESSAGE_TOO_LARGE` or
 * `UNSUPPORTED_VERSION` — nothing else, whatever the input (fuzz-tested).
 *
 * Encoders build the wire object and run the matching decoder over it, so a
 * value that would not survive the trip is refused on the sending side
 * (`INVALID_ARGUMENT`) instead of confusing the peer.
 *
 * Exchanges (→ request, ← response):
 * - put:    → PutRequest, data frames totalling `size` ← PutResponse
 * - get:    → GetRequest ← GetResponse, then data frames of the range
 * - audit:  → AuditRequest ← AuditResponse (leaf bytes inline, base64)
 * - delete: → DeleteRequest ← DeleteResponse
 * - info:   → InfoRequest ← InfoResponse
 */
import type { AbortOptions } from "../core/abort.js";
import { DstorError, type DstorErrorCode } from "../core/errors.js";
import { LEAF_SIZE_BYTES, multiproofLength } from "../crypto/merkle.js";
import { type ByteSink, type FrameReader, writeFrame } from "./codec.js";
import { HEADER_TIMEOUT_MS, MAX_HEADER_BYTES, MAX_PIECE_BYTES, MAX_PROOF_HASHES } from "./limits.js";
import { type Order, orderFromJson, orderToJson, parseOrderSignature } from "./orders.js";
import {
  base64,
  expectAddress,
  expectArray,
  expectBase64,
  expectHex,
  expectInteger,
  expectKeys,
  expectString,
  expectUintString,
  field,
  hasField,
  type JsonObject,
  jsonBytes,
  malformed,
  parseJsonObject,
  uintString,
} from "./validate.js";

/** The message format version this code speaks. */
export const PROTOCOL_VERSION = 1;

/** Longest error message carried on the wire, in characters. */
export const MAX_ERROR_MESSAGE_CHARS = 1000;

/** Fields common to every request that acts on a piece. */
export interface PieceRequestBase {
  readonly v: 1;
  /** The renter-signed order authorising this request. */
  readonly order: Order;
  /** EIP-712 signature over `order`: `0x` + 130 lowercase hex. */
  readonly signature: string;
  /** The piece: 64 lowercase hex characters. */
  readonly pieceId: string;
}

/** Upload a piece; `size` bytes of data frames follow. */
export interface PutRequest extends PieceRequestBase {
  /** Piece size in bytes (≤ {@link MAX_PIECE_BYTES}). */
  readonly size: number;
  /** Merkle root of the piece, declared up front: 64 lowercase hex characters. */
  readonly root: string;
}

/** Download a leaf-aligned range of a piece (the whole piece when both are absent). */
export interface GetRequest extends PieceRequestBase {
  /** First byte; a multiple of 1024 (default 0). */
  readonly offset?: number | undefined;
  /** Bytes wanted (≥ 1); the range must end on a leaf boundary or at the piece end (default: to the end). */
  readonly length?: number | undefined;
}

/** Prove one leaf of a piece. */
export interface AuditRequest extends PieceRequestBase {
  /** Index of the leaf to prove. */
  readonly leafIndex: number;
}

/** Delete a piece. */
export interface DeleteRequest extends PieceRequestBase {}

/** Ask a node about itself. */
export interface InfoRequest {
  readonly v: 1;
}

/** A refused or failed request. */
export interface ErrorResponse {
  readonly v: 1;
  readonly ok: false;
  /** Why; unknown codes from newer peers arrive as `INTERNAL`. */
  readonly code: DstorErrorCode;
  /** For people: what happened and what to do. */
  readonly message: string;
}

/** A successful put or delete. */
export interface OkResponse {
  readonly v: 1;
  readonly ok: true;
}

/** Answer to a put (after all data frames were received and checked). */
export type PutResponse = OkResponse | ErrorResponse;
/** Answer to a delete. */
export type DeleteResponse = OkResponse | ErrorResponse;

/** Header of a successful get; `rangeByteLength(size, startLeaf, endLeaf)` data bytes follow in data frames. */
export interface GetResponseOk {
  readonly v: 1;
  readonly ok: true;
  /** Piece size in bytes. */
  readonly size: number;
  /** Merkle root as stored, when the farmer sends it (the renter verifies against its own copy). */
  readonly root?: string | undefined;
  /** First leaf of the range. */
  readonly startLeaf: number;
  /** One past the last leaf of the range. */
  readonly endLeaf: number;
  /** Multiproof of [startLeaf, endLeaf), each 64 lowercase hex characters. */
  readonly proof: readonly string[];
  /** Leaves in the piece; always `leafCountOf(size)`. */
  readonly leafCount: number;
}

/** Answer to a get. */
export type GetResponse = GetResponseOk | ErrorResponse;

/** A successful audit. */
export interface AuditResponseOk {
  readonly v: 1;
  readonly ok: true;
  /** The leaf's bytes (≤ 1024; base64 on the wire). */
  readonly leaf: Uint8Array;
  /** Proof of the leaf, bottom-up, each 64 lowercase hex characters. */
  readonly proof: readonly string[];
  /** Leaves in the piece. */
  readonly leafCount: number;
}

/** Answer to an audit. */
export type AuditResponse = AuditResponseOk | ErrorResponse;

/** What a node says about itself. */
export interface InfoResponse {
  readonly v: 1;
  /** Software version, e.g. `0.1.0`. */
  readonly version: string;
  /** libp2p peer id (base58btc or base32 multibase). */
  readonly peerId: string;
  /** Wallet address: `0x` + 40 lowercase hex. */
  readonly wallet: string;
  /** Capacity offered, in bytes. */
  readonly capacity: bigint;
  /** Free capacity, in bytes. */
  readonly free: bigint;
  /** Price per TB-month in the token's smallest unit. */
  readonly priceTbMonth: bigint;
  /** EVM chain id the node works on. */
  readonly chainId: bigint;
}

// ---------------------------------------------------------------- helpers

/** Leaves of a piece of `size` bytes: max(1, ceil(size / 1024)). */
export function leafCountOf(size: number): number {
  return Math.max(1, Math.ceil(size / LEAF_SIZE_BYTES));
}

/** Bytes in leaves [startLeaf, endLeaf) of a piece of `size` bytes (the last leaf may be short). */
export function rangeByteLength(size: number, startLeaf: number, endLeaf: number): number {
  return Math.max(0, Math.min(size, endLeaf * LEAF_SIZE_BYTES) - startLeaf * LEAF_SIZE_BYTES);
}

/** A get request's range resolved against the piece's size. */
export interface ResolvedRange {
  /** First byte. */
  readonly start: number;
  /** One past the last byte. */
  readonly end: number;
  readonly startLeaf: number;
  /** One past the last leaf. */
  readonly endLeaf: number;
  readonly leafCount: number;
}

/**
 * Resolves a get's optional offset/length against a piece of `size` bytes:
 * leaf-aligned, non-empty (except the whole of an empty piece), inside the
 * piece, ending on a leaf boundary or at the piece end. `INVALID_ARGUMENT` otherwise.
 */
export function resolveGetRange(size: number, offset?: number, length?: number): ResolvedRange {
  const leafCount = leafCountOf(size);
  const start = offset ?? 0;
  if (!Number.isSafeInteger(start) || start < 0 || start % LEAF_SIZE_BYTES !== 0) {
    throw new DstorError("INVALID_ARGUMENT", `offset ${start} is not a multiple of ${LEAF_SIZE_BYTES}`);
  }
  if (size === 0) {
    // The empty piece has one empty leaf; only "all of it" makes sense.
    if (start !== 0 || (length !== undefined && length !== 0)) {
      throw new DstorError("INVALID_ARGUMENT", "the piece is empty; request it without offset and length");
    }
    return { start: 0, end: 0, startLeaf: 0, endLeaf: 1, leafCount };
  }
  if (start >= size) throw new DstorError("INVALID_ARGUMENT", `offset ${start} is past the end of the ${size}-byte piece`);
  const end = length === undefined ? size : start + length;
  if (!Number.isSafeInteger(end) || end <= start || end > size) {
    throw new DstorError("INVALID_ARGUMENT", `range [${start}, ${end}) is not a non-empty range inside the ${size}-byte piece`);
  }
  if (end % LEAF_SIZE_BYTES !== 0 && end !== size) {
    throw new DstorError("INVALID_ARGUMENT", `range end ${end} is neither a multiple of ${LEAF_SIZE_BYTES} nor the piece end`);
  }
  return { start, end, startLeaf: start / LEAF_SIZE_BYTES, endLeaf: Math.ceil(end / LEAF_SIZE_BYTES), leafCount };
}

/** Known error codes (a remote code outside this list decodes as `INTERNAL`). */
const WIRE_ERROR_CODES = [
  "INVALID_ARGUMENT",
  "INVALID_OPTION",
  "ABORTED",
  "TIMEOUT",
  "NOT_IMPLEMENTED",
  "INTERNAL",
  "MERKLE_PROOF_INVALID",
  "INTEGRITY_MISMATCH",
  "MESSAGE_MALFORMED",
  "MESSAGE_TOO_LARGE",
  "UNSUPPORTED_VERSION",
  "ORDER_EXPIRED",
  "ORDER_REPLAYED",
  "ORDER_BAD_SIGNATURE",
  "ORDER_WRONG_FARMER",
  "ORDER_WRONG_PIECE",
  "ORDER_WRONG_CHAIN",
  "ORDER_WRONG_ACTION",
  "ORDER_NO_DEAL",
  "PIECE_ID_INVALID",
  "PIECE_NOT_FOUND",
  "PIECE_EXISTS",
  "QUOTA_EXCEEDED",
  "DISK_FULL",
  "STORE_CLOSED",
  "STORE_CORRUPT",
  "CHAIN_UNAVAILABLE",
  "CHAIN_CALL_FAILED",
] as const satisfies readonly DstorErrorCode[];

const WIRE_ERROR_CODE_SET: ReadonlySet<string> = new Set(WIRE_ERROR_CODES);

function isWireErrorCode(code: string): code is (typeof WIRE_ERROR_CODES)[number] {
  return WIRE_ERROR_CODE_SET.has(code);
}

/** Checks `v` first: missing or not a number is malformed, a number other than 1 is unsupported. */
function expectVersion(o: JsonObject, what: string): 1 {
  const v = field(o, "v");
  if (typeof v !== "number" || !Number.isFinite(v)) throw malformed(what, "has no numeric version field v");
  if (v !== PROTOCOL_VERSION) {
    throw new DstorError("UNSUPPORTED_VERSION", `${what} has version ${v}; this node speaks version ${PROTOCOL_VERSION}. Upgrade the older side.`, {
      details: { version: v },
    });
  }
  return PROTOCOL_VERSION;
}

function parseHeader(bytes: Uint8Array, what: string, keys: readonly string[]): JsonObject {
  const o = parseJsonObject(bytes, MAX_HEADER_BYTES, what);
  expectVersion(o, what);
  expectKeys(o, keys, what);
  return o;
}

function encodeChecked<T>(wire: object, decode: (bytes: Uint8Array) => T, what: string): Uint8Array {
  const bytes = jsonBytes(wire);
  try {
    decode(bytes);
  } catch (error) {
    const code = error instanceof DstorError && error.code === "MESSAGE_TOO_LARGE" ? "MESSAGE_TOO_LARGE" : "INVALID_ARGUMENT";
    throw new DstorError(code, `cannot encode ${what}: ${(error as Error).message}`, { cause: error });
  }
  return bytes;
}

const SIGNED_KEYS = ["v", "order", "signature", "pieceId"] as const;

function decodeSigned(o: JsonObject, what: string): PieceRequestBase {
  if (!hasField(o, "order")) throw malformed(what, "has no order");
  return {
    v: PROTOCOL_VERSION,
    order: orderFromJson(field(o, "order"), `${what}.order`),
    signature: parseOrderSignature(field(o, "signature"), `${what}.signature`),
    pieceId: expectHex(field(o, "pieceId"), 32, `${what}.pieceId`),
  };
}

function signedWire(m: PieceRequestBase): Record<string, unknown> {
  return { v: m.v, order: orderToJson(m.order), signature: m.signature, pieceId: m.pieceId };
}

const hash = (value: unknown, what: string): string => expectHex(value, 32, what);

// ---------------------------------------------------------------- errors

const ERROR_KEYS = ["v", "ok", "code", "message"] as const;

function decodeErrorFields(o: JsonObject, what: string): ErrorResponse {
  expectKeys(o, ERROR_KEYS, what);
  const code = expectString(field(o, "code"), 64, /^[A-Z][A-Z0-9_]*$/, `${what}.code`);
  const message = field(o, "message");
  if (typeof message !== "string" || message.length > MAX_ERROR_MESSAGE_CHARS * 4) throw malformed(`${what}.message`, "must be a short string");
  return isWireErrorCode(code)
    ? { v: PROTOCOL_VERSION, ok: false, code, message }
    : { v: PROTOCOL_VERSION, ok: false, code: "INTERNAL", message: `${code}: ${message}` };
}

/** `ok` must be a boolean; returns it. */
function expectOk(o: JsonObject, what: string): boolean {
  const ok = field(o, "ok");
  if (typeof ok !== "boolean") throw malformed(what, "must have a boolean ok field");
  return ok;
}

/**
 * The error response for `error`. A {@link DstorError} keeps its code and
 * message; anything else becomes `INTERNAL` with a generic message, so a
 * farmer never leaks internal details (paths, stack traces) to a peer.
 */
export function errorResponse(error: unknown): ErrorResponse {
  if (error instanceof DstorError && isWireErrorCode(error.code)) {
    return { v: PROTOCOL_VERSION, ok: false, code: error.code, message: error.message.slice(0, MAX_ERROR_MESSAGE_CHARS) };
  }
  return { v: PROTOCOL_VERSION, ok: false, code: "INTERNAL", message: "the node failed to handle the request; try another node or retry later" };
}

/** The {@link DstorError} a renter raises for an error response (details name the remote side). */
export function errorFromResponse(response: ErrorResponse, peer?: string): DstorError {
  return new DstorError(response.code, response.message, { details: { remote: true, ...(peer === undefined ? {} : { peer }) } });
}

function errorWire(m: ErrorResponse): Record<string, unknown> {
  return { v: m.v, ok: false, code: m.code, message: m.message.slice(0, MAX_ERROR_MESSAGE_CHARS) };
}

// ---------------------------------------------------------------- put

const PUT_KEYS = [...SIGNED_KEYS, "size", "root"] as const;

/** Decodes a put request header. */
export function decodePutRequest(bytes: Uint8Array): PutRequest {
  const what = "put request";
  const o = parseHeader(bytes, what, PUT_KEYS);
  const base = decodeSigned(o, what);
  const size = field(o, "size");
  if (typeof size === "number" && Number.isSafeInteger(size) && size > MAX_PIECE_BYTES) {
    throw new DstorError("MESSAGE_TOO_LARGE", `a ${size}-byte piece is over the ${MAX_PIECE_BYTES}-byte limit`, { details: { size } });
  }
  return { ...base, size: expectInteger(size, 0, MAX_PIECE_BYTES, `${what}.size`), root: hash(field(o, "root"), `${what}.root`) };
}

/** Encodes a put request header. */
export function encodePutRequest(m: PutRequest): Uint8Array {
  return encodeChecked({ ...signedWire(m), size: m.size, root: m.root }, decodePutRequest, "put request");
}

/** Decodes a put response. */
export function decodePutResponse(bytes: Uint8Array): PutResponse {
  return decodeOkOrError(bytes, "put response");
}

/** Encodes a put response. */
export function encodePutResponse(m: PutResponse): Uint8Array {
  return encodeChecked(m.ok ? { v: m.v, ok: true } : errorWire(m), decodePutResponse, "put response");
}

function decodeOkOrError(bytes: Uint8Array, what: string): OkResponse | ErrorResponse {
  const o = parseJsonObject(bytes, MAX_HEADER_BYTES, what);
  expectVersion(o, what);
  if (!expectOk(o, what)) return decodeErrorFields(o, what);
  expectKeys(o, ["v", "ok"], what);
  return { v: PROTOCOL_VERSION, ok: true };
}

// ---------------------------------------------------------------- get

const GET_KEYS = [...SIGNED_KEYS, "offset", "length"] as const;

/** Decodes a get request header (range alignment against the piece size is checked by {@link resolveGetRange}). */
export function decodeGetRequest(bytes: Uint8Array): GetRequest {
  const what = "get request";
  const o = parseHeader(bytes, what, GET_KEYS);
  const base = decodeSigned(o, what);
  let offset: number | undefined;
  let length: number | undefined;
  if (hasField(o, "offset")) {
    offset = expectInteger(field(o, "offset"), 0, MAX_PIECE_BYTES, `${what}.offset`);
    if (offset % LEAF_SIZE_BYTES !== 0) throw malformed(`${what}.offset`, `must be a multiple of ${LEAF_SIZE_BYTES}`);
  }
  if (hasField(o, "length")) length = expectInteger(field(o, "length"), 1, MAX_PIECE_BYTES, `${what}.length`);
  return { ...base, ...(offset === undefined ? {} : { offset }), ...(length === undefined ? {} : { length }) };
}

/** Encodes a get request header. */
export function encodeGetRequest(m: GetRequest): Uint8Array {
  const wire: Record<string, unknown> = signedWire(m);
  if (m.offset !== undefined) wire.offset = m.offset;
  if (m.length !== undefined) wire.length = m.length;
  return encodeChecked(wire, decodeGetRequest, "get request");
}

const GET_OK_KEYS = ["v", "ok", "size", "root", "startLeaf", "endLeaf", "proof", "leafCount"] as const;

/**
 * Decodes a get response header. Checks that the range lies in the piece,
 * that leafCount matches size and that the proof has exactly the length a
 * multiproof of that range must have.
 */
export function decodeGetResponse(bytes: Uint8Array): GetResponse {
  const what = "get response";
  const o = parseJsonObject(bytes, MAX_HEADER_BYTES, what);
  expectVersion(o, what);
  if (!expectOk(o, what)) return decodeErrorFields(o, what);
  expectKeys(o, GET_OK_KEYS, what);
  const size = expectInteger(field(o, "size"), 0, MAX_PIECE_BYTES, `${what}.size`);
  const leafCount = expectInteger(field(o, "leafCount"), 1, leafCountOf(MAX_PIECE_BYTES), `${what}.leafCount`);
  if (leafCount !== leafCountOf(size)) throw malformed(`${what}.leafCount`, `must be ${leafCountOf(size)} for a ${size}-byte piece`);
  const startLeaf = expectInteger(field(o, "startLeaf"), 0, leafCount - 1, `${what}.startLeaf`);
  const endLeaf = expectInteger(field(o, "endLeaf"), startLeaf + 1, leafCount, `${what}.endLeaf`);
  const proof = expectArray(field(o, "proof"), MAX_PROOF_HASHES, `${what}.proof`, hash);
  const expected = multiproofLength(leafCount, startLeaf, endLeaf);
  if (proof.length !== expected) throw malformed(`${what}.proof`, `must hold ${expected} hashes for leaves [${startLeaf}, ${endLeaf}) of ${leafCount}`);
  const root = hasField(o, "root") ? hash(field(o, "root"), `${what}.root`) : undefined;
  return { v: PROTOCOL_VERSION, ok: true, size, ...(root === undefined ? {} : { root }), startLeaf, endLeaf, proof, leafCount };
}

/** Encodes a get response header. */
export function encodeGetResponse(m: GetResponse): Uint8Array {
  if (!m.ok) return encodeChecked(errorWire(m), decodeGetResponse, "get response");
  const wire: Record<string, unknown> = { v: m.v, ok: true, size: m.size };
  if (m.root !== undefined) wire.root = m.root;
  Object.assign(wire, { startLeaf: m.startLeaf, endLeaf: m.endLeaf, proof: m.proof, leafCount: m.leafCount });
  return encodeChecked(wire, decodeGetResponse, "get response");
}

// ---------------------------------------------------------------- audit

const AUDIT_KEYS = [...SIGNED_KEYS, "leafIndex"] as const;

/** Decodes an audit request. */
export function decodeAuditRequest(bytes: Uint8Array): AuditRequest {
  const what = "audit request";
  const o = parseHeader(bytes, what, AUDIT_KEYS);
  const base = decodeSigned(o, what);
  return { ...base, leafIndex: expectInteger(field(o, "leafIndex"), 0, leafCountOf(MAX_PIECE_BYTES) - 1, `${what}.leafIndex`) };
}

/** Encodes an audit request. */
export function encodeAuditRequest(m: AuditRequest): Uint8Array {
  return encodeChecked({ ...signedWire(m), leafIndex: m.leafIndex }, decodeAuditRequest, "audit request");
}

const AUDIT_OK_KEYS = ["v", "ok", "leaf", "proof", "leafCount"] as const;

/**
 * Decodes an audit response. The proof's exact length depends on the leaf
 * index, which the caller knows: verify it with the crypto module's
 * `verifyMerkleProof`, which rejects any other length.
 */
export function decodeAuditResponse(bytes: Uint8Array): AuditResponse {
  const what = "audit response";
  const o = parseJsonObject(bytes, MAX_HEADER_BYTES, what);
  expectVersion(o, what);
  if (!expectOk(o, what)) return decodeErrorFields(o, what);
  expectKeys(o, AUDIT_OK_KEYS, what);
  return {
    v: PROTOCOL_VERSION,
    ok: true,
    leaf: expectBase64(field(o, "leaf"), LEAF_SIZE_BYTES, `${what}.leaf`),
    proof: expectArray(field(o, "proof"), MAX_PROOF_HASHES, `${what}.proof`, hash),
    leafCount: expectInteger(field(o, "leafCount"), 1, leafCountOf(MAX_PIECE_BYTES), `${what}.leafCount`),
  };
}

/** Encodes an audit response. */
export function encodeAuditResponse(m: AuditResponse): Uint8Array {
  if (!m.ok) return encodeChecked(errorWire(m), decodeAuditResponse, "audit response");
  return encodeChecked({ v: m.v, ok: true, leaf: base64(m.leaf), proof: m.proof, leafCount: m.leafCount }, decodeAuditResponse, "audit response");
}

// ---------------------------------------------------------------- delete

/** Decodes a delete request. */
export function decodeDeleteRequest(bytes: Uint8Array): DeleteRequest {
  const what = "delete request";
  return decodeSigned(parseHeader(bytes, what, SIGNED_KEYS), what);
}

/** Encodes a delete request. */
export function encodeDeleteRequest(m: DeleteRequest): Uint8Array {
  return encodeChecked(signedWire(m), decodeDeleteRequest, "delete request");
}

/** Decodes a delete response. */
export function decodeDeleteResponse(bytes: Uint8Array): DeleteResponse {
  return decodeOkOrError(bytes, "delete response");
}

/** Encodes a delete response. */
export function encodeDeleteResponse(m: DeleteResponse): Uint8Array {
  return encodeChecked(m.ok ? { v: m.v, ok: true } : errorWire(m), decodeDeleteResponse, "delete response");
}

// ---------------------------------------------------------------- info

/** Decodes an info request (`{ "v": 1 }`). */
export function decodeInfoRequest(bytes: Uint8Array): InfoRequest {
  parseHeader(bytes, "info request", ["v"]);
  return { v: PROTOCOL_VERSION };
}

/** Encodes an info request. */
export function encodeInfoRequest(m: InfoRequest = { v: PROTOCOL_VERSION }): Uint8Array {
  return encodeChecked({ v: m.v }, decodeInfoRequest, "info request");
}

const INFO_KEYS = ["v", "version", "peerId", "wallet", "capacity", "free", "priceTbMonth", "chainId"] as const;
const VERSION_TEXT = /^[0-9A-Za-z.+-]+$/;
/** base58btc (legacy `Qm…`/`12D3…` peer ids) or base32 multibase CIDs (`b…`). */
const PEER_ID_TEXT = /^(?:[1-9A-HJ-NP-Za-km-z]+|b[a-z2-7]+)$/;

/** Decodes an info response. */
export function decodeInfoResponse(bytes: Uint8Array): InfoResponse {
  const what = "info response";
  const o = parseHeader(bytes, what, INFO_KEYS);
  return {
    v: PROTOCOL_VERSION,
    version: expectString(field(o, "version"), 64, VERSION_TEXT, `${what}.version`),
    peerId: expectString(field(o, "peerId"), 128, PEER_ID_TEXT, `${what}.peerId`),
    wallet: expectAddress(field(o, "wallet"), `${what}.wallet`),
    capacity: expectUintString(field(o, "capacity"), 64, `${what}.capacity`),
    free: expectUintString(field(o, "free"), 64, `${what}.free`),
    priceTbMonth: expectUintString(field(o, "priceTbMonth"), 256, `${what}.priceTbMonth`),
    chainId: expectUintString(field(o, "chainId"), 256, `${what}.chainId`),
  };
}

/** Encodes an info response. */
export function encodeInfoResponse(m: InfoResponse): Uint8Array {
  return encodeChecked(
    {
      v: m.v,
      version: m.version,
      peerId: m.peerId,
      wallet: m.wallet,
      capacity: uintString(m.capacity),
      free: uintString(m.free),
      priceTbMonth: uintString(m.priceTbMonth),
      chainId: uintString(m.chainId),
    },
    decodeInfoResponse,
    "info response",
  );
}

// ---------------------------------------------------------------- frames

/** Options of {@link readMessage} and {@link writeMessage}. */
export interface MessageIoOptions extends AbortOptions {
  /** Deadline for this header, in ms (default {@link HEADER_TIMEOUT_MS}). */
  timeoutMs?: number;
}

/**
 * Reads one header frame (≤ {@link MAX_HEADER_BYTES}, refused from its
 * prefix if larger) and decodes it with `decode`, e.g.
 * `await readMessage(reader, decodePutRequest)`.
 */
export async function readMessage<T>(reader: FrameReader, decode: (bytes: Uint8Array) => T, options: MessageIoOptions = {}): Promise<T> {
  const frame = await reader.readFrame({ signal: options.signal, timeoutMs: options.timeoutMs ?? HEADER_TIMEOUT_MS, maxBytes: MAX_HEADER_BYTES });
  return decode(frame);
}

/** Writes one encoded header frame, respecting backpressure. */
export async function writeMessage(sink: ByteSink, encoded: Uint8Array, options: MessageIoOptions = {}): Promise<void> {
  await writeFrame(sink, encoded, { signal: options.signal, timeoutMs: options.timeoutMs ?? HEADER_TIMEOUT_MS, maxBytes: MAX_HEADER_BYTES });
}
