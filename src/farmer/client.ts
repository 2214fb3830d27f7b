/**
 * The renter's side of the farmer protocols: one call per exchange (put, get,
 * audit, delete, info), each over a fresh libp2p stream, each with a
 * `signal` and a whole-exchange deadline.
 *
 * What the client guarantees to its caller:
 * - A farmer's refusal comes back as a {@link DstorError} carrying the
 *   farmer's code (details.remote = true), so callers branch on codes.
 * - `get` never returns unverified bytes: the range is checked against the
 *   root the renter already knows with the Merkle multiproof the farmer sent
 *   (`MERKLE_PROOF_INVALID` otherwise); `audit` likewise when given the root.
 * - `put` reads the answer while it uploads: a farmer that refuses early (bad
 *   order, quota) stops the upload at once instead of after 256 MiB.
 * - Every stream is closed or reset when the call returns or throws.
 */
import type { PeerId, Stream } from "@libp2p/interface";
import {
  decodeEgressVoucherResponse,
  EGRESS_VOUCHER_PROTOCOL,
  type EgressVoucherRequest,
  type EgressVoucherResponse,
  encodeEgressVoucherRequest,
  MAX_EGRESS_MESSAGE_BYTES,
} from "../protocol/egress.js";
import { type Multiaddr, multiaddr } from "@multiformats/multiaddr";
import { type AbortOptions, raceSignal } from "../core/abort.js";
import { DstorError, type DstorErrorCode } from "../core/errors.js";
import { verifyMerkleMultiproofAsync, verifyMerkleProof } from "../crypto/merkle.js";
import { type FarmerStream, withTransientReads } from "./service.js";
import { type ByteSource, FrameReader, readAllData, writeData, writeFrame } from "../protocol/codec.js";
import { DATA_FRAME_BYTES, MAX_PIECE_BYTES } from "../protocol/limits.js";
import {
  type AuditResponseOk,
  decodeAuditResponse,
  decodeDeleteResponse,
  decodeGetResponse,
  decodeInfoResponse,
  decodePutResponse,
  encodeAuditRequest,
  encodeDeleteRequest,
  encodeGetRequest,
  encodeInfoRequest,
  encodePutRequest,
  errorFromResponse,
  type InfoResponse,
  PROTOCOL_VERSION,
  rangeByteLength,
  readMessage,
  resolveGetRange,
  writeMessage,
} from "../protocol/messages.js";
import type { Order } from "../protocol/orders.js";
import {
  DEAL_SIGN_PROTOCOL,
  DEAL_SIGN_TIMEOUT_MS,
  type DealSignRequest,
  decodeDealSignResponse,
  encodeDealSignRequest,
  MAX_DEAL_SIGN_REQUEST_BYTES,
} from "./deal-sign.js";
import {
  isDstorProtocolId,
  NODE_INFO_PROTOCOL,
  PIECE_AUDIT_PROTOCOL,
  PIECE_DELETE_PROTOCOL,
  PIECE_GET_PROTOCOL,
  PIECE_PUT_PROTOCOL,
  PROTOCOL_TIMEOUT_MS,
} from "../protocol/protocols.js";

/** Where a farmer is: its PeerId (dialled via the peer store), a multiaddr, or a multiaddr string. */
export type FarmerTarget = PeerId | Multiaddr | string;

/** What the client needs from a libp2p node. */
export interface StreamDialer {
  dialProtocol(target: PeerId | Multiaddr | Multiaddr[], protocols: string | string[], options?: AbortOptions): Promise<Stream>;
}

/** Options of {@link FarmerClient}. */
export interface FarmerClientInit {
  /** The libp2p node to dial from. */
  node: StreamDialer;
  /** Whole-exchange deadlines per protocol, in ms (defaults from protocols.ts). */
  timeoutsMs?: Partial<Record<string, number>>;
}

/** Options of every client call. */
export type FarmerCallOptions = AbortOptions;

/** A signed order and the piece it is for. */
export interface SignedPieceRequest {
  order: Order;
  /** The renter's EIP-712 signature over `order`. */
  signature: string;
  /** 64 lowercase hex characters. */
  pieceId: string;
}

