/**
 * Composition root of the farmer daemon: identity (phrase → wallet and
 * libp2p key), piece store, replay database, chain connection, libp2p node
 * with the dstor protocol handlers, and on-chain registration.
 *
 * Start order: home → store (reconciles after a crash) → serials → chain →
 * libp2p (handlers registered before listening addresses are announced) →
 * dev-chain funding → registry join/update → expiry sweep.
 * Stop order is the reverse of what can still receive work: the service
 * first (new streams are refused, in-flight uploads aborted, never half
 * committed), then libp2p, then the stores and the chain provider.
 */
import { join } from "node:path";
import type { Stream } from "@libp2p/interface";
import { connectContracts, type Deployment, TOKEN_UNIT } from "../chain/contracts.js";
import { fundDevAccount } from "../chain/devchain.js";
import { peerBindingMessage } from "../chain/proofs.js";
import { marketDomain } from "../chain/signing.js";
import { createProvider, walletSigner } from "../chain/signer.js";
import { DstorError } from "../core/errors.js";
import { type Logger, silentLogger } from "../core/logging.js";
import { deriveKeys } from "../crypto/keys.js";
import { ChainDealChecker, type RegistrationResult, registerFarmer, requiredStake } from "../farmer/chain.js";
import { DealStateSigner } from "../farmer/deal-sign.js";
import { DEFAULT_EGRESS_PRICE_PER_GB, EgressVoucherBook } from "../farmer/egress.js";
import { type FarmerHandler, FarmerService, type FarmerStream } from "../farmer/service.js";
import { createFsPieceStore } from "../farmer/store/fs-store.js";
import { MAX_CONCURRENT_STREAMS_PER_PEER } from "../protocol/limits.js";
import { type DstorProtocolId, PIECE_PUT_PROTOCOL } from "../protocol/protocols.js";
import { openLevelSerialStore } from "../protocol/serials.js";
import { createFarmerDirectory } from "../renter/directory.js";
import { announceFarmer } from "./discovery.js";
import { createFarmerAuditWorker, dealScanner } from "../workers/farmer-audit.js";
import { chainNow, finalityTimeoutMs, resolveConfirmations } from "../workers/worker.js";
import { BULK_TICKET_PROTOCOL, BulkServer, bulkListenHost } from "./bulk.js";
import { homePaths, initHome } from "./home.js";
import { createDstorLibp2p, type DstorLibp2p, type Libp2pEncryption, privateKeyFromSeed } from "./libp2p.js";

/** Software version reported by `/dstor/node/info/1`. */
export const FARMER_VERSION = "0.1.0";

/** Concurrent puts one connection may run (each holds a reservation and a temp file). */
const MAX_INBOUND_PUTS_PER_CONNECTION = 8;

/** Options of {@link startFarmerNode}. */
export interface FarmerNodeInit {
  /** Home directory (phrase, databases). */
  home: string;
  /** Phrase to create the home with (first run only); default: a new random phrase. */
  phrase?: string;
  /** Piece directory (default HOME/farmer). */
  storageDir?: string;
  /** Bytes offered. */
  quotaBytes: number;
  /** Price in whole tokens per TB-month (e.g. 1.5). */
  priceTbMonth: number;
  /** Egress price in whole tokens per GB read (default 0.01, see DEFAULT_EGRESS_PRICE_PER_GB). */
  egressPriceGb?: number;
  /** libp2p listen multiaddrs. */
  listen: string[];
  /** Addresses to announce instead of the listen addresses. */
  announce?: string[];
  /** Port of the direct-transfer listener (src/node/bulk.ts); 0 (default) picks one, -1 turns it off. */
  bulkPort?: number;
  /** `--bootstrap`: extra peers to join the DHT through (registered farmers are used too). */
  bootstrap?: readonly string[];
  /** `--dht` (default true): announce this farmer on the DHT. */
  dht?: boolean;
  /** Chain endpoint and the contracts on it. */
  rpcUrl: string;
  deployment: Deployment;
  /** Join or update the on-chain registry (default true). */
  register?: boolean;
  /** Fund the wallet from the faucet (dev chains only; default: when the deployment has a faucet). */
  fundDevChain?: boolean;
  /** How long unconfirmed pieces live, in ms. */
  unconfirmedPieceTtlMs?: number;
  /** Interval of the expiry sweep, in ms. */
  sweepIntervalMs?: number;
  /** Keep loopback/private addresses in the DHT (tests, local clusters). */
  allowPrivateAddresses?: boolean;
  /** Connection encryption preference. */
  encryption?: Libp2pEncryption[];
  /** Test hook: refuse every read (see FarmerServiceInit.refuseReads). */
  refuseReads?: boolean;
  /** Confirmations before the audit worker treats a transaction as final (default {@link defaultConfirmations}). */
  confirmations?: number;
  /** Run the audit/payment worker (default true; needs `register`). */
  audits?: boolean;
  /** Whole-stream deadlines per protocol, in ms (tests shorten them). */
  timeoutsMs?: Partial<Record<DstorProtocolId, number>>;
  logger?: Logger;
}

