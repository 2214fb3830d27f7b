/**
 * Farmer discovery over the Kademlia DHT, beside the on-chain registry.
 *
 * The registry is the source of truth for who is a farmer (stake, price,
 * reputation, the peer id bound to the wallet); the DHT answers two questions
 * the registry cannot answer well:
 *
 * - **who is out there right now**: every farmer announces itself as a
 *   provider of one well-known key, {@link FARMERS_KEY}; a renter asks the
 *   DHT for its providers and learns live farmers with their current
 *   addresses, even ones it was only told one bootstrap address for
 *   (`--farmers`);
 * - **where is this peer now**: a farmer that moved (new port, new IP) is
 *   found by its peer id (`findPeer`) although the addresses the renter
 *   remembers, or the registry lists, are stale.
 *
 * Joining: a DHT node needs at least one peer to start from. Farmers dial a
 * few other registered farmers (their on-chain addresses) and any
 * `--bootstrap` peers; a renter dials the farmers it already knows (from its
 * metadata, the registry, `--farmers`). Identify then adds DHT servers to the
 * routing table on its own.
 */
import type { PeerId } from "@libp2p/interface";
import { peerIdFromString } from "@libp2p/peer-id";
import { type Multiaddr, multiaddr } from "@multiformats/multiaddr";
import { CID } from "multiformats/cid";
import { sha256 } from "multiformats/hashes/sha2";
import { type Logger, silentLogger } from "../core/logging.js";
import type { DstorLibp2p } from "./libp2p.js";

/** Raw-bytes multicodec of the provider key. */
const RAW_CODEC = 0x55;

/** The DHT key every farmer provides: CIDv1(raw, sha2-256("/dstor/farmers/1")). */
export const FARMERS_KEY: CID = CID.createV1(RAW_CODEC, await sha256.digest(new TextEncoder().encode("/dstor/farmers/1")));

/** Peers dialled at most to join the DHT (enough for a routing table to grow from). */
export const BOOTSTRAP_DIALS = 8;

/** How long one DHT query may run before its partial answer is used. */
export const DHT_QUERY_TIMEOUT_MS = 5_000;

/** How often a farmer re-announces itself (the DHT forgets provider records after a day). */
export const PROVIDE_INTERVAL_MS = 6 * 60 * 60_000;

/** A peer the DHT told us about. */
export interface FoundPeer {
  peerId: string;
  multiaddrs: string[];
}

/** Peer id of a `/p2p/…` multiaddr, if it has one. */
export function peerOf(addr: string): string | undefined {
  const match = /\/p2p\/([^/]+)$/.exec(addr);
  return match?.[1];
}

/**
 * Dials up to {@link BOOTSTRAP_DIALS} of `addrs` (multiaddrs ending in
 * `/p2p/<id>`; others are skipped: a DHT peer must be known by id) that are
 * not this node and not already connected. Failures are normal (a farmer may
 * be down) and only logged. Resolves with the number of connected peers.
 */
export async function joinDht(node: DstorLibp2p, addrs: readonly string[], options: { signal?: AbortSignal; logger?: Logger } = {}): Promise<number> {
  const log = options.logger ?? silentLogger("dstor:discovery");
  const self = node.peerId.toString();
  const connected = new Set(node.getConnections().map((c) => c.remotePeer.toString()));
  const byPeer = new Map<string, Multiaddr[]>();
  for (const addr of addrs) {
    const peer = peerOf(addr);
    if (peer === undefined || peer === self || connected.has(peer)) continue;
    try {
      byPeer.set(peer, [...(byPeer.get(peer) ?? []), multiaddr(addr)]);
    } catch {
      log.debug("skipping a malformed bootstrap address", { addr });
    }
  }
  const chosen = [...byPeer.values()].sort(() => Math.random() - 0.5).slice(0, Math.max(0, BOOTSTRAP_DIALS - connected.size));
  await Promise.all(
    chosen.map(async (targets) => {
      try {
        await node.dial(targets, { signal: AbortSignal.any([AbortSignal.timeout(DHT_QUERY_TIMEOUT_MS), ...(options.signal ? [options.signal] : [])]) });
      } catch (error) {
        log.debug("bootstrap dial failed", { addr: targets[0]?.toString(), error: String(error) });
      }
    }),
  );
  return node.getConnections().length;
}

