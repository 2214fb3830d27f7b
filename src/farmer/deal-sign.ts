/**
 * `/dstor/deal/sign/1`: the renter proposes a new deal state (the full list
 * of pieces under the deal, a version, and its EIP-712 signature); the farmer
 * co-signs it only if it can stand behind it, then confirms the pieces in its
 * store (they stop expiring).
 *
 * The farmer checks, in order: the deal exists on-chain, is ours, open and
 * in its term, and the term matches → the renter's signature recovers to the
 * deal's renter → the version is newer than the on-chain one and than any
 * state this process already signed for the deal → every listed piece is in
 * our store for that renter with exactly that root and size. Only then does
 * it compute the deal root itself (never trusting the renter's), sign, and
 * confirm. Signing for one deal is serialised, so two proposals cannot both
 * pass the version check.
 *
 * Wire: one JSON request frame (≤ {@link MAX_DEAL_SIGN_REQUEST_BYTES}), one
 * JSON answer frame: `{ v, ok: true, farmerSignature }` or the usual error.
 */
import type { TypedDataDomain } from "ethers";
import type { AbortOptions } from "../core/abort.js";
import { DstorError } from "../core/errors.js";
import { signTypedData } from "../crypto/ecrecover.js";
import { type DealPiece, dealRoot } from "../crypto/merkle.js";
import { MIB } from "../core/units.js";
import { DEAL_STATE_TYPES, type DealStateMessage, recoverDealStateSigner } from "../chain/signing.js";
import { MAX_PIECE_BYTES } from "../protocol/limits.js";
import { PROTOCOL_VERSION } from "../protocol/messages.js";
import {
  expectArray,
  expectHex,
  expectInteger,
  expectKeys,
  expectObject,
  expectPrefixedHex,
  expectUintString,
  field,
  jsonBytes,
  parseJsonObject,
  uintString,
} from "../protocol/validate.js";
import type { PieceStore } from "./store/types.js";

/** Protocol id of deal-state co-signing. */
export const DEAL_SIGN_PROTOCOL = "/dstor/deal/sign/1";

/** Largest deal-sign request, in bytes (≈ 6000 pieces). */
export const MAX_DEAL_SIGN_REQUEST_BYTES = 1 * MIB;

/** Most pieces one deal state may list. */
export const MAX_DEAL_PIECES = 4096;

/** Co-signed states remembered per deal for audits (see DealStateSigner.signedPieces). */
export const RECENT_STATES_PER_DEAL = 4;

/** Whole-exchange deadline of a deal-sign exchange, in ms. */
export const DEAL_SIGN_TIMEOUT_MS = 60_000;

/** One piece of a proposed deal state (hex, as on the wire). */
export interface DealSignPiece {
  pieceId: string;
  root: string;
  size: number;
}

/** A proposed deal state. */
export interface DealSignRequest {
  v: 1;
  dealId: bigint;
  term: bigint;
  version: bigint;
  pieces: DealSignPiece[];
  /** The renter's EIP-712 signature over the state (`0x` + 130 hex). */
  renterSignature: string;
}

/** The farmer's answer. */
export type DealSignResponse = { v: 1; ok: true; farmerSignature: string } | { v: 1; ok: false; code: string; message: string };

const REQUEST_KEYS = ["v", "dealId", "term", "version", "pieces", "renterSignature"] as const;

function checkVersion(o: Readonly<Record<string, unknown>>, what: string): void {
  const v = field(o, "v");
  if (v !== PROTOCOL_VERSION) {
    throw new DstorError(typeof v === "number" ? "UNSUPPORTED_VERSION" : "MESSAGE_MALFORMED", `${what} must have v = ${PROTOCOL_VERSION}`);
  }
}

/** Decodes a deal-sign request; throws `MESSAGE_MALFORMED`/`MESSAGE_TOO_LARGE`/`UNSUPPORTED_VERSION`. */
export function decodeDealSignRequest(bytes: Uint8Array): DealSignRequest {
  const what = "deal-sign request";
  const o = parseJsonObject(bytes, MAX_DEAL_SIGN_REQUEST_BYTES, what);
  checkVersion(o, what);
  expectKeys(o, REQUEST_KEYS, what);
  const pieces = expectArray(field(o, "pieces"), MAX_DEAL_PIECES, `${what}.pieces`, (value, w) => {
    const p = expectObject(value, w);
    expectKeys(p, ["pieceId", "root", "size"], w);
    return {
      pieceId: expectHex(field(p, "pieceId"), 32, `${w}.pieceId`),
      root: expectHex(field(p, "root"), 32, `${w}.root`),
      size: expectInteger(field(p, "size"), 0, MAX_PIECE_BYTES, `${w}.size`),
    };
  });
  return {
    v: PROTOCOL_VERSION,
    dealId: expectUintString(field(o, "dealId"), 256, `${what}.dealId`),
    term: expectUintString(field(o, "term"), 64, `${what}.term`),
    version: expectUintString(field(o, "version"), 64, `${what}.version`),
    pieces,
    renterSignature: expectPrefixedHex(field(o, "renterSignature"), 65, `${what}.renterSignature`),
  };
}

