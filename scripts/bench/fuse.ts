/**
 * `npm run bench:fuse`: the drive through a real FUSE mount against a plain
 * local directory (the baseline) in the same run. One JSON object per line:
 * `{ name, MBps | opsPerSec, baseline, ratioToBaseline }` (MB = 10^6 bytes).
 *
 * - seq-write-1GiB: write 1 GiB in 1 MiB writes, fsync (on the drive: until
 *   the data is stored at optimal pieces and committed), close.
 * - seq-read-1GiB-cold: read it back after a remount (drive: empty segment
 *   cache and kernel page cache) / after dropping the page cache (baseline,
 *   when /proc/sys/vm/drop_caches is writable; `baselineCold` says).
 * - seq-read-1GiB-warm: read it again.
 * - rand-read-4KiB: 4 KiB preads at random aligned offsets of that file.
 * - create-stat-10k-files: create 10 000 small files, then stat each (ops = files).
 * - untar-source-tree: `tar x` of this repository's sources (src, test,
 *   scripts, docs, contracts) onto the drive (ops = files).
 *
 * A real anvil and four `dstor farm` processes on 127.0.N.1, redundancy
 * 2/3/3/4, one `dstor mount` child process (the bench never serves its own
 * mount). Targets from the issue: warm read ≥ 0.3×, create-stat ≥ 0.1× local.
 *
 * Usage: node dist/scripts/bench/fuse.js [--quick] [--only NAME,…]
 *   --quick (or DSTOR_BENCH_QUICK=1): 64 MiB and 1000 files instead of 1 GiB
 *   and 10 000, for busy machines.
 *   --only: run only the named lines (e.g. `--only create-stat-10k-files`);
 *   the read lines write the file they read first.
 */
import "../../src/core/v8-flags.js";
import { execFile } from "node:child_process";
import { randomBytes, randomInt } from "node:crypto";
import { mkdir, open, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { devChainPaths, startDevChain } from "../../src/chain/devchain.js";
import { freeLoopbackPort } from "../../src/core/net.js";
import { MIB } from "../../src/core/units.js";
import { initHome } from "../../src/node/home.js";
import { type DriveMount, spawnMount } from "../../test/e2e/drive-fixture.js";
import { removeRoot, startLocalFarmer, tempRoot } from "../../test/renter/network-fixture.js";
import { emit, mbps, round } from "./harness.js";

const execFileAsync = promisify(execFile);
const quick = process.argv.includes("--quick") || process.env.DSTOR_BENCH_QUICK === "1";
const FILE_BYTES = (quick ? 64 : 1024) * MIB;
const FILE_COUNT = quick ? 1_000 : 10_000;
const RANDOM_READS = quick ? 500 : 2_000;
const FARMERS = 4;
const WRITE_CHUNK_BYTES = MIB;
const ONLY_AT = process.argv.indexOf("--only");
const ONLY = ONLY_AT === -1 ? undefined : new Set((process.argv[ONLY_AT + 1] ?? "").split(","));
const wanted = (...names: string[]): boolean => ONLY === undefined || names.some((n) => ONLY.has(n));

/** Writes FILE_BYTES of `data` (repeated) to `path` and fsyncs; returns ms. */
async function seqWrite(path: string, block: Uint8Array): Promise<number> {
  const t0 = performance.now();
  const fh = await open(path, "w");
  try {
    for (let at = 0; at < FILE_BYTES; at += block.byteLength) await fh.write(block, 0, Math.min(block.byteLength, FILE_BYTES - at), at);
    await fh.sync();
  } finally {
    await fh.close();
  }
  return performance.now() - t0;
}

/** Reads `path` front to back in 1 MiB reads; returns ms. */
async function seqRead(path: string): Promise<number> {
  const t0 = performance.now();
  const fh = await open(path, "r");
  const buf = Buffer.alloc(WRITE_CHUNK_BYTES);
  let total = 0;
  try {
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, buf.length, total);
      if (bytesRead === 0) break;
      total += bytesRead;
    }
  } finally {
    await fh.close();
  }
  if (total !== FILE_BYTES) throw new Error(`read ${total} bytes of ${path}, expected ${FILE_BYTES}`);
  return performance.now() - t0;
}

/** RANDOM_READS 4 KiB preads at random 4 KiB-aligned offsets; returns ms. */
async function randRead(path: string): Promise<number> {
  const fh = await open(path, "r");
  const buf = Buffer.alloc(4096);
  const blocks = FILE_BYTES / 4096;
  const t0 = performance.now();
  try {
    for (let i = 0; i < RANDOM_READS; i++) await fh.read(buf, 0, 4096, randomInt(blocks) * 4096);
  } finally {
    await fh.close();
  }
  return performance.now() - t0;
}

/** Creates FILE_COUNT small files in `dir`, then stats each; returns ms. */
async function createStat(dir: string): Promise<number> {
  await mkdir(dir);
  const t0 = performance.now();
  for (let i = 0; i < FILE_COUNT; i++) await writeFile(join(dir, `f${i}`), `file ${i}\n`);
  for (let i = 0; i < FILE_COUNT; i++) await stat(join(dir, `f${i}`));
  return performance.now() - t0;
}

/** `tar x` of `archive` into a new `dir`; returns ms. */
async function untar(archive: string, dir: string): Promise<number> {
  await mkdir(dir);
  const t0 = performance.now();
  await execFileAsync("tar", ["-xf", archive, "-C", dir], { maxBuffer: 16 * MIB });
  return performance.now() - t0;
}

