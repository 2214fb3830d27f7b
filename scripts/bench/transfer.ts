/**
 * `npm run bench:transfer`: piece transfer throughput between two processes
 * on loopback, one JSON object per line: `{ name, MBps, ratioToBaseline }`
 * (MB = 10^6 bytes; best of several runs of 64 MiB).
 *
 * - tcp-fsync (the baseline): the same bytes over a plain TCP socket to a
 *   child process that writes them to a file and fsyncs before acknowledging.
 * - piece-put, piece-get: one farmer child process (FarmerService, file-system
 *   piece store, fsync on commit) and this process as the renter, as the
 *   product runs them: over a direct TLS 1.3 connection (src/node/bulk.ts),
 *   the ticket fetched over libp2p. Orders are real and verified; only the
 *   deal lookup is stubbed (it is cached per deal in the real farmer anyway).
 * - piece-put/libp2p-tls, piece-get/libp2p-tls and the same with noise: the
 *   transfers through the libp2p stack instead, to show why the direct path
 *   exists (--quick skips them).
 *
 * Each piece line also gives the farmer's peak RSS and `cpuSecondsPerMB` of the renter and the farmer
 * (CPU time from `process.cpuUsage`, which, unlike MB/s, barely depends on
 * what else the shared machine runs).
 *
 * Usage: node dist/scripts/bench/transfer.js [--quick] [--piece-mib N]
 */
import "../../src/core/v8-flags.js";
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
import { BULK_TICKET_PROTOCOL, BulkDialer, BulkServer } from "../../src/node/bulk.js";
import { createDstorLibp2p, type Libp2pEncryption } from "../../src/node/libp2p.js";
import { createOrder, OrderAction, signOrder } from "../../src/protocol/orders.js";
import { DSTOR_PROTOCOLS } from "../../src/protocol/protocols.js";
import { openLevelSerialStore } from "../../src/protocol/serials.js";
import { emit, mbps, round } from "./harness.js";

const CHAIN_ID = 31337n;
const quick = process.argv.includes("--quick");
/** `--piece-mib N`: piece size (default 64 MiB; the network's pieces are segment / k, e.g. 2 MiB). */
const pieceMibAt = process.argv.indexOf("--piece-mib");
const PIECE_BYTES = (pieceMibAt > 0 ? Number(process.argv[pieceMibAt + 1]) : 64) * 1024 * 1024;
/** Runs per line: at least 2 (4 without --quick) and at least 128 MiB of pieces. */
const RUNS = Math.max(quick ? 2 : 4, Math.ceil((128 * 1024 * 1024) / PIECE_BYTES));

type ChildMessage = { port?: number; addr?: string; wallet?: string; done?: boolean; cpuMicros?: number; maxRssMB?: number };

/** This process's CPU time (user + system), in microseconds. */
function cpuMicros(): number {
  const u = process.cpuUsage();
  return u.user + u.system;
}

/** Answers the parent's "cpu" requests with this process's CPU time. */
function answerCpuRequests(): void {
  process.on("message", (m) => {
    if (m === "cpu") process.send?.({ cpuMicros: cpuMicros(), maxRssMB: Math.round(process.resourceUsage().maxRSS / 1024) } satisfies ChildMessage);
  });
}

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

async function farmerChild(dir: string, encryption: Libp2pEncryption[], direct: boolean): Promise<void> {
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
  const bulk = direct ? new BulkServer({ host: "127.0.0.1", port: 0, handlers }) : undefined;
  if (bulk !== undefined) {
    await bulk.start();
    const issue = bulk.ticketHandler();
    await node.handle(BULK_TICKET_PROTOCOL, (stream, conn) => issue(stream as unknown as FarmerStream, conn.remotePeer.toString()));
  }
  answerCpuRequests();
  process.send?.({ addr: node.getMultiaddrs()[0]!.toString(), wallet: wallet.address.toLowerCase() } satisfies ChildMessage);
  process.on("disconnect", async () => {
    await bulk?.stop();
    await service.stop();
    await node.stop();
    await store.stop();
    await serials.close();
    process.exit(0);
  });
}

// ------------------------------------------------------------------ parent

type Child = { msg: ChildMessage; stop: () => void; cpu: () => Promise<number>; maxRssMB: () => number };

function startChild(args: string[]): Promise<Child> {
  const child = fork(new URL(import.meta.url).pathname, args, { stdio: ["ignore", "inherit", "inherit", "ipc"] });
  let maxRss = 0;
  const cpu = () =>
    new Promise<number>((resolve) => {
      child.once("message", (m) => {
        maxRss = Math.max(maxRss, (m as ChildMessage).maxRssMB ?? 0);
        resolve((m as ChildMessage).cpuMicros ?? 0);
      });
      child.send("cpu");
    });
  return new Promise((resolve, reject) => {
    child.once("message", (m) => resolve({ msg: m as ChildMessage, stop: () => child.disconnect(), cpu, maxRssMB: () => maxRss }));
    child.once("exit", (code) => reject(new Error(`bench child exited with ${code}`)));
  });
}