/** Encodes a deal-sign request. */
export function encodeDealSignRequest(m: DealSignRequest): Uint8Array {
  const bytes = jsonBytes({
    v: m.v,
    dealId: uintString(m.dealId),
    term: uintString(m.term),
    version: uintString(m.version),
    pieces: m.pieces.map((p) => ({ pieceId: p.pieceId, root: p.root, size: p.size })),
    renterSignature: m.renterSignature,
  });
  decodeDealSignRequest(bytes);
  return bytes;
}

/** Decodes a deal-sign answer. */
export function decodeDealSignResponse(bytes: Uint8Array): DealSignResponse {
  const what = "deal-sign response";
  const o = parseJsonObject(bytes, 16 * 1024, what);
  checkVersion(o, what);
  if (field(o, "ok") === true) {
    expectKeys(o, ["v", "ok", "farmerSignature"], what);
    return { v: PROTOCOL_VERSION, ok: true, farmerSignature: expectPrefixedHex(field(o, "farmerSignature"), 65, `${what}.farmerSignature`) };
  }
  expectKeys(o, ["v", "ok", "code", "message"], what);
  const code = field(o, "code");
  const message = field(o, "message");
  if (field(o, "ok") !== false || typeof code !== "string" || typeof message !== "string") {
    throw new DstorError("MESSAGE_MALFORMED", `${what} is neither a signature nor an error`);
  }
  return { v: PROTOCOL_VERSION, ok: false, code, message };
}

/** Encodes a deal-sign answer. */
export function encodeDealSignResponse(m: DealSignResponse): Uint8Array {
  return jsonBytes(m);
}

/** The deal facts the signer reads from the Market contract. */
export interface DealStateReader {
  deal(dealId: bigint): Promise<{ renter: string; farmer: string; term: bigint; end: bigint; closed: boolean; version: bigint }>;
}

/** What signs deal states for the farmer (an ethers Wallet/Signer fits). */
export interface DealStateWallet {
  signTypedData(domain: TypedDataDomain, types: typeof DEAL_STATE_TYPES, value: Record<string, unknown>): Promise<string>;
}

/** Options of {@link DealStateSigner}. */
export interface DealStateSignerInit {
  market: DealStateReader;
  wallet: DealStateWallet;
  /** Our wallet address. */
  farmer: string;
  /** EIP-712 domain of the market (chain id and market address). */
  domain: TypedDataDomain;
  store: PieceStore;
  /** Clock in ms (tests). */
  now?: () => number;
}

/** Checks and co-signs proposed deal states; see the module comment. */
export class DealStateSigner {
  readonly #init: DealStateSignerInit;
  readonly #lastSigned = new Map<string, bigint>();
  /** Piece ids of the latest state this process co-signed, per deal id. */
  readonly #lastPieces = new Map<string, Set<string>>();
  readonly #locks = new Map<string, Promise<unknown>>();
  /** The last few co-signed piece lists per deal id, by deal root (0x-hex): what audits prove against. */
  readonly #recentStates = new Map<string, Map<string, DealPiece[]>>();

  constructor(init: DealStateSignerInit) {
    this.#init = init;
  }

