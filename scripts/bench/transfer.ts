/**
 * `npm run bench:transfer`: piece transfer throughput between two processes
 * on loopback, one JSON object per line: `{ name, MBps, ratioToBaseline }`
 * (MB = 10^6 bytes; best of several runs of 64 MiB).
 *
 * - tcp-fsync (the baseline): the same bytes over a plain TCP socket to a
 *   child process that writes them to a file and fsyncs before acknowledging.
 * - piece-put, piece-get: one farmer child process (FarmerService, file-system
 *   piece store, fsync on commit) and this process as the renter, over the
 *   default libp2p stack (TLS first). Orders are real and verified; only the
 *   deal lookup is stubbed (it is cached per deal in the real farmer anyway).
 * - piece-put/noise, piece-get/noise and piece-put/tls, piece-get/tls: the
 *   same with one encryption forced, to show why TLS is preferred.
 *
 * Usage: node dist/scripts/bench/transfer.js [--quick]
 */
import { fork } from "node:child_process";
import { randomBytes } from "node:crypto";
import { createWriteStream } from "node:fs";
import { mkdtemp, open, rm } from "node:fs/promises";
import { connect, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Wallet } from "ethers";
import { merkleRoot } from "../../src/crypto/merkle.js";
import { FarmerClient } from "../../src/farmer/client.js";
import { FarmerService, type FarmerStream } from "../../src/farmer/service.js";
import { createFsPieceStore } from "../../src/farmer/store/fs-store.js";
import { createDstorLibp2p, type Libp2pEncryption } from "../../src/node/libp2p.js";
import { createOrder, OrderAction, signOrder } from "../../src/protocol/orders.js";
import { DSTOR_PROTOCOLS } from "../../src/protocol/protocols.js";
import { openLevelSerialStore } from "../../src/protocol/serials.js";
import { emit, mbps, round } from "./harness.js";

const PIECE_BYTES = 64 * 1024 * 1024;
const CHAIN_ID = 31337n;
const quick = process.argv.includes("--quick");
const RUNS = quick ? 2 : 4;

type ChildMessage = { port?: number; addr?: string; wallet?: string; done?: boolean };

// ------------------------------------------------------------------ children

async function tcpSinkChild(dir: string): Promise<void> {
  let n = 0;
  const server = createServer({ allowHalfOpen: true }, (socket) => {
    const path = join(dir, `sink-${n++}`);
    const out = createWriteStream(path);
    socket.pipe(out);
    out.on("finish", async () => {
      const fh = await open(path, "r+");
      await fh.sync();
      await fh.close();
      await rm(path);
      socket.end(Buffer.from([1]));
    });
  });
  server.listen(0, "127.0.0.1", () => {
    const a = server.address();
    process.send?.({ port: typeof a === "object" && a !== null ? a.port : 0 } satisfies ChildMessage);
  });
  process.on("disconnect", () => process.exit(0));
}

async function farmerChild(dir: string, encryption: Libp2pEncryption[]): Promise<void> {
  const wallet = Wallet.createRandom();
  const store = createFsPieceStore({ dir: join(dir, "store"), quotaBytes: 4 * 1024 * 1024 * 1024 });
  await store.start();
  const serials = await openLevelSerialStore({ path: join(dir, "serials") });
  const node = await createDstorLibp2p({
    privateKeySeed: new Uint8Array(randomBytes(32)),
    listen: ["/ip4/127.0.0.1/tcp/0"],
    encryption,
    allowPrivateAddresses: true,
  });
  const service = new FarmerService({
    store,
    serials,
    deals: { isFunded: async () => true },
    chainId: CHAIN_ID,
    wallet: wallet.address,
    peerId: node.peerId.toString(),
    priceTbMonth: 1n,
    version: "bench",
  });
  const handlers = service.handlers();
  for (const p of DSTOR_PROTOCOLS) {
    const h = handlers[p];
    await node.handle(p, (stream, conn) => h(stream as unknown as FarmerStream, conn.remotePeer.toString()), { maxInboundStreams: 16 });
  }
  process.send?.({ addr: node.getMultiaddrs()[0]!.toString(), wallet: wallet.address.toLowerCase() } satisfies ChildMessage);
  process.on("disconnect", async () => {
    await service.stop();
    await node.stop();
    await store.stop();
    await serials.close();
    process.exit(0);
  });
}

// ------------------------------------------------------------------ parent

