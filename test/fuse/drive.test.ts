/**
 * The drive's POSIX logic without FUSE: a real metadata database and an
 * in-memory stand-in for the renter's data path. Also the errno map.
 */
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { constants, tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { SegmentCache } from "../../src/cache/segment-cache.js";
import { openStagingArea } from "../../src/cache/staging.js";
import { DstorError } from "../../src/core/errors.js";
import { Drive, type DriveData, STATFS_REFRESH_MS } from "../../src/fuse/drive.js";
import { toErrno } from "../../src/fuse/errno.js";
import { openMetadataDb } from "../../src/metadata/db.js";

const E = constants.errno;

/** Stores whole files in memory and commits a metadata record (inline-style) for each. */
function memoryData(meta: Awaited<ReturnType<typeof openMetadataDb>>): DriveData & { puts: number; blobs: Map<number, Buffer> } {
  const blobs = new Map<number, Buffer>();
  const self = {
    puts: 0,
    blobs,
    async put(path: string, source: AsyncIterable<Uint8Array>, options: { mode?: number; mtimeMs?: number }) {
      const parts: Buffer[] = [];
      for await (const c of source) parts.push(Buffer.from(c));
      const data = Buffer.concat(parts);
      const content = { fileKey: "00", fileId: "00", segmentSize: 64, redundancy: "1/1/1/1", segmentCount: 0 };
      const { record } = await meta.commitFile(path, { content, size: data.length, segments: [], mode: options.mode ?? 0o644, mtimeMs: options.mtimeMs ?? 0 });
      blobs.set(record.inode, data);
      self.puts++;
      return {};
    },
    async *read(path: string) {
      yield blobs.get((await meta.lookup(path)).inode)!;
    },
    async readRange(path: string, offset: number, length: number) {
      const data = blobs.get((await meta.lookup(path)).inode)!;
      return new Uint8Array(data.subarray(offset, Math.min(data.length, offset + length)));
    },
    async flushDeletes() {
      return {};
    },
  };
  return self;
}

async function setup(t: { after(fn: () => Promise<void>): void }) {
  const dir = await mkdtemp(join(tmpdir(), "dstor-drive-"));
  const meta = await openMetadataDb({ dir: join(dir, "renter", "meta") });
  const data = memoryData(meta);
  const staging = await openStagingArea(join(dir, "cache"));
  const drive = new Drive({ metadata: meta, data, staging, cache: new SegmentCache({ maxBytes: 1 << 20 }) });
  await drive.start();
  t.after(async () => {
    await drive.drain();
    await meta.close();
    await rm(dir, { recursive: true, force: true });
  });
  return { drive, meta, data, staging, dir };
}

async function readAll(drive: Drive, path: string): Promise<string> {
  const fd = await drive.open(path, 0);
  const buf = Buffer.alloc(1 << 16);
  const n = await drive.read(fd, buf, buf.length, 0);
  await drive.release(fd);
  return buf.subarray(0, n).toString();
}

const code = (c: string) => (error: unknown) => error instanceof DstorError && error.code === c;

test("errno map: codes, node errors, unknown → EIO", () => {
  assert.equal(toErrno(new DstorError("NO_SUCH_FILE", "x")), -E.ENOENT);
  assert.equal(toErrno(new DstorError("DIRECTORY_NOT_EMPTY", "x")), -E.ENOTEMPTY);
  assert.equal(toErrno(new DstorError("TIMEOUT", "x")), -E.ETIMEDOUT);
  assert.equal(toErrno(new DstorError("READ_ONLY", "x")), -E.EROFS);
  assert.equal(toErrno(new DstorError("NOT_ENOUGH_FARMERS", "x")), -E.EIO);
  assert.equal(toErrno(Object.assign(new Error("disk"), { code: "ENOSPC" })), -E.ENOSPC);
  assert.equal(toErrno(new Error("?")), -E.EIO);
});

test("create, write, fsync uploads once; the release of a clean file uploads nothing", async (t) => {
  const { drive, data } = await setup(t);
  const fd = await drive.create("/f", 0o640);
  assert.equal(await drive.write(fd, Buffer.from("hello world"), 11, 0), 11);
  assert.equal((await drive.getattr("/f")).size, 11);
  await drive.fsync(fd);
  assert.equal(data.puts, 1);
  await drive.release(fd);
  await drive.drain();
  assert.equal(data.puts, 1);
  assert.equal(drive.pending, 0);
  assert.equal(await readAll(drive, "/f"), "hello world");
  assert.equal((await drive.getattr("/f")).mode, 0o640);
});

test("partial overwrite of a clean file keeps the rest", async (t) => {
  const { drive } = await setup(t);
  const fd = await drive.create("/f", 0o644);
  await drive.write(fd, Buffer.from("abcdefgh"), 8, 0);
  await drive.release(fd);
  await drive.drain();
  const w = await drive.open("/f", 2);
  await drive.write(w, Buffer.from("XY"), 2, 3);
  await drive.release(w);
  await drive.drain();
  assert.equal(await readAll(drive, "/f"), "abcXYfgh");
});

test("namespace: mkdir, rmdir ENOTEMPTY with a staged file, rename over a file, chmod/utimens of clean files", async (t) => {
  const { drive, meta, data } = await setup(t);
  await drive.mkdir("/d", 0o755);
  await assert.rejects(drive.mkdir("/d", 0o755), code("FILE_EXISTS"));
  const fd = await drive.create("/d/x", 0o644);
  await assert.rejects(drive.rmdir("/d"), code("DIRECTORY_NOT_EMPTY"));
  assert.deepEqual(await drive.readdir("/d"), ["x"]);
  await drive.write(fd, Buffer.from("new"), 3, 0);
  await drive.release(fd);
  await drive.drain();
  const old = await drive.create("/y", 0o644);
  await drive.write(old, Buffer.from("old"), 3, 0);
  await drive.release(old);
  await drive.drain();
  await drive.rename("/d/x", "/y");
  assert.equal(await readAll(drive, "/y"), "new");
  await assert.rejects(drive.getattr("/d/x"), code("NO_SUCH_FILE"));
  await drive.rmdir("/d");
  const puts = data.puts;
  await drive.chmod("/y", 0o600);
  await drive.utimens("/y", 1_000_000);
  const a = await drive.getattr("/y");
  assert.equal(a.mode, 0o600);
  assert.equal(a.mtimeMs, 1_000_000);
  assert.equal(data.puts, puts, "chmod/utimens of a clean file upload nothing");
  const committed = await meta.lookup("/y");
  assert.equal(committed.mode, 0o600, "the mode is in metadata");
  assert.equal(committed.mtimeMs, 1_000_000);
  await drive.truncate("/y", 3);
  assert.equal(data.puts, puts, "a same-size truncate only touches the mtime");
  assert.ok((await meta.lookup("/y")).mtimeMs > 1_000_000);
  await assert.rejects(drive.chown("/y", 12345, 12345), code("NOT_PERMITTED"));
});

test("chmod/utimens of a staged file ride its upload into metadata", async (t) => {
  const { drive, meta, data } = await setup(t);
  const fd = await drive.create("/s", 0o644);
  await drive.write(fd, Buffer.from("abc"), 3, 0);
  await drive.chmod("/s", 0o751);
  await drive.utimens("/s", 5_000);
  assert.equal((await drive.getattr("/s")).mode, 0o751);
  await drive.fsync(fd);
  assert.equal(data.puts, 1);
  await drive.chmod("/s", 0o700);
  assert.equal((await meta.lookup("/s")).mode, 0o700, "an already-committed staged file gets the mode in metadata at once");
  await drive.release(fd);
  await drive.drain();
  assert.equal(data.puts, 1, "no upload for attributes only");
  const r = await meta.lookup("/s");
  assert.equal(r.mode, 0o700);
  assert.equal(r.mtimeMs, 5_000);
});

test("symlinks: create, readlink, getattr reports the link, unlink and rename; hard links are not there", async (t) => {
  const { drive, meta } = await setup(t);
  await drive.symlink("target/file", "/l");
  assert.equal(await drive.readlink("/l"), "target/file");
  const a = await drive.getattr("/l");
  assert.equal(a.type, "symlink");
  assert.equal(a.size, "target/file".length);
  await assert.rejects(drive.symlink("x", "/l"), code("FILE_EXISTS"));
  const fd = await drive.create("/f", 0o644);
  await assert.rejects(drive.symlink("x", "/f"), code("FILE_EXISTS"), "a staged name is taken too");
  await assert.rejects(drive.readlink("/f"), code("NO_SUCH_FILE"), "a staged-only file is not in metadata yet");
  await drive.release(fd);
  await drive.drain();
  await assert.rejects(drive.readlink("/f"), code("INVALID_ARGUMENT"));
  await assert.rejects(drive.truncate("/l", 0), code("INVALID_ARGUMENT"));
  await drive.rename("/l", "/m");
  assert.deepEqual(await drive.readdir("/"), ["f", "m"]);
  await drive.unlink("/m");
  await assert.rejects(meta.lookup("/m"), code("NO_SUCH_FILE"));
});

test("rename counts staged files: a directory holding one is not empty, a staged target is a file", async (t) => {
  const { drive, meta } = await setup(t);
  await drive.mkdir("/full", 0o755);
  const fd = await drive.create("/full/only-staged", 0o644);
  await drive.write(fd, Buffer.from("keep me"), 7, 0);
  await drive.mkdir("/other", 0o755);
  await assert.rejects(drive.rename("/other", "/full"), code("DIRECTORY_NOT_EMPTY"));
  const staged = await drive.create("/staged-file", 0o644);
  await assert.rejects(drive.rename("/other", "/staged-file"), code("NOT_A_DIRECTORY"));
  await drive.release(staged);
  await drive.release(fd);
  await drive.drain();
  assert.equal(await readAll(drive, "/full/only-staged"), "keep me");
  assert.equal((await meta.lookup("/other")).type, "dir");
});

test("rename of a staged file that is still open, and unlink while open", async (t) => {
  const { drive, data } = await setup(t);
  const fd = await drive.create("/a", 0o644);
  await drive.write(fd, Buffer.from("data"), 4, 0);
  await drive.rename("/a", "/b");
  await drive.release(fd);
  await drive.drain();
  assert.equal(await readAll(drive, "/b"), "data");
  const r = await drive.open("/b", 2);
  await drive.unlink("/b");
  const buf = Buffer.alloc(4);
  assert.equal(await drive.read(r, buf, 4, 0), 4);
  assert.equal(buf.toString(), "data");
  const puts = data.puts;
  await drive.release(r);
  await drive.drain();
  assert.equal(data.puts, puts, "an unlinked file is never uploaded");
  await assert.rejects(drive.getattr("/b"), code("NO_SUCH_FILE"));
});

test("a journalled write left by a crash is replayed by the next start", async (t) => {
  const { meta, data, staging } = await setup(t);
  const crashed = new Drive({ metadata: meta, data, staging, cache: new SegmentCache({ maxBytes: 1024 }) });
  const fd = await crashed.create("/j", 0o644);
  await crashed.write(fd, Buffer.from("journal"), 7, 0);
  await crashed.flush(fd);
  // The "crash": the drive is dropped without release or upload.
  const next = new Drive({ metadata: meta, data, staging, cache: new SegmentCache({ maxBytes: 1024 }) });
  assert.equal(await next.start(), 1);
  assert.equal(await readAll(next, "/j"), "journal");
});

test("read-only drive refuses changes with READ_ONLY", async (t) => {
  const { meta, data, staging } = await setup(t);
  const ro = new Drive({ metadata: meta, data, staging, cache: new SegmentCache({ maxBytes: 1024 }), readOnly: true });
  await assert.rejects(ro.mkdir("/z", 0o755), code("READ_ONLY"));
  await assert.rejects(ro.create("/z", 0o644), code("READ_ONLY"));
});

test("statfs reports the network's capacity, asks at most once per refresh period, answers a stale figure while refreshing", async (t) => {
  const { meta, data, staging } = await setup(t);
  let asked = 0;
  let free = 10 * 1024 ** 3;
  let release: (() => void) | undefined;
  const capacity = async (): Promise<{ freeBytes: number }> => {
    asked++;
    if (release !== undefined) await new Promise<void>((resolve) => (release = resolve));
    return { freeBytes: free };
  };
  const drive = new Drive({ metadata: meta, data, staging, cache: new SegmentCache({ maxBytes: 1 << 20 }), capacity });
  const first = await drive.statfs();
  assert.equal(first.blocks, 10 * 1024, "10 GiB in 1 MiB blocks");
  assert.equal(first.bavail, first.blocks);
  await drive.statfs();
  assert.equal(asked, 1, "a fresh figure is reused");
  const realNow = Date.now;
  t.after(() => {
    Date.now = realNow;
  });
  Date.now = () => realNow() + STATFS_REFRESH_MS + 1;
  free = 20 * 1024 ** 3;
  release = () => {};
  const stale = await drive.statfs();
  assert.equal(stale.blocks, 10 * 1024, "the stale figure is answered at once");
  assert.equal(asked, 2, "and a refresh started");
  release();
  await new Promise((resolve) => setImmediate(resolve));
  release = undefined;
  assert.equal((await drive.statfs()).blocks, 20 * 1024);
  assert.equal(asked, 2);
  // Without a capacity source: the fixed figure.
  const fixed = new Drive({ metadata: meta, data, staging, cache: new SegmentCache({ maxBytes: 1 << 20 }), capacityBytes: 5 * 1024 ** 2 });
  assert.equal((await fixed.statfs()).blocks, 5);
});

test("xattrs: user.* kept in the metadata record, carried over by a rewrite, ENOTSUP elsewhere; a staged file is committed first", async (t) => {
  const { drive, meta, data } = await setup(t);
  const fd = await drive.create("/f", 0o644);
  await drive.write(fd, Buffer.from("one"), 3, 0);
  await assert.rejects(drive.getxattr("/f", "user.a"), code("NO_SUCH_ATTRIBUTE"));
  assert.deepEqual(await drive.listxattr("/f"), []);
  await drive.setxattr("/f", "user.a", Buffer.from("v1"), 0);
  assert.equal(data.puts, 1, "the staged file was committed to hold the attribute");
  await drive.write(fd, Buffer.from("two"), 3, 3);
  await drive.fsync(fd);
  await drive.release(fd);
  assert.equal((await drive.getxattr("/f", "user.a")).toString(), "v1", "the rewrite kept it");
  assert.deepEqual(await drive.listxattr("/f"), ["user.a"]);
  await assert.rejects(drive.setxattr("/f", "user.a", Buffer.from("x"), 1), code("FILE_EXISTS"));
  await assert.rejects(drive.setxattr("/f", "user.b", Buffer.from("x"), 2), code("NO_SUCH_ATTRIBUTE"));
  await assert.rejects(drive.setxattr("/f", "security.x", Buffer.from("x"), 0), code("NOT_SUPPORTED"));
  await assert.rejects(drive.removexattr("/f", "trusted.x"), code("NOT_SUPPORTED"));
  await assert.rejects(drive.getxattr("/f", "security.capability"), code("NO_SUCH_ATTRIBUTE"));
  await assert.rejects(drive.setxattr("/f", "user.big", Buffer.alloc(64 * 1024 + 1), 0), code("TOO_LARGE"));
  await drive.rename("/f", "/g");
  assert.equal((await drive.getxattr("/g", "user.a")).toString(), "v1", "a rename carries them");
  await drive.removexattr("/g", "user.a");
  await assert.rejects(drive.removexattr("/g", "user.a"), code("NO_SUCH_ATTRIBUTE"));
  assert.equal((await meta.lookup("/g")).xattrs, undefined, "the last one removed leaves no empty map");
  await drive.mkdir("/d", 0o755);
  await drive.setxattr("/d", "user.dir", Buffer.from(""), 0);
  assert.equal((await drive.getxattr("/d", "user.dir")).length, 0);
  assert.equal(toErrno(new DstorError("NO_SUCH_ATTRIBUTE", "x")), -E.ENODATA);
  assert.equal(toErrno(new DstorError("NOT_SUPPORTED", "x")), -E.ENOTSUP);
});

test("utimens and chmod right after close do not wait for the file's background upload, and that upload commits them", async (t) => {
  const { drive, meta, data } = await setup(t);
  let open!: () => void;
  const gate = new Promise<void>((resolve) => (open = resolve));
  const put = data.put.bind(data);
  data.put = async (...args: Parameters<typeof data.put>) => {
    await gate;
    return put(...args);
  };
  const fd = await drive.create("/t.txt", 0o644);
  await drive.write(fd, Buffer.from("tar member"), 10, 0);
  await drive.flush(fd);
  await drive.release(fd); // starts the background upload, held at the gate
  const when = Date.parse("2020-01-02T03:04:05Z");
  const answered = await Promise.race([
    Promise.all([drive.utimens("/t.txt", when), drive.chmod("/t.txt", 0o600)]).then(() => "answered"),
    new Promise((resolve) => setTimeout(() => resolve("waited"), 2_000)),
  ]);
  assert.equal(answered, "answered", "setting attributes did not wait for the upload");
  assert.equal((await drive.getattr("/t.txt")).mtimeMs, when);
  open();
  await drive.drain();
  const record = await meta.lookup("/t.txt");
  assert.equal(record.mtimeMs, when, "the upload committed the time set while it ran");
  assert.equal(record.mode, 0o600);
  assert.equal(drive.pending, 0);
  await drive.utimens("/t.txt", when + 1000);
  assert.equal((await meta.lookup("/t.txt")).mtimeMs, when + 1000, "a clean file: straight to metadata");
});

test("a failed background upload is tried again by itself after a backoff, without another release or fsync", async (t) => {
  const { drive, meta, data } = await setup(t);
  const put = data.put.bind(data);
  let failures = 2;
  data.put = async (path, source, options) => {
    if (failures > 0) {
      failures--;
      for await (const _ of source) {
        // consume, then fail like a network without enough farmers
      }
      throw new DstorError("NOT_ENOUGH_FARMERS", "not enough farmers: need 1, found 0");
    }
    return put(path, source, options);
  };
  const fd = await drive.create("/r", 0o644);
  await drive.write(fd, Buffer.from("retry me"), 8, 0);
  await drive.release(fd);
  // Two failures: retried after 5 s, then 10 s; nothing else touches the file.
  const deadline = Date.now() + 40_000;
  while (drive.pending > 0) {
    assert.ok(Date.now() < deadline, "the staged file is uploaded by the retries within 40 s");
    await new Promise((r) => setTimeout(r, 200));
  }
  assert.equal(failures, 0);
  assert.equal(data.puts, 1);
  assert.equal((await meta.lookup("/r")).size, 8);
  assert.equal(await readAll(drive, "/r"), "retry me");
});
