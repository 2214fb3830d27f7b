/**
 * `dstor up` as a user runs it: the chain and real farmer processes come up,
 * up.json appears, a farmer killed with SIGKILL shows as down, SIGTERM stops
 * everything and leaves nothing running, and a restart brings back the same
 * network (same farmer identities, same deployment).
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { randomBytes } from "node:crypto";
import { promisify } from "node:util";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { sleep } from "../../src/core/abort.js";
import { freePort } from "../chain/fixture.js";
import { alive, mounted, startUp, stopUp } from "./up-fixture.js";

interface UpFile {
  rpcUrl: string;
  chainPid: number;
  pid: number;
  contracts: { market: string };
  farmers: Array<{ index: number; pid: number; peerId: string; wallet: string }>;
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
