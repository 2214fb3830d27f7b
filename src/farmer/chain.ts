/**
 * The farmer's chain glue: a {@link DealChecker} over the Market contract
 * (is this renter's deal with us live and funded?) and registration in the
 * Registry (join with stake and the peer-binding signature, or update price,
 * capacity and addresses when already registered).
 *
 * The deal check sits on every put, get, audit and delete, so positive
 * answers are cached for a short time (DEAL_CACHE_TTL_MS): one RPC per deal
 * per half minute, not per request. Negative answers are not cached, so a
 * renter whose deal was just mined is served at once.
 */
import { mined } from "../chain/signer.js";
import type { AbortOptions } from "../core/abort.js";
import { throwIfAborted } from "../core/abort.js";
import { DstorError } from "../core/errors.js";
import { type Logger, silentLogger } from "../core/logging.js";
import type { DealChecker } from "../protocol/orders.js";

/** How long a "funded" answer is trusted, in ms. */
export const DEAL_CACHE_TTL_MS = 30_000;

/** Most deals remembered by the cache. */
const DEAL_CACHE_ENTRIES = 10_000;

/** The part of the Market contract the checker reads. */
export interface MarketDealReader {
  deal(dealId: bigint): Promise<{ renter: string; farmer: string; end: bigint; closed: boolean }>;
  escrowRemaining(dealId: bigint): Promise<bigint>;
}

/** Options of {@link ChainDealChecker}. */
export interface ChainDealCheckerInit {
  market: MarketDealReader;
  /** Clock in ms (tests). Default Date.now. */
  now?: () => number;
  logger?: Logger;
}

/** {@link DealChecker} against the Market contract; see the module comment. */
export class ChainDealChecker implements DealChecker {
  readonly #market: MarketDealReader;
  readonly #now: () => number;
  readonly #log: Logger;
  /** key → (until ms, deal end in unix seconds). */
  readonly #cache = new Map<string, { until: number; end: bigint }>();

  constructor(init: ChainDealCheckerInit) {
    this.#market = init.market;
    this.#now = init.now ?? Date.now;
    this.#log = init.logger ?? silentLogger("dstor:farmer:deals");
  }

