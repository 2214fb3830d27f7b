/**
 * Deals on the chain, as the renter opens them: one per farmer and term,
 * opened lazily before the first put to that farmer, its id kept in metadata
 * so later gets and deletes sign orders under it.
 *
 * The token allowance is granted once, generously, instead of per deal:
 * `approve` sets (not adds to) the allowance, so per-deal approvals racing
 * each other for different farmers would let one deal's `transferFrom`
 * consume another's allowance. Deals for one farmer are opened at most once
 * at a time (a promise per farmer); deals for different farmers go out in
 * parallel through the nonce-safe signer.
 */
import { mined } from "../chain/signer.js";
import type { AbortOptions } from "../core/abort.js";
import { throwIfAborted } from "../core/abort.js";
import { DstorError, isDstorError } from "../core/errors.js";
import { type Logger, silentLogger } from "../core/logging.js";
import { BYTES_PER_TB, SECONDS_PER_MONTH } from "../core/units.js";
import type { MetadataDb } from "../metadata/db.js";
import { marketDomain, signDealState } from "../chain/signing.js";
import { fromHex, toHex } from "../crypto/bytes.js";
import { dealRoot } from "../crypto/merkle.js";
import type { DealProvider, DealStatePiece, FarmerRef } from "./types.js";

/** Default deal term: one billing month. */
export const DEFAULT_DEAL_TERM_SECONDS = Number(SECONDS_PER_MONTH);
/** A deal ending sooner than this is not used for new puts (a new term is opened instead); at most a quarter of the term. */
const DEAL_END_MARGIN_SECONDS = 3600;
/** Bytes of storage a fresh deal's escrow covers for its term by default (100 GB). */
export const DEFAULT_ESCROW_BYTES = 100n * 10n ** 9n;

/**
 * Times a deal-state sync skips ahead past versions the farmer refuses as
 * replays (2, 8, 32, … versions further each time: ~700 000 in all).
 */
const MAX_VERSION_SKIPS = 10;

/** The market calls deals need (ethers bindings fit). */
export interface DealMarket {
  openDeal(farmer: string, termSeconds: bigint | number, escrow: bigint): Promise<{ wait(): Promise<unknown> }>;
  latestDeal(renter: string, farmer: string): Promise<bigint>;
  deal(dealId: bigint): Promise<{ end: bigint; closed: boolean; term: bigint; version: bigint }>;
  updateState(
    dealId: bigint,
    state: { root: string; pieceCount: bigint; totalBytes: bigint; version: bigint },
    renterSig: string,
    farmerSig: string,
  ): Promise<{ wait(): Promise<unknown> }>;
}

/** A proposed deal state as the farmer's co-signing protocol takes it. */
export interface DealStateProposal {
  dealId: bigint;
  term: bigint;
  version: bigint;
  pieces: DealStatePiece[];
  renterSignature: string;
}

/** Asks a farmer to co-sign a deal state; resolves with its signature. */
export type DealCoSigner = (farmer: FarmerRef, proposal: DealStateProposal, options: AbortOptions) => Promise<string>;

/** The token calls deals need. */
export interface DealToken {
  approve(spender: string, amount: bigint): Promise<{ wait(): Promise<unknown> }>;
  allowance(owner: string, spender: string): Promise<bigint>;
}

/** Options of {@link ChainDeals}. */
export interface ChainDealsInit {
  market: DealMarket;
  token: DealToken;
  marketAddress: string;
  /** The renter's wallet address. */
  renter: string;
  metadata: MetadataDb;
  /** Price per TB-month of a farmer (from the registry). */
  priceOf(farmer: string): Promise<bigint>;
  termSeconds?: number;
  escrowBytes?: bigint;
  /** Called once before the first deal (dev chains: faucet + gas). */
  prepare?: () => Promise<void>;
  /** The renter's wallet, for deal-state signatures. */
  wallet?: { signTypedData: import("ethers").Signer["signTypedData"] };
  /** Chain id of the market (the EIP-712 domain). */
  chainId?: bigint;
  /** The farmer side of deal-state co-signing (FarmerClient.signDealState). */
  coSign?: DealCoSigner;
  logger?: Logger;
}

const MAX_ALLOWANCE = 2n ** 255n;

/** A {@link DealProvider} backed by the Market contract. */
export class ChainDeals implements DealProvider {
  readonly #init: ChainDealsInit;
  readonly #log: Logger;
  readonly #opening = new Map<string, Promise<bigint>>();
  /** Per-farmer tail of state syncs: versions must go out one at a time. */
  readonly #syncing = new Map<string, Promise<void>>();
  #prepared: Promise<void> | undefined;

  constructor(init: ChainDealsInit) {
    this.#init = init;
    this.#log = init.logger ?? silentLogger("dstor:renter:deals");
  }

  ensureDeal(farmer: FarmerRef, options: AbortOptions = {}): Promise<bigint> {
    let p = this.#opening.get(farmer.address);
    if (p === undefined) {
      p = this.#ensure(farmer, options).finally(() => this.#opening.delete(farmer.address));
      this.#opening.set(farmer.address, p);
    }
    return p;
  }