  /** Verifies `request` and returns the farmer's signature; throws a coded DstorError otherwise. */
  sign(request: DealSignRequest, options: AbortOptions = {}): Promise<string> {
    return this.withDealLock(request.dealId, () => this.#sign(request, options));
  }

  /**
   * Runs `fn` while no state of `dealId` is being co-signed (and no other
   * `fn` for it runs). The audit worker answers under this lock: an answer
   * is verified against the deal root current when it is mined, so the
   * farmer must not hand out a new state while its answer is in flight.
   */
  withDealLock<T>(dealId: bigint, fn: () => Promise<T>): Promise<T> {
    const key = dealId.toString();
    const previous = this.#locks.get(key) ?? Promise.resolve();
    const next = previous.then(fn, fn);
    this.#locks.set(key, next);
    void next.finally(() => {
      if (this.#locks.get(key) === next) this.#locks.delete(key);
    }).catch(() => {});
    return next;
  }

  /** The newest state version this process co-signed for `dealId`, if any (it may not be on chain yet). */
  latestSignedVersion(dealId: bigint): bigint | undefined {
    return this.#lastSigned.get(dealId.toString());
  }

  /**
   * True when a co-signed state of `dealId` without `pieceId` exists (signed
   * by this process): only then may a confirmed piece be deleted. Unknown
   * (e.g. after a restart) is false — the renter proposes a new state first.
   */
  isReleased(dealId: bigint, pieceId: string): boolean {
    const pieces = this.#lastPieces.get(dealId.toString());
    return pieces !== undefined && !pieces.has(pieceId);
  }

  /**
   * The pieces of a state this process co-signed for `dealId` whose deal
   * root is `root` (0x-hex), if it is one of the last
   * {@link RECENT_STATES_PER_DEAL}: the audit worker proves against the
   * on-chain root, which may lag the newest signed state.
   */
  signedPieces(dealId: bigint, root: string): DealPiece[] | undefined {
    return this.#recentStates.get(dealId.toString())?.get(root.toLowerCase());
  }

  async #sign(request: DealSignRequest, options: AbortOptions): Promise<string> {
    const { market, store, domain } = this.#init;
    let deal: Awaited<ReturnType<DealStateReader["deal"]>>;
    try {
      deal = await market.deal(request.dealId);
    } catch (cause) {
      throw new DstorError("CHAIN_UNAVAILABLE", "the farmer cannot reach its chain to check the deal; retry later", { cause });
    }
    const nowSeconds = BigInt(Math.floor((this.#init.now ?? Date.now)() / 1000));
    if (deal.farmer.toLowerCase() !== this.#init.farmer.toLowerCase() || deal.closed || deal.end <= nowSeconds) {
      throw new DstorError("ORDER_NO_DEAL", `deal ${request.dealId} is not an open deal with this farmer`);
    }
    if (deal.term !== request.term) throw new DstorError("INVALID_ARGUMENT", `deal ${request.dealId} is in term ${deal.term}, not ${request.term}`);
    const pieces: DealPiece[] = request.pieces.map((p) => ({
      pieceId: new Uint8Array(Buffer.from(p.pieceId, "hex")),
      pieceRoot: new Uint8Array(Buffer.from(p.root, "hex")),
      size: p.size,
    }));
    let root: Uint8Array;
    try {
      root = dealRoot(pieces);
    } catch (cause) {
      throw new DstorError("MESSAGE_MALFORMED", "the deal state lists a piece twice", { cause });
    }
    const state: DealStateMessage = {
      dealId: request.dealId,
      term: request.term,
      root,
      pieceCount: BigInt(pieces.length),
      totalBytes: request.pieces.reduce((sum, p) => sum + BigInt(p.size), 0n),
      version: request.version,
    };
    let signer: string;
    try {
      signer = recoverDealStateSigner(domain, state, request.renterSignature).toLowerCase();
    } catch (cause) {
      throw new DstorError("ORDER_BAD_SIGNATURE", "the renter's deal-state signature is malformed", { cause });
    }
    if (signer !== deal.renter.toLowerCase()) {
      throw new DstorError("ORDER_BAD_SIGNATURE", "the deal state was not signed by the deal's renter (or lists other pieces than signed)");
    }
    const key = request.dealId.toString();
    const floor = this.#lastSigned.get(key) ?? 0n;
    if (request.version <= deal.version || request.version <= floor) {
      throw new DstorError("ORDER_REPLAYED", `deal-state version ${request.version} is not newer than ${deal.version > floor ? deal.version : floor}`);
    }
    const renter = deal.renter.toLowerCase();
    for (const p of request.pieces) {
      const info = await store.stat(renter, p.pieceId, options);
      if (info === undefined) throw new DstorError("PIECE_NOT_FOUND", `piece ${p.pieceId} is not stored here; upload it before proposing the state`);
      if (info.size !== p.size || Buffer.from(info.root).toString("hex") !== p.root) {
        throw new DstorError("INTEGRITY_MISMATCH", `piece ${p.pieceId} is stored with another root or size than the state lists`);
      }
    }
    const signature = await signTypedData(this.#init.wallet, domain, DEAL_STATE_TYPES, {
      ...state,
      root: `0x${Buffer.from(root).toString("hex")}`,
    });
    this.#lastSigned.set(key, request.version);
    this.#lastPieces.set(key, new Set(request.pieces.map((p) => p.pieceId)));
    const recent = this.#recentStates.get(key) ?? new Map<string, DealPiece[]>();
    recent.set(`0x${Buffer.from(root).toString("hex")}`, pieces);
    if (recent.size > RECENT_STATES_PER_DEAL) recent.delete(recent.keys().next().value as string);
    this.#recentStates.set(key, recent);
    if (request.pieces.length > 0) {
      await store.confirm(
        renter,
        request.pieces.map((p) => p.pieceId),
        request.dealId,
        options,
      );
    }
    return signature.toLowerCase();
  }
}
