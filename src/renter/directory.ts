/**
 * Farmer discovery: the on-chain registry (every active farmer, with its
 * price, capacity, reputation and addresses) plus the farmers the user names
 * with `--farmers` (asked for their identity over the node-info protocol).
 *
 * The registry stores each farmer's libp2p peer id with the peer key's
 * signature over (chain id, registry, wallet). The contract cannot afford to
 * check Ed25519, so renters must (docs/contracts.md): a registration whose
 * signature does not verify is ignored — otherwise a wallet could claim
 * somebody else's node and be paid for its storage.
 */
import { createPublicKey, verify } from "node:crypto";
import { base58btc } from "multiformats/bases/base58";
import type { AbortOptions } from "../core/abort.js";
import { type Logger, silentLogger } from "../core/logging.js";
import type { FarmerCandidate, FarmerDirectory, PieceTransport } from "./types.js";

/** The Registry reads discovery needs (ethers bindings fit). */
export interface RegistryReader {
  farmerCount(): Promise<bigint>;
  farmersPage(offset: bigint | number, limit: bigint | number): Promise<string[]>;
  farmerInfo(farmer: string): Promise<{
    status: bigint;
    successes: bigint;
    failures: bigint;
    pricePerTBMonth: bigint;
    capacityBytes: bigint;
    peerId: string;
    peerSignature: string;
    multiaddrs: string[];
  }>;
}

const STATUS_ACTIVE = 1n;
const PAGE = 100;
// DER prefix of an Ed25519 SubjectPublicKeyInfo; the raw 32-byte key follows.
const ED25519_SPKI_PREFIX = Buffer.from("302a300506032b6570032100", "hex");
// Identity multihash of a protobuf Ed25519 public key: 0x00, len 0x24, then KeyType=1, Data(32).
const ED25519_PEER_ID_PREFIX = Buffer.from("0024080112" + "20", "hex");

function bytesOf(hex: string): Buffer {
  return Buffer.from(hex.startsWith("0x") ? hex.slice(2) : hex, "hex");
}

/** True when `signature` is the Ed25519 signature of the key inside `peerId` over `message`. */
export function verifyPeerBinding(peerId: Uint8Array, signature: Uint8Array, message: Uint8Array): boolean {
  const id = Buffer.from(peerId);
  if (id.byteLength !== 38 || !id.subarray(0, 6).equals(ED25519_PEER_ID_PREFIX)) return false;
  try {
    const key = createPublicKey({ key: Buffer.concat([ED25519_SPKI_PREFIX, id.subarray(6)]), format: "der", type: "spki" });
    return verify(null, message, key, signature);
  } catch {
    return false;
  }
}

/** The string form of a peer id given as multihash bytes (base58btc, as libp2p prints it). */
export function peerIdString(peerId: Uint8Array): string {
  return base58btc.baseEncode(peerId);
}

/** Appends `/p2p/<peerId>` unless the address already names a peer. */
export function withPeer(multiaddr: string, peerId: string): string {
  return multiaddr.includes("/p2p/") || peerId === "" ? multiaddr : `${multiaddr}/p2p/${peerId}`;
}

/** Options of {@link createFarmerDirectory}. */
export interface FarmerDirectoryInit {
  registry?: RegistryReader;
  /** Builds the message a farmer's peer key signs (chain id, registry, wallet). */
  bindingMessage?: (wallet: string) => Uint8Array;
  /** `--farmers`: multiaddrs to ask directly. */
  static?: readonly string[];
  transport?: Pick<PieceTransport, "info">;
  /**
   * Farmers announced on the DHT (see src/node/discovery.ts), asked with the
   * addresses found so far as bootstrap. Peers the registry also lists get
   * the DHT's (current) addresses first; others are asked for their info and,
   * when a registry is configured, used only if it lists them as active with
   * the same peer id.
   */
  dht?: (bootstrap: readonly string[], options: AbortOptions) => Promise<Array<{ peerId: string; multiaddrs: string[] }>>;
  logger?: Logger;
}