  #prepare(): Promise<void> {
    this.#prepared ??= (async () => {
      await this.#init.prepare?.();
      const { token, marketAddress, renter } = this.#init;
      if ((await token.allowance(renter, marketAddress)) < MAX_ALLOWANCE / 2n) await mined(token.approve(marketAddress, MAX_ALLOWANCE), "approving the market to take escrow");
    })().catch((error: unknown) => {
      this.#prepared = undefined;
      throw error;
    });
    return this.#prepared;
  }

  async #ensure(farmer: FarmerRef, options: AbortOptions): Promise<bigint> {
    const now = BigInt(Math.floor(Date.now() / 1000));
    const term = this.#init.termSeconds ?? DEFAULT_DEAL_TERM_SECONDS;
    const margin = BigInt(Math.min(DEAL_END_MARGIN_SECONDS, Math.floor(term / 4)));
    const { metadata, market, renter } = this.#init;
    const record = await metadata.farmer(farmer.address);
    if (record?.dealId !== undefined && record.dealEnd !== undefined && BigInt(record.dealEnd) > now + margin) {
      return BigInt(record.dealId);
    }
    try {
      const latest = await market.latestDeal(renter, farmer.address);
      if (latest !== 0n) {
        const d = await market.deal(latest);
        if (!d.closed && d.end > now + margin) return this.#remember(farmer, latest, d.term, d.end);
      }
      throwIfAborted(options.signal);
      await this.#prepare();
      const price = await this.#init.priceOf(farmer.address);
      const bytes = this.#init.escrowBytes ?? DEFAULT_ESCROW_BYTES;
      // cost = price × bytes × seconds / (1 TB × 1 month), multiplied before dividing; at least one unit.
      const escrow = (price * bytes * BigInt(term)) / (BYTES_PER_TB * SECONDS_PER_MONTH) + 1n;
      await mined(market.openDeal(farmer.address, term, escrow), `opening a deal with farmer ${farmer.address}`);
      const id = await market.latestDeal(renter, farmer.address);
      const d = await market.deal(id);
      this.#log.info("deal opened", { farmer: farmer.address, dealId: id.toString(), escrow: escrow.toString() });
      return this.#remember(farmer, id, d.term, d.end);
    } catch (error) {
      if (error instanceof DstorError) throw error;
      throw new DstorError("CHAIN_CALL_FAILED", `could not open a deal with farmer ${farmer.address}: ${(error as Error).message}`, { cause: error });
    }
  }

  /**
   * Co-signs and submits the deal state listing `pieces` (see
   * DealProvider.syncState). Syncs for one farmer run one after another so
   * their versions never race; each reads the newest version from both the
   * chain and metadata.
   */
  syncState(farmer: FarmerRef, pieces: readonly DealStatePiece[], options: AbortOptions = {}): Promise<void> {
    const previous = this.#syncing.get(farmer.address) ?? Promise.resolve();
    const run = previous.catch(() => {}).then(() => this.#sync(farmer, pieces, options));
    const tail = run.catch(() => {});
    this.#syncing.set(farmer.address, tail);
    void tail.then(() => {
      if (this.#syncing.get(farmer.address) === tail) this.#syncing.delete(farmer.address);
    });
    return run;
  }

  async #sync(farmer: FarmerRef, pieces: readonly DealStatePiece[], options: AbortOptions): Promise<void> {
    const { metadata, market, wallet, coSign, chainId, marketAddress } = this.#init;
    if (wallet === undefined || coSign === undefined || chainId === undefined) return;
    const record = await metadata.farmer(farmer.address);
    if (record?.dealId === undefined) return;
    const dealId = BigInt(record.dealId);
    try {
      const deal = await market.deal(dealId);
      const stored = BigInt(record.stateVersion ?? 0);
      let version = (deal.version > stored ? deal.version : stored) + 1n;
      const dealPieces = pieces.map((p) => ({ pieceId: fromHex(p.pieceId), pieceRoot: fromHex(p.root), size: p.size }));
      const content = {
        root: `0x${toHex(dealRoot(dealPieces))}`,
        pieceCount: BigInt(pieces.length),
        totalBytes: pieces.reduce((n, p) => n + BigInt(p.size), 0n),
      };
      const domain = marketDomain(chainId, marketAddress);
      for (let attempt = 0; ; attempt++) {
        const state = { ...content, version };
        const renterSignature = (await signDealState(wallet as never, domain, { dealId, term: deal.term, ...state })).toLowerCase();
        // Kept before the farmer sees it: a version the farmer may have
        // co-signed is never proposed again, even when this submission fails
        // (the farmer refuses a version it signed as a replay).
        await metadata.updateFarmer(farmer.address, (r) => ({ ...r, stateVersion: Number(version) }));
        let farmerSignature: string;
        try {
          farmerSignature = await coSign(farmer, { dealId, term: deal.term, version, pieces: [...pieces], renterSignature }, options);
        } catch (error) {
          // The farmer signed a newer version than metadata knows (metadata
          // restored from an older snapshot): skip ahead, further each time.
          if (!isDstorError(error, "ORDER_REPLAYED") || attempt >= MAX_VERSION_SKIPS) throw error;
          version += 1n << BigInt(attempt * 2 + 1);
          continue;
        }
        await mined(market.updateState(dealId, state, renterSignature, farmerSignature), `submitting the state of deal ${dealId}`);
        this.#log.debug("deal state updated", { farmer: farmer.address, dealId: dealId.toString(), version: version.toString(), pieces: pieces.length });
        return;
      }
    } catch (error) {
      if (error instanceof DstorError) throw error;
      throw new DstorError("CHAIN_CALL_FAILED", `could not update the deal state with farmer ${farmer.address}: ${(error as Error).message}`, { cause: error });
    }
  }

  async #remember(farmer: FarmerRef, dealId: bigint, term: bigint, end: bigint): Promise<bigint> {
    await this.#init.metadata.updateFarmer(farmer.address, (r) => ({
      ...r,
      peerId: farmer.peerId || r.peerId,
      multiaddrs: farmer.multiaddrs.length > 0 ? [...farmer.multiaddrs] : r.multiaddrs,
      dealId: dealId.toString(),
      term: Number(term),
      dealEnd: Number(end),
    }));
    return dealId;
  }
}