/** A put: the piece's size and Merkle root are declared up front. */
export interface PutPieceRequest extends SignedPieceRequest {
  size: number;
  /** Merkle root of the piece, 64 lowercase hex characters. */
  root: string;
}

/** A get: the root the renter knows (bytes are verified against it) and an optional leaf-aligned range. */
export interface GetPieceRequest extends SignedPieceRequest {
  /** The piece's Merkle root as the renter recorded it (64 lowercase hex). */
  root: string;
  /** The piece's size, when known: a farmer claiming another size is refused. */
  size?: number;
  /** First byte, a multiple of 1024. */
  offset?: number;
  /** Bytes wanted; the range must end on a leaf boundary or at the piece end. */
  length?: number;
  /** Receive into this buffer (at least the range's length; the result's data is then a view of it) instead of a new one. */
  into?: Uint8Array | undefined;
}

/** An audit of one leaf. */
export interface AuditPieceRequest extends SignedPieceRequest {
  leafIndex: number;
  /** When given, the answer's proof is verified against it (`MERKLE_PROOF_INVALID` otherwise). */
  root?: string;
}

/** Verified answer of a get. */
export interface GetPieceResult {
  /** The bytes of the requested range. */
  data: Uint8Array;
  /** The piece's size as the farmer reports it. */
  size: number;
  /** First byte of `data` within the piece. */
  offset: number;
}

/** Client for the farmer protocols; see the module comment. */
export class FarmerClient {
  readonly #node: StreamDialer;
  readonly #timeouts: Partial<Record<string, number>>;

  constructor(init: FarmerClientInit) {
    this.#node = init.node;
    this.#timeouts = init.timeoutsMs ?? {};
  }

  /**
   * Uploads a piece. `data` is the whole piece or an async iterable of its
   * chunks (any sizes; re-framed here). Resolves once the farmer has
   * verified the root and made the piece durable.
   */
  async put(target: FarmerTarget, request: PutPieceRequest, data: Uint8Array | AsyncIterable<Uint8Array>, options: FarmerCallOptions = {}): Promise<void> {
    if (!Number.isSafeInteger(request.size) || request.size < 0 || request.size > MAX_PIECE_BYTES) {
      throw new DstorError("INVALID_ARGUMENT", `piece size must be an integer in [0, ${MAX_PIECE_BYTES}]`);
    }
    await this.#exchange(target, PIECE_PUT_PROTOCOL, options, async (stream, reader, signal) => {
      const header = encodePutRequest({
        v: PROTOCOL_VERSION,
        order: request.order,
        signature: request.signature,
        pieceId: request.pieceId,
        size: request.size,
        root: request.root,
      });
      // The answer may arrive before we finish sending (an early refusal):
      // read it concurrently and stop uploading as soon as it is there.
      const upload = new AbortController();
      const uploadSignal = AbortSignal.any([signal, upload.signal]);
      // Transient reads (the answer is decoded before more is asked for) to
      // the farmer's end, which follows an OK at once (waiting for it lets a
      // pooled direct connection be reused at once, and its receive memory
      // recycled: src/node/bulk.ts).
      const answer = withTransientReads(stream as Partial<FarmerStream>, async () => {
        const response = await readMessage(reader, decodePutResponse, { signal, timeoutMs: this.#timeout(PIECE_PUT_PROTOCOL) });
        if (response.ok) await reader.readEnd({ signal }).catch(() => {});
        return response;
      });
      answer.then(
        () => upload.abort(new DstorError("ABORTED", "the farmer answered before the upload finished")),
        () => upload.abort(new DstorError("ABORTED", "the farmer's answer failed")),
      );
      let sent = 0;
      let uploadError: unknown;
      try {
        await writeMessage(stream, header, { signal: uploadSignal });
        const chunks: AsyncIterator<Uint8Array> =
          data instanceof Uint8Array
            ? (async function* () {
                yield data;
              })()
            : data[Symbol.asyncIterator]();
        try {
          for (;;) {
            // Raced against the upload's signal: a source that waits (a paced
            // put, src/renter/pacing.ts) must not hold up an early answer.
            const next = await raceSignal(chunks.next(), uploadSignal);
            if (next.done === true) break;
            const chunk = next.value;
            sent += chunk.byteLength;
            if (sent > request.size) throw new DstorError("INVALID_ARGUMENT", `the data is longer than the declared ${request.size} bytes`);
            await writeData(stream, chunk, { signal: uploadSignal, frameBytes: DATA_FRAME_BYTES });
          }
        } finally {
          // Ends the source at its next yield; a rejection there is the source's own business.
          void Promise.resolve(chunks.return?.()).catch(() => {});
        }
        if (sent !== request.size) throw new DstorError("INVALID_ARGUMENT", `the data is ${sent} bytes, not the declared ${request.size}`);
        await stream.close({ signal: uploadSignal });
      } catch (error) {
        uploadError = error;
      }
      let response: Awaited<typeof answer>;
      try {
        response = await answer;
      } catch (error) {
        // No answer: report why the upload stopped if it stopped on its own.
        if (uploadError !== undefined && !upload.signal.aborted) throw uploadError;
        throw error;
      }
      if (!response.ok) throw errorFromResponse(response, targetName(target));
      // An OK means the farmer received exactly `size` bytes with the declared
      // root and committed them. It can arrive while our half-close is still
      // in flight, which the early-answer abort above then interrupts: that
      // is not a failure of the upload.
      if (uploadError !== undefined && !upload.signal.aborted) throw uploadError;
    });
  }

