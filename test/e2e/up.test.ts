/**
 * `dstor up` as a user runs it: the chain and real farmer processes come up,
 * up.json appears, a farmer killed with SIGKILL shows as down, SIGTERM stops
 * everything and leaves nothing running, and a restart brings back the same
 * network (same farmer identities, same deployment).
 */
import assert from "node:assert/strict";
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { randomBytes } from "node:crypto";
import { promisify } from "node:util";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { test } from "node:test";
import { sleep } from "../../src/core/abort.js";
import { freePort } from "../chain/fixture.js";

const MAIN = resolve(import.meta.dirname, "../../src/cli/main.js");

interface UpFile {
  rpcUrl: string;
  chainPid: number;
  pid: number;
  contracts: { market: string };
  farmers: Array<{ index: number; pid: number; peerId: string; wallet: string }>;
}

interface StatusLine {
  event: string;
  block?: number;
  farmers?: Array<{ index: number; up: boolean; capacityBytes?: string }>;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Starts `dstor up --json` and collects its JSON lines. */
function startUp(
  home: string,
  port: number,
  extra: readonly string[] = ["--farmer-count", "3", "--no-renter"],
): { child: ChildProcess; lines: StatusLine[]; next: (pred: (l: StatusLine) => boolean) => Promise<StatusLine> } {
  // The farmers' port follows the chain's so that tests (and other `dstor up`s) on one machine do not collide.
  const child = spawn(process.execPath, [MAIN, "up", "--home", home, "--port", String(port), "--farmer-port", String(port + 1), "--json", ...extra], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  const lines: StatusLine[] = [];
  const waiters: Array<{ pred: (l: StatusLine) => boolean; resolve: (l: StatusLine) => void }> = [];
  let buffered = "";
  let stderr = "";
  child.stderr!.on("data", (chunk: Buffer) => {
    stderr = (stderr + chunk.toString()).slice(-4000);
  });
  child.stdout!.on("data", (chunk: Buffer) => {
    buffered += chunk.toString();
    for (let nl = buffered.indexOf("\n"); nl >= 0; nl = buffered.indexOf("\n")) {
      const line = JSON.parse(buffered.slice(0, nl)) as StatusLine;
      buffered = buffered.slice(nl + 1);
      lines.push(line);
      for (const w of [...waiters]) {
        if (w.pred(line)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(line);
        }
      }
    }
  });
  const next = (pred: (l: StatusLine) => boolean): Promise<StatusLine> =>
    new Promise((resolveLine, reject) => {
      const found = lines.find(pred);
      if (found !== undefined) return resolveLine(found);
      waiters.push({ pred, resolve: resolveLine });
      child.once("exit", (code) => reject(new Error(`dstor up exited with ${code}: ${stderr}`)));
    });
  return { child, lines, next };
}

async function stopUp(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
  const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
  child.kill("SIGTERM");
  return exited;
}

test("dstor up: ready, status, a killed farmer shows down, clean stop, same network after restart", { timeout: 300_000 }, async (t) => {
  const home = await mkdtemp(join(tmpdir(), "dstor-up-"));
  const port = await freePort();
  const pids: number[] = [];
  let up = startUp(home, port);
  t.after(async () => {
    up.child.kill("SIGKILL");
    for (const pid of pids) if (alive(pid)) process.kill(pid, "SIGKILL");
    await rm(home, { recursive: true, force: true });
  });

  await up.next((l) => l.event === "ready");
  const first = JSON.parse(await readFile(join(home, "up.json"), "utf8")) as UpFile;
  assert.equal(first.farmers.length, 3);
  pids.push(first.chainPid, ...first.farmers.map((f) => f.pid));
  for (const f of first.farmers) {
    assert.match(f.peerId, /^12D3KooW/);
    assert.ok(alive(f.pid));
  }
  const status = await up.next((l) => l.event === "status" && (l.farmers ?? []).every((f) => f.up && f.capacityBytes !== undefined));
  assert.ok((status.block ?? 0) > 0);

  // A farmer killed outright is reported down; the others stay up.
  const victim = first.farmers[1]!;
  process.kill(victim.pid, "SIGKILL");
  const after = await up.next((l) => l.event === "status" && (l.farmers ?? []).some((f) => f.index === victim.index && !f.up));
  assert.deepEqual(
    after.farmers!.map((f) => f.up),
    first.farmers.map((f) => f.index !== victim.index),
  );

  // SIGTERM stops everything: nothing left running.
  assert.equal(await stopUp(up.child), 0);
  assert.ok(up.lines.some((l) => l.event === "stopped"));
  for (const pid of pids) {
    for (let i = 0; i < 50 && alive(pid); i++) await sleep(100);
    assert.equal(alive(pid), false, `process ${pid} was left running`);
  }

  // A restart brings back the same network: same farmers, same contracts.
  up = startUp(home, port);
  await up.next((l) => l.event === "ready");
  const second = JSON.parse(await readFile(join(home, "up.json"), "utf8")) as UpFile;
  pids.push(second.chainPid, ...second.farmers.map((f) => f.pid));
  assert.deepEqual(
    second.farmers.map((f) => [f.peerId, f.wallet]),
    first.farmers.map((f) => [f.peerId, f.wallet]),
  );
  assert.equal(second.contracts.market, first.contracts.market);
  assert.equal(await stopUp(up.child), 0);
});

/** Whether `dir` is a mount point now (from /proc/self/mountinfo). */
async function mounted(dir: string): Promise<boolean> {
  const info = await readFile("/proc/self/mountinfo", "utf8");
  return info.split("\n").some((line) => line.split(" ")[4] === dir);
}

test("dstor up mounts the drive; files written there survive a stop and a restart", { timeout: 400_000 }, async (t) => {
  const home = await mkdtemp(join(tmpdir(), "dstor-up-drive-"));
  const drive = join(home, "drive");
  const port = await freePort();
  // 8 farmers: the default strategy 4/6/8/10 needs `optimal` = 8 to store a segment.
  const args = ["--farmer-count", "8", "--mount", drive];
  let up = startUp(home, port, args);
  t.after(async () => {
    up.child.kill("SIGKILL");
    if (await mounted(drive)) await promisify(execFile)("fusermount", ["-uz", drive]).catch(() => {});
    await rm(home, { recursive: true, force: true });
  });
  await up.next((l) => l.event === "ready");
  const upFile = JSON.parse(await readFile(join(home, "up.json"), "utf8")) as { mount: string };
  assert.equal(upFile.mount, drive);
  assert.ok(await mounted(drive));
  const data = randomBytes(3 * 1024 * 1024 + 17);
  await writeFile(join(drive, "file.bin"), data);
  assert.equal(await stopUp(up.child), 0);
  assert.equal(await mounted(drive), false, "the drive was left mounted");

  up = startUp(home, port, args);
  await up.next((l) => l.event === "ready");
  assert.deepEqual(await readFile(join(drive, "file.bin")), data);
  assert.equal(await stopUp(up.child), 0);
  assert.equal(await mounted(drive), false);
});
