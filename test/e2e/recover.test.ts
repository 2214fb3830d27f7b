/**
 * `dstor recover` from the phrase alone, end to end: `dstor up` with the
 * drive, a tree of small and large files in nested directories written
 * through the drive, the metadata snapshot stored in the network once the
 * writes settle; a farmer killed with SIGKILL shows down on the status
 * screen while the files stay readable; then the renter is stopped (chain
 * and farmers keep running under `dstor up --no-renter`), its metadata, its
 * phrase and the drive are deleted, and `dstor recover` with the phrase
 * rebuilds everything: into a fresh home, and into the network's own home
 * (the dev layout) with `--mount`, where `diff -r` against the original
 * finds nothing. Finally the pointer is replayed on chain to an older
 * snapshot and recover refuses it.
 */
import assert from "node:assert/strict";
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdir, mkdtemp, readFile, readlink, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { promisify } from "node:util";
import { Wallet } from "ethers";
import { connectContracts, readDeployment } from "../../src/chain/contracts.js";
import { devChainPaths } from "../../src/chain/devchain.js";
import { createProvider } from "../../src/chain/signer.js";
import { deriveKeys, generateMnemonic } from "../../src/crypto/keys.js";
import { freePort } from "../chain/fixture.js";
import { type CliResult, runCli } from "../renter/network-fixture.js";
import { MAIN, mounted, type StatusLine, startUp, stopUp } from "./up-fixture.js";

const run = promisify(execFile);
const MIB = 1024 * 1024;

/** Runs `dstor ARGS` with `input` on stdin; resolves with its exit code and output. */
const dstor = (args: string[], input = ""): Promise<CliResult> => runCli(args, 600_000, input);

/** The tree written into the drive: nested directories, empty, inline, one-segment and two-segment files. */
const TREE: Array<[string, number]> = [
  ["empty.txt", 0],
  ["hello.txt", 13],
  ["docs/inline-max.bin", 4096],
  ["docs/just-over-inline.bin", 4097],
  ["docs/deep/er/still/small.txt", 200],
  ["docs/deep/er/medium.bin", 3 * MIB + 17],
  ["media/large.bin", 9 * MIB + 5],
];

/** Spawns `dstor recover --mount` and waits for its "mounted" line. */
async function recoverAndMount(args: string[], phrase: string): Promise<{ child: ChildProcess; recovered: Record<string, unknown> }> {
  const child = spawn(process.execPath, [MAIN, "recover", "--json", ...args], { stdio: ["pipe", "pipe", "pipe"] });
  child.stdin!.end(phrase);
  let stderr = "";
  child.stderr!.on("data", (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-4000);
  });
  const lines: Array<Record<string, unknown>> = [];
  await new Promise<void>((resolve, reject) => {
    let buffered = "";
    child.stdout!.on("data", (d: Buffer) => {
      buffered += d.toString();
      for (let nl = buffered.indexOf("\n"); nl >= 0; nl = buffered.indexOf("\n")) {
        const line = JSON.parse(buffered.slice(0, nl)) as Record<string, unknown>;
        buffered = buffered.slice(nl + 1);
        lines.push(line);
        if (line.event === "mounted") resolve();
      }
    });
    child.once("exit", (code) => reject(new Error(`dstor recover --mount exited with ${code}: ${stderr}`)));
  });
  return { child, recovered: lines.find((l) => l.event === "recovered")! };
}

async function stopChildProcess(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
  const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
  child.kill("SIGTERM");
  return exited;
}

