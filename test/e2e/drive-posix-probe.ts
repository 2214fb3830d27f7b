/**
 * The POSIX semantics probe of the drive e2e tests, run as a CHILD process on
 * a mounted drive (`node drive-posix-probe.js DIR FREE_BYTES`): each check
 * does real system calls in DIR and asserts both the results and the errno
 * of every expected failure. FREE_BYTES is what statfs must report (the
 * test knows its farmers). Node has no xattr calls: those checks run a small
 * python3 script (Debian python3 is in scripts/setup.sh) that prints each
 * call's result or errno name. Prints one JSON line per check (`{ name, ok,
 * error? }`) and exits 1 if any failed. Not a test file itself:
 * drive-tools.test.ts runs it.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import {
  appendFile,
  chmod,
  chown,
  link,
  lstat,
  lutimes,
  mkdir,
  open,
  readdir,
  readFile,
  readlink,
  rename,
  rmdir,
  stat,
  statfs,
  symlink,
  truncate,
  unlink,
  utimes,
  writeFile,
} from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";

const execFileAsync = promisify(execFile);
const dir = process.argv[2];
const expectedFreeBytes = Number(process.argv[3]);
if (dir === undefined || !Number.isFinite(expectedFreeBytes)) throw new Error("usage: drive-posix-probe DIR FREE_BYTES");
const at = (p: string): string => join(dir, p);

/** Runs `touch ARGS…` (utimensat with UTIME_OMIT for one of the times, which Node cannot send). */
async function touch(...args: string[]): Promise<void> {
  await execFileAsync("touch", args);
}

/**
 * xattr calls through python3's os module: each step prints its result
 * (values as latin-1 text, lists sorted) or the errno name. `size` steps
 * call libc with a buffer of that many bytes, to see ERANGE.
 */
const XATTR_SCRIPT = `
import ctypes, errno, json, os, sys
libc = ctypes.CDLL(None, use_errno=True)
def run(step):
    op, path = step[0], step[1]
    try:
        if op == "get": return os.getxattr(path, step[2]).decode("latin-1")
        if op == "set": os.setxattr(path, step[2], step[3].encode("latin-1"), step[4]); return None
        if op == "list": return sorted(os.listxattr(path))
        if op == "remove": os.removexattr(path, step[2]); return None
        if op == "getsize":
            buf = ctypes.create_string_buffer(step[3])
            n = libc.getxattr(path.encode(), step[2].encode(), buf if step[3] else None, step[3])
            return n if n >= 0 else errno.errorcode[ctypes.get_errno()]
        if op == "listsize":
            buf = ctypes.create_string_buffer(step[2])
            n = libc.listxattr(path.encode(), buf if step[2] else None, step[2])
            return n if n >= 0 else errno.errorcode[ctypes.get_errno()]
    except OSError as e:
        return errno.errorcode[e.errno]
print(json.dumps([run(s) for s in json.loads(sys.argv[1])]))
`;

type XattrStep = ["get", string, string] | ["set", string, string, string, number] | ["list", string] | ["remove", string, string] | ["getsize", string, string, number] | ["listsize", string, number];

async function xattrs(steps: XattrStep[]): Promise<unknown[]> {
  const { stdout } = await execFileAsync("python3", ["-c", XATTR_SCRIPT, JSON.stringify(steps)]);
  return JSON.parse(stdout) as unknown[];
}

/** Asserts that `promise` fails with errno `code`. */
async function fails(promise: Promise<unknown>, code: string, what: string): Promise<void> {
  await assert.rejects(promise, (error: NodeJS.ErrnoException) => {
    assert.equal(error.code, code, `${what}: expected ${code}, got ${error.code} (${error.message})`);
    return true;
  });
}