  /** Downloads a whole piece or a leaf-aligned range and verifies it against `request.root`. */
  async get(target: FarmerTarget, request: GetPieceRequest, options: FarmerCallOptions = {}): Promise<GetPieceResult> {
    const root = hexBytes(request.root, "root");
    return this.#exchange(target, PIECE_GET_PROTOCOL, options, async (stream, reader, signal) => {
      await writeMessage(
        stream,
        encodeGetRequest({
          v: PROTOCOL_VERSION,
          order: request.order,
          signature: request.signature,
          pieceId: request.pieceId,
          offset: request.offset,
          length: request.length,
        }),
        { signal },
      );
      await stream.close({ signal });
      // Every read of the answer is transient (the header is decoded and the
      // bytes copied out before more is asked for), to the farmer's end: so a
      // transport that recycles its receive memory gets all of it back.
      const { header, range, data } = await withTransientReads(stream as Partial<FarmerStream>, async () => {
        const header = await readMessage(reader, decodeGetResponse, { signal, timeoutMs: this.#timeout(PIECE_GET_PROTOCOL) });
        if (!header.ok) throw errorFromResponse(header, targetName(target));
        if (request.size !== undefined && header.size !== request.size) {
          throw new DstorError("INTEGRITY_MISMATCH", `the farmer reports a ${header.size}-byte piece; ${request.size} bytes were stored`);
        }
        if (header.root !== undefined && header.root !== request.root) {
          throw new DstorError("INTEGRITY_MISMATCH", "the farmer holds a piece with another root under this id");
        }
        const range = resolveGetRange(header.size, request.offset, request.length);
        if (range.startLeaf !== header.startLeaf || range.endLeaf !== header.endLeaf) {
          throw new DstorError("MESSAGE_MALFORMED", "the farmer answered a different range than requested");
        }
        const data = await readAllData(reader, rangeByteLength(header.size, header.startLeaf, header.endLeaf), { signal, into: request.into });
        await reader.readEnd({ signal });
        return { header, range, data };
      });
      const proof = header.proof.map((h) => hexBytes(h, "proof hash"));
      // A whole piece is hashed on the thread pool: the event loop keeps receiving the others.
      if (!(await verifyMerkleMultiproofAsync(root, header.leafCount, header.startLeaf, data, proof))) {
        throw new DstorError("MERKLE_PROOF_INVALID", "the farmer's data does not match the piece's root; fetch it from another farmer");
      }
      return { data, size: header.size, offset: range.start };
    });
  }

