/**
 * `npm run bench:network`: user-data throughput of the renter against ten
 * real farmer processes, one JSON object per line: `{ name, MBps,
 * ratioToBaseline }` (MB = 10^6 bytes of user data).
 *
 * - disk-write (the baseline): the same bytes written to a local file and fsynced.
 * - upload: `Renter.put` of a 256 MiB file (read from disk as `dstor put`
 *   reads it, readFileChunks) through the whole
 *   pipeline — encrypt, erasure-code 4/6/8/10, hash, upload to ten `dstor farm`
 *   processes on 127.0.N.1 (each in its own /24) with long-tail cancellation —
 *   and the metadata commit. Deals are opened before the timed run.
 * - download: `Renter.read` of the same file into a local file, fsynced
 *   (`fsyncMs`: how much of `ms` the final fsync took, as for disk-write).
 *
 * A real anvil runs the contracts (with hour-long epochs, see below); the
 * renter opens real deals and signs real orders. Targets: upload ≥ 0.2×, download ≥ 0.4× disk-write.
 *
 * Usage: node dist/scripts/bench/network.js [--quick] [--segment-mib N]
 *   (--quick: 64 MiB; --segment-mib: the renter's segment size, default 8 as `--segment-size`)
 */
import "../../src/core/v8-flags.js";
import { readFileChunks } from "../../src/core/file-chunks.js";
import { freeLoopbackPort } from "../../src/core/net.js";
import { randomBytes } from "node:crypto";
import { mkdir, open, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { constants, PerformanceObserver } from "node:perf_hooks";
import { devParams } from "../../src/chain/contracts.js";
import { startDevChain } from "../../src/chain/devchain.js";
import { MIB } from "../../src/core/units.js";
import { initHome } from "../../src/node/home.js";
import { openRenterNode } from "../../src/node/renter-node.js";
import { type LocalFarmer, removeRoot, startLocalFarmer, tempRoot } from "../../test/renter/network-fixture.js";
import { emit, mbps, round } from "./harness.js";

const quick = process.argv.includes("--quick");
const FILE_BYTES = (quick ? 64 : 256) * MIB;
const FARMERS = 10;
const BENCH_EPOCH_SECONDS = 3600;
const segmentMibAt = process.argv.indexOf("--segment-mib");
const SEGMENT_MIB = segmentMibAt > 0 ? Number(process.argv[segmentMibAt + 1]) : 8;


/** Writes the chunks to a new file and fsyncs it; returns the bytes and how long the fsync took. */
async function writeAndSync(path: string, chunks: AsyncIterable<Uint8Array> | Iterable<Uint8Array>): Promise<{ bytes: number; fsyncMs: number }> {
  const handle = await open(path, "w");
  let bytes = 0;
  let fsyncMs = 0;
  try {
    for await (const chunk of chunks) {
      let at = 0;
      while (at < chunk.byteLength) at += (await handle.write(chunk, at, chunk.byteLength - at)).bytesWritten;
      bytes += chunk.byteLength;
    }
    const t0 = performance.now();
    await handle.sync();
    fsyncMs = performance.now() - t0;
  } finally {
    await handle.close();
  }
  return { bytes, fsyncMs };
}

interface Usage {
  cpu: number;
  faults: number;
  /** Bytes the process has read with read-like system calls (sockets included): /proc/PID/io `rchar`. */
  readBytes: number;
}

/** CPU seconds (user + system), minor page faults and bytes read of a process so far, from /proc (0 when it is gone). */
async function usageOf(pid: number): Promise<Usage> {
  try {
    // Fields after the ")" that ends the command name: minflt is the 8th, utime the 12th, stime the 13th (in clock ticks).
    const fields = (await readFile(`/proc/${pid}/stat`, "utf8")).split(")").pop()!.trim().split(/\s+/);
    const rchar = /^rchar: (\d+)$/m.exec(await readFile(`/proc/${pid}/io`, "utf8"));
    return { cpu: (Number(fields[11]) + Number(fields[12])) / 100, faults: Number(fields[7]), readBytes: Number(rchar?.[1] ?? 0) };
  } catch {
    return { cpu: 0, faults: 0, readBytes: 0 };
  }
}

/**
 * CPU used per MB of user data by the renter (this process), the farmers and
 * the chain: unlike MB/s this barely depends on what else the shared machine
 * runs, and it says how far a 2-core machine can go (2 / cpuSecondsPerMB).
 * Also the renter's event-loop utilization (the share of the run its main
 * thread was not waiting for I/O: near 1 means that one thread, on CPU or
 * waiting for a core, sets the pace), its full GCs and GC pause time, and
 * minor page faults per MB of the renter and the farmers (fresh memory
 * touched; costly on virtual machines), and the bytes the farmers read per
 * byte of user data (sockets and disk: what the long tail costs them).
 */
async function cpuMeter(pids: { farmers: number[]; chain: number }): Promise<() => Promise<Record<string, number>>> {
  const farmers = async (): Promise<Usage> =>
    (await Promise.all(pids.farmers.map(usageOf))).reduce((a, b) => ({ cpu: a.cpu + b.cpu, faults: a.faults + b.faults, readBytes: a.readBytes + b.readBytes }), {
      cpu: 0,
      faults: 0,
      readBytes: 0,
    });
  const renter0 = process.cpuUsage();
  const [farmers0, chain0] = [await farmers(), (await usageOf(pids.chain)).cpu];
  const elu0 = performance.eventLoopUtilization();
  const faults0 = process.resourceUsage().minorPageFault;
  const gc = { major: 0, pauseMs: 0 };
  const observer = new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      gc.pauseMs += entry.duration;
      if ((entry as unknown as { detail?: { kind?: number } }).detail?.kind === constants.NODE_PERFORMANCE_GC_MAJOR) gc.major++;
    }
  });
  observer.observe({ entryTypes: ["gc"] });
  return async () => {
    observer.disconnect();
    const r = process.cpuUsage(renter0);
    const elu = performance.eventLoopUtilization(elu0).utilization;
    const faults = process.resourceUsage().minorPageFault - faults0;
    const farmers1 = await farmers();
    const mb = FILE_BYTES / 1e6;
    return {
      renterEventLoopUtilization: round(elu, 3),
      renterMinorFaultsPerMB: Math.round(faults / mb),
      renterMajorGcs: gc.major,
      renterGcPauseMs: Math.round(gc.pauseMs),
      renterHeapUsedMB: Math.round(process.memoryUsage().heapUsed / 1e6),
      renterCpuSecondsPerMB: round((r.user + r.system) / 1e6 / mb, 4),
      farmersCpuSecondsPerMB: round((farmers1.cpu - farmers0.cpu) / mb, 4),
      farmersMinorFaultsPerMB: Math.round((farmers1.faults - farmers0.faults) / mb),
      farmersReadBytesPerByte: round((farmers1.readBytes - farmers0.readBytes) / FILE_BYTES, 3),
      chainCpuSecondsPerMB: round(((await usageOf(pids.chain)).cpu - chain0) / mb, 4),
    };
  };
}