  /** True when `dealId` is an open deal of `renter` with `farmer`, within its term, with escrow left. */
  async isFunded(renter: string, dealId: bigint, farmer: string, options: AbortOptions = {}): Promise<boolean> {
    const key = `${renter}/${farmer}/${dealId}`;
    const now = this.#now();
    const cached = this.#cache.get(key);
    if (cached !== undefined && cached.until > now && cached.end > BigInt(Math.floor(now / 1000))) return true;
    throwIfAborted(options.signal);
    if (dealId === 0n) return false;
    let deal: Awaited<ReturnType<MarketDealReader["deal"]>>;
    let escrow: bigint;
    try {
      [deal, escrow] = await Promise.all([this.#market.deal(dealId), this.#market.escrowRemaining(dealId)]);
    } catch (cause) {
      this.#log.warn("deal lookup failed", { dealId: dealId.toString(), error: String(cause) });
      throw new DstorError("CHAIN_UNAVAILABLE", "the farmer cannot reach its chain to check the deal; retry later", { cause });
    }
    const funded =
      deal.renter.toLowerCase() === renter.toLowerCase() &&
      deal.farmer.toLowerCase() === farmer.toLowerCase() &&
      !deal.closed &&
      deal.end > BigInt(Math.floor(now / 1000)) &&
      escrow > 0n;
    if (funded) {
      this.#cache.set(key, { until: now + DEAL_CACHE_TTL_MS, end: deal.end });
      if (this.#cache.size > DEAL_CACHE_ENTRIES) {
        const oldest = this.#cache.keys().next().value;
        if (oldest !== undefined) this.#cache.delete(oldest);
      }
    }
    return funded;
  }
}

/** The Registry calls registration needs. */
export interface RegistryWriter {
  farmerInfo(farmer: string): Promise<{ status: bigint; stake: bigint; pricePerTBMonth: bigint; capacityBytes: bigint; peerId: string; multiaddrs: string[] }>;
  join(
    stake: bigint,
    pricePerTBMonth: bigint,
    capacityBytes: bigint,
    peerId: Uint8Array,
    peerSignature: Uint8Array,
    multiaddrs: string[],
  ): Promise<{ wait(): Promise<unknown> }>;
  update(pricePerTBMonth: bigint, capacityBytes: bigint, multiaddrs: string[]): Promise<{ wait(): Promise<unknown> }>;
  addStake?(amount: bigint): Promise<{ wait(): Promise<unknown> }>;
}

/** The token calls registration needs (approving the stake). */
export interface TokenApprover {
  approve(spender: string, amount: bigint): Promise<{ wait(): Promise<unknown> }>;
}

/** What {@link registerFarmer} needs. */
export interface RegisterFarmerInit extends AbortOptions {
  registry: RegistryWriter;
  registryAddress: string;
  token: TokenApprover;
  /** Our wallet address. */
  wallet: string;
  /** Our peer id as bytes (the identity multihash). */
  peerId: Uint8Array;
  /** Signs the peer-binding message with our libp2p key. */
  signPeerBinding: () => Promise<Uint8Array>;
  pricePerTBMonth: bigint;
  capacityBytes: bigint;
  /** Minimum stake per TB of capacity (Registry.minStakePerTB). */
  minStakePerTB: bigint;
  multiaddrs: string[];
  logger?: Logger;
}

/** Registry status values (Registry.Status). */
const STATUS_NONE = 0n;
const STATUS_ACTIVE = 1n;
const STATUS_LEFT = 3n;

/** The stake the Registry requires for `capacityBytes` (rounded up, as DstorUnits.stakeFor). */
export function requiredStake(minStakePerTB: bigint, capacityBytes: bigint): bigint {
  return (minStakePerTB * capacityBytes + 10n ** 12n - 1n) / 10n ** 12n;
}

/** What registration did. */
export type RegistrationResult = "joined" | "updated" | "unchanged";

/**
 * Joins the Registry (approving and staking what the capacity requires) or,
 * if already active, updates price, capacity and addresses when they
 * changed, adding stake first when the new capacity needs more.
 */
export async function registerFarmer(init: RegisterFarmerInit): Promise<RegistrationResult> {
  const log = init.logger ?? silentLogger("dstor:farmer:chain");
  const need = requiredStake(init.minStakePerTB, init.capacityBytes);
  const info = await init.registry.farmerInfo(init.wallet);
  throwIfAborted(init.signal);
  if (info.status === STATUS_NONE || info.status === STATUS_LEFT) {
    if (need > 0n) await mined(init.token.approve(init.registryAddress, need), "approving the registry to take the stake");
    const signature = await init.signPeerBinding();
    await mined(init.registry.join(need, init.pricePerTBMonth, init.capacityBytes, init.peerId, signature, init.multiaddrs), "joining the registry");
    log.info("joined the registry", { stake: need.toString(), capacity: init.capacityBytes.toString() });
    return "joined";
  }
  if (info.status !== STATUS_ACTIVE) {
    throw new DstorError("CHAIN_CALL_FAILED", `this wallet's farmer record is not active (status ${info.status}); it is leaving or disqualified`);
  }
  const sameAddrs = info.multiaddrs.length === init.multiaddrs.length && info.multiaddrs.every((a, i) => a === init.multiaddrs[i]);
  if (info.pricePerTBMonth === init.pricePerTBMonth && info.capacityBytes === init.capacityBytes && sameAddrs) return "unchanged";
  if (info.stake < need) {
    if (init.registry.addStake === undefined) {
      throw new DstorError("CHAIN_CALL_FAILED", `the stake ${info.stake} is below the ${need} this capacity requires`);
    }
    await mined(init.token.approve(init.registryAddress, need - info.stake), "approving the registry to take more stake");
    await mined(init.registry.addStake(need - info.stake), "adding stake");
  }
  await mined(init.registry.update(init.pricePerTBMonth, init.capacityBytes, init.multiaddrs), "updating the registry entry");
  log.info("updated the registry record", { price: init.pricePerTBMonth.toString(), capacity: init.capacityBytes.toString() });
  return "updated";
}
