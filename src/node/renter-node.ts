/**
 * The renter's composition root: home → phrase → keys; the metadata database
 * (HOME/renter/meta); the chain (registry for discovery, market for deals);
 * a dial-only libp2p node and the FarmerClient behind the renter's narrow
 * PieceTransport; then the Renter itself.
 *
 * Commands that only read metadata (`ls`, `stat`) open the node `offline`:
 * no chain, no libp2p, and any transfer fails with a clear error.
 *
 * Shutdown order (stop() is idempotent): metadata backup (a final snapshot
 * if the tree changed) → workers → deal syncs uploads left in the background
 * (`renter.settle()`) → libp2p node → chain provider → metadata database,
 * so no transfer can write to a closed database.
 */
import { rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { getBytes, Interface, ZeroHash } from "ethers";
import { connectContracts, RegistryAbi, type RegistryContract } from "../chain/contracts.js";
import { fundDevAccount, resolveChainEndpoint } from "../chain/devchain.js";
import { peerBindingMessage } from "../chain/proofs.js";
import { createProvider, mined, walletSigner } from "../chain/signer.js";
import { marketDomain } from "../chain/signing.js";
import { type AbortOptions, withDeadline } from "../core/abort.js";
import { DstorError, isDstorError } from "../core/errors.js";
import { type Logger, silentLogger } from "../core/logging.js";
import { deriveKeys } from "../crypto/keys.js";
import type { KernelChoice } from "../erasure/index.js";
import { parseRedundancyStrategy } from "../erasure/strategy.js";
import { FarmerClient } from "../farmer/client.js";
import { BulkDialer } from "./bulk.js";
import { type MetadataDb, openMetadataDb } from "../metadata/db.js";
import { ChainDeals, DEFAULT_DEAL_TERM_SECONDS } from "../renter/deals.js";
import { type NetworkCapacity, networkCapacity } from "../renter/capacity.js";
import { createFarmerDirectory, withPeer } from "../renter/directory.js";
import { EgressAccountant } from "../renter/egress.js";
import { createOrderAuthority } from "../renter/orders.js";
import { Renter } from "../renter/renter.js";
import { MetadataBackup, type PointerStore, type SnapshotKeys } from "../renter/snapshots.js";
import { ineligibleReason, type SelectionPolicy } from "../renter/selection.js";
import type { DealProvider, FarmerDirectory, FarmerRef, PieceTransport } from "../renter/types.js";
import { dealScanner } from "../workers/farmer-audit.js";
import { createRenterKeeper } from "../workers/renter-keeper.js";
import { createRepairWorker, type RepairSummary } from "../workers/repair.js";
import { createSpotCheckWorker } from "../workers/spot-check.js";
import { chainNow, finalityTimeoutMs, resolveConfirmations, PeriodicWorker } from "../workers/worker.js";
import { findFarmersOnDht, findPeerOnDht } from "./discovery.js";
import { homePaths, loadPhrase } from "./home.js";
import { createDstorLibp2p, type DstorLibp2p } from "./libp2p.js";

/** Tokens a dev-chain renter is given by the faucet on its first deal. */
const DEV_FUND_TOKENS = 1_000_000n * 1_000_000n;

/** Default ceiling on farmers' egress prices, token units per GB (0.1 token). */
export const DEFAULT_MAX_EGRESS_PRICE_PER_GB = 100_000n;

/** Longest the final egress-voucher flush at stop may take, in ms. */
const EGRESS_FINAL_FLUSH_MS = 15_000;

/** Options of {@link openRenterNode}. */
export interface RenterNodeInit {
  home: string;
  /** Only metadata: no chain, no network (ls, stat). */
  offline?: boolean;
  chainRpc?: string | undefined;
  /** Deployment file (default HOME/chain/deployment.json). */
  deployment?: string | undefined;
  port?: number | undefined;
  /** `--farmers`. */
  farmers?: readonly string[] | undefined;
  /** `--bootstrap`: extra peers to join the DHT through. */
  bootstrap?: readonly string[] | undefined;
  /** `--dht` (default true): discover farmers and find moved ones on the DHT. */
  dht?: boolean | undefined;
  redundancy?: string;
  segmentSize?: number;
  policy?: SelectionPolicy;
  kernel?: KernelChoice;
  /**
   * Metadata backup in the network: `auto` stores a snapshot once the tree
   * has been quiet for `snapshotDelayMs` and at stop (the drive); `mark`
   * (default) only notes that the tree changed, for the next `auto` process
   * (one-shot commands); `off` keeps no backup at all (`dstor recover`,
   * which must never publish the empty database it starts from).
   */
  snapshots?: "auto" | "mark" | "off";
  /** Quiet time after the last change to the tree before a snapshot, in ms (default {@link DEFAULT_SNAPSHOT_DELAY_MS}). */
  snapshotDelayMs?: number;
  /** Deal term in seconds (`--deal-term`); default {@link defaultDealTermSeconds} of the deployment. */
  dealTermSeconds?: number | undefined;
  /** Highest egress price paid, token units per GB (`--max-egress-price-gb`; default {@link DEFAULT_MAX_EGRESS_PRICE_PER_GB}). */
  maxEgressPricePerGb?: bigint;
  /** Confirmations before the keeper treats a transaction as final (`--confirmations`; default {@link defaultConfirmations}). */
  confirmations?: number | undefined;
  /** Run the background workers (chain keeper …): long-running renters (the mounted drive) only. */
  workers?: boolean;
  logger?: Logger;
}

/** Default quiet time before a metadata snapshot, in ms. */
export const DEFAULT_SNAPSHOT_DELAY_MS = 10_000;

/** A running renter. */
export interface RenterNode {
  renter: Renter;
  metadata: MetadataDb;
  /** The renter's wallet address. */
  address: string;
  /** The on-chain metadata pointer (absent offline). */
  pointer?: PointerStore;
  /** The metadata backup (absent offline or with `snapshots: "off"`); stopped (final snapshot when `auto`) by stop(). */
  backup?: MetadataBackup;
  /** The keys snapshots are sealed and found with. */
  snapshotKeys: SnapshotKeys;
  /** What the network can still store for this renter (src/renter/capacity.ts; absent offline). */
  capacity?: (options: AbortOptions) => Promise<NetworkCapacity>;
  stop(): Promise<void>;
}

const registryInterface = new Interface(RegistryAbi);

/** The name of the Registry custom error a failed call reverted with, if any. */
function revertName(error: unknown): string | undefined {
  const e = error as { revert?: { name?: string } | null; data?: unknown; info?: { error?: { data?: unknown } } };
  if (e.revert?.name !== undefined) return e.revert.name;
  const data = typeof e.data === "string" ? e.data : e.info?.error?.data;
  if (typeof data !== "string") return undefined;
  try {
    return registryInterface.parseError(data)?.name;
  } catch {
    return undefined;
  }
}

/** The Registry's metadata pointer of `renter` as a {@link PointerStore}. */
export function registryPointerStore(registry: RegistryContract, renter: string): PointerStore {
  return {
    async read() {
      const p = await registry.pointer(renter);
      return { sequence: Number(p.sequence), contentRoot: getBytes(p.contentRoot), location: getBytes(p.location) };
    },
    async write(expectedSequence, location, contentRoot) {
      try {
        await mined(registry.setPointer(expectedSequence, ZeroHash, location, contentRoot), "publishing the metadata snapshot pointer");
      } catch (error) {
        if (revertName(error) === "SequenceMismatch") {
          throw new DstorError("SNAPSHOT_STALE", "another device moved the metadata pointer first; this one's metadata is out of date", { cause: error });
        }
        throw new DstorError("CHAIN_CALL_FAILED", `could not move the metadata pointer: ${(error as Error).message}`, { cause: error });
      }
    },
  };
}

/** Most epochs a default deal term spans. */
export const MAX_DEFAULT_TERM_EPOCHS = 500;

/**
 * The default deal term: a billing month, but at most
 * {@link MAX_DEFAULT_TERM_EPOCHS} epochs. Closing a deal whose farmer was
 * disqualified refunds every remaining epoch in one transaction (one loop
 * iteration each), so a month of 10 s dev epochs (259,200) would not fit in
 * a block; on a network (24 h epochs) this is the month.
 */
export function defaultDealTermSeconds(epochSeconds: number): number {
  return Math.min(DEFAULT_DEAL_TERM_SECONDS, MAX_DEFAULT_TERM_EPOCHS * epochSeconds);
}

/** How long the repair worker waits for a holder's info answer before counting it offline. */
const REPAIR_PROBE_TIMEOUT_MS = 5_000;

/** Where the renter keeps the summary of its last repair (for `dstor status`). */
export function lastRepairPath(home: string): string {
  return join(homePaths(home).renter, "last-repair.json");
}

/** Writes the last repair summary atomically. */
async function writeLastRepair(home: string, summary: RepairSummary): Promise<void> {
  const path = lastRepairPath(home);
  await writeFile(`${path}.tmp`, `${JSON.stringify(summary)}\n`);
  await rename(`${path}.tmp`, path);
}

/** Spot checks run twice an epoch, between every 2 s and every 5 minutes. */
export function spotCheckIntervalMs(epochSeconds: number): number {
  return Math.min(300_000, Math.max(2_000, Math.floor((epochSeconds * 1000) / 2)));
}

/** Options of {@link farmerClientTransport}. */
export interface FarmerTransportInit {
  /**
   * Current addresses of a peer (the DHT's `findPeer`), asked when a farmer
   * cannot be reached at the addresses we know: it may have moved.
   */
  findPeer?: (peerId: string, options: { signal?: AbortSignal | undefined }) => Promise<string[]>;
  logger?: Logger;
}

/**
 * The libp2p FarmerClient as the renter's {@link PieceTransport}. A farmer
 * that cannot be dialled at its known address is looked up by peer id (see
 * {@link FarmerTransportInit.findPeer}) and, if it has moved, asked there;
 * its new addresses are remembered for this process's later calls.
 */
export function farmerClientTransport(client: FarmerClient, init: FarmerTransportInit = {}): PieceTransport {
  const log = init.logger ?? silentLogger("dstor:renter:transport");
  const moved = new Map<string, string>();
  const target = (farmer: FarmerRef): string => {
    const fresh = moved.get(farmer.peerId);
    if (fresh !== undefined) return fresh;
    const ma = farmer.multiaddrs[0];
    if (ma === undefined) throw new DstorError("NOT_ENOUGH_FARMERS", `no address is known for farmer ${farmer.address}`);
    return withPeer(ma, farmer.peerId);
  };
  const call = async <T>(farmer: FarmerRef, signal: AbortSignal | undefined, fn: (at: string) => Promise<T>): Promise<T> => {
    const first = target(farmer);
    try {
      return await fn(first);
    } catch (error) {
      if (!isDstorError(error, "FARMER_UNREACHABLE") || init.findPeer === undefined || farmer.peerId === "" || signal?.aborted) throw error;
      const found = (await init.findPeer(farmer.peerId, { signal })).map((m) => withPeer(m, farmer.peerId)).filter((m) => m !== first);
      if (found.length === 0) throw error;
      log.info("farmer moved; found its new address on the DHT", { farmer: farmer.address, from: first, to: found[0] });
      moved.set(farmer.peerId, found[0]!);
      return fn(found[0]!);
    }
  };
  return {
    async put(farmer, request, options = {}) {
      await call(farmer, options.signal, (at) =>
        client.put(
          at,
          { order: request.order.order, signature: request.order.signature, pieceId: request.pieceId, size: request.data.byteLength, root: request.root },
          request.chunks ?? request.data,
          options,
        ),
      );
    },
    async get(farmer, request, options = {}) {
      // FarmerClient verifies the bytes against request.root with the farmer's multiproof.
      const result = await call(farmer, options.signal, (at) =>
        client.get(
          at,
          {
            order: request.order.order,
            signature: request.order.signature,
            pieceId: request.pieceId,
            root: request.root,
            size: request.size,
            ...(request.offset === undefined ? {} : { offset: request.offset }),
            ...(request.length === undefined ? {} : { length: request.length }),
            into: request.into,
          },
          options,
        ),
      );
      return { data: result.data };
    },
    async delete(farmer, request, options = {}) {
      await call(farmer, options.signal, (at) => client.delete(at, { order: request.order.order, signature: request.order.signature, pieceId: request.pieceId }, options));
    },
    async info(multiaddrs, options = {}) {
      const ma = multiaddrs[0];
      if (ma === undefined) throw new DstorError("INVALID_ARGUMENT", "no multiaddr given");
      const about = await client.info(ma, options);
      return { address: about.wallet, peerId: about.peerId, freeBytes: about.free, priceTbMonth: about.priceTbMonth };
    },
  };
}

const offlineError = (): DstorError => new DstorError("INTERNAL", "this renter was opened offline (metadata only)");

/** Opens the renter of `home` (see the module note). */
export async function openRenterNode(init: RenterNodeInit): Promise<RenterNode> {
  const log = init.logger ?? silentLogger("dstor:renter");
  const phrase = await loadPhrase(init.home);
  const keys = deriveKeys(phrase);
  const address = keys.wallet.address.toLowerCase();
  const snapshotKeys: SnapshotKeys = { metadataKey: keys.metadataKey, contentRootKey: keys.contentRootKey, pieceIdKey: keys.pieceIdKey };
  const strategy = parseRedundancyStrategy(init.redundancy ?? "4/6/8/10");
  const metadata = await openMetadataDb({ dir: join(homePaths(init.home).renter, "meta"), logger: log.child("metadata") });
  const cleanups: Array<() => Promise<void>> = [async () => metadata.close()];
  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      for (const fn of cleanups.reverse()) {
        try {
          await fn();
        } catch (error) {
          log.warn("shutdown step failed", { error: String(error) });
        }
      }
    })();
    return stopping;
  };
  const renterInit = {
    strategy,
    segmentSize: init.segmentSize ?? 8 * 1024 * 1024,
    pieceIdKey: keys.pieceIdKey,
    ...(init.policy === undefined ? {} : { policy: init.policy }),
    ...(init.kernel === undefined ? {} : { kernel: init.kernel }),
  };
  if (init.offline) {
    const fail = async (): Promise<never> => {
      throw offlineError();
    };
    const transport: PieceTransport = { put: fail, get: fail, delete: fail };
    const directory: FarmerDirectory = { list: fail };
    const deals: DealProvider = { ensureDeal: fail };
    const orders = { renter: address, sign: fail };
    const renter = new Renter({ metadata, transport, directory, deals, orders, logger: log }, renterInit);
    return { renter, metadata, address, snapshotKeys, stop };
  }
  try {
    const { rpcUrl, deployment } = await resolveChainEndpoint({
      home: init.home,
      chainRpc: init.chainRpc,
      port: init.port,
      deploymentPath: init.deployment,
    });
    const provider = createProvider(rpcUrl);
    cleanups.push(() => provider.close());
    const signer = walletSigner(keys.wallet.privateKey, provider);
    const contracts = connectContracts(deployment, signer);
    const node: DstorLibp2p = await createDstorLibp2p({ privateKeySeed: keys.libp2pIdentitySeed, listen: [], allowPrivateAddresses: true });
    cleanups.push(async () => {
      await node.stop();
    });
    // Piece puts and gets go over direct TLS connections where farmers offer them (src/node/bulk.ts).
    const dialer = new BulkDialer({ node, logger: log.child("bulk") });
    cleanups.push(async () => dialer.stop());
    const client = new FarmerClient({ node: dialer });
    // Bootstrap peers for DHT lookups: --bootstrap, --farmers, and every farmer this renter has used.
    const bootstrap = async (): Promise<string[]> => [
      ...(init.bootstrap ?? []),
      ...(init.farmers ?? []),
      ...(await metadata.farmers()).flatMap((r) => r.multiaddrs.map((m) => withPeer(m, r.peerId))),
    ];
    const useDht = init.dht !== false;
    const transport = farmerClientTransport(client, {
      ...(useDht ? { findPeer: async (peerId: string, options: { signal?: AbortSignal | undefined }) => findPeerOnDht(node, peerId, await bootstrap(), { ...options, logger: log.child("discovery") }) } : {}),
      logger: log.child("transport"),
    });
    const directory = createFarmerDirectory({
      registry: contracts.registry,
      bindingMessage: (wallet) => peerBindingMessage(deployment.chainId, deployment.registry, wallet),
      static: init.farmers ?? [],
      transport,
      ...(useDht ? { dht: async (known: readonly string[], options: { signal?: AbortSignal }) => findFarmersOnDht(node, [...known, ...(await bootstrap())], { signal: options.signal, logger: log.child("discovery") }) } : {}),
      logger: log.child("directory"),
    });
    const deals = new ChainDeals({
      market: contracts.market,
      token: contracts.token,
      marketAddress: deployment.market,
      renter: address,
      metadata,
      priceOf: (farmer) => contracts.registry.priceOf(farmer),
      termSeconds: init.dealTermSeconds ?? defaultDealTermSeconds(Number(deployment.params.epochSeconds)),
      prepare: async () => {
        // Dev chains have a faucet; a real network's renter funds its wallet itself.
        if (deployment.params.faucet && (await contracts.token.balanceOf(address)) < DEV_FUND_TOKENS / 2n) {
          await fundDevAccount(rpcUrl, deployment, address, DEV_FUND_TOKENS);
        }
      },
      wallet: keys.wallet,
      chainId: BigInt(deployment.chainId),
      coSign: (farmer, proposal, options) => client.signDealState(withPeer(farmer.multiaddrs[0] ?? "", farmer.peerId), { v: 1, ...proposal }, options),
      logger: log.child("deals"),
    });
    const orders = await createOrderAuthority(keys.wallet, BigInt(deployment.chainId));
    const egress = new EgressAccountant({
      wallet: keys.wallet,
      domain: marketDomain(BigInt(deployment.chainId), deployment.market),
      send: (farmer, request, options) => client.egressVoucher(withPeer(farmer.multiaddrs[0] ?? "", farmer.peerId), request, options),
      maxEgressPricePerGb: init.maxEgressPricePerGb ?? DEFAULT_MAX_EGRESS_PRICE_PER_GB,
      logger: log.child("egress"),
    });
    // Runs before libp2p stops (cleanups run in reverse): the reads of this process are paid for.
    cleanups.push(async () => {
      if (egress.pendingBytes() > 0n) await egress.flush({ signal: AbortSignal.timeout(EGRESS_FINAL_FLUSH_MS) });
    });
    const renter = new Renter({ metadata, transport, directory, deals, orders, egress, logger: log }, renterInit);
    // Cleanups run in reverse: this one after the backup and the workers stop, before libp2p and the chain provider, which the deal syncs of uploads left in the background need.
    cleanups.push(() => renter.settle());
    if (init.workers === true) {
      const keeper = createRenterKeeper({
        renter: address,
        market: contracts.market,
        registry: contracts.registry,
        randomness: contracts.randomness,
        token: contracts.token,
        marketAddress: deployment.market,
        finality: {
          confirmations: resolveConfirmations(init.confirmations, deployment.params.faucet),
          chain: provider,
          timeoutMs: finalityTimeoutMs(Number(deployment.params.epochSeconds)),
          onLost: () => signer.reset(),
        },
        dealIds: dealScanner(contracts.market as never, provider, { renter: address }, deployment.deployBlock),
        now: () => chainNow(provider),
        clock: { genesis: deployment.genesis, epochSeconds: Number(deployment.params.epochSeconds) },
        challengeProbabilityPpm: BigInt(deployment.params.challengeProbabilityPpm),
        logger: log.child("keeper"),
      });
      const spotChecks = createSpotCheckWorker({
        target: { farmers: () => metadata.farmers(), piecesOn: (a) => metadata.piecesOn(a), spotCheck: (...args) => renter.spotCheck(...args) },
        intervalMs: spotCheckIntervalMs(Number(deployment.params.epochSeconds)),
        // A failed check asks for an on-chain challenge of the farmer's deal with us next epoch.
        requestChallenge: async (farmer) => {
          const dealId = await contracts.market.latestDeal(address, farmer);
          if (dealId === 0n) return;
          await mined(contracts.market.requestChallenge(dealId), `requesting a challenge of deal ${dealId}`);
        },
        requestIntervalMs: Number(deployment.params.epochSeconds) * 1000,
        logger: log.child("spot-check"),
      });
      const policy = init.policy ?? {};
      const repair = createRepairWorker({
        target: { readdir: (p) => metadata.readdir(p), segments: (i) => metadata.segments(i), repairFile: (...args) => renter.repairFile(...args) },
        unhealthy: async (holders, { signal }) => {
          const candidates = new Map((await directory.list({ signal })).map((c) => [c.address, c]));
          const records = new Map((await metadata.farmers()).map((r) => [r.address, r]));
          const bad = new Set<string>();
          await Promise.all(
            holders.map(async (address) => {
              const c = candidates.get(address);
              const r = records.get(address);
              if (c === undefined || c.disqualified || r?.disqualified) return void bad.add(address);
              const reason = ineligibleReason(c, r, { ...policy, maxPriceTbMonth: undefined }, 0);
              if (reason !== undefined) return void bad.add(address);
              const ma = c.multiaddrs[0] ?? r?.multiaddrs[0];
              try {
                if (ma === undefined) throw new DstorError("NOT_ENOUGH_FARMERS", "no address");
                await client.info(withPeer(ma, c.peerId), { signal: withDeadline(signal, REPAIR_PROBE_TIMEOUT_MS, "probing a holder") });
              } catch {
                if (!signal.aborted) bad.add(address);
              }
            }),
          );
          return bad;
        },
        intervalMs: spotCheckIntervalMs(Number(deployment.params.epochSeconds)),
        onRepaired: (summary) => writeLastRepair(init.home, summary),
        logger: log.child("repair"),
      });
      const vouchers = new PeriodicWorker({
        name: "egress-vouchers",
        intervalMs: spotCheckIntervalMs(Number(deployment.params.epochSeconds)),
        tick: async (signal) => {
          const done = await egress.flush({ signal });
          if (done.vouchers > 0) log.child("egress").info(`egress vouchers: ${done.vouchers} delivered for ${done.amount} token units`);
        },
        logger: log.child("egress"),
      });
      keeper.start();
      spotChecks.start();
      vouchers.start();
      cleanups.push(() => vouchers.stop());
      repair.start();
      cleanups.push(() => repair.stop());
      // Stopped before the chain provider, libp2p and the metadata they use.
      cleanups.push(() => keeper.stop());
      cleanups.push(() => spotChecks.stop());
    }
    const pointer = registryPointerStore(contracts.registry, keys.wallet.address);
    const capacity = async (options: AbortOptions): Promise<NetworkCapacity> =>
      networkCapacity({ candidates: await directory.list(options), records: new Map((await metadata.farmers()).map((r) => [r.address, r])), strategy, policy: init.policy ?? {} });
    if (init.snapshots === "off") return { renter, metadata, address, pointer, snapshotKeys, capacity, stop };
    const backup = new MetadataBackup(
      { renter, metadata, pointer, logger: log.child("snapshots") },
      {
        keys: snapshotKeys,
        delayMs: init.snapshotDelayMs ?? DEFAULT_SNAPSHOT_DELAY_MS,
        dirtyMarker: join(homePaths(init.home).renter, "snapshot-dirty"),
        auto: init.snapshots === "auto",
      },
    );
    // Runs first at stop (cleanups run in reverse): the final snapshot needs the network.
    cleanups.push(() => backup.stop());
    await backup.start();
    return { renter, metadata, address, pointer, backup, snapshotKeys, capacity, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}