async function main(): Promise<void> {
  const root = await tempRoot("dstor-bench-network-");
  const cleanups: Array<() => Promise<void>> = [];
  const farmers: LocalFarmer[] = [];
  try {
    const chainHome = join(root, "chain-home");
    await mkdir(chainHome, { recursive: true });
    // Hour-long epochs: a real network audits each deal about once a day, so
    // audit work is negligible per byte stored; the dev default (10 s) would
    // have every farmer answering challenges in the middle of the timed runs.
    const chain = await startDevChain({ home: chainHome, port: await freeLoopbackPort(), params: devParams(BENCH_EPOCH_SECONDS) });
    cleanups.push(() => chain.stop());
    for (let i = 1; i <= FARMERS; i++) farmers.push(await startLocalFarmer(cleanups, root, i, chain.rpcUrl, chainHome, "20GB"));
    const renterHome = join(root, "renter");
    await initHome(renterHome);
    const node = await openRenterNode({
      home: renterHome,
      chainRpc: chain.rpcUrl,
      deployment: join(chainHome, "chain", "deployment.json"),
      redundancy: "4/6/8/10",
      segmentSize: SEGMENT_MIB * MIB,
    });
    cleanups.push(() => node.stop());

    const data = new Uint8Array(randomBytes(FILE_BYTES));
    const source = join(root, "source.bin");
    await writeFile(source, data);

    // Baseline: the same bytes to a local file, fsynced.
    // On virtual machines most of it is the copy into page-cache pages the
    // host must fault in, not the fsync: hence fsyncMs, and why the baseline
    // swings with the host's memory state.
    let t0 = performance.now();
    const { fsyncMs } = await writeAndSync(join(root, "baseline.bin"), (function* () {
      for (let i = 0; i < data.byteLength; i += 4 * MIB) yield data.subarray(i, i + 4 * MIB);
    })());
    const diskMs = performance.now() - t0;
    await rm(join(root, "baseline.bin"));
    const disk = mbps(FILE_BYTES, diskMs);
    emit({ name: "disk-write", MBps: round(disk, 1), ratioToBaseline: 1, ms: Math.round(diskMs), fsyncMs: Math.round(fsyncMs) });

    // Warm-up: open the ten deals and the connections outside the timed runs.
    await node.renter.put("/warmup", [new Uint8Array(randomBytes(8 * MIB))]);

    const pids = { farmers: farmers.map((f) => f.child.pid ?? -1), chain: chain.pid };
    let cpu = await cpuMeter(pids);
    t0 = performance.now();
    await node.renter.put("/bench", readFileChunks(source));
    const upMs = performance.now() - t0;
    const up = mbps(FILE_BYTES, upMs);
    emit({ name: "upload", MBps: round(up, 1), ratioToBaseline: round(up / disk, 3), bytes: FILE_BYTES, farmers: FARMERS, strategy: "4/6/8/10", segmentMiB: SEGMENT_MIB, ...(await cpu()) });

    const target = join(root, "download.bin");
    cpu = await cpuMeter(pids);
    t0 = performance.now();
    const { bytes: got, fsyncMs: downFsyncMs } = await writeAndSync(target, node.renter.read("/bench", { transient: true }));
    const downMs = performance.now() - t0;
    if (got !== FILE_BYTES) throw new Error(`downloaded ${got} bytes, expected ${FILE_BYTES}`);
    const down = mbps(FILE_BYTES, downMs);
    emit({
      name: "download",
      MBps: round(down, 1),
      ratioToBaseline: round(down / disk, 3),
      bytes: FILE_BYTES,
      farmers: FARMERS,
      strategy: "4/6/8/10",
      segmentMiB: SEGMENT_MIB,
      ms: Math.round(downMs),
      fsyncMs: Math.round(downFsyncMs),
      ...(await cpu()),
    });
  } finally {
    for (const fn of cleanups.reverse()) await fn().catch(() => {});
    await removeRoot(root);
  }
}

await main();
