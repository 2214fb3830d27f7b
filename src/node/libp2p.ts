/**
 * The one libp2p node factory of dstor, shared by the farmer daemon and the
 * renter. Both sides must agree on transports, encryption and multiplexing,
 * so the stack is chosen here once:
 *
 * - transport: TCP (NAT traversal — autonat, circuit relay, dcutr — comes
 *   later as extra services; nothing here assumes a public address);
 * - encryption: TLS 1.3 via Node's OpenSSL (`@libp2p/tls`) first, noise
 *   second. Both are secure; TLS is listed first because AES-GCM in OpenSSL
 *   moves bulk piece data several times faster than noise's JavaScript
 *   ChaCha20-Poly1305 (measured by `npm run bench:transfer`). Peers that only
 *   speak noise still connect;
 * - multiplexing: yamux with a large per-stream window, so one piece transfer
 *   is not throttled by window updates on a fast link;
 * - identify, ping, and kad-dht: farmers announce themselves as providers of
 *   one key and the DHT maps peer ids to current addresses (src/node/discovery.ts);
 *   the on-chain registry stays the authority on who is a farmer.
 *
 * Limits are set deliberately rather than left to library defaults: a farmer
 * serves many renters but each renter needs only a handful of streams, so
 * connections are capped globally and streams per protocol per connection.
 */
import { noise } from "@chainsafe/libp2p-noise";
import { yamux } from "@chainsafe/libp2p-yamux";
import { generateKeyPairFromSeed } from "@libp2p/crypto/keys";
import { identify } from "@libp2p/identify";
import type { Libp2p, PrivateKey } from "@libp2p/interface";
import { type KadDHT, kadDHT, passthroughMapper, removePrivateAddressesMapper } from "@libp2p/kad-dht";
import { type Ping, ping } from "@libp2p/ping";
import { tcp } from "@libp2p/tcp";
import { tls } from "@libp2p/tls";
import { createLibp2p } from "libp2p";
import { DstorError } from "../core/errors.js";
import { MIB } from "../core/units.js";

/** Connection encryption choices, in preference order when several are enabled. */
export type Libp2pEncryption = "tls" | "noise";

/** Services every dstor node runs. */
export type DstorLibp2pServices = {
  identify: unknown;
  ping: Ping;
  dht: KadDHT;
};

/** A started dstor libp2p node. */
export type DstorLibp2p = Libp2p<DstorLibp2pServices>;

/** Options of {@link createDstorLibp2p}. */
export interface DstorLibp2pInit {
  /** 32-byte Ed25519 seed of the node's identity (`deriveKeys(phrase).libp2pIdentitySeed`). */
  privateKeySeed: Uint8Array;
  /** Multiaddrs to listen on; empty (the default) for a dial-only node such as a renter. */
  listen?: readonly string[];
  /** Addresses to announce instead of the listen addresses (e.g. a public IP behind port forwarding). */
  announce?: readonly string[];
  /**
   * Encryption protocols, most preferred first (default `["tls", "noise"]`).
   * Both ends negotiate the first one they share.
   */
  encryption?: readonly Libp2pEncryption[];
  /**
   * True on a private or loopback network (tests, `dstor up`): the DHT keeps
   * loopback and private addresses instead of dropping them.
   */
  allowPrivateAddresses?: boolean;
  /** Run the DHT in server mode (answer queries). Default: true when listening. */
  dhtServer?: boolean;
  /** Largest number of open connections (default {@link DEFAULT_MAX_CONNECTIONS}). */
  maxConnections?: number;
  /** Do not start the node (the caller calls `start()`). Default false. */
  deferStart?: boolean;
}

/** Default cap on open connections: a farmer talks to many renters, but each holds few. */
export const DEFAULT_MAX_CONNECTIONS = 300;

/** Default cap on connections still in their handshake (limits handshake-flood cost). */
export const MAX_PENDING_INBOUND_CONNECTIONS = 32;

