/**
 * The narrow interfaces the renter depends on. The renter never imports the
 * libp2p client, the chain bindings or the farmer code: src/node/renter-node.ts
 * composes real implementations of these, and tests pass in-memory ones.
 */
import type { AbortOptions } from "../core/abort.js";
import type { OrderAction, SignedOrder } from "../protocol/orders.js";

/** How to reach a farmer. */
export interface FarmerRef {
  /** Wallet address, lowercase `0x` hex (orders and deals name it). */
  readonly address: string;
  /** libp2p peer id (string form). */
  readonly peerId: string;
  /** libp2p multiaddrs it listens on. */
  readonly multiaddrs: readonly string[];
}

/** A farmer as selection sees it: how to reach it, what it offers, what the chain says about it. */
export interface FarmerCandidate extends FarmerRef {
  /** Price in token units per TB-month. */
  readonly priceTbMonth: bigint;
  /** Free capacity in bytes, as last reported (undefined: unknown). */
  readonly freeBytes?: bigint | undefined;
  /** On-chain audit successes and failures. */
  readonly chainSuccesses: number;
  readonly chainFailures: number;
  /** Disqualified on-chain (or unable to take deals). */
  readonly disqualified: boolean;
}

/** Upload one piece. */
export interface PutPieceRequest {
  readonly order: SignedOrder;
  /** Piece id, 64 lowercase hex. */
  readonly pieceId: string;
  /** Merkle root, 64 lowercase hex. */
  readonly root: string;
  readonly data: Uint8Array;
  /**
   * When given, the bytes of `data` in order as the renter lets them go (a
   * paced put, src/renter/pacing.ts); the transport sends these instead.
   */
  readonly chunks?: AsyncIterable<Uint8Array>;
}

/** Download a leaf-aligned range of a piece (or all of it). */
export interface GetPieceRequest {
  readonly order: SignedOrder;
  readonly pieceId: string;
  /** The piece's Merkle root as recorded in metadata, 64 lowercase hex. */
  readonly root: string;
  /** The piece's size as recorded in metadata. */
  readonly size: number;
  /** First byte, a multiple of 1024; default 0. */
  readonly offset?: number | undefined;
  /** Bytes wanted; default to the end. */
  readonly length?: number | undefined;
  /**
   * A buffer to receive the bytes into (reused across gets; at least the
   * range's length). A transport may ignore it; when it uses it, the
   * result's data is a view of it.
   */
  readonly into?: Uint8Array | undefined;
}

/**
 * A fetched range. With `proof`, the renter checks the multiproof against the
 * root itself; without it, the transport has already verified the bytes
 * against `request.root` (as the libp2p FarmerClient does) and must have
 * rejected with `MERKLE_PROOF_INVALID` / `INTEGRITY_MISMATCH` otherwise.
 */
export interface GetPieceResult {
  /** Bytes of the requested range. */
  readonly data: Uint8Array;
  /** Multiproof of the range against the piece root. */
  readonly proof?: readonly Uint8Array[] | undefined;
}

/** Delete one piece. */
export interface DeletePieceRequest {
  readonly order: SignedOrder;
  readonly pieceId: string;
}

/** What a farmer says about itself (node info). */
export interface FarmerInfo {
  readonly address: string;
  readonly peerId: string;
  readonly freeBytes: bigint;
  readonly priceTbMonth: bigint;
}

/**
 * Moves pieces between the renter and farmers. Every method must honour the
 * signal (abort = stop the transfer and release the stream) and reject with a
 * `DstorError` (`PIECE_NOT_FOUND`, `QUOTA_EXCEEDED`, `ORDER_*`, `TIMEOUT`, …).
 */
export interface PieceTransport {
  put(farmer: FarmerRef, request: PutPieceRequest, options?: AbortOptions): Promise<void>;
  get(farmer: FarmerRef, request: GetPieceRequest, options?: AbortOptions): Promise<GetPieceResult>;
  delete(farmer: FarmerRef, request: DeletePieceRequest, options?: AbortOptions): Promise<void>;
  /** Asks a node at `multiaddrs` who it is (used for `--farmers`). */
  info?(multiaddrs: readonly string[], options?: AbortOptions): Promise<FarmerInfo>;
}

/** Where farmers come from: the on-chain registry, `--farmers`, the DHT. */
export interface FarmerDirectory {
  /** Every farmer currently known, deduplicated by wallet. */
  list(options?: AbortOptions): Promise<FarmerCandidate[]>;
}

/** One piece of a deal state. */
export interface DealStatePiece {
  /** Piece id, 64 lowercase hex. */
  pieceId: string;
  /** Merkle root, 64 lowercase hex. */
  root: string;
  size: number;
}

/** Opens (or reuses) the deal a put to `farmer` is paid under, and keeps its co-signed state current. */
export interface DealProvider {
  /** The deal id for `farmer`; opens and funds a deal on first use. */
  ensureDeal(farmer: FarmerRef, options?: AbortOptions): Promise<bigint>;
  /**
   * Proposes the deal state listing exactly `pieces` to `farmer`, gets it
   * co-signed (the farmer then stops expiring those pieces) and submits it.
   * Optional: test doubles without a chain may leave it out.
   */
  syncState?(farmer: FarmerRef, pieces: readonly DealStatePiece[], options?: AbortOptions): Promise<void>;
}

/** Signs orders with the renter's wallet. */
export interface OrderAuthority {
  /** The renter's wallet address, lowercase. */
  readonly renter: string;
  sign(input: { farmer: string; dealId: bigint; pieceId: string; action: OrderAction; maxBytes: number }): Promise<SignedOrder>;
}