  /** Asks for one leaf and its proof (verified when `request.root` is given). */
  async audit(target: FarmerTarget, request: AuditPieceRequest, options: FarmerCallOptions = {}): Promise<AuditResponseOk> {
    return this.#exchange(target, PIECE_AUDIT_PROTOCOL, options, async (stream, reader, signal) => {
      await writeMessage(
        stream,
        encodeAuditRequest({ v: PROTOCOL_VERSION, order: request.order, signature: request.signature, pieceId: request.pieceId, leafIndex: request.leafIndex }),
        { signal },
      );
      await stream.close({ signal });
      const answer = await readMessage(reader, decodeAuditResponse, { signal, timeoutMs: this.#timeout(PIECE_AUDIT_PROTOCOL) });
      if (!answer.ok) throw errorFromResponse(answer, targetName(target));
      if (request.root !== undefined) {
        const proof = answer.proof.map((h) => hexBytes(h, "proof hash"));
        if (!verifyMerkleProof(hexBytes(request.root, "root"), request.leafIndex, answer.leafCount, answer.leaf, proof)) {
          throw new DstorError("MERKLE_PROOF_INVALID", "the farmer's audit answer does not verify against the piece's root");
        }
      }
      return answer;
    });
  }

  /** Asks the farmer to delete a piece. */
  async delete(target: FarmerTarget, request: SignedPieceRequest, options: FarmerCallOptions = {}): Promise<void> {
    await this.#exchange(target, PIECE_DELETE_PROTOCOL, options, async (stream, reader, signal) => {
      await writeMessage(
        stream,
        encodeDeleteRequest({ v: PROTOCOL_VERSION, order: request.order, signature: request.signature, pieceId: request.pieceId }),
        { signal },
      );
      await stream.close({ signal });
      const answer = await readMessage(reader, decodeDeleteResponse, { signal, timeoutMs: this.#timeout(PIECE_DELETE_PROTOCOL) });
      if (!answer.ok) throw errorFromResponse(answer, targetName(target));
    });
  }

  /** What the farmer says about itself (version, capacity, free space, price, chain). */
  async info(target: FarmerTarget, options: FarmerCallOptions = {}): Promise<InfoResponse> {
    return this.#exchange(target, NODE_INFO_PROTOCOL, options, async (stream, reader, signal) => {
      await writeMessage(stream, encodeInfoRequest(), { signal });
      await stream.close({ signal });
      return readMessage(reader, decodeInfoResponse, { signal, timeoutMs: this.#timeout(NODE_INFO_PROTOCOL) });
    });
  }

  /**
   * Proposes a deal state (signed by the renter) and returns the farmer's
   * EIP-712 co-signature; the farmer confirms the listed pieces on success.
   */
  async signDealState(target: FarmerTarget, request: DealSignRequest, options: FarmerCallOptions = {}): Promise<string> {
    const encoded = encodeDealSignRequest(request);
    return this.#exchange(target, DEAL_SIGN_PROTOCOL, options, async (stream, reader, signal) => {
      await writeFrame(stream, encoded, { signal, maxBytes: MAX_DEAL_SIGN_REQUEST_BYTES });
      await stream.close({ signal });
      const frame = await reader.readFrame({ signal, timeoutMs: this.#timeout(DEAL_SIGN_PROTOCOL), maxBytes: 16 * 1024 });
      const answer = decodeDealSignResponse(frame);
      if (!answer.ok) {
        throw errorFromResponse({ v: PROTOCOL_VERSION, ok: false, code: answer.code as DstorErrorCode, message: answer.message }, targetName(target));
      }
      return answer.farmerSignature;
    });
  }