/** Largest yamux stream window, in bytes: lets one stream fill a fast link without waiting on window updates. */
export const YAMUX_MAX_STREAM_WINDOW_BYTES = 16 * MIB;

/** Largest yamux data message, in bytes (bigger messages mean fewer frame headers and syscalls). */
export const YAMUX_MAX_MESSAGE_BYTES = 256 * 1024;

/**
 * How often libp2p's connection monitor pings each open connection, in ms
 * (libp2p's default is 10 s). A ping is a whole new stream — multistream
 * negotiation, a peer-store write, 32 bytes each way — and both ends of every
 * connection send their own, so at 10 s the pings were most of what an idle
 * farmer did: with ten farmers and a renter, each farmer spent 0.0088 cores
 * idle, 0.0035 at 60 s. A minute still notices a dead connection (a peer
 * whose machine vanished without closing its sockets) long before the TCP
 * inactivity timeout would, and transfers have their own deadlines; yamux's
 * keep-alive frames (every 30 s) keep quiet connections open meanwhile.
 */
export const CONNECTION_PING_INTERVAL_MS = 60_000;

/** Streams one connection may open to us at once, over all protocols (yamux-level backstop). */
export const MAX_INBOUND_STREAMS_PER_CONNECTION = 64;

/** Libp2p identity from a 32-byte seed (the same seed always gives the same PeerId). */
export async function privateKeyFromSeed(seed: Uint8Array): Promise<PrivateKey> {
  if (!(seed instanceof Uint8Array) || seed.byteLength !== 32) {
    throw new DstorError("INVALID_ARGUMENT", "the libp2p identity seed must be 32 bytes");
  }
  return generateKeyPairFromSeed("Ed25519", seed);
}

/**
 * Creates (and by default starts) a dstor libp2p node: tcp, tls/noise, yamux,
 * identify, ping and kad-dht, with connection and stream limits set.
 */
export async function createDstorLibp2p(init: DstorLibp2pInit): Promise<DstorLibp2p> {
  const privateKey = await privateKeyFromSeed(init.privateKeySeed);
  const listen = [...(init.listen ?? [])];
  const encryption = init.encryption ?? ["tls", "noise"];
  if (encryption.length === 0) throw new DstorError("INVALID_ARGUMENT", "at least one connection encryption must be enabled");
  const encrypters = encryption.map((name) => {
    if (name === "tls") return tls();
    if (name === "noise") return noise();
    throw new DstorError("INVALID_ARGUMENT", `unknown connection encryption ${String(name)}`);
  });
  const maxConnections = init.maxConnections ?? DEFAULT_MAX_CONNECTIONS;
  const node = await createLibp2p({
    privateKey,
    start: init.deferStart !== true,
    addresses: { listen, ...(init.announce === undefined ? {} : { announce: [...init.announce] }) },
    transports: [tcp({ inboundSocketInactivityTimeout: 5 * 60_000, outboundSocketInactivityTimeout: 5 * 60_000 })],
    connectionEncrypters: encrypters,
    streamMuxers: [
      yamux({
        maxInboundStreams: MAX_INBOUND_STREAMS_PER_CONNECTION,
        maxMessageSize: YAMUX_MAX_MESSAGE_BYTES,
        streamOptions: {
          maxStreamWindowSize: YAMUX_MAX_STREAM_WINDOW_BYTES,
          initialStreamWindowSize: 256 * 1024,
        },
      }),
    ],
    connectionMonitor: { pingInterval: CONNECTION_PING_INTERVAL_MS },
    connectionManager: {
      maxConnections,
      maxIncomingPendingConnections: MAX_PENDING_INBOUND_CONNECTIONS,
      inboundUpgradeTimeout: 10_000,
    },
    services: {
      identify: identify(),
      ping: ping(),
      dht: kadDHT({
        clientMode: !(init.dhtServer ?? listen.length > 0),
        peerInfoMapper: init.allowPrivateAddresses === true ? passthroughMapper : removePrivateAddressesMapper,
      }),
    },
  });
  return node as unknown as DstorLibp2p;
}