test("dstor recover brings back every file from the phrase alone", { timeout: 1_200_000 }, async (t) => {
  const home = await mkdtemp(join(tmpdir(), "dstor-recover-"));
  const drive = join(home, "drive");
  const original = join(home, "original");
  const fresh = join(home, "fresh-home");
  const port = await freePort();
  const children: ChildProcess[] = [];
  // 8 farmers: the default strategy 4/6/8/10 needs `optimal` = 8 to store a segment.
  let up = startUp(home, port, ["--farmer-count", "8", "--mount", drive, "--snapshot-delay", "2"]);
  t.after(async () => {
    for (const c of children) await stopChildProcess(c);
    await stopUp(up.child);
    if (await mounted(drive)) await run("fusermount", ["-uz", drive]).catch(() => {});
    await rm(home, { recursive: true, force: true });
  });
  await up.next((l) => l.event === "ready");
  const phrase = (await readFile(join(home, "phrase"), "utf8")).trim();
  const upFile = JSON.parse(await readFile(join(home, "up.json"), "utf8")) as { rpcUrl: string; farmers: Array<{ index: number; pid: number; wallet: string }> };

  // The tree, written through the drive and kept locally for the diff.
  for (const [path, size] of TREE) {
    const data = randomBytes(size);
    for (const root of [original, drive]) {
      await mkdir(join(root, path, ".."), { recursive: true });
      await writeFile(join(root, path), data);
    }
  }
  await mkdir(join(original, "empty-dir"));
  await mkdir(join(drive, "empty-dir"));
  // Symlinks are metadata records too: a link to a file and one to a directory come back.
  for (const root of [original, drive]) {
    await symlink("media/large.bin", join(root, "link-to-large"));
    await symlink("../media", join(root, "docs", "media-dir-link"));
  }

  // Uploads drain, every file is listed healthy, and the snapshot is stored once writes settle.
  const settled = await up.next(
    (l) =>
      l.event === "status" &&
      l.drive !== undefined &&
      l.drive.uploads.length === 0 &&
      l.drive.files.length === TREE.length &&
      l.drive.snapshot.sequence !== undefined &&
      !l.drive.snapshot.dirty,
  );
  for (const f of settled.drive!.files) assert.ok(["healthy", "inline"].includes(f.health), `${f.path} is ${f.health}`);
  assert.equal(settled.drive!.files.find((f) => f.path === "/media/large.bin")?.health, "healthy");
  assert.ok(up.lines.some((l) => (l.drive?.uploads.length ?? 0) > 0), "an upload in flight was shown");

  // kill -9 of one farmer: shown down, files that had a piece there degraded, everything still readable.
  const victim = upFile.farmers[2]!;
  process.kill(victim.pid, "SIGKILL");
  const down = await up.next(
    (l: StatusLine) => l.event === "status" && (l.farmers ?? []).some((f) => f.index === victim.index && !f.up) && (l.drive?.files ?? []).some((f) => f.health === "degraded"),
  );
  assert.ok(down.drive!.files.every((f) => f.health !== "lost" && f.health !== "repair"));
  await run("diff", ["-r", original, drive]);
  assert.equal(await readlink(join(drive, "link-to-large")), "media/large.bin");
  assert.equal(await readlink(join(drive, "docs", "media-dir-link")), "../media");

  // Stop the renter; chain and farmers come back alone (the killed farmer too).
  assert.equal(await stopUp(up.child), 0, up.stderr());
  assert.equal(await mounted(drive), false);
  up = startUp(home, port, ["--farmer-count", "8", "--no-renter"]);
  await up.next((l) => l.event === "status" && (l.farmers ?? []).length === 8 && (l.farmers ?? []).every((f) => f.up));
  const rpcUrl = (JSON.parse(await readFile(join(home, "up.json"), "utf8")) as { rpcUrl: string }).rpcUrl;

  // Lose everything of the renter: metadata, staging, phrase, the drive.
  for (const p of ["renter", "phrase", "identity.json", "drive"]) await rm(join(home, p), { recursive: true, force: true });

  // A phrase that never backed anything up gets a clear error.
  const stranger = await dstor(["recover", "--home", join(home, "stranger"), "--chain-rpc", rpcUrl, "--deployment", devChainPaths(home).deployment], generateMnemonic());
  assert.notEqual(stranger.code, 0);
  assert.match(stranger.stderr, /no metadata snapshot/);

  // Into a fresh home: the phrase (on stdin), the chain endpoint and its deployment — nothing else.
  const rec = await dstor(["recover", "--home", fresh, "--chain-rpc", rpcUrl, "--deployment", devChainPaths(home).deployment, "--json"], phrase);
  assert.equal(rec.code, 0, rec.stderr);
  const recovered = JSON.parse(rec.stdout.trim().split("\n").at(-1)!) as { sequence: number; entries: number };
  assert.ok(recovered.sequence >= 1);
  const ls = await dstor(["ls", "/docs/deep/er", "--home", fresh]);
  assert.equal(ls.code, 0, ls.stderr);
  assert.match(ls.stdout, /medium\.bin/);
  // Recovering over a home that already has metadata is refused.
  const again = await dstor(["recover", "--home", fresh, "--chain-rpc", rpcUrl, "--json"], phrase);
  assert.notEqual(again.code, 0);
  assert.match(again.stderr, /not empty; recover into a fresh --home/);

  // Into the network's own home (the dev layout), mounted: identical to the original.
  await mkdir(drive);
  const mountedRecovery = await recoverAndMount(["--home", home, "--chain-rpc", rpcUrl, "--mount", drive], phrase);
  children.push(mountedRecovery.child);
  assert.equal(mountedRecovery.recovered.sequence, recovered.sequence);
  await run("diff", ["-r", original, drive]);
  assert.equal(await readlink(join(drive, "link-to-large")), "media/large.bin");
  assert.equal(await readlink(join(drive, "docs", "media-dir-link")), "../media");
  // The recovered drive is a working drive: deals continue, and its backup
  // continues the pointer's sequence when it is unmounted.
  const after = randomBytes(2 * MIB + 1);
  await writeFile(join(original, "docs", "after-recovery.bin"), after);
  await writeFile(join(drive, "docs", "after-recovery.bin"), after);
  assert.equal(await stopChildProcess(mountedRecovery.child), 0);
  assert.equal(await mounted(drive), false);
  const listed = await dstor(["ls", "-l", "/docs", "--home", home]);
  assert.match(listed.stdout, /after-recovery\.bin/);

  const later = await dstor(["recover", "--home", join(home, "later"), "--chain-rpc", rpcUrl, "--deployment", devChainPaths(home).deployment, "--json"], phrase);
  assert.equal(later.code, 0, later.stderr);
  assert.equal((JSON.parse(later.stdout.trim().split("\n").at(-1)!) as { sequence: number }).sequence, recovered.sequence + 1);
  assert.match((await dstor(["ls", "/docs", "--home", join(home, "later")])).stdout, /after-recovery\.bin/);

  // A pointer moved (by the wallet itself, as a buggy or stale device would) to
  // an older snapshot's location is refused as a rollback.
  const keys = deriveKeys(phrase);
  const deployment = await readDeployment(devChainPaths(home).deployment);
  const provider = createProvider(rpcUrl);
  try {
    const { registry } = connectContracts(deployment, new Wallet(keys.wallet.privateKey, provider));
    const current = await registry.pointer(keys.wallet.address);
    assert.equal(Number(current.sequence), recovered.sequence + 1, "the recovered drive stored the next snapshot at unmount");
    const tx = await registry.setPointer(current.sequence, `0x${"00".repeat(32)}`, current.location, current.contentRoot);
    await tx.wait();
  } finally {
    provider.destroy();
  }
  const replay = await dstor(["recover", "--home", join(home, "replayed"), "--chain-rpc", rpcUrl, "--deployment", devChainPaths(home).deployment], phrase);
  assert.notEqual(replay.code, 0);
  assert.match(replay.stderr, /older than number \d+ the chain points to/);
  assert.equal(await stopUp(up.child), 0);
});