  /**
   * Hands `target` a cumulative egress voucher (`/dstor/deal/egress/1`);
   * resolves with the farmer's answer: its egress price and the newest
   * voucher it holds for the deal (checked by the caller).
   */
  async egressVoucher(target: FarmerTarget, request: EgressVoucherRequest, options: FarmerCallOptions = {}): Promise<Extract<EgressVoucherResponse, { ok: true }>> {
    const encoded = encodeEgressVoucherRequest(request);
    return this.#exchange(target, EGRESS_VOUCHER_PROTOCOL, options, async (stream, reader, signal) => {
      await writeFrame(stream, encoded, { signal, maxBytes: MAX_EGRESS_MESSAGE_BYTES });
      await stream.close({ signal });
      const answer = decodeEgressVoucherResponse(await reader.readFrame({ signal, timeoutMs: this.#timeout(EGRESS_VOUCHER_PROTOCOL), maxBytes: MAX_EGRESS_MESSAGE_BYTES }));
      if (!answer.ok) {
        throw errorFromResponse({ v: PROTOCOL_VERSION, ok: false, code: answer.code as DstorErrorCode, message: answer.message }, targetName(target));
      }
      return answer;
    });
  }

  /**
   * Opens a raw stream of `protocol` to `target` (tests and tools that need
   * to speak the wire format themselves). The caller must close or abort it.
   */
  async openStream(target: FarmerTarget, protocol: string, options: FarmerCallOptions = {}): Promise<Stream> {
    return this.#node.dialProtocol(resolveTarget(target), protocol, options);
  }

  #timeout(protocol: string): number {
    return this.#timeouts[protocol] ?? (isDstorProtocolId(protocol) ? PROTOCOL_TIMEOUT_MS[protocol] : DEAL_SIGN_TIMEOUT_MS);
  }

  /** Dials, runs `body` under the deadline, and always releases the stream. */
  async #exchange<T>(
    target: FarmerTarget,
    protocol: string,
    options: FarmerCallOptions,
    body: (stream: Stream, reader: FrameReader, signal: AbortSignal) => Promise<T>,
  ): Promise<T> {
    const timeoutMs = this.#timeout(protocol);
    const deadline = AbortSignal.timeout(timeoutMs);
    const signal = options.signal === undefined ? deadline : AbortSignal.any([options.signal, deadline]);
    let stream: Stream;
    try {
      stream = await this.#node.dialProtocol(resolveTarget(target), protocol, { signal });
    } catch (error) {
      if (error instanceof DstorError) throw error;
      if (signal.aborted) throw abortError(signal, protocol, timeoutMs);
      throw new DstorError("FARMER_UNREACHABLE", `could not open ${protocol} to ${targetName(target)}: ${(error as Error).message}`, { cause: error });
    }
    const reader = new FrameReader(stream as ByteSource);
    try {
      const result = await body(stream, reader, signal);
      // Our side is done: half-close it if the body did not (a put whose
      // answer came before its close). A no-op on a stream already closed.
      await stream.close({ signal }).catch(() => {});
      return result;
    } catch (error) {
      stream.abort(error instanceof Error ? error : new Error(String(error)));
      if (signal.aborted && !(error instanceof DstorError && error.details.remote === true)) throw abortError(signal, protocol, timeoutMs);
      throw error;
    } finally {
      reader.close();
    }
  }
}

function abortError(signal: AbortSignal, protocol: string, timeoutMs: number): DstorError {
  const reason: unknown = signal.reason;
  if (reason instanceof DstorError) return reason;
  if (reason instanceof Error && reason.name === "TimeoutError") {
    return new DstorError("TIMEOUT", `${protocol} did not finish within ${timeoutMs} ms; try another farmer`, { cause: reason });
  }
  return new DstorError("ABORTED", `${protocol} was cancelled`, { cause: reason });
}

function resolveTarget(target: FarmerTarget): PeerId | Multiaddr {
  if (typeof target !== "string") return target;
  try {
    return multiaddr(target);
  } catch (error) {
    throw new DstorError("INVALID_ARGUMENT", `${JSON.stringify(target)} is not a multiaddr`, { cause: error });
  }
}

function targetName(target: FarmerTarget): string {
  return typeof target === "string" ? target : target.toString();
}

function hexBytes(hex: string, what: string): Uint8Array {
  if (typeof hex !== "string" || !/^[0-9a-f]{64}$/.test(hex)) throw new DstorError("INVALID_ARGUMENT", `${what} must be 64 lowercase hex characters`);
  return new Uint8Array(Buffer.from(hex, "hex"));
}
