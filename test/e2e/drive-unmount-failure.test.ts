/**
 * Unmounting while the network cannot take a staged file: `dstor mount`
 * exits 1 and says so, and the file's bytes stay in the staging journal
 * (replayed on the next mount). Real farmers (then killed), a real anvil
 * chain, a real FUSE mount.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import { spawnMount } from "./drive-fixture.js";
import { startDriveNetwork } from "./drive-network.js";

test("unmounting with a file the network cannot take: exit 1, a message, and the bytes stay in the journal", { timeout: 600_000 }, async (t) => {
  const { home, mnt, common, mounts, farmers } = await startDriveNetwork(t, "dstor-drive-unmount-failure-");
  const m = await spawnMount(mnt, common, mounts);
  for (const farmer of farmers) await farmer.kill();
  const data = randomBytes(300 * 1024);
  // Write-back: close succeeds at once; the background upload then fails (no farmer left).
  await writeFile(join(mnt, "late.bin"), data);
  assert.equal(await m.stop(), 1, m.stderr());
  assert.match(m.stderr(), /1 staged file\(s\) could not be uploaded at unmount/);
  const cache = join(home, "renter", "cache");
  const kept: Buffer[] = [];
  for (const entry of await readdir(cache, { recursive: true, withFileTypes: true })) {
    if (entry.isFile()) kept.push(await readFile(join(entry.parentPath, entry.name)));
  }
  assert.ok(
    kept.some((bytes) => bytes.equals(data)),
    `the staged bytes are in the journal (${kept.length} files there)`,
  );
});