const checks: Array<[string, () => Promise<void>]> = [
  [
    "create, write, read, stat",
    async () => {
      await writeFile(at("a.txt"), "hello drive");
      assert.equal(await readFile(at("a.txt"), "utf8"), "hello drive");
      const st = await stat(at("a.txt"));
      assert.ok(st.isFile());
      assert.equal(st.size, 11);
      await fails(open(at("a.txt"), "wx"), "EEXIST", "O_CREAT|O_EXCL on an existing file");
      await fails(readFile(at("missing")), "ENOENT", "open of a missing file");
      await fails(readFile(at("a.txt/x")), "ENOTDIR", "a file used as a directory");
      await fails(writeFile(at("no-dir/x"), "x"), "ENOENT", "create in a missing directory");
    },
  ],
  [
    "byte-range writes, O_APPEND, reads past the end",
    async () => {
      const data = randomBytes(300_000);
      await writeFile(at("range.bin"), data);
      const fh = await open(at("range.bin"), "r+");
      const patch = randomBytes(5000);
      await fh.write(patch, 0, patch.length, 150_000);
      patch.copy(data, 150_000);
      await fh.write(Buffer.from("tail"), 0, 4, 300_000);
      const buf = Buffer.alloc(10);
      const { bytesRead } = await fh.read(buf, 0, 10, 400_000);
      assert.equal(bytesRead, 0, "a read past the end returns 0 bytes");
      await fh.sync();
      await fh.close();
      assert.deepEqual(await readFile(at("range.bin")), Buffer.concat([data, Buffer.from("tail")]));
      await appendFile(at("range.bin"), "++");
      assert.equal((await stat(at("range.bin"))).size, 300_006);
    },
  ],
  [
    "truncate and ftruncate: shrink, grow with zeros",
    async () => {
      await writeFile(at("t.txt"), "0123456789");
      await truncate(at("t.txt"), 4);
      assert.equal(await readFile(at("t.txt"), "utf8"), "0123");
      await truncate(at("t.txt"), 8);
      assert.deepEqual(await readFile(at("t.txt")), Buffer.from([0x30, 0x31, 0x32, 0x33, 0, 0, 0, 0]));
      const fh = await open(at("t.txt"), "r+");
      await fh.truncate(2);
      assert.equal((await fh.stat()).size, 2);
      await fh.close();
      assert.equal(await readFile(at("t.txt"), "utf8"), "01");
      await fails(truncate(at("missing"), 0), "ENOENT", "truncate of a missing file");
    },
  ],
  [
    "rename: over an existing file, directories, and the errno of bad renames",
    async () => {
      await writeFile(at("r1"), "one");
      await writeFile(at("r2"), "two");
      await rename(at("r1"), at("r2"));
      assert.equal(await readFile(at("r2"), "utf8"), "one");
      await fails(stat(at("r1")), "ENOENT", "the old name after a rename");
      await mkdir(at("rd1"));
      await writeFile(at("rd1/inside"), "in");
      await mkdir(at("rd2"));
      await rename(at("rd1"), at("rd2"));
      assert.equal(await readFile(at("rd2/inside"), "utf8"), "in");
      await mkdir(at("rd3"));
      await fails(rename(at("rd3"), at("rd2")), "ENOTEMPTY", "a directory renamed over a non-empty one");
      await fails(rename(at("r2"), at("rd3")), "EISDIR", "a file renamed over a directory");
      await fails(rename(at("rd3"), at("r2")), "ENOTDIR", "a directory renamed over a file");
      await fails(rename(at("rd2"), at("rd2/sub")), "EINVAL", "a directory moved into itself");
      await fails(rename(at("missing"), at("x")), "ENOENT", "rename of a missing file");
    },
  ],
  [
    "unlink while open: the handle keeps reading and writing, the name is gone",
    async () => {
      await writeFile(at("u.txt"), "still here");
      const fh = await open(at("u.txt"), "r+");
      await unlink(at("u.txt"));
      await fails(stat(at("u.txt")), "ENOENT", "stat of an unlinked name");
      assert.ok(!(await readdir(dir)).includes("u.txt"));
      const buf = Buffer.alloc(10);
      await fh.read(buf, 0, 10, 0);
      assert.equal(buf.toString(), "still here");
      await fh.write(Buffer.from("STILL"), 0, 5, 0);
      await fh.read(buf, 0, 10, 0);
      assert.equal(buf.toString(), "STILL here");
      await fh.close();
      await fails(stat(at("u.txt")), "ENOENT", "the name after the last close");
      await fails(unlink(at("u.txt")), "ENOENT", "unlink of a missing file");
    },
  ],
  [
    "mkdir/rmdir: ENOTEMPTY, EEXIST, ENOTDIR, EISDIR; a large directory",
    async () => {
      await mkdir(at("dd"));
      await fails(mkdir(at("dd")), "EEXIST", "mkdir of an existing directory");
      await writeFile(at("dd/x"), "x");
      await fails(rmdir(at("dd")), "ENOTEMPTY", "rmdir of a non-empty directory");
      await fails(rmdir(at("dd/x")), "ENOTDIR", "rmdir of a file");
      await fails(unlink(at("dd")), "EISDIR", "unlink of a directory");
      await fails(readFile(at("dd")), "EISDIR", "read of a directory");
      await unlink(at("dd/x"));
      await rmdir(at("dd"));
      await fails(stat(at("dd")), "ENOENT", "a removed directory");
      await mkdir(at("big"));
      const names = Array.from({ length: 400 }, (_, i) => `entry-${String(i).padStart(4, "0")}`);
      for (let i = 0; i < names.length; i += 50) await Promise.all(names.slice(i, i + 50).map((n) => mkdir(at(`big/${n}`))));
      assert.deepEqual((await readdir(at("big"))).sort(), names);
    },
  ],
  [
    "symlinks: readlink, lstat vs stat, dangling, EEXIST, EINVAL; hard links EPERM",
    async () => {
      await writeFile(at("target.txt"), "via link");
      await symlink("target.txt", at("ln"));
      assert.equal(await readlink(at("ln")), "target.txt");
      const l = await lstat(at("ln"));
      assert.ok(l.isSymbolicLink());
      assert.equal(l.size, "target.txt".length);
      assert.ok((await stat(at("ln"))).isFile(), "stat follows the link");
      assert.equal(await readFile(at("ln"), "utf8"), "via link");
      await writeFile(at("ln"), "written through");
      assert.equal(await readFile(at("target.txt"), "utf8"), "written through");
      await symlink("nowhere", at("dangling"));
      assert.ok((await lstat(at("dangling"))).isSymbolicLink());
      await fails(stat(at("dangling")), "ENOENT", "stat of a dangling link");
      await fails(symlink("x", at("ln")), "EEXIST", "symlink over an existing name");
      await fails(readlink(at("target.txt")), "EINVAL", "readlink of a file");
      await mkdir(at("ldir"));
      await writeFile(at("ldir/f"), "f");
      await symlink("ldir", at("ldir-link"));
      assert.deepEqual(await readdir(at("ldir-link")), ["f"]);
      await rename(at("ln"), at("ln2"));
      assert.equal(await readlink(at("ln2")), "target.txt");
      await unlink(at("ln2"));
      assert.equal(await readFile(at("target.txt"), "utf8"), "written through", "unlinking a link leaves its target");
      await symlink("/absolute/elsewhere", at("abs"));
      assert.equal(await readlink(at("abs")), "/absolute/elsewhere");
      await fails(link(at("target.txt"), at("hard")), "EPERM", "a hard link");
    },
  ],
  [
    "chmod, utimens (also on a link), chown",
    async () => {
      await writeFile(at("m.txt"), "mode");
      await chmod(at("m.txt"), 0o751);
      assert.equal((await stat(at("m.txt"))).mode & 0o7777, 0o751);
      await mkdir(at("md"));
      await chmod(at("md"), 0o700);
      assert.equal((await stat(at("md"))).mode & 0o7777, 0o700);
      // .5 s: exact in the double seconds Node passes to utimensat (ms precision is what the drive keeps).
      const when = new Date("2020-01-02T03:04:05.500Z");
      await utimes(at("m.txt"), when, when);
      assert.equal((await stat(at("m.txt"))).mtimeMs, when.getTime());
      await utimes(at("md"), when, when);
      assert.equal((await stat(at("md"))).mtimeMs, when.getTime());
      await symlink("m.txt", at("m-link"));
      const linkTime = new Date("2019-05-06T07:08:09Z");
      await lutimes(at("m-link"), linkTime, linkTime);
      assert.equal((await lstat(at("m-link"))).mtimeMs, linkTime.getTime());
      assert.equal((await stat(at("m.txt"))).mtimeMs, when.getTime(), "lutimes leaves the target alone");
      await fails(chmod(at("missing"), 0o600), "ENOENT", "chmod of a missing file");
      const uid = process.getuid?.() ?? 0;
      const gid = process.getgid?.() ?? 0;
      await chown(at("m.txt"), uid, gid);
      await fails(chown(at("m.txt"), uid + 4242, gid), "EPERM", "chown to another user");
    },
  ],
  [
    "utimens of one time only: touch -m sets the mtime, touch -a leaves it",
    async () => {
      await writeFile(at("times.txt"), "times");
      await touch("-m", "-d", "2020-02-03T04:05:06Z", at("times.txt"));
      assert.equal((await stat(at("times.txt"))).mtimeMs, Date.parse("2020-02-03T04:05:06Z"), "mtime-only utimensat (atime UTIME_OMIT)");
      await touch("-a", "-d", "2011-01-01T00:00:00Z", at("times.txt"));
      assert.equal((await stat(at("times.txt"))).mtimeMs, Date.parse("2020-02-03T04:05:06Z"), "an atime-only change leaves the mtime");
      const before = Date.now() - 1000;
      await touch("-m", at("times.txt"));
      const now = (await stat(at("times.txt"))).mtimeMs;
      assert.ok(now >= before && now <= Date.now() + 1000, `touch -m (UTIME_NOW) sets the current time, got ${new Date(now).toISOString()}`);
      // The same on a clean file (committed, not staged) and on a directory.
      const fh = await open(at("times.txt"), "r+");
      await fh.sync();
      await fh.close();
      await touch("-m", "-d", "2001-09-09T01:46:40Z", at("times.txt"));
      assert.equal((await stat(at("times.txt"))).mtimeMs, 1_000_000_000_000);
      await mkdir(at("times-dir"));
      await touch("-m", "-d", "2001-09-09T01:46:40Z", at("times-dir"));
      assert.equal((await stat(at("times-dir"))).mtimeMs, 1_000_000_000_000);
    },
  ],
  [
    "rename over a file open for reading: the open handle keeps reading the old content",
    async () => {
      const old = randomBytes(100_000);
      const replacement = randomBytes(70_000);
      await writeFile(at("replaced.bin"), old);
      const w = await open(at("replaced.bin"), "r+");
      await w.sync();
      await w.close();
      const reader = await open(at("replaced.bin"), "r");
      try {
        const head = Buffer.alloc(10);
        await reader.read(head, 0, 10, 0);
        assert.deepEqual(head, old.subarray(0, 10));
        await writeFile(at("replacement.bin"), replacement);
        await rename(at("replacement.bin"), at("replaced.bin"));
        assert.deepEqual(await readFile(at("replaced.bin")), replacement, "the name now gives the new content");
        const all = Buffer.alloc(old.length + 10);
        const { bytesRead } = await reader.read(all, 0, all.length, 0);
        assert.equal(bytesRead, old.length, "the handle still sees the old size");
        assert.deepEqual(all.subarray(0, bytesRead), old, "and the old bytes");
        assert.equal((await reader.stat()).size, old.length);
      } finally {
        await reader.close();
      }
      assert.deepEqual(await readFile(at("replaced.bin")), replacement);
    },
  ],
  [
    "xattrs: set/get/list/remove, XATTR_CREATE/REPLACE, ENODATA, ERANGE, ENOTSUP outside user.",
    async () => {
      const f = at("x.txt");
      await writeFile(f, "with attributes");
      const got = await xattrs([
        ["get", f, "user.color"],
        ["set", f, "user.color", "blue", 0],
        ["set", f, "user.empty", "", 0],
        ["get", f, "user.color"],
        ["get", f, "user.empty"],
        ["list", f],
        ["set", f, "user.color", "red", 1],
        ["set", f, "user.shape", "round", 2],
        ["set", f, "user.color", "green", 2],
        ["get", f, "user.color"],
        ["getsize", f, "user.color", 0],
        ["getsize", f, "user.color", 2],
        ["listsize", f, 3],
        ["set", f, "security.test", "x", 0],
        ["set", f, "trusted.test", "x", 0],
        ["get", f, "security.selinux"],
        ["remove", f, "user.empty"],
        ["remove", f, "user.empty"],
        ["list", f],
        ["get", at("missing"), "user.color"],
      ]);
      assert.deepEqual(got, [
        "ENODATA",
        null,
        null,
        "blue",
        "",
        ["user.color", "user.empty"],
        "EEXIST",
        "ENODATA",
        null,
        "green",
        5,
        "ERANGE",
        "ERANGE",
        "ENOTSUP",
        "ENOTSUP",
        "ENODATA",
        null,
        "ENODATA",
        ["user.color"],
        "ENOENT",
      ]);
      // They belong to the file: a rewrite keeps them, a rename carries them, a file renamed over it takes its place.
      await writeFile(f, "rewritten");
      const fh = await open(f, "r+");
      await fh.sync();
      await fh.close();
      await rename(f, at("x2.txt"));
      await writeFile(at("plain.txt"), "no attributes");
      // A file created and still being written gets them too.
      const fresh = await open(at("fresh.txt"), "w");
      await fresh.write("partial");
      const onOpen = await xattrs([["set", at("fresh.txt"), "user.k", "v", 0]]);
      await fresh.write(" and more");
      await fresh.close();
      assert.deepEqual(onOpen, [null]);
      assert.deepEqual(await xattrs([["get", at("x2.txt"), "user.color"], ["list", at("plain.txt")], ["get", at("fresh.txt"), "user.k"]]), ["green", [], "v"]);
      assert.equal(await readFile(at("fresh.txt"), "utf8"), "partial and more");
      await rename(at("plain.txt"), at("x2.txt"));
      assert.deepEqual(await xattrs([["list", at("x2.txt")]]), [[]]);
    },
  ],
  [
    "fsync of files and directories; statfs reports what the farmers can still take",
    async () => {
      const fh = await open(at("s.bin"), "w");
      await fh.write(randomBytes(70_000));
      await fh.sync();
      await fh.datasync();
      await fh.close();
      const d = await open(dir, "r");
      await d.sync();
      await d.close();
      const fs = await statfs(dir);
      assert.ok(fs.bsize > 0 && fs.blocks > 0 && fs.bavail > 0 && fs.bavail <= fs.blocks);
      assert.equal(fs.bavail * fs.bsize, Math.floor(expectedFreeBytes / fs.bsize) * fs.bsize, `statfs: ${fs.bavail} blocks of ${fs.bsize}, expected ${expectedFreeBytes} bytes`);
    },
  ],
];

let failed = 0;
for (const [name, check] of checks) {
  try {
    await check();
    process.stdout.write(`${JSON.stringify({ name, ok: true })}\n`);
  } catch (error) {
    failed++;
    process.stdout.write(`${JSON.stringify({ name, ok: false, error: String((error as Error).stack ?? error) })}\n`);
  }
}
process.exitCode = failed === 0 ? 0 : 1;
