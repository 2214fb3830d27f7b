/**
 * The drive through a REAL FUSE mount: `dstor mount` runs as a child process
 * (a process must never do file operations on its own mount), the test does
 * the file operations with async fs and with `cp`/`diff`. Four real farmers
 * on 127.0.N.1, a real anvil chain, redundancy 2/3/3/4.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chmod, link, mkdir, open, readdir, readFile, rename, rmdir, stat, statfs, truncate, unlink, utimes, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import { promisify } from "node:util";
import { type DriveMount, exited, spawnMount } from "./drive-fixture.js";
import { alive } from "./up-fixture.js";
import { runCli } from "../renter/network-fixture.js";
import { startDriveNetwork } from "./drive-network.js";

const run = promisify(execFile);
const MIB = 1024 * 1024;

async function expectCode(promise: Promise<unknown>, code: string): Promise<void> {
  await assert.rejects(promise, (error: NodeJS.ErrnoException) => {
    assert.equal(error.code, code);
    return true;
  });
}

test("the drive through a real FUSE mount", { timeout: 600_000 }, async (t) => {
  const { root, mnt, common, mounts, cleanups } = await startDriveNetwork(t, "dstor-drive-e2e-");

  const mount = (): Promise<DriveMount> => spawnMount(mnt, common, mounts);

  let m = await mount();
  const at = (p: string): string => join(mnt, p);

  await t.test("a second mount on a live mount point is refused", async () => {
    const again = await runCli(["mount", mnt, ...common], 60_000);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /already mounted/);
  });

  await t.test("POSIX semantics", async () => {
    await writeFile(at("a.txt"), "hello drive");
    assert.equal(await readFile(at("a.txt"), "utf8"), "hello drive");
    assert.equal((await stat(at("a.txt"))).size, 11);

    await truncate(at("a.txt"), 5);
    assert.equal(await readFile(at("a.txt"), "utf8"), "hello");

    await writeFile(at("b.txt"), "bee");
    await rename(at("a.txt"), at("b.txt"));
    assert.equal(await readFile(at("b.txt"), "utf8"), "hello");
    await expectCode(stat(at("a.txt")), "ENOENT");

    // Unlink while open: the handle keeps reading the data.
    const fh = await open(at("b.txt"), "r");
    await unlink(at("b.txt"));
    await expectCode(stat(at("b.txt")), "ENOENT");
    const buf = Buffer.alloc(5);
    await fh.read(buf, 0, 5, 0);
    assert.equal(buf.toString(), "hello");
    await fh.close();

    await mkdir(at("d"));
    await expectCode(mkdir(at("d")), "EEXIST");
    await writeFile(at("d/x"), "x");
    await expectCode(rmdir(at("d")), "ENOTEMPTY");
    await unlink(at("d/x"));
    await rmdir(at("d"));
    await expectCode(stat(at("d")), "ENOENT");

    await mkdir(at("d1"));
    await mkdir(at("d2"));
    await rename(at("d1"), at("d2"));
    assert.ok((await stat(at("d2"))).isDirectory());
    await expectCode(stat(at("d1")), "ENOENT");
    await rmdir(at("d2"));

    await writeFile(at("m.txt"), "mode");
    await chmod(at("m.txt"), 0o600);
    assert.equal((await stat(at("m.txt"))).mode & 0o777, 0o600);
    const when = new Date("2020-01-02T03:04:05Z");
    await utimes(at("m.txt"), when, when);
    assert.equal((await stat(at("m.txt"))).mtimeMs, when.getTime());

    const fs = await statfs(mnt);
    assert.ok(fs.blocks > 0 && fs.bavail > 0);
    await expectCode(link(at("m.txt"), at("hard")), "EPERM");
    await expectCode(readFile(at("nope")), "ENOENT");
    assert.deepEqual((await readdir(mnt)).sort(), ["m.txt"]);
  });

  const src = join(root, "tree");
  await t.test("cp -a of a small tree with a 9 MiB file, then diff -r", async () => {
    await mkdir(join(src, "sub", "deeper"), { recursive: true });
    await writeFile(join(src, "small.txt"), "small file\n");
    await writeFile(join(src, "sub", "five-k.bin"), randomBytes(5000));
    await writeFile(join(src, "sub", "deeper", "empty"), "");
    await writeFile(join(src, "big.bin"), randomBytes(9 * MIB));
    await run("cp", ["-a", src, at("tree")]);
    await run("diff", ["-r", src, at("tree")]);
  });

  await t.test("concurrent writers and readers, on different files and on one file", async () => {
    // Six files written at once, then all read at once.
    const files = Array.from({ length: 6 }, (_, i) => ({ name: at(`par-${i}.bin`), data: randomBytes(MIB + 4099 * i) }));
    await Promise.all(files.map((f) => writeFile(f.name, f.data)));
    const back = await Promise.all(files.map((f) => readFile(f.name)));
    for (const [i, b] of back.entries()) assert.deepEqual(b, files[i]!.data, `par-${i}.bin`);
    // Two handles on one file write disjoint halves concurrently, chunk by chunk.
    const half = 768 * 1024;
    const a = randomBytes(half);
    const b = randomBytes(half);
    const shared = at("shared.bin");
    await writeFile(shared, "");
    const [ha, hb] = await Promise.all([open(shared, "r+"), open(shared, "r+")]);
    try {
      const chunk = 64 * 1024;
      await Promise.all([
        (async () => {
          for (let o = 0; o < half; o += chunk) await ha.write(a, o, chunk, o);
        })(),
        (async () => {
          for (let o = 0; o < half; o += chunk) await hb.write(b, o, chunk, half + o);
        })(),
      ]);
    } finally {
      await ha.close();
      await hb.close();
    }
    const whole = Buffer.concat([a, b]);
    // Four readers at once see the same bytes as the writers left.
    const readers = await Promise.all(Array.from({ length: 4 }, () => readFile(shared)));
    for (const r of readers) assert.deepEqual(r, whole);
  });

  await t.test("unmount, remount: identical", async () => {
    assert.equal(await m.stop(), 0, m.stderr());
    m = await mount();
    await run("diff", ["-r", src, at("tree")]);
    assert.equal((await stat(at("m.txt"))).mode & 0o777, 0o600, "chmod survives a remount");
  });

  await t.test("kill -9 after fsync, restart: the file is complete", async () => {
    const data = randomBytes(2 * MIB + 123);
    const fh = await open(at("synced.bin"), "w");
    await fh.write(data, 0, data.length, 0);
    await fh.sync();
    const closed = randomBytes(300 * 1024);
    await writeFile(at("closed.bin"), closed);
    await m.kill();
    m = await mount();
    await fh.close().catch(() => {});
    assert.deepEqual(await readFile(at("synced.bin")), data);
    assert.deepEqual(await readFile(at("closed.bin")), closed, "a closed (journalled) write is replayed");
  });

  await t.test("dstor unmount ends the mount process cleanly", async () => {
    const un = await runCli(["unmount", mnt, "--json"], 60_000);
    assert.equal(un.code, 0, un.stderr);
    await exited(m.child);
    assert.equal(m.child.exitCode, 0, m.stderr());
    assert.deepEqual(await readdir(mnt), [], "the mount point is an empty directory again");
  });

  await t.test("--daemon returns once mounted, serves in the background and stops on dstor unmount", async () => {
    const started = await runCli(["mount", mnt, ...common, "--daemon", "--json"], 150_000);
    assert.equal(started.code, 0, started.stderr);
    const event = JSON.parse(started.stdout.trim().split("\n").pop()!) as { event: string; pid: number; log: string; daemon: boolean };
    assert.equal(event.event, "mounted");
    assert.equal(event.daemon, true);
    // If anything below fails, the daemon must not outlive the test.
    cleanups.push(async () => {
      if (alive(event.pid)) process.kill(event.pid, "SIGKILL");
    });
    assert.ok(alive(event.pid), "the background mount runs after the command returned");
    await writeFile(at("daemon.txt"), "served in the background");
    assert.equal(await readFile(at("daemon.txt"), "utf8"), "served in the background");
    const un = await runCli(["unmount", mnt, "--json"], 60_000);
    assert.equal(un.code, 0, un.stderr);
    for (const until = Date.now() + 120_000; alive(event.pid); ) {
      assert.ok(Date.now() < until, "the background mount exits after dstor unmount");
      await new Promise((r) => setTimeout(r, 200));
    }
    assert.deepEqual(await readdir(mnt), []);
    assert.match(await readFile(event.log, "utf8"), /"event":"unmounted"/);
  });

  await t.test("--daemon on a non-empty mount point fails with the mount's own error", async () => {
    const full = join(root, "full");
    await mkdir(full);
    await writeFile(join(full, "x"), "x");
    const r = await runCli(["mount", full, ...common, "--daemon"], 150_000);
    assert.equal(r.code, 1, r.stdout);
    assert.match(r.stderr, /background mount .* exited .*not empty/);
  });
});

