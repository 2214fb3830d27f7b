/**
 * Ordinary tools on a REAL mounted drive: the POSIX semantics probe (a child
 * process doing real system calls and checking errno), `rsync -a`, `tar`,
 * `git`, `sqlite3`; then unmount, drop the local cache and remount — every
 * byte, mode, mtime and link reads back identical from the farmers.
 *
 * One network (anvil + four `dstor farm` processes on 127.0.N.1, redundancy
 * 2/3/3/4) and one `dstor mount` child process for the whole file: they are
 * expensive. Every tool runs as its own child process (execFile, async).
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { lstat, mkdir, readdir, readFile, readlink, rm, symlink, utimes, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import { promisify } from "node:util";
import { parseSize } from "../../src/core/units.js";
import { spawnMount } from "./drive-fixture.js";
import { startDriveNetwork } from "./drive-network.js";

const execFileAsync = promisify(execFile);
const MIB = 1024 * 1024;
const PROBE = join(import.meta.dirname, "drive-posix-probe.js");
const FARMER_QUOTA = "2GB";

/** Runs a tool to completion (never on this process's own event loop's mount: there is none here). */
async function sh(cmd: string, args: string[], options: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<string> {
  try {
    const { stdout } = await execFileAsync(cmd, args, { cwd: options.cwd, env: options.env ?? process.env, maxBuffer: 64 * MIB, timeout: 300_000 });
    return stdout;
  } catch (error) {
    const e = error as { stdout?: string; stderr?: string; message: string };
    throw new Error(`${cmd} ${args.join(" ")} failed: ${e.message}\nstdout: ${e.stdout ?? ""}\nstderr: ${e.stderr ?? ""}`);
  }
}

/**
 * A manifest of a tree: per entry its type, permission bits, mtime (files and
 * links) and content hash or link target. Directory mtimes are left out: the
 * drive does not keep them in step with entry changes.
 */
async function manifest(root: string, dir = "", mtimes = true): Promise<string[]> {
  const out: string[] = [];
  for (const name of (await readdir(join(root, dir))).sort()) {
    const rel = dir === "" ? name : `${dir}/${name}`;
    const st = await lstat(join(root, rel));
    const mode = (st.mode & 0o7777).toString(8);
    if (st.isSymbolicLink()) out.push(`l ${rel} -> ${await readlink(join(root, rel))}`);
    else if (st.isDirectory()) {
      out.push(`d ${rel} ${mode}`);
      out.push(...(await manifest(root, rel, mtimes)));
    } else {
      const hash = createHash("sha256")
        .update(await readFile(join(root, rel)))
        .digest("hex");
      out.push(`f ${rel} ${mode} ${st.size} ${mtimes ? Math.floor(st.mtimeMs / 1000) : "-"} ${hash}`);
    }
  }
  return out;
}

/** A local source tree: many small files, a few large ones, a symlink, odd modes and mtimes. */
async function makeTree(dir: string): Promise<void> {
  await mkdir(join(dir, "src", "lib"), { recursive: true });
  await mkdir(join(dir, "empty-dir"));
  for (let i = 0; i < 60; i++) await writeFile(join(dir, "src", `file-${i}.txt`), `small file ${i}\n`.repeat(i + 1));
  for (let i = 0; i < 20; i++) await writeFile(join(dir, "src", "lib", `mod-${i}.bin`), randomBytes(1000 + i * 700));
  await writeFile(join(dir, "large-a.bin"), randomBytes(5 * MIB + 17));
  await writeFile(join(dir, "large-b.bin"), randomBytes(9 * MIB));
  await writeFile(join(dir, "run.sh"), "#!/bin/sh\necho hi\n", { mode: 0o755 });
  await writeFile(join(dir, "secret"), "s", { mode: 0o600 });
  await symlink("src/file-3.txt", join(dir, "link-to-file"));
  await symlink("src/lib", join(dir, "link-to-dir"));
  const old = new Date("2021-03-04T05:06:07Z");
  await utimes(join(dir, "src", "file-1.txt"), old, old);
}

test("ordinary tools on a real mounted drive", { timeout: 1_500_000 }, async (t) => {
  const { root, mnt, common, mounts } = await startDriveNetwork(t, "dstor-drive-tools-", { quota: FARMER_QUOTA });
  const cacheDir = join(root, "cache");
  common.push("--cache-dir", cacheDir);
  let m = await spawnMount(mnt, common, mounts);
  const at = (p: string): string => join(mnt, p);

  await t.test("POSIX semantics: results and errno, from a child process", async () => {
    await mkdir(at("posix"));
    let stdout = "";
    let code = 0;
    try {
      // statfs: 4 farmers × their quota (the registry's capacity), k/optimal = 2/3 (src/renter/capacity.ts).
      const freeBytes = Math.floor((4 * parseSize(FARMER_QUOTA) * 2) / 3);
      stdout = await sh(process.execPath, [PROBE, at("posix"), String(freeBytes)]);
    } catch (error) {
      stdout = String((error as Error).message);
      code = 1;
    }
    const results = stdout
      .split("\n")
      .filter((l) => l.startsWith("{"))
      .map((l) => JSON.parse(l) as { name: string; ok: boolean; error?: string });
    const failures = results.filter((r) => !r.ok);
    assert.deepEqual(failures, [], `failed checks:\n${failures.map((r) => `${r.name}: ${r.error}`).join("\n\n")}\nmount stderr:\n${m.stderr()}`);
    assert.equal(code, 0, stdout);
    assert.equal(results.length, 12, "every check ran");
  });

  const tree = join(root, "tree");
  await makeTree(tree);

  await t.test("rsync -a to the drive, then a checksum rsync finds nothing to do", async () => {
    await sh("rsync", ["-a", `${tree}/`, at("rsynced/")]);
    const again = await sh("rsync", ["-a", "--checksum", "--dry-run", "--itemize-changes", `${tree}/`, at("rsynced/")]);
    assert.equal(again.trim(), "", "a second rsync sees identical files");
    await sh("diff", ["-r", "--no-dereference", tree, at("rsynced")]);
    assert.deepEqual(await manifest(at("rsynced")), await manifest(tree));
    // And back: rsync from the drive to local disk.
    await sh("rsync", ["-a", at("rsynced/"), join(root, "back/")]);
    assert.deepEqual(await manifest(join(root, "back")), await manifest(tree));
  });

  await t.test("tar c of the drive and tar x onto it", async () => {
    const archive = join(root, "tree.tar");
    await sh("tar", ["-cf", archive, "-C", tree, "."]);
    await mkdir(at("untarred"));
    await sh("tar", ["-xpf", archive, "-C", at("untarred")]);
    // tar x sets mtimes with utimensat(atime = UTIME_OMIT): the addon's request channel makes libfuse 2 pass those on (fuse-native.c).
    assert.deepEqual(await manifest(at("untarred")), await manifest(tree));
    const fromDrive = join(root, "from-drive.tar");
    await sh("tar", ["-cf", fromDrive, "-C", at("untarred"), "."]);
    await mkdir(join(root, "tar-back"));
    await sh("tar", ["-xpf", fromDrive, "-C", join(root, "tar-back")]);
    assert.deepEqual(await manifest(join(root, "tar-back")), await manifest(tree));
    // tar c of a tree the drive got its mtimes for (rsync sets both times) carries them.
    const rsynced = join(root, "rsynced.tar");
    await sh("tar", ["-cf", rsynced, "-C", at("rsynced"), "."]);
    await mkdir(join(root, "tar-rsynced"));
    await sh("tar", ["-xpf", rsynced, "-C", join(root, "tar-rsynced")]);
    assert.deepEqual(await manifest(join(root, "tar-rsynced")), await manifest(tree));
  });

  await t.test("git init, add, commit, log, clone, fsck on the drive", async () => {
    const repo = at("repo");
    const env = { ...process.env, GIT_AUTHOR_NAME: "t", GIT_AUTHOR_EMAIL: "t@example.org", GIT_COMMITTER_NAME: "t", GIT_COMMITTER_EMAIL: "t@example.org", HOME: root, GIT_CONFIG_NOSYSTEM: "1" };
    await sh("git", ["init", "-q", "-b", "main", repo], { env });
    await sh("cp", ["-a", join(tree, "src"), join(tree, "run.sh"), join(tree, "link-to-file"), repo]);
    await sh("git", ["add", "-A"], { cwd: repo, env });
    await sh("git", ["commit", "-q", "-m", "first"], { cwd: repo, env });
    await writeFile(join(repo, "src", "file-0.txt"), "changed\n");
    await writeFile(join(repo, "added.txt"), randomBytes(200_000).toString("base64"));
    await sh("git", ["add", "-A"], { cwd: repo, env });
    await sh("git", ["commit", "-q", "-m", "second"], { cwd: repo, env });
    const log = await sh("git", ["log", "--format=%s"], { cwd: repo, env });
    assert.deepEqual(log.trim().split("\n"), ["second", "first"]);
    assert.equal((await sh("git", ["status", "--porcelain"], { cwd: repo, env })).trim(), "", "the work tree is clean");
    await sh("git", ["fsck", "--full", "--strict"], { cwd: repo, env });
    const clone = join(root, "clone");
    await sh("git", ["clone", "-q", repo, clone], { env });
    assert.equal(await readFile(join(clone, "src", "file-0.txt"), "utf8"), "changed\n");
    assert.equal(await readlink(join(clone, "link-to-file")), "src/file-3.txt");
    assert.equal((await lstat(join(clone, "run.sh"))).mode & 0o111, 0o111, "the executable bit went through git");
    // A clone onto the drive too (no hard links there: git copies).
    await sh("git", ["clone", "-q", repo, at("clone")], { env });
    await sh("git", ["fsck", "--full"], { cwd: at("clone"), env });
    assert.equal((await sh("git", ["log", "--format=%s"], { cwd: at("clone"), env })).trim(), "second\nfirst");
  });

  await t.test("sqlite3: transactions, a rollback, integrity_check", async () => {
    const db = at("data.sqlite");
    await sh("sqlite3", [db, "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT); CREATE INDEX tv ON t(v);"]);
    for (let batch = 0; batch < 5; batch++) {
      const rows = Array.from({ length: 400 }, (_, i) => `(${batch * 400 + i}, '${randomBytes(40).toString("hex")}')`).join(",");
      await sh("sqlite3", [db, `BEGIN; INSERT INTO t VALUES ${rows}; COMMIT;`]);
    }
    await sh("sqlite3", [db, "BEGIN; DELETE FROM t WHERE id < 1000; ROLLBACK;"]);
    await sh("sqlite3", [db, "BEGIN; UPDATE t SET v = 'x' || v WHERE id % 3 = 0; DELETE FROM t WHERE id % 7 = 0; COMMIT;"]);
    assert.equal((await sh("sqlite3", [db, "PRAGMA integrity_check;"])).trim(), "ok");
    assert.equal((await sh("sqlite3", [db, "SELECT count(*) FROM t;"])).trim(), String(2000 - Math.ceil(2000 / 7)));
    assert.equal((await sh("sqlite3", [db, "SELECT count(*) FROM t WHERE v LIKE 'x%';"])).trim(), String(Math.ceil(2000 / 3) - Math.ceil(2000 / 21)));
    assert.deepEqual(
      (await readdir(mnt)).filter((n) => n.startsWith("data.sqlite-")),
      [],
      "no journal is left behind",
    );
  });

  await t.test("unmount, drop the local cache, remount: everything identical", async () => {
    const before = await manifest(mnt);
    assert.ok(before.length > 100, "the drive holds the trees written above");
    assert.equal(await m.stop(), 0, m.stderr());
    assert.deepEqual(await readdir(cacheDir), [], "a clean unmount leaves nothing staged");
    await rm(cacheDir, { recursive: true, force: true });
    m = await spawnMount(mnt, common, mounts);
    assert.deepEqual(await manifest(mnt), before);
    assert.equal((await sh("sqlite3", [at("data.sqlite"), "PRAGMA integrity_check;"])).trim(), "ok");
    await sh("git", ["fsck", "--full"], { cwd: at("repo"), env: { ...process.env, HOME: root } });
    assert.equal(await m.stop(), 0, m.stderr());
  });
});