/** Registry + `--farmers` discovery, deduplicated by wallet. */
export function createFarmerDirectory(init: FarmerDirectoryInit): FarmerDirectory {
  const log = init.logger ?? silentLogger("dstor:renter:directory");
  return {
    async list(options: AbortOptions = {}): Promise<FarmerCandidate[]> {
      const byAddress = new Map<string, FarmerCandidate>();
      if (init.registry !== undefined) {
        const registry = init.registry;
        const count = Number(await registry.farmerCount());
        for (let offset = 0; offset < count; offset += PAGE) {
          const page = await registry.farmersPage(offset, PAGE);
          const infos = await Promise.all(page.map(async (a) => ({ address: a.toLowerCase(), info: await registry.farmerInfo(a) })));
          for (const { address, info } of infos) {
            if (info.status !== STATUS_ACTIVE) continue;
            const peerBytes = bytesOf(info.peerId);
            if (init.bindingMessage !== undefined && !verifyPeerBinding(peerBytes, bytesOf(info.peerSignature), init.bindingMessage(address))) {
              log.warn("ignoring a farmer whose peer id binding does not verify", { farmer: address });
              continue;
            }
            const peerId = peerIdString(peerBytes);
            byAddress.set(address, {
              address,
              peerId,
              multiaddrs: info.multiaddrs.map((m) => withPeer(m, peerId)),
              priceTbMonth: info.pricePerTBMonth,
              freeBytes: info.capacityBytes,
              chainSuccesses: Number(info.successes),
              chainFailures: Number(info.failures),
              disqualified: false,
            });
          }
        }
      }
      const info = init.transport?.info;
      if (init.static !== undefined && init.static.length > 0 && info !== undefined) {
        await Promise.all(
          init.static.map(async (ma) => {
            try {
              const about = await info.call(init.transport, [ma], options);
              const address = about.address.toLowerCase();
              const known = byAddress.get(address);
              byAddress.set(address, {
                address,
                peerId: about.peerId,
                multiaddrs: [withPeer(ma, about.peerId)],
                priceTbMonth: about.priceTbMonth,
                freeBytes: about.freeBytes,
                chainSuccesses: known?.chainSuccesses ?? 0,
                chainFailures: known?.chainFailures ?? 0,
                disqualified: false,
              });
            } catch (error) {
              log.warn("a farmer named with --farmers did not answer", { multiaddr: ma, error });
            }
          }),
        );
      }
      if (init.dht !== undefined) await mergeDhtFarmers(init, byAddress, options, log);
      return [...byAddress.values()];
    },
  };
}

/** Adds what the DHT knows to `byAddress` (see {@link FarmerDirectoryInit.dht}). */
async function mergeDhtFarmers(init: FarmerDirectoryInit, byAddress: Map<string, FarmerCandidate>, options: AbortOptions, log: Logger): Promise<void> {
  const bootstrap = [...[...byAddress.values()].flatMap((c) => c.multiaddrs), ...(init.static ?? [])];
  let found: Array<{ peerId: string; multiaddrs: string[] }>;
  try {
    found = await init.dht!(bootstrap, options);
  } catch (error) {
    log.warn("DHT discovery failed; using the registry and --farmers only", { error: String(error) });
    return;
  }
  const byPeer = new Map([...byAddress.values()].map((c) => [c.peerId, c]));
  await Promise.all(
    found.map(async ({ peerId, multiaddrs }) => {
      const addrs = multiaddrs.map((m) => withPeer(m, peerId));
      if (addrs.length === 0) return;
      const known = byPeer.get(peerId);
      if (known !== undefined) {
        byAddress.set(known.address, { ...known, multiaddrs: [...new Set([...addrs, ...known.multiaddrs])] });
        return;
      }
      const info = init.transport?.info;
      if (info === undefined) return;
      try {
        const about = await info.call(init.transport, addrs, options);
        const address = about.address.toLowerCase();
        if (about.peerId !== peerId || byAddress.has(address)) return;
        let chain = { successes: 0, failures: 0 };
        if (init.registry !== undefined) {
          const record = await init.registry.farmerInfo(address);
          const bound = peerIdString(bytesOf(record.peerId)) === peerId;
          if (record.status !== STATUS_ACTIVE || !bound) {
            log.debug("ignoring a DHT farmer the registry does not list as active with that peer id", { farmer: address, peerId });
            return;
          }
          chain = { successes: Number(record.successes), failures: Number(record.failures) };
        }
        byAddress.set(address, {
          address,
          peerId,
          multiaddrs: addrs,
          priceTbMonth: about.priceTbMonth,
          freeBytes: about.freeBytes,
          chainSuccesses: chain.successes,
          chainFailures: chain.failures,
          disqualified: false,
        });
      } catch (error) {
        log.debug("a farmer found on the DHT did not answer", { peerId, error: String(error) });
      }
    }),
  );
}