/** Drops the kernel page cache if this process may (root); returns whether it did. */
async function dropPageCache(): Promise<boolean> {
  try {
    await execFileAsync("sync");
    await writeFile("/proc/sys/vm/drop_caches", "3\n");
    return true;
  } catch {
    return false;
  }
}

function line(name: string, unit: "MBps" | "opsPerSec", drive: number, baseline: number, extra: Record<string, unknown> = {}): void {
  emit({ name, [unit]: round(drive, 1), baseline: round(baseline, 1), ratioToBaseline: round(drive / baseline, 3), ...extra });
}

async function main(): Promise<void> {
  const root = await tempRoot("dstor-bench-fuse-");
  const cleanups: Array<() => Promise<void>> = [];
  const mounts: DriveMount[] = [];
  const mnt = join(root, "mnt");
  const local = join(root, "local");
  try {
    await mkdir(mnt);
    await mkdir(local);
    const chainHome = join(root, "chain-home");
    await mkdir(chainHome, { recursive: true });
    const chain = await startDevChain({ home: chainHome, port: await freeLoopbackPort() });
    cleanups.push(() => chain.stop());
    for (let i = 1; i <= FARMERS; i++) await startLocalFarmer(cleanups, root, i, chain.rpcUrl, chainHome, "20GB");
    const home = join(root, "renter");
    await initHome(home);
    const args = [
      "--home",
      home,
      "--chain-rpc",
      chain.rpcUrl,
      "--deployment",
      devChainPaths(chainHome).deployment,
      "--redundancy",
      "2/3/3/4",
      "--cache-dir",
      join(root, "cache"),
      // The warm read must fit: the whole file plus some room.
      "--cache-size",
      String(FILE_BYTES + 64 * MIB),
    ];
    let m = await spawnMount(mnt, args, mounts);
    // Warm-up outside the timed runs: deals with every farmer, connections.
    await writeFile(join(mnt, "warmup.bin"), randomBytes(16 * MIB));
    const fh = await open(join(mnt, "warmup.bin"), "r+");
    await fh.sync();
    await fh.close();

    if (wanted("seq-write-1GiB", "seq-read-1GiB-cold", "seq-read-1GiB-warm", "rand-read-4KiB")) {
      const block = new Uint8Array(randomBytes(WRITE_CHUNK_BYTES));
      const sizes = { bytes: FILE_BYTES };
      const localWrite = await seqWrite(join(local, "big.bin"), block);
      const driveWrite = await seqWrite(join(mnt, "big.bin"), block);
      line("seq-write-1GiB", "MBps", mbps(FILE_BYTES, driveWrite), mbps(FILE_BYTES, localWrite), sizes);

      if (wanted("seq-read-1GiB-cold", "seq-read-1GiB-warm", "rand-read-4KiB")) {
        const baselineCold = await dropPageCache();
        const localCold = await seqRead(join(local, "big.bin"));
        await m.stop();
        m = await spawnMount(mnt, args, mounts);
        const driveCold = await seqRead(join(mnt, "big.bin"));
        line("seq-read-1GiB-cold", "MBps", mbps(FILE_BYTES, driveCold), mbps(FILE_BYTES, localCold), { ...sizes, baselineCold });

        const localWarm = await seqRead(join(local, "big.bin"));
        const driveWarm = await seqRead(join(mnt, "big.bin"));
        line("seq-read-1GiB-warm", "MBps", mbps(FILE_BYTES, driveWarm), mbps(FILE_BYTES, localWarm), sizes);

        const localRand = await randRead(join(local, "big.bin"));
        const driveRand = await randRead(join(mnt, "big.bin"));
        line("rand-read-4KiB", "opsPerSec", RANDOM_READS / (driveRand / 1000), RANDOM_READS / (localRand / 1000), { reads: RANDOM_READS });
      }
    }

    if (wanted("create-stat-10k-files")) {
      const localFiles = await createStat(join(local, "many"));
      const driveFiles = await createStat(join(mnt, "many"));
      line("create-stat-10k-files", "opsPerSec", FILE_COUNT / (driveFiles / 1000), FILE_COUNT / (localFiles / 1000), { files: FILE_COUNT });
    }

    if (wanted("untar-source-tree")) {

      const archive = join(root, "source.tar");
      const repo = join(import.meta.dirname, "..", "..", "..");
      await execFileAsync("tar", ["-cf", archive, "-C", repo, "src", "test", "scripts", "docs", "contracts"]);
      const { stdout } = await execFileAsync("tar", ["-tf", archive], { maxBuffer: 16 * MIB });
      const entries = stdout.split("\n").filter((l) => l.length > 0).length;
      const archiveBytes = (await stat(archive)).size;
      const localUntar = await untar(archive, join(local, "untar"));
      const driveUntar = await untar(archive, join(mnt, "untar"));
      line("untar-source-tree", "opsPerSec", entries / (driveUntar / 1000), entries / (localUntar / 1000), {
        entries,
        archiveBytes,
        MBps: round(mbps(archiveBytes, driveUntar), 1),
      });
    }
    await m.stop();
  } finally {
    for (const m of mounts) await m.stop().catch(() => {});
    await execFileAsync("fusermount", ["-uz", mnt]).catch(() => {});
    for (const fn of cleanups.reverse()) await fn().catch(() => {});
    await removeRoot(root);
  }
}

await main();