/** CPU seconds per MB (10^6 bytes) spent by the renter (this process) and the farmer child. */
type CpuPerMB = { renter: number; farmer: number };

function cpuPerMB(renterMicros: number, farmerMicros: number, bytes: number): CpuPerMB {
  const mb = bytes / 1e6;
  return { renter: round(renterMicros / 1e6 / mb, 4), farmer: round(farmerMicros / 1e6 / mb, 4) };
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

    const variants: Array<{ suffix: string; encryption: Libp2pEncryption[]; direct: boolean }> = [
      { suffix: "", encryption: ["tls", "noise"], direct: true },
      { suffix: "/libp2p-tls", encryption: ["tls"], direct: false },
      { suffix: "/libp2p-noise", encryption: ["noise"], direct: false },
    ];
    for (const v of variants) {
      if (quick && v.suffix !== "") continue;
      const sub = join(dir, `farmer${v.suffix.replace("/", "-")}`);
      const farmer = await startChild(["farmer", sub, v.encryption.join(","), v.direct ? "direct" : "libp2p"]);
      const renterWallet = Wallet.createRandom();
      const node = await createDstorLibp2p({ privateKeySeed: new Uint8Array(randomBytes(32)), encryption: v.encryption, allowPrivateAddresses: true });
      const dialer = v.direct ? new BulkDialer({ node }) : undefined;
      const client = new FarmerClient({ node: dialer ?? node });
      const addr = farmer.msg.addr!;
      const farmerWallet = farmer.msg.wallet!;
      const renter = renterWallet.address.toLowerCase();
      await client.info(addr); // connect and warm up
      const order = async (action: (typeof OrderAction)[keyof typeof OrderAction], pieceId: string) =>
        signOrder(renterWallet, CHAIN_ID, createOrder({ chainId: CHAIN_ID, dealId: 1n, renter, farmer: farmerWallet, pieceId, action, maxBytes: PIECE_BYTES }));
      let bestPut = Number.POSITIVE_INFINITY;
      let bestGet = Number.POSITIVE_INFINITY;
      const cpu = { put: { renter: 0, farmer: 0 }, get: { renter: 0, farmer: 0 } };
      for (let i = 0; i < RUNS; i++) {
        const pieceId = randomBytes(32).toString("hex");
        const put = await order(OrderAction.Put, pieceId);
        let c0 = cpuMicros();
        let f0 = await farmer.cpu();
        let t0 = performance.now();
        await client.put(addr, { ...put, pieceId, size: PIECE_BYTES, root }, data);
        bestPut = Math.min(bestPut, performance.now() - t0);
        cpu.put.renter += cpuMicros() - c0;
        cpu.put.farmer += (await farmer.cpu()) - f0;
        const get = await order(OrderAction.Get, pieceId);
        c0 = cpuMicros();
        f0 = await farmer.cpu();
        t0 = performance.now();
        const back = await client.get(addr, { ...get, pieceId, root, size: PIECE_BYTES });
        bestGet = Math.min(bestGet, performance.now() - t0);
        cpu.get.renter += cpuMicros() - c0;
        cpu.get.farmer += (await farmer.cpu()) - f0;
        if (back.data.byteLength !== PIECE_BYTES) throw new Error("short read");
        const del = await order(OrderAction.Delete, pieceId);
        await client.delete(addr, { ...del, pieceId });
      }
      const enc = dialer !== undefined && dialer.openConnections > 0 ? "direct TLS 1.3 (PSK)" : node.getConnections()[0]?.encryption;
      dialer?.stop();
      for (const [name, ms, c] of [
        [`piece-put${v.suffix}`, bestPut, cpu.put],
        [`piece-get${v.suffix}`, bestGet, cpu.get],
      ] as const) {
        const rate = mbps(PIECE_BYTES, ms);
        const cpuSecondsPerMB = cpuPerMB(c.renter, c.farmer, PIECE_BYTES * RUNS);
        emit({ name, MBps: round(rate, 1), ratioToBaseline: round(rate / baseline, 3), encryption: enc, cpuSecondsPerMB, farmerMaxRssMB: farmer.maxRssMB() });
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
else if (role === "farmer") await farmerChild(process.argv[3]!, process.argv[4]!.split(",") as Libp2pEncryption[], process.argv[5] === "direct");
else await main();
