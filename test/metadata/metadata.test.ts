import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it, type TestContext } from "node:test";
import { fileURLToPath } from "node:url";
import fc from "fast-check";
import { isDstorError } from "../../src/core/errors.js";
import { type MetadataDb, openMetadataDb } from "../../src/metadata/db.js";
import type { SegmentMeta, StoredFile } from "../../src/metadata/types.js";

async function tempDb(t: TestContext): Promise<{ db: MetadataDb; dir: string }> {
  const root = await mkdtemp(join(tmpdir(), "dstor-meta-"));
  const dir = join(root, "renter", "meta");
  const db = await openMetadataDb({ dir });
  t.after(async () => {
    await db.close();
    await rm(root, { recursive: true, force: true });
  });
  return { db, dir };
}

/** Closes `db` and checks that a fresh open of `dir` shows `expected` through `view` (what a cache handed out is what is stored). */
async function assertReopenShows<T>(db: MetadataDb, dir: string, view: (d: MetadataDb) => Promise<T>, expected: T): Promise<void> {
  await db.close();
  const fresh = await openMetadataDb({ dir });
  try {
    assert.deepEqual(await view(fresh), expected);
  } finally {
    await fresh.close();
  }
}

const hex = (n: number, bytes: number): string => n.toString(16).padStart(bytes * 2, "0");

function file(size: number, segments: number, farmers: string[] = ["0x01", "0x02"]): StoredFile {
  const segs: SegmentMeta[] = Array.from({ length: segments }, (_, index) => ({
    index,
    salt: hex(index, 16),
    plaintextLength: 100,
    pieceSize: 30,
    pieceIds: farmers.map((_, n) => hex(size * 1000 + index * 10 + n, 32)),
    pieceRoots: farmers.map((_, n) => hex(n, 32)),
    holders: Object.fromEntries(farmers.map((f, n) => [n, f])),
  }));
  return { size, content: { fileKey: hex(1, 32), fileId: hex(2, 16), segmentSize: 100, redundancy: "1/1/2/2", segmentCount: segments }, segments: segs };
}

const code = (c: string) => (e: unknown) => isDstorError(e) && e.code === c;