/** A running farmer. */
export interface FarmerNode {
  /** libp2p PeerId (base58btc). */
  readonly peerId: string;
  /** Listening multiaddrs, each ending in /p2p/PEERID. */
  readonly addrs: string[];
  /** Wallet address (checksummed). */
  readonly wallet: string;
  readonly chainId: bigint;
  /** What registration did, or "skipped". */
  readonly registration: RegistrationResult | "skipped";
  readonly libp2p: DstorLibp2p;
  /** Port of the direct-transfer listener, when it runs. */
  readonly bulkPort: number | undefined;
  readonly service: FarmerService;
  /** Stops everything; idempotent. */
  stop(): Promise<void>;
}

/** Parses a price in whole tokens (e.g. 1.5) into token units, exactly (6 decimals). */
export function priceToUnits(priceTbMonth: number, option = "--price-tb-month"): bigint {
  if (!Number.isFinite(priceTbMonth) || priceTbMonth < 0) throw new DstorError("INVALID_OPTION", `${option} must be a non-negative number`);
  const [whole = "0", frac = ""] = priceTbMonth.toFixed(6).split(".");
  return BigInt(whole) * TOKEN_UNIT + BigInt(frac.padEnd(6, "0").slice(0, 6));
}

/** Starts a farmer; see the module comment for the order of things. */
export async function startFarmerNode(init: FarmerNodeInit): Promise<FarmerNode> {
  const log = init.logger ?? silentLogger("dstor:farmer");
  const paths = homePaths(init.home);
  const identity = await initHome(init.home, init.phrase);
  const keys = deriveKeys(identity.phrase);
  const wallet = keys.wallet.address;
  const chainId = BigInt(init.deployment.chainId);
  const price = priceToUnits(init.priceTbMonth);
  const cleanups: Array<() => Promise<void>> = [];
  const cleanup = async (): Promise<void> => {
    for (const fn of cleanups.reverse()) {
      try {
        await fn();
      } catch (error) {
        log.warn("cleanup step failed", { error: String(error) });
      }
    }
  };
  try {
    const store = createFsPieceStore({ dir: init.storageDir ?? paths.farmer, quotaBytes: init.quotaBytes, logger: log });
    await store.start();
    cleanups.push(() => store.stop());
    const serials = await openLevelSerialStore({ path: join(paths.root, "farmer-serials"), logger: log });
    cleanups.push(() => serials.close());
    const provider = createProvider(init.rpcUrl);
    cleanups.push(() => provider.close());
    const signer = walletSigner(keys.wallet.privateKey, provider);
    const contracts = connectContracts(init.deployment, signer);
    const deals = new ChainDealChecker({ market: contracts.market, logger: log });
    const dealSigner = new DealStateSigner({
      market: contracts.market,
      wallet: keys.wallet,
      farmer: wallet,
      domain: marketDomain(chainId, init.deployment.market),
      store,
    });
    const egressVouchers = await EgressVoucherBook.open({
      path: join(paths.root, "farmer-egress-vouchers.json"),
      market: contracts.market,
      farmer: wallet,
      domain: marketDomain(chainId, init.deployment.market),
      egressPricePerGb: init.egressPriceGb === undefined ? DEFAULT_EGRESS_PRICE_PER_GB : priceToUnits(init.egressPriceGb, "--egress-price-gb"),
      logger: log.child("egress"),
    });
    const node = await createDstorLibp2p({
      privateKeySeed: keys.libp2pIdentitySeed,
      listen: init.listen,
      ...(init.announce === undefined ? {} : { announce: init.announce }),
      ...(init.encryption === undefined ? {} : { encryption: init.encryption }),
      allowPrivateAddresses: init.allowPrivateAddresses ?? false,
    });
    cleanups.push(async () => {
      await node.stop();
    });
    const peerId = node.peerId.toString();
    const service = new FarmerService({
      store,
      serials,
      deals,
      chainId,
      wallet,
      peerId,
      priceTbMonth: price,
      version: FARMER_VERSION,
      dealSigner,
      egressVouchers,
      refuseReads: init.refuseReads === true,
      ...(init.unconfirmedPieceTtlMs === undefined ? {} : { unconfirmedPieceTtlMs: init.unconfirmedPieceTtlMs }),
      ...(init.sweepIntervalMs === undefined ? {} : { sweepIntervalMs: init.sweepIntervalMs }),
      ...(init.timeoutsMs === undefined ? {} : { timeoutsMs: init.timeoutsMs }),
      logger: log,
    });
    cleanups.push(() => service.stop());
    const handlers = service.handlers();
    for (const [protocol, handler] of Object.entries(handlers)) {
      await node.handle(
        protocol,
        (stream: Stream, connection) => handler(stream as unknown as FarmerStream, connection.remotePeer.toString()),
        {
          maxInboundStreams: protocol === PIECE_PUT_PROTOCOL ? MAX_INBOUND_PUTS_PER_CONNECTION : MAX_CONCURRENT_STREAMS_PER_PEER,
          maxOutboundStreams: 1,
        },
      );
    }
    const bulkPort = await startBulk(init, handlers, node, cleanups, log);
    const addrs = node.getMultiaddrs().map((a) => a.toString());
    let registration: RegistrationResult | "skipped" = "skipped";
    if (init.register !== false) {
      const minStakePerTB = BigInt(init.deployment.params.minStakePerTB);
      if (init.fundDevChain ?? init.deployment.params.faucet) {
        await fundDevAccount(init.rpcUrl, init.deployment, wallet, requiredStake(minStakePerTB, BigInt(init.quotaBytes)) + TOKEN_UNIT);
      }
      const privateKey = await privateKeyFromSeed(keys.libp2pIdentitySeed);
      registration = await registerFarmer({
        registry: contracts.registry,
        registryAddress: init.deployment.registry,
        token: contracts.token,
        wallet,
        peerId: node.peerId.toMultihash().bytes,
        signPeerBinding: async () => privateKey.sign(peerBindingMessage(chainId, init.deployment.registry, wallet)),
        pricePerTBMonth: price,
        capacityBytes: BigInt(init.quotaBytes),
        minStakePerTB,
        multiaddrs: init.announce ?? addrs.map((a) => a.replace(/\/p2p\/[^/]+$/, "")),
        logger: log,
      });
    }
    service.start();
    if (init.dht !== false) {
      const registered = createFarmerDirectory({
        registry: contracts.registry,
        bindingMessage: (address) => peerBindingMessage(chainId, init.deployment.registry, address),
        logger: log.child("directory"),
      });
      const stopAnnouncing = announceFarmer(node, async () => [...(init.bootstrap ?? []), ...(await registered.list()).flatMap((c) => c.multiaddrs)], {
        logger: log.child("discovery"),
      });
      cleanups.push(stopAnnouncing);
    }
    if (init.register !== false && init.audits !== false) {
      const params = init.deployment.params;
      const worker = createFarmerAuditWorker({
        farmer: wallet,
        market: contracts.market,
        randomness: contracts.randomness,
        store,
        dealIds: dealScanner(contracts.market as never, provider, { farmer: wallet }, init.deployment.deployBlock),
        now: () => chainNow(provider),
        clock: { genesis: init.deployment.genesis, epochSeconds: Number(params.epochSeconds) },
        challengeProbabilityPpm: BigInt(params.challengeProbabilityPpm),
        samplesPerChallenge: Number(params.samplesPerChallenge),
        signedPieces: (dealId, root) => dealSigner.signedPieces(dealId, root),
        coordinator: dealSigner,
        vouchers: egressVouchers,
        finality: {
          confirmations: resolveConfirmations(init.confirmations, init.deployment.params.faucet),
          chain: provider,
          timeoutMs: finalityTimeoutMs(Number(params.epochSeconds)),
          onLost: () => signer.reset(),
        },
        logger: log.child("audit"),
      });
      worker.start();
      // Before the service and the store stop: a round in flight reads pieces.
      cleanups.push(() => worker.stop());
    }
    let stopping: Promise<void> | undefined;
    return {
      peerId,
      addrs,
      wallet,
      chainId,
      registration,
      libp2p: node,
      bulkPort,
      service,
      stop() {
        stopping ??= cleanup();
        return stopping;
      },
    };
  } catch (error) {
    await cleanup();
    throw error;
  }
}