function startChild(args: string[]): Promise<{ msg: ChildMessage; stop: () => void }> {
  const child = fork(new URL(import.meta.url).pathname, args, { stdio: ["ignore", "inherit", "inherit", "ipc"] });
  return new Promise((resolve, reject) => {
    child.once("message", (m) => resolve({ msg: m as ChildMessage, stop: () => child.disconnect() }));
    child.once("exit", (code) => reject(new Error(`bench child exited with ${code}`)));
  });
}

async function tcpOnce(port: number, data: Uint8Array): Promise<number> {
  const t0 = performance.now();
  await new Promise<void>((resolve, reject) => {
    const socket = connect(port, "127.0.0.1");
    socket.on("error", reject);
    socket.on("data", () => {
      socket.destroy();
      resolve();
    });
    socket.end(data);
  });
  return performance.now() - t0;
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), "dstor-bench-transfer-"));
  try {
    const data = new Uint8Array(randomBytes(PIECE_BYTES));
    const root = Buffer.from(merkleRoot(data)).toString("hex");

    const sink = await startChild(["tcp-sink", dir]);
    let best = Number.POSITIVE_INFINITY;
    for (let i = 0; i < RUNS; i++) best = Math.min(best, await tcpOnce(sink.msg.port!, data));
    sink.stop();
    const baseline = mbps(PIECE_BYTES, best);
    emit({ name: "tcp-fsync", MBps: round(baseline, 1), ratioToBaseline: 1 });

    const variants: Array<{ suffix: string; encryption: Libp2pEncryption[] }> = [
      { suffix: "", encryption: ["tls", "noise"] },
      { suffix: "/tls", encryption: ["tls"] },
      { suffix: "/noise", encryption: ["noise"] },
    ];
    for (const v of variants) {
      if (quick && v.suffix !== "") continue;
      const sub = join(dir, `farmer${v.suffix.replace("/", "-")}`);
      const farmer = await startChild(["farmer", sub, v.encryption.join(",")]);
      const renterWallet = Wallet.createRandom();
      const node = await createDstorLibp2p({ privateKeySeed: new Uint8Array(randomBytes(32)), encryption: v.encryption, allowPrivateAddresses: true });
      const client = new FarmerClient({ node });
      const addr = farmer.msg.addr!;
      const farmerWallet = farmer.msg.wallet!;
      const renter = renterWallet.address.toLowerCase();
      await client.info(addr); // connect and warm up
      const order = async (action: (typeof OrderAction)[keyof typeof OrderAction], pieceId: string) =>
        signOrder(renterWallet, CHAIN_ID, createOrder({ chainId: CHAIN_ID, dealId: 1n, renter, farmer: farmerWallet, pieceId, action, maxBytes: PIECE_BYTES }));
      let bestPut = Number.POSITIVE_INFINITY;
      let bestGet = Number.POSITIVE_INFINITY;
      for (let i = 0; i < RUNS; i++) {
        const pieceId = randomBytes(32).toString("hex");
        const put = await order(OrderAction.Put, pieceId);
        let t0 = performance.now();
        await client.put(addr, { ...put, pieceId, size: PIECE_BYTES, root }, data);
        bestPut = Math.min(bestPut, performance.now() - t0);
        const get = await order(OrderAction.Get, pieceId);
        t0 = performance.now();
        const back = await client.get(addr, { ...get, pieceId, root, size: PIECE_BYTES });
        bestGet = Math.min(bestGet, performance.now() - t0);
        if (back.data.byteLength !== PIECE_BYTES) throw new Error("short read");
        const del = await order(OrderAction.Delete, pieceId);
        await client.delete(addr, { ...del, pieceId });
      }
      const enc = node.getConnections()[0]?.encryption;
      for (const [name, ms] of [
        [`piece-put${v.suffix}`, bestPut],
        [`piece-get${v.suffix}`, bestGet],
      ] as const) {
        const rate = mbps(PIECE_BYTES, ms);
        emit({ name, MBps: round(rate, 1), ratioToBaseline: round(rate / baseline, 3), encryption: enc });
      }
      await node.stop();
      farmer.stop();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

const role = process.argv[2];
if (role === "tcp-sink") await tcpSinkChild(process.argv[3]!);
else if (role === "farmer") await farmerChild(process.argv[3]!, process.argv[4]!.split(",") as Libp2pEncryption[]);
else await main();