describe("metadata db", () => {
  it("directories: mkdir, readdir, lookup and the POSIX error codes", async (t) => {
    const { db } = await tempDb(t);
    await db.mkdir("/a");
    await db.mkdir("/a/b/c", { parents: true });
    await assert.rejects(db.mkdir("/a"), code("FILE_EXISTS"));
    await assert.rejects(db.mkdir("/x/y"), code("NO_SUCH_FILE"));
    await db.commitFile("/a/f", file(10, 1));
    await assert.rejects(db.mkdir("/a/f/g"), code("NOT_A_DIRECTORY"));
    await assert.rejects(db.lookup("/a/f/g"), code("NOT_A_DIRECTORY"));
    await assert.rejects(db.lookup("/nope"), code("NO_SUCH_FILE"));
    assert.deepEqual((await db.readdir("/a")).map((e) => e.name), ["b", "f"]);
    await assert.rejects(db.readdir("/a/f"), code("NOT_A_DIRECTORY"));
    await assert.rejects(db.rmdir("/a"), code("DIRECTORY_NOT_EMPTY"));
    await assert.rejects(db.rmdir("/a/f"), code("NOT_A_DIRECTORY"));
    await assert.rejects(db.unlink("/a/b"), code("IS_A_DIRECTORY"));
    await assert.rejects(db.commitFile("/a/b", file(1, 0)), code("IS_A_DIRECTORY"));
    await assert.rejects(db.commitFile("/a/f", file(1, 0), { overwrite: false }), code("FILE_EXISTS"));
    await assert.rejects(db.lookup("/a/../a"), code("INVALID_ARGUMENT"));
    await db.rmdir("/a/b/c");
    await db.rmdir("/a/b");
    assert.deepEqual((await db.readdir("/a")).map((e) => e.name), ["f"]);
  });

  it("a file and its segments and piece refs commit together; unlink moves pieces to pending deletes", async (t) => {
    const { db } = await tempDb(t);
    const { record } = await db.commitFile("/f", file(500, 3));
    assert.equal(record.size, 500);
    assert.equal((await db.segments(record.inode)).length, 3);
    assert.equal((await db.piecesOn("0x01")).length, 3);
    const removed = await db.unlink("/f");
    assert.equal(removed.segments.length, 3);
    assert.equal((await db.segments(record.inode)).length, 0);
    assert.equal((await db.piecesOn("0x01")).length, 0);
    const pending = await db.pendingDeletes();
    assert.equal(pending.length, 6);
    await db.clearPendingDeletes(pending.map((p) => ({ farmer: p.farmer, pieceId: p.ref.pieceId })));
    assert.deepEqual(await db.pendingDeletes(), []);
  });

  it("replacing a file drops the old segments atomically", async (t) => {
    const { db } = await tempDb(t);
    const first = await db.commitFile("/f", file(1, 2));
    const second = await db.commitFile("/f", file(2, 1));
    assert.equal(second.replaced?.record.inode, first.record.inode);
    assert.equal((await db.segments(first.record.inode)).length, 0);
    assert.equal((await db.lookup("/f")).inode, second.record.inode);
    assert.equal((await db.pendingDeletes()).length, 4);
  });

  it("a rewrite keeps the listed segments' pieces, swaps in new ones and retires the rest, in one batch", async (t) => {
    const { db } = await tempDb(t);
    const base = await db.commitFile("/f", file(7, 3));
    await db.setxattr("/f", "user.tag", new Uint8Array([1, 2, 3]));
    const old = await db.segments(base.record.inode);
    const fresh = file(8, 3).segments.filter((s) => s.index !== 0);
    await assert.rejects(db.commitRewrite("/f", base.record.inode + 99, { ...file(8, 0), keep: [0], segments: fresh }), (e) => isDstorError(e, "NO_SUCH_FILE"));
    await assert.rejects(db.commitRewrite("/f", base.record.inode, { ...file(8, 0), keep: [0, 1], segments: fresh }), (e) => isDstorError(e, "INVALID_ARGUMENT"));
    await assert.rejects(db.commitRewrite("/f", base.record.inode, { ...file(8, 0), keep: [], segments: fresh }), (e) => isDstorError(e, "INVALID_ARGUMENT"));
    assert.equal((await db.lookup("/f")).inode, base.record.inode, "a refused rewrite writes nothing");
    const { record, replaced } = await db.commitRewrite("/f", base.record.inode, { ...file(250, 0), keep: [0], segments: fresh.slice(0, 1) });
    assert.notEqual(record.inode, base.record.inode);
    assert.equal(record.size, 250);
    assert.equal(record.file?.segmentCount, 2);
    assert.deepEqual((await db.lookup("/f")).inode, record.inode);
    assert.deepEqual(Object.keys((await db.lookup("/f")).xattrs ?? {}), ["user.tag"], "a rewrite keeps the file's xattrs");
    const now = await db.segments(record.inode);
    assert.deepEqual(now[0], old[0], "segment 0 kept salt and pieces");
    assert.deepEqual(now[1], fresh[0]);
    assert.deepEqual((await db.segments(base.record.inode)), []);
    assert.deepEqual(replaced.segments.map((s) => s.index), [1, 2]);
    const live = (await db.piecesOn("0x01")).map((p) => [p.pieceId, p.inode, p.segment]);
    assert.deepEqual(live.sort(), [[old[0]!.pieceIds[0], record.inode, 0], [fresh[0]!.pieceIds[0], record.inode, 1]].sort());
    const pending = (await db.pendingDeletes()).map((p) => p.ref.pieceId).sort();
    assert.deepEqual(pending, [...old[1]!.pieceIds, ...old[2]!.pieceIds].sort());
  });

  it("rename: moves, replaces files and empty directories, refuses the rest", async (t) => {
    const { db } = await tempDb(t);
    await db.mkdir("/d");
    await db.mkdir("/e");
    await db.commitFile("/d/a", file(1, 1));
    await db.commitFile("/b", file(2, 1));
    await db.rename("/d/a", "/e/a2");
    await assert.rejects(db.lookup("/d/a"), code("NO_SUCH_FILE"));
    assert.equal((await db.lookup("/e/a2")).size, 1);
    const { replaced } = await db.rename("/b", "/e/a2");
    assert.equal(replaced?.record.size, 1);
    assert.equal((await db.lookup("/e/a2")).size, 2);
    await assert.rejects(db.rename("/e/a2", "/d"), code("IS_A_DIRECTORY"));
    await db.commitFile("/c", file(3, 0));
    await assert.rejects(db.rename("/d", "/c"), code("NOT_A_DIRECTORY"));
    await assert.rejects(db.rename("/d", "/e"), code("DIRECTORY_NOT_EMPTY"));
    await assert.rejects(db.rename("/e", "/e/sub"), code("INVALID_ARGUMENT"));
    await db.rename("/d", "/e/d");
    assert.equal((await db.lookup("/e/d")).type, "dir");
  });

  it("concurrent creates of distinct names all land (the write mutex serialises inode allocation)", async (t) => {
    const { db } = await tempDb(t);
    await fc.assert(
      fc.asyncProperty(fc.uniqueArray(fc.stringMatching(/^[a-z]{1,8}$/), { minLength: 1, maxLength: 20 }), async (names) => {
        const dir = `/p${Math.random().toString(36).slice(2)}`;
        await db.mkdir(dir);
        await Promise.all(names.map((n, i) => db.commitFile(`${dir}/${n}`, file(i, 1, [`0x${i}`]))));
        const entries = await db.readdir(dir);
        assert.deepEqual(entries.map((e) => e.name).sort(), [...names].sort());
        assert.equal(new Set(entries.map((e) => e.record.inode)).size, names.length);
      }),
      { numRuns: 10 },
    );
  });

  it("readdir never loses a file that is being replaced (a new inode under the same name) while it lists", async (t) => {
    const { db } = await tempDb(t);
    await db.mkdir("/d");
    for (let i = 0; i < 20; i++) await db.commitFile(`/d/f${i}`, file(10, 1));
    let stop = false;
    const writer = (async () => {
      for (let n = 0; !stop; n++) await db.commitFile(`/d/f${n % 20}`, file(10 + (n % 7), 1));
    })();
    try {
      for (let round = 0; round < 150; round++) {
        const names = (await db.readdir("/d")).map((e) => e.name).sort();
        assert.equal(names.length, 20, `round ${round}: listed ${names.length} of 20 names`);
      }
    } finally {
      stop = true;
      await writer;
    }
  });

  it("farmer records: read-modify-write", async (t) => {
    const { db } = await tempDb(t);
    await db.updateFarmer("0xAB", (r) => ({ ...r, successes: r.successes + 1, dealId: "5" }));
    await db.updateFarmer("0xab", (r) => ({ ...r, successes: r.successes + 1 }));
    const r = await db.farmer("0xAb");
    assert.equal(r?.successes, 2);
    assert.equal(r?.dealId, "5");
    assert.equal((await db.farmers()).length, 1);
  });

  it("farmer table: loads racing updates see what a fresh open sees; records handed out are frozen", async (t) => {
    const { db, dir } = await tempDb(t);
    const addresses = ["0x01", "0x02", "0x03", "0x04"];
    await db.updateFarmer(addresses[0]!, (r) => ({ ...r, successes: 1 }));
    // The table is not loaded yet: the first reads start between writes, so some loads span a batch.
    const pending: Array<Promise<unknown>> = [];
    for (let round = 0; round < 10; round++) {
      for (const a of addresses) {
        pending.push(db.farmers(), db.farmer(a), db.updateFarmer(a, (r) => ({ ...r, successes: r.successes + 1, bytes: r.bytes + round })));
      }
    }
    await Promise.all(pending);
    const view = async (d: MetadataDb) => (await d.farmers()).map((r) => JSON.stringify(r)).sort();
    const cached = await view(db);
    assert.equal(cached.length, 4);
    assert.equal((await db.farmer("0x01"))?.successes, 11);
    const record = (await db.farmer("0x02"))!;
    assert.ok(Object.isFrozen(record) && Object.isFrozen(record.multiaddrs));
    assert.throws(() => {
      (record as { successes: number }).successes = 0;
    }, TypeError);
    await assertReopenShows(db, dir, view, cached);
  });

  it("a second opener in this process gets HOME_IN_USE", async (t) => {
    const { dir } = await tempDb(t);
    await assert.rejects(openMetadataDb({ dir }), (e: unknown) => {
      assert.ok(isDstorError(e, "HOME_IN_USE"));
      assert.match((e as Error).message, new RegExp(`pid ${process.pid}`));
      return true;
    });
  });

  it("a second process gets HOME_IN_USE naming this one", async (t) => {
    const { dir } = await tempDb(t);
    const dbModule = fileURLToPath(new URL("../../src/metadata/db.js", import.meta.url));
    const script = `import("${dbModule}").then(m => m.openMetadataDb({ dir: ${JSON.stringify(dir)} })).then(() => process.exit(0), e => { process.stdout.write(e.code + " " + e.message); process.exit(3); });`;
    const child = spawn(process.execPath, ["--input-type=module", "-e", script], { stdio: ["ignore", "pipe", "inherit"] });
    let out = "";
    child.stdout.on("data", (c: Buffer) => {
      out += c.toString();
    });
    const exit = await new Promise<number | null>((resolve) => child.once("exit", resolve));
    assert.equal(exit, 3);
    assert.match(out, /^HOME_IN_USE .*in use by another dstor process/);
    assert.match(out, new RegExp(`pid ${process.pid}`));
  });

  it("symlinks: a plain JSON record with its target; readlink, unlink, rename, replace", async (t) => {
    const { db } = await tempDb(t);
    await db.mkdir("/d");
    const link = await db.symlink("/d/l", "../some/where é");
    assert.equal(link.type, "symlink");
    assert.equal(link.size, Buffer.byteLength("../some/where é"));
    assert.deepEqual(JSON.parse(JSON.stringify(link)), link, "the record is plain JSON");
    assert.equal(await db.readlink("/d/l"), "../some/where é");
    await assert.rejects(db.symlink("/d/l", "x"), code("FILE_EXISTS"));
    await assert.rejects(db.symlink("/d/m", ""), code("INVALID_ARGUMENT"));
    await assert.rejects(db.readlink("/d"), code("INVALID_ARGUMENT"));
    await assert.rejects(db.readlink("/d/nope"), code("NO_SUCH_FILE"));
    assert.deepEqual((await db.readdir("/d")).map((e) => [e.name, e.record.type]), [["l", "symlink"]]);
    await db.rename("/d/l", "/l2");
    assert.equal(await db.readlink("/l2"), "../some/where é");
    await db.commitFile("/f", file(10, 1));
    await db.symlink("/l3", "f");
    await db.rename("/l3", "/f");
    assert.equal((await db.lookup("/f")).type, "symlink", "a link renamed over a file replaces it");
    assert.equal((await db.pendingDeletes()).length, 2, "the replaced file's pieces are pending deletion");
    await db.commitFile("/l2", file(10, 1));
    assert.equal((await db.lookup("/l2")).type, "file", "a committed file replaces a link");
    await db.unlink("/f");
    await assert.rejects(db.lookup("/f"), code("NO_SUCH_FILE"));
    await db.rmdir("/d");
  });

  it("setattr changes mode and mtime of files, directories and links in place", async (t) => {
    const { db } = await tempDb(t);
    const { record } = await db.commitFile("/f", file(10, 1));
    const next = await db.setattr("/f", { mode: 0o100600, mtimeMs: 1234 });
    assert.equal(next.mode, 0o600, "only permission bits are kept");
    assert.equal(next.mtimeMs, 1234);
    assert.equal(next.inode, record.inode);
    assert.deepEqual(await db.lookup("/f"), next);
    assert.equal((await db.segments(record.inode)).length, 1, "segments are untouched");
    assert.equal((await db.setattr("/f", { mtimeMs: 99 })).mode, 0o600);
    await db.mkdir("/d");
    assert.equal((await db.setattr("/d", { mode: 0o700 })).mode, 0o700);
    await assert.rejects(db.setattr("/nope", { mode: 0o600 }), code("NO_SUCH_FILE"));
    await assert.rejects(db.setattr("/f", { mtimeMs: Number.NaN }), code("INVALID_ARGUMENT"));
  });

  it("state survives close and reopen", async (t) => {
    const root = await mkdtemp(join(tmpdir(), "dstor-meta-"));
    t.after(() => rm(root, { recursive: true, force: true }));
    const dir = join(root, "meta");
    const a = await openMetadataDb({ dir });
    await a.mkdir("/keep");
    await a.commitFile("/keep/f", file(7, 2));
    await a.close();
    await a.close();
    const b = await openMetadataDb({ dir });
    const rec = await b.lookup("/keep/f");
    assert.equal((await b.segments(rec.inode)).length, 2);
    await b.mkdir("/new");
    assert.ok((await b.lookup("/new")).inode > rec.inode, "inode numbers are never reused");
    await b.close();
  });

  it("tree cache: lookups racing every kind of batch see what a fresh open of the database sees", async (t) => {
    const root = await mkdtemp(join(tmpdir(), "dstor-meta-cache-"));
    t.after(() => rm(root, { recursive: true, force: true }));
    const names = ["a", "b", "c"];
    const paths = ["/d", ...names.map((n) => `/${n}`), ...names.map((n) => `/d/${n}`)];
    const op = fc.oneof(
      fc.record({ kind: fc.constant("commit" as const), path: fc.constantFrom(...paths), size: fc.integer({ min: 1, max: 9 }) }),
      fc.record({ kind: fc.constant("unlink" as const), path: fc.constantFrom(...paths) }),
      fc.record({ kind: fc.constant("rename" as const), from: fc.constantFrom(...paths), to: fc.constantFrom(...paths) }),
      fc.record({ kind: fc.constant("chmod" as const), path: fc.constantFrom(...paths), mode: fc.integer({ min: 0, max: 0o777 }) }),
      fc.record({ kind: fc.constant("mkdir" as const), path: fc.constantFrom(...paths) }),
      fc.record({ kind: fc.constant("rmdir" as const), path: fc.constantFrom(...paths) }),
    );
    let run = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 25 }), async (ops) => {
        const dir = join(root, `run-${run++}`, "renter", "meta");
        const db = await openMetadataDb({ dir });
        const view = async (d: MetadataDb): Promise<string[]> =>
          Promise.all(paths.map((p) => d.lookup(p).then((r) => JSON.stringify(r), (e: { code?: string }) => `error ${e.code}`)));
        try {
          await db.mkdir("/d");
          // Every write is started without waiting, and lookups of every path start before and after each
          // one: gets in flight span batches (a cache filled by a get that read before a batch would be stale).
          const pending: Array<Promise<unknown>> = [];
          for (const o of ops) {
            let write: Promise<unknown>;
            if (o.kind === "commit") write = db.commitFile(o.path, file(o.size, 1));
            else if (o.kind === "unlink") write = db.unlink(o.path);
            else if (o.kind === "rename") write = db.rename(o.from, o.to);
            else if (o.kind === "chmod") write = db.setattr(o.path, { mode: o.mode });
            else if (o.kind === "mkdir") write = db.mkdir(o.path);
            else write = db.rmdir(o.path);
            pending.push(view(db), write, write.then(() => view(db), () => view(db)));
          }
          await Promise.allSettled(pending);
          await assertReopenShows(db, dir, view, await view(db));
        } finally {
          await db.close();
        }
      }),
      { numRuns: 40 },
    );
  });

  it("tree cache: records handed out are frozen, so no caller can change the cached copy", async (t) => {
    const { db } = await tempDb(t);
    await db.commitFile("/f", file(10, 1));
    const record = await db.lookup("/f");
    assert.ok(Object.isFrozen(record) && Object.isFrozen(record.file));
    assert.throws(() => {
      (record as { mode: number }).mode = 0o777;
    }, TypeError);
    const changed = await db.setattr("/f", { mode: 0o600 });
    assert.equal(changed.mode, 0o600);
    assert.equal((await db.lookup("/f")).mode, 0o600);
    assert.equal(record.mode, 0o644, "an earlier answer is not changed behind its holder's back");
  });
});