/**
 * Starts the direct-transfer listener on the host of the first TCP listen
 * address and serves its tickets over libp2p; returns its port (undefined
 * when turned off or when no listen address is a plain IP).
 */
async function startBulk(
  init: FarmerNodeInit,
  handlers: Record<string, FarmerHandler>,
  node: DstorLibp2p,
  cleanups: Array<() => Promise<void>>,
  log: Logger,
): Promise<number | undefined> {
  const port = checkBulkPort(init.bulkPort ?? 0);
  if (port === -1) return undefined;
  const host = bulkListenHost(init.listen);
  if (host === undefined) {
    log.warn("no /ip4 or /ip6 TCP listen address; direct transfers are off");
    return undefined;
  }
  const bulk = new BulkServer({ host, port, handlers, logger: log.child("bulk") });
  try {
    await bulk.start();
  } catch (error) {
    throw new DstorError("INVALID_OPTION", `cannot listen for direct transfers on ${host}:${port}: ${(error as Error).message}`, { cause: error });
  }
  cleanups.push(() => bulk.stop());
  const issue = bulk.ticketHandler();
  await node.handle(BULK_TICKET_PROTOCOL, (stream: Stream, connection) => issue(stream as unknown as FarmerStream, connection.remotePeer.toString()), {
    maxInboundStreams: 4,
    maxOutboundStreams: 1,
  });
  return bulk.port;
}

/** `--bulk-port`: a port, 0 for any free one, or -1 for off; anything else is INVALID_OPTION. */
export function checkBulkPort(port: number): number {
  if (!Number.isInteger(port) || port < -1 || port > 65535) {
    throw new DstorError("INVALID_OPTION", `--bulk-port must be a port number, 0 for any free port, or -1 for off (got ${port})`);
  }
  return port;
}
