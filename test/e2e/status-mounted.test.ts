/**
 * `dstor status` while the drive is mounted: the mount process holds the
 * metadata database, so status reads the drive's status file (and the
 * chain) instead, says so, and shows what the metadata shows once the drive
 * is unmounted. Real farmers on 127.0.N.1, a real anvil chain, a real FUSE
 * mount in a child process.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import { sleep } from "../../src/core/abort.js";
import { readDriveStatus } from "../../src/node/drive-status.js";
import type { RenterStatus } from "../../src/node/status.js";
import { runCli } from "../renter/network-fixture.js";
import { spawnMount } from "./drive-fixture.js";
import { startDriveNetwork } from "./drive-network.js";


test("dstor status works while the drive is mounted and names its source", { timeout: 600_000 }, async (t) => {
  const { root, mnt, home, common, mounts } = await startDriveNetwork(t, "dstor-status-mounted-e2e-");
  await writeFile(join(root, "a"), randomBytes(2 * 1024 * 1024 + 5));
  const put = await runCli(["put", join(root, "a"), "/a", "--segment-size", "1MiB", ...common]);
  assert.equal(put.code, 0, put.stderr);

  const m = await spawnMount(mnt, common, mounts);
  // The drive lists files and farmers in its status file within a few seconds.
  const deadline = Date.now() + 60_000;
  for (;;) {
    const drive = await readDriveStatus(home);
    if (drive !== undefined && drive.pid === m.child.pid && drive.files.length > 0 && (drive.farmers?.length ?? 0) > 0) break;
    assert.ok(Date.now() < deadline, `the drive writes its status file within a minute; mount stderr:\n${m.stderr()}`);
    await sleep(500);
  }
  const mounted = await runCli(["status", "--json", ...common]);
  assert.equal(mounted.code, 0, mounted.stderr);
  const a = JSON.parse(mounted.stdout) as RenterStatus;
  assert.equal(a.source.kind, "drive");
  assert.ok(a.source.kind === "drive" && a.source.pid === m.child.pid && a.source.mountpoint === mnt);
  assert.deepEqual(a.files.map((x) => [x.path, x.health]), [["/a", "healthy"]]);
  assert.equal(a.files[0]!.segments.length, 3);
  // 2/3/3/4: a put stores `optimal` (3) pieces of every segment.
  assert.ok(a.files[0]!.segments.every((s) => s.healthy >= 3 && s.total === 4), JSON.stringify(a.files[0]!.segments));
  const stored = a.files[0]!.segments.reduce((n, s) => n + s.healthy, 0);
  assert.equal(a.farmers.reduce((n, x) => n + x.pieces, 0), stored, "every piece is on a listed farmer");
  assert.ok(a.farmers.every((x) => x.chain !== undefined && x.deal !== undefined), "chain columns come from the chain");
  assert.ok(a.balances !== undefined);
  const text = await runCli(["status", ...common]);
  assert.equal(text.code, 0, text.stderr);
  assert.match(text.stdout, /source: the mounted drive at /);
  assert.match(text.stdout, /\/a {2}healthy/);

  assert.equal(await m.stop(), 0, m.stderr());
  const offline = await runCli(["status", "--json", ...common]);
  assert.equal(offline.code, 0, offline.stderr);
  const b = JSON.parse(offline.stdout) as RenterStatus;
  assert.deepEqual(b.source, { kind: "metadata" });
  // The same picture from both sources.
  assert.deepEqual(b.files, a.files);
  const rows = (s: RenterStatus): Array<[string, string | undefined]> => s.farmers.map((x): [string, string | undefined] => [x.address, x.deal?.id]).sort();
  assert.deepEqual(rows(b), rows(a));
  // Unmounting stores a metadata snapshot in the network, whose pieces count too: never fewer.
  for (const row of a.farmers) assert.ok(b.farmers.find((x) => x.address === row.address)!.pieces >= row.pieces);
});