/**
 * Announces `node` as a farmer on the DHT now and every
 * {@link PROVIDE_INTERVAL_MS} until the returned stop function is called.
 * `bootstrap` yields the addresses to join through (called before each
 * announcement, so it may read the registry afresh).
 */
export function announceFarmer(node: DstorLibp2p, bootstrap: () => Promise<readonly string[]>, options: { logger?: Logger; intervalMs?: number } = {}): () => Promise<void> {
  const log = options.logger ?? silentLogger("dstor:discovery");
  const controller = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  const announce = async (): Promise<void> => {
    try {
      await joinDht(node, await bootstrap(), { signal: controller.signal, logger: log });
      await node.contentRouting.provide(FARMERS_KEY, { signal: AbortSignal.any([controller.signal, AbortSignal.timeout(4 * DHT_QUERY_TIMEOUT_MS)]) });
      log.info("announced on the DHT", { peers: node.getConnections().length });
    } catch (error) {
      if (!controller.signal.aborted) log.warn("DHT announcement failed; will retry", { error: String(error) });
    }
  };
  const running = announce().finally(() => {
    if (!controller.signal.aborted) timer = setInterval(() => void announce(), options.intervalMs ?? PROVIDE_INTERVAL_MS).unref();
  });
  return async () => {
    controller.abort();
    clearInterval(timer);
    await running;
  };
}

/**
 * Farmers that announced themselves on the DHT, as found within
 * {@link DHT_QUERY_TIMEOUT_MS}. Joins the DHT through `bootstrap` first.
 */
export async function findFarmersOnDht(
  node: DstorLibp2p,
  bootstrap: readonly string[],
  options: { signal?: AbortSignal | undefined; logger?: Logger; timeoutMs?: number } = {},
): Promise<FoundPeer[]> {
  const log = options.logger ?? silentLogger("dstor:discovery");
  await joinDht(node, bootstrap, { ...(options.signal ? { signal: options.signal } : {}), logger: log });
  const found = new Map<string, FoundPeer>();
  const signal = AbortSignal.any([AbortSignal.timeout(options.timeoutMs ?? DHT_QUERY_TIMEOUT_MS), ...(options.signal ? [options.signal] : [])]);
  try {
    for await (const provider of node.contentRouting.findProviders(FARMERS_KEY, { signal })) {
      const peerId = provider.id.toString();
      if (peerId === node.peerId.toString()) continue;
      const multiaddrs = provider.multiaddrs.map((m) => m.toString());
      if (multiaddrs.length === 0) {
        const stored = await node.peerStore.get(provider.id).catch(() => undefined);
        multiaddrs.push(...(stored?.addresses.map((a) => a.multiaddr.toString()) ?? []));
      }
      found.set(peerId, { peerId, multiaddrs });
    }
  } catch (error) {
    // A timeout ends the query with what was found so far.
    if (options.signal?.aborted) throw error;
    if (!signal.aborted) log.debug("DHT provider query failed", { error: String(error) });
  }
  return [...found.values()];
}

/**
 * Current addresses of `peerId` from the DHT (`findPeer`), after joining
 * through `bootstrap`; empty when nobody knows them in time.
 */
export async function findPeerOnDht(
  node: DstorLibp2p,
  peerId: string | PeerId,
  bootstrap: readonly string[],
  options: { signal?: AbortSignal | undefined; logger?: Logger } = {},
): Promise<string[]> {
  const log = options.logger ?? silentLogger("dstor:discovery");
  await joinDht(node, bootstrap, { ...(options.signal ? { signal: options.signal } : {}), logger: log });
  const id = typeof peerId === "string" ? peerIdFromString(peerId) : peerId;
  try {
    // useCache false: the peer store holds exactly the stale address that just failed.
    const info = await node.peerRouting.findPeer(id, {
      useCache: false,
      signal: AbortSignal.any([AbortSignal.timeout(DHT_QUERY_TIMEOUT_MS), ...(options.signal ? [options.signal] : [])]),
    });
    return info.multiaddrs.map((m) => m.toString());
  } catch (error) {
    if (options.signal?.aborted) throw error;
    log.debug("DHT peer lookup failed", { peerId: id.toString(), error: String(error) });
    return [];
  }
}
