import assert from "node:assert/strict";
import { type ChildProcess, fork } from "node:child_process";
import { once } from "node:events";
import { mkdir, mkdtemp, readdir, readFile, rename, rm, stat, truncate, writeFile } from "node:fs/promises";
import * as nodeFs from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import fc from "fast-check";
import { Level } from "level";
import { isDstorError } from "../../src/core/errors.js";
import { createLogger, type LogRecord } from "../../src/core/logging.js";
import { directIoBytes } from "../../src/farmer/store/direct-io.js";
import { createFsPieceStore, type FsPieceStore, type StoreFileSystem } from "../../src/farmer/store/fs-store.js";
import { collect, metaFor, pieceBytes, pieceIdOf, putPiece, referenceMerkleRoot, renterAddress, takesDirectIo, writeAll } from "./helpers.js";
import { code, runPieceStoreCompliance } from "./store-compliance.js";

const R1 = renterAddress(0xa1);
const R2 = renterAddress(0xb2);

/** Every temp directory made here; removed at the end even if a test fails. */
const madeDirs: string[] = [];
after(async () => {
  for (const dir of madeDirs) await rm(dir, { recursive: true, force: true });
});

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "dstor-store-test-"));
  madeDirs.push(dir);
  return dir;
}

/** All paths (relative) under `dir`, sorted; `index/` internals excluded when asked. */
async function tree(dir: string, skipIndex = false): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true });
  return entries.filter((p) => !(skipIndex && (p === "index" || p.startsWith("index/")))).sort();
}

/** What `pieces/` holds besides its 256 (empty) shard directories, made when the store starts. */
async function pieceFiles(dir: string): Promise<string[]> {
  const entries = await tree(join(dir, "pieces"));
  const shards = entries.filter((p) => /^[0-9a-f]{2}$/.test(p));
  assert.equal(shards.length, 256, "every shard directory exists");
  return entries.filter((p) => !shards.includes(p));
}

const storeDirs = new WeakMap<object, string>();
runPieceStoreCompliance("fs", {
  async create({ quotaBytes }) {
    const dir = await tempDir();
    const store = createFsPieceStore({ dir, quotaBytes });
    storeDirs.set(store, dir);
    return store;
  },
  async cleanup(store) {
    const dir = storeDirs.get(store);
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  },
});

/** Runs `fn` with a started store in a fresh directory; always stops it. */
async function withStore(fn: (store: FsPieceStore, dir: string) => Promise<void>, quotaBytes = 64 * 1024 * 1024): Promise<string> {
  const dir = await tempDir();
  const store = createFsPieceStore({ dir, quotaBytes });
  try {
    await store.start();
    await fn(store, dir);
  } finally {
    await store.stop();
  }
  return dir;
}

/** Opens a store on an existing directory, runs `fn`, stops it. */
async function reopen(dir: string, fn: (store: FsPieceStore) => Promise<void>, init: { logger?: ReturnType<typeof createLogger>; quotaBytes?: number } = {}): Promise<void> {
  const store = createFsPieceStore({ dir, quotaBytes: init.quotaBytes ?? 64 * 1024 * 1024, ...(init.logger === undefined ? {} : { logger: init.logger }) });
  try {
    await store.start();
    await fn(store);
  } finally {
    await store.stop();
  }
}

function capturingLogger(): { logger: ReturnType<typeof createLogger>; records: LogRecord[] } {
  const records: LogRecord[] = [];
  return { logger: createLogger("dstor:farmer:store", { sink: (r) => records.push(r), enable: "dstor*=trace" }), records };
}

function indexKey(renter: string, pieceId: string): string {
  return `${renter}/${pieceId}`;
}

describe("fs piece store: layout and persistence", () => {
  test("a committed piece is one file at pieces/<2 hex>/<renter>-<pieceId>; tmp/ is empty afterwards", async () => {
    await withStore(async (store, dir) => {
      const data = pieceBytes(3000);
      const id = pieceIdOf(1);
      await putPiece(store, R1, id, data);
      const path = store.piecePath(R1, id);
      assert.equal(path, join(dir, "pieces", id.slice(0, 2), `${R1}-${id}`));
      assert.deepEqual(new Uint8Array(await readFile(path)), data);
      assert.deepEqual(await readdir(join(dir, "tmp")), []);
      assert.throws(() => store.piecePath(R1, "../x"), code("PIECE_ID_INVALID"));
    });
  });

  test("pieces, confirmations and usage survive a restart", async () => {
    const datas = [0, 1, 1023, 1024, 1025, 70_000].map((size, i) => pieceBytes(size, i + 1));
    const dir = await withStore(async (store) => {
      for (const [i, data] of datas.entries()) await putPiece(store, i % 2 === 0 ? R1 : R2, pieceIdOf(i), data, metaFor(data, 3n, 1_900_000_000_000 + i));
      await store.confirm(R1, [pieceIdOf(0), pieceIdOf(2)], 9n);
    });
    await reopen(dir, async (store) => {
      const total = datas.reduce((a, d) => a + d.byteLength, 0);
      assert.deepEqual(store.usage(), { quota: 64 * 1024 * 1024, used: total, reserved: 0, free: 64 * 1024 * 1024 - total });
      for (const [i, data] of datas.entries()) {
        const renter = i % 2 === 0 ? R1 : R2;
        assert.deepEqual(await store.read(renter, pieceIdOf(i), 0, data.byteLength), data);
        const info = (await store.stat(renter, pieceIdOf(i)))!;
        assert.deepEqual(info.root, metaFor(data).root);
        assert.equal(info.confirmed, i === 0 || i === 2);
        assert.equal(info.dealId, i === 0 || i === 2 ? 9n : 3n);
        assert.equal(info.expiresAt, i === 0 || i === 2 ? undefined : 1_900_000_000_000 + i);
      }
      assert.equal((await collect(store.list())).length, datas.length);
    });
  });

  test("a second store on the same directory fails with HOME_IN_USE until the first stops", async () => {
    await withStore(async (_store, dir) => {
      const second = createFsPieceStore({ dir, quotaBytes: 1000 });
      await assert.rejects(second.start(), (error: unknown) => {
        code("HOME_IN_USE")(error);
        assert.match((error as Error).message, /already open/);
        return true;
      });
      await second.stop();
    }).then((dir) => reopen(dir, async (store) => assert.equal(store.usage().used, 0)));
  });
});

describe("fs piece store: start-up reconciliation", () => {
  test("a leftover temp file is deleted", async () => {
    const dir = await withStore(async () => {});
    await writeFile(join(dir, "tmp", `${R1}-${pieceIdOf(1)}.abcdef.tmp`), pieceBytes(500));
    const { logger, records } = capturingLogger();
    await reopen(
      dir,
      async (store) => {
        assert.deepEqual(await readdir(join(dir, "tmp")), []);
        assert.deepEqual(store.usage().used, 0);
      },
      { logger },
    );
    assert.ok(records.some((r) => r.message.includes("temp files")));
  });

  test("a renamed piece file without index entry (crash before the index put) is deleted; a retry succeeds", async () => {
    const data = pieceBytes(4000);
    const keep = pieceBytes(100, 2);
    let orphanPath = "";
    const dir = await withStore(async (store) => {
      await putPiece(store, R1, pieceIdOf(1), data);
      await putPiece(store, R1, pieceIdOf(2), keep);
      orphanPath = store.piecePath(R1, pieceIdOf(1));
    });
    // Recreate the exact on-disk state of a crash between steps 5 and 6.
    const db = new Level(join(dir, "index"), { valueEncoding: "json" });
    await db.open();
    await db.del(indexKey(R1, pieceIdOf(1)));
    await db.close();
    await stat(orphanPath); // still there before the restart
    await reopen(dir, async (store) => {
      await assert.rejects(stat(orphanPath), { code: "ENOENT" });
      assert.equal(await store.stat(R1, pieceIdOf(1)), undefined);
      assert.equal(store.usage().used, 100);
      assert.deepEqual(await store.read(R1, pieceIdOf(2), 0, 100), keep);
      await putPiece(store, R1, pieceIdOf(1), data);
      assert.deepEqual(await store.read(R1, pieceIdOf(1), 0, 4000), data);
      assert.equal(store.usage().used, 4100);
    });
  });

  test("an index entry without its file, or with a wrong-size file, is removed; used is recomputed", async () => {
    const sizes = [1000, 2000, 3000];
    let paths: string[] = [];
    const dir = await withStore(async (store) => {
      for (const [i, size] of sizes.entries()) await putPiece(store, R1, pieceIdOf(i), pieceBytes(size, i));
      paths = sizes.map((_, i) => store.piecePath(R1, pieceIdOf(i)));
    });
    await rm(paths[0]!);
    await truncate(paths[1]!, 1999);
    const { logger, records } = capturingLogger();
    await reopen(
      dir,
      async (store) => {
        assert.equal(await store.stat(R1, pieceIdOf(0)), undefined);
        assert.equal(await store.stat(R1, pieceIdOf(1)), undefined);
        await assert.rejects(stat(paths[1]!), { code: "ENOENT" });
        assert.deepEqual(
          (await collect(store.list())).map((e) => e.pieceId),
          [pieceIdOf(2)],
        );
        assert.equal(store.usage().used, 3000);
        // Both can be uploaded again.
        await putPiece(store, R1, pieceIdOf(0), pieceBytes(1000, 0));
        await putPiece(store, R1, pieceIdOf(1), pieceBytes(2000, 1));
      },
      { logger },
    );
    assert.equal(records.filter((r) => r.level === "error").length, 2);
  });

  test("pieces in the old two-level layout (pieces/<2 hex>/<2 hex>/) are moved into pieces/<2 hex>/ at start", async () => {
    const ids = [pieceIdOf(1), pieceIdOf(2), pieceIdOf(3)];
    const data = ids.map((_, i) => pieceBytes(1000 + i, i));
    const dir = await withStore(async (store) => {
      for (const [i, id] of ids.entries()) await putPiece(store, R1, id, data[i]!);
    });
    for (const id of ids) {
      const old = join(dir, "pieces", id.slice(0, 2), id.slice(2, 4));
      await mkdir(old);
      await rename(join(dir, "pieces", id.slice(0, 2), `${R1}-${id}`), join(old, `${R1}-${id}`));
    }
    const { logger, records } = capturingLogger();
    await reopen(
      dir,
      async (store) => {
        assert.deepEqual(await pieceFiles(dir), ids.map((id) => `${id.slice(0, 2)}/${R1}-${id}`).sort());
        for (const [i, id] of ids.entries()) assert.deepEqual(await store.read(R1, id, 0, data[i]!.byteLength), data[i]);
        assert.equal(store.usage().used, 1000 + 1001 + 1002);
      },
      { logger },
    );
    assert.ok(records.some((r) => r.message.includes("two-level layout") && r.fields?.count === 3));
    assert.equal(records.filter((r) => r.level === "error" || r.level === "warn").length, 0);
  });

  test("a commit makes no directory and opens (to fsync) only its shard directory besides the temp file", async () => {
    const dir = await tempDir();
    const { fs, calls } = instrumentedFs();
    const store = createFsPieceStore({ dir, quotaBytes: 100_000, fs });
    try {
      await store.start();
      calls.length = 0;
      const id = pieceIdOf(1);
      await putPiece(store, R1, id, pieceBytes(3000));
      assert.deepEqual(calls.filter((c) => c.startsWith("mkdir")), []);
      assert.deepEqual(calls.filter((c) => c.startsWith(`open ${join(dir, "pieces")}`)), [`open ${join(dir, "pieces", id.slice(0, 2))}`]);
    } finally {
      await store.stop();
      await rm(dir, { recursive: true, force: true });
    }
  });

  test("a shard directory removed while the store runs is made again by the next commit", async () => {
    await withStore(async (store, dir) => {
      const id = pieceIdOf(1);
      const data = pieceBytes(3000);
      await rm(join(dir, "pieces", id.slice(0, 2)), { recursive: true });
      await putPiece(store, R1, id, data);
      assert.deepEqual(await store.read(R1, id, 0, data.byteLength), data);
      assert.deepEqual(await pieceFiles(dir), [`${id.slice(0, 2)}/${R1}-${id}`]);
    });
  });

  test("stray files in pieces/ and malformed index entries are removed", async () => {
    const dir = await withStore(async (store) => {
      await putPiece(store, R1, pieceIdOf(1), pieceBytes(10));
    });
    const id = pieceIdOf(1);
    await writeFile(join(dir, "pieces", "junk.txt"), "x");
    await writeFile(join(dir, "pieces", id.slice(0, 2), "not-a-piece"), "x");
    await mkdir(join(dir, "pieces", id.slice(0, 2), "not-a-shard"));
    // Right name, wrong shard.
    await writeFile(join(dir, "pieces", id.slice(0, 2), `${R1}-${pieceIdOf(2)}`), "x");
    // The same in an old-layout directory.
    await mkdir(join(dir, "pieces", id.slice(0, 2), id.slice(2, 4)));
    await writeFile(join(dir, "pieces", id.slice(0, 2), id.slice(2, 4), `${R1}-${pieceIdOf(2)}`), "x");
    await writeFile(join(dir, "pieces", id.slice(0, 2), id.slice(2, 4), "not-a-piece"), "x");
    const db = new Level<string, unknown>(join(dir, "index"), { valueEncoding: "json" });
    await db.open();
    await db.put("garbage-key", { v: 1 });
    await db.put(indexKey(R1, pieceIdOf(3)), { nonsense: true });
    await db.close();
    await reopen(dir, async (store) => {
      assert.deepEqual(await pieceFiles(dir), [`${id.slice(0, 2)}/${R1}-${id}`]);
      assert.deepEqual(
        (await collect(store.list())).map((e) => e.pieceId),
        [id],
      );
      assert.equal(store.usage().used, 10);
    });
    const check = new Level(join(dir, "index"), { valueEncoding: "json" });
    await check.open();
    assert.deepEqual(await check.keys().all(), [indexKey(R1, id)]);
    await check.close();
  });

  test("a lowered quota below what is stored accepts no new uploads but keeps every piece", async () => {
    const dir = await withStore(async (store) => {
      await putPiece(store, R1, pieceIdOf(1), pieceBytes(5000));
    });
    await reopen(
      dir,
      async (store) => {
        assert.deepEqual(store.usage(), { quota: 4000, used: 5000, reserved: 0, free: 0 });
        await assert.rejects(store.reserve(R1, pieceIdOf(2), 1, metaFor(pieceBytes(1))), code("QUOTA_EXCEEDED"));
        await store.delete(R1, pieceIdOf(1));
        await putPiece(store, R1, pieceIdOf(2), pieceBytes(4000));
      },
      { quotaBytes: 4000 },
    );
  });

  test("an upload open at stop() leaves no temp file and no piece after a restart", async () => {
    const dir = await tempDir();
    const store = createFsPieceStore({ dir, quotaBytes: 100_000 });
    await store.start();
    const data = pieceBytes(9000);
    const writer = await store.reserve(R1, pieceIdOf(1), 9000, metaFor(data));
    await writer.write(data.subarray(0, 5000));
    await store.stop();
    assert.deepEqual(await readdir(join(dir, "tmp")), []);
    await reopen(dir, async (again) => {
      assert.equal(await again.stat(R1, pieceIdOf(1)), undefined);
      await putPiece(again, R1, pieceIdOf(1), data);
    });
  });
});

/** Wraps the real fs; counts calls and can fail writes/syncs with ENOSPC. */
function instrumentedFs(faults: { writeLimitBytes?: number; failSync?: boolean } = {}): { fs: StoreFileSystem; calls: string[] } {
  const calls: string[] = [];
  const enospc = (): Error => Object.assign(new Error("ENOSPC: no space left on device, write"), { code: "ENOSPC", errno: -28 });
  let written = 0;
  const wrapHandle = (handle: nodeFs.FileHandle): nodeFs.FileHandle =>
    new Proxy(handle, {
      get(target, prop) {
        if (prop === "write") {
          return async (buffer: Uint8Array, offset: number, length: number, position: number | null) => {
            if (faults.writeLimitBytes !== undefined && written + length > faults.writeLimitBytes) throw enospc();
            written += length;
            return target.write(buffer, offset, length, position);
          };
        }
        if (prop === "sync" && faults.failSync === true) return async () => Promise.reject(enospc());
        const value: unknown = Reflect.get(target, prop, target);
        return typeof value === "function" ? value.bind(target) : value;
      },
    });
  const fs: StoreFileSystem = {
    open: (async (...args: Parameters<typeof nodeFs.open>) => {
      calls.push(`open ${String(args[0])}`);
      const handle = await nodeFs.open(...args);
      return String(args[1]).startsWith("w") ? wrapHandle(handle) : handle;
    }) as typeof nodeFs.open,
    rename: (async (...args: Parameters<typeof nodeFs.rename>) => {
      calls.push("rename");
      return nodeFs.rename(...args);
    }) as typeof nodeFs.rename,
    unlink: (async (...args: Parameters<typeof nodeFs.unlink>) => {
      calls.push("unlink");
      return nodeFs.unlink(...args);
    }) as typeof nodeFs.unlink,
    mkdir: (async (...args: Parameters<typeof nodeFs.mkdir>) => {
      calls.push(`mkdir ${String(args[0])}`);
      return nodeFs.mkdir(...args);
    }) as typeof nodeFs.mkdir,
    readdir: (async (...args: Parameters<typeof nodeFs.readdir>) => {
      calls.push("readdir");
      return nodeFs.readdir(...args);
    }) as typeof nodeFs.readdir,
    stat: (async (...args: Parameters<typeof nodeFs.stat>) => {
      calls.push("stat");
      return nodeFs.stat(...args);
    }) as typeof nodeFs.stat,
    rm: (async (...args: Parameters<typeof nodeFs.rm>) => {
      calls.push(`rm ${String(args[0])}`);
      return nodeFs.rm(...args);
    }) as typeof nodeFs.rm,
  };
  return { fs, calls };
}

describe("fs piece store: boundaries", () => {
  test("invalid ids and renters never touch the file system", async () => {
    const parent = await tempDir();
    const dir = join(parent, "store");
    const { fs, calls } = instrumentedFs();
    const store = createFsPieceStore({ dir, quotaBytes: 100_000, fs });
    try {
      await store.start();
      await putPiece(store, R1, pieceIdOf(1), pieceBytes(10));
      const before = await tree(parent, false);
      const callsBefore = calls.length;
      const meta = metaFor(pieceBytes(1));
      const badIds = ["../x", "../../x", "", "..", `${"0".repeat(62)}/x`, pieceIdOf(1).toUpperCase(), `${pieceIdOf(1)}00`, "x".repeat(10_000)];
      for (const id of badIds) {
        await assert.rejects(store.reserve(R1, id, 1, meta), code("PIECE_ID_INVALID"));
        await assert.rejects(store.read(R1, id, 0, 1), code("PIECE_ID_INVALID"));
        await assert.rejects(collect(store.readStream(R1, id)), code("PIECE_ID_INVALID"));
        await assert.rejects(store.stat(R1, id), code("PIECE_ID_INVALID"));
        await assert.rejects(store.delete(R1, id), code("PIECE_ID_INVALID"));
        await assert.rejects(store.confirm(R1, [id], 1n), code("PIECE_ID_INVALID"));
        // A valid id with a hostile renter.
        await assert.rejects(store.reserve(`../${id}`, pieceIdOf(2), 1, meta), code("INVALID_ARGUMENT"));
      }
      for (const renter of ["../x", "", R1.toUpperCase(), `0x${"AB".repeat(20)}`, `${R1}/..`]) {
        await assert.rejects(store.reserve(renter, pieceIdOf(2), 1, meta), code("INVALID_ARGUMENT"));
        await assert.rejects(store.read(renter, pieceIdOf(1), 0, 1), code("INVALID_ARGUMENT"));
        await assert.rejects(store.delete(renter, pieceIdOf(1)), code("INVALID_ARGUMENT"));
        await assert.rejects(collect(store.list(renter)), code("INVALID_ARGUMENT"));
      }
      assert.deepEqual(calls.slice(callsBefore), [], "no file-system call for invalid input");
      assert.deepEqual(await tree(parent, false), before, "nothing created or removed");
      assert.deepEqual(store.usage(), { quota: 100_000, used: 10, reserved: 0, free: 99_990 });
    } finally {
      await store.stop();
    }
  });

  test("a full disk (ENOSPC) while writing → DISK_FULL, no partial piece, reservation released", async () => {
    const dir = await tempDir();
    const { fs } = instrumentedFs({ writeLimitBytes: 3000 });
    const store = createFsPieceStore({ dir, quotaBytes: 100_000, fs });
    try {
      await store.start();
      const data = pieceBytes(8000);
      const writer = await store.reserve(R1, pieceIdOf(1), 8000, metaFor(data));
      await assert.rejects(writeAll(writer, data, 1000), code("DISK_FULL"));
      await assert.rejects(writer.commit(), code("DISK_FULL"));
      assert.deepEqual(store.usage(), { quota: 100_000, used: 0, reserved: 0, free: 100_000 });
      assert.equal(await store.stat(R1, pieceIdOf(1)), undefined);
      assert.deepEqual(await readdir(join(dir, "tmp")), []);
      assert.deepEqual(await pieceFiles(dir), []);
    } finally {
      await store.stop();
    }
  });

  test("a full disk at fsync → DISK_FULL from commit, nothing kept", async () => {
    const dir = await tempDir();
    const { fs } = instrumentedFs({ failSync: true });
    const store = createFsPieceStore({ dir, quotaBytes: 100_000, fs });
    try {
      await store.start();
      const data = pieceBytes(2000);
      const writer = await store.reserve(R1, pieceIdOf(1), 2000, metaFor(data));
      await writeAll(writer, data);
      await assert.rejects(writer.commit(), code("DISK_FULL"));
      assert.deepEqual(store.usage().reserved, 0);
      assert.equal(await store.stat(R1, pieceIdOf(1)), undefined);
      assert.deepEqual(await readdir(join(dir, "tmp")), []);
      assert.deepEqual(await pieceFiles(dir), []);
    } finally {
      await store.stop();
    }
  });

  test("writes issued without awaiting are applied in call order", async () => {
    await withStore(async (store) => {
      const data = pieceBytes(10_000);
      const writer = await store.reserve(R2, pieceIdOf(5), 10_000, metaFor(data));
      const pending: Promise<void>[] = [];
      for (let offset = 0; offset < 10_000; offset += 777) pending.push(writer.write(data.subarray(offset, Math.min(10_000, offset + 777))));
      await Promise.all(pending);
      await writer.commit();
      assert.deepEqual(await store.read(R2, pieceIdOf(5), 0, 10_000), data);
    });
  });
});

describe("fs piece store: concurrent operations on few keys", () => {
  type Op = { kind: "put" | "abortedPut" | "badPut" | "delete" | "confirm" | "collect" | "read"; renter: number; piece: number; size: number };
  const opArb: fc.Arbitrary<Op> = fc.record({
    kind: fc.constantFrom("put", "put", "abortedPut", "badPut", "delete", "confirm", "collect", "read"),
    renter: fc.integer({ min: 0, max: 1 }),
    piece: fc.integer({ min: 0, max: 3 }),
    size: fc.integer({ min: 0, max: 3000 }),
  });
  const renters = [R1, R2];

  async function runOp(store: FsPieceStore, op: Op, now: number): Promise<void> {
    const renter = renters[op.renter]!;
    const id = pieceIdOf(op.piece);
    const data = pieceBytes(op.size, op.piece + 1);
    switch (op.kind) {
      case "put":
        return putPiece(store, renter, id, data, metaFor(data, 1n, now + (op.size % 2 === 0 ? -1 : 1_000_000)), 500);
      case "abortedPut": {
        const writer = await store.reserve(renter, id, op.size, metaFor(data));
        await writer.write(data.subarray(0, op.size >> 1));
        return writer.abort();
      }
      case "badPut": {
        const writer = await store.reserve(renter, id, op.size, metaFor(pieceBytes(op.size, 999)));
        await writeAll(writer, data, 700);
        await writer.commit().catch((error: unknown) => {
          // Equal bytes by chance (size 0) commit fine; anything else must be a mismatch.
          if (!isDstorError(error, "INTEGRITY_MISMATCH")) throw error;
        });
        return;
      }
      case "delete":
        return store.delete(renter, id);
      case "confirm":
        return store.confirm(renter, [id], 2n);
      case "collect":
        await store.collectExpired(now);
        return;
      case "read": {
        const info = await store.stat(renter, id);
        if (info !== undefined) await store.read(renter, id, 0, info.size).catch((error: unknown) => {
          if (!isDstorError(error, "PIECE_NOT_FOUND")) throw error; // deleted meanwhile
        });
        return;
      }
    }
  }

  test("property: racing puts, aborts, deletes, confirms and expiry leave index, files and quota consistent", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(opArb, { minLength: 1, maxLength: 25 }), async (ops) => {
        const dir = await tempDir();
        const quotaBytes = 6000;
        const now = Date.now();
        const store = createFsPieceStore({ dir, quotaBytes });
        await store.start();
        try {
          const results = await Promise.allSettled(ops.map((op) => runOp(store, op, now)));
          for (const r of results) {
            if (r.status === "rejected") assert.ok(isDstorError(r.reason, "PIECE_EXISTS", "PIECE_NOT_FOUND", "QUOTA_EXCEEDED"), String(r.reason));
          }
          const listed = await collect(store.list());
          const usage = store.usage();
          assert.equal(usage.reserved, 0);
          assert.equal(usage.used, listed.reduce((a, e) => a + e.size, 0));
          assert.ok(usage.used <= quotaBytes);
          for (const entry of listed) {
            const bytes = await store.read(entry.renter, entry.pieceId, 0, entry.size);
            assert.deepEqual(referenceMerkleRoot(bytes), new Uint8Array(entry.root));
          }
          const files = (await pieceFiles(dir)).map((p) => p.split("/")[1]);
          assert.deepEqual(files.sort(), listed.map((e) => `${e.renter}-${e.pieceId}`).sort());
          assert.deepEqual(await readdir(join(dir, "tmp")), []);
          await store.stop();
          // A restart finds nothing to repair.
          const { logger, records } = capturingLogger();
          await reopen(
            dir,
            async (again) => {
              assert.deepEqual(again.usage(), usage);
              assert.equal((await collect(again.list())).length, listed.length);
            },
            { logger, quotaBytes },
          );
          assert.deepEqual(records.filter((r) => r.level === "warn" || r.level === "error"), []);
        } finally {
          await store.stop();
          await rm(dir, { recursive: true, force: true });
        }
      }),
      { numRuns: 25 },
    );
  });
});

describe("fs piece store: a real process killed with SIGKILL", () => {
  const fixture = new URL("./fixtures/store-writer.js", import.meta.url);

  async function runChildUntil(args: string[], wanted: string): Promise<ChildProcess> {
    const child = fork(fixture, args, { stdio: ["ignore", "ignore", "pipe", "ipc"] });
    let stderr = "";
    child.stderr?.on("data", (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    try {
      const [message] = (await Promise.race([
        once(child, "message"),
        once(child, "exit").then(([codeOrNull]) => {
          throw new Error(`child exited early (${String(codeOrNull)}): ${stderr}`);
        }),
      ])) as [{ state: string; message?: string }];
      assert.equal(message.state, wanted, message.message ?? stderr);
      return child;
    } catch (error) {
      child.kill("SIGKILL");
      throw error;
    }
  }

  async function kill(child: ChildProcess): Promise<void> {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = once(child, "exit");
    child.kill("SIGKILL");
    const [, signal] = await exited;
    assert.equal(signal, "SIGKILL");
  }

  test("killed mid-write: no partial piece, consistent index, a retry of the same piece succeeds", async () => {
    const dir = await tempDir();
    const size = 3 * 1024 * 1024 + 17;
    const child = await runChildUntil(["half", dir, R1, pieceIdOf(1), String(size), "42"], "half-written");
    try {
      // Proof that the kill lands mid-upload: the temp file holds half the bytes.
      const temps = await readdir(join(dir, "tmp"));
      assert.equal(temps.length, 1);
      assert.equal((await stat(join(dir, "tmp", temps[0]!))).size, Math.floor(size / 2));
    } finally {
      await kill(child);
    }
    await reopen(dir, async (store) => {
      assert.deepEqual(await readdir(join(dir, "tmp")), []);
      assert.equal(await store.stat(R1, pieceIdOf(1)), undefined);
      assert.deepEqual(await collect(store.list()), []);
      assert.deepEqual(store.usage(), { quota: 64 * 1024 * 1024, used: 0, reserved: 0, free: 64 * 1024 * 1024 });
      assert.deepEqual(await pieceFiles(dir), []);
      const data = pieceBytes(size, 42);
      await putPiece(store, R1, pieceIdOf(1), data, metaFor(data), 100_000);
      assert.deepEqual(await store.read(R1, pieceIdOf(1), 0, size), data);
    });
  });

  test("killed after commit: the piece is there after the restart", async () => {
    const dir = await tempDir();
    const size = 200_000;
    const child = await runChildUntil(["commit", dir, R2, pieceIdOf(7), String(size), "7"], "committed");
    await kill(child);
    await reopen(dir, async (store) => {
      const data = pieceBytes(size, 7);
      assert.deepEqual(await store.read(R2, pieceIdOf(7), 0, size), data);
      assert.equal(store.usage().used, size);
      await assert.rejects(store.reserve(R2, pieceIdOf(7), size, metaFor(data)), code("PIECE_EXISTS"));
    });
  });
});

describe("fs piece store: direct I/O", () => {
  const MIB = 1024 * 1024;

  /** Writes `data` in batches of `batch` bytes, each copied into a buffer from directIoBytes (as the farmer's puts do). */
  async function writeBatches(store: FsPieceStore, pieceId: string, data: Uint8Array, batch: number, first?: Uint8Array): Promise<void> {
    const writer = await store.reserve(R1, pieceId, data.byteLength, metaFor(data));
    let at = 0;
    if (first !== undefined) {
      await writer.write(first);
      at = first.byteLength;
    }
    while (at < data.byteLength) {
      const part = data.subarray(at, Math.min(data.byteLength, at + batch));
      const buffer = directIoBytes(batch).subarray(0, part.byteLength);
      buffer.set(part);
      await writer.write(buffer);
      at += part.byteLength;
    }
    await writer.commit();
  }

  const readBack = async (store: FsPieceStore, pieceId: string): Promise<Buffer> => Buffer.concat(await collect(store.readStream(R1, pieceId)));

  test("aligned batches bypass the page cache, the rest goes through it; pieces read back identical", async () => {
    await withStore(async (store, dir) => {
      const direct = await takesDirectIo(dir);
      // 2 MiB + 1000: two aligned batches, then a tail that is not a whole block.
      const a = pieceBytes(2 * MIB + 1000, 11);
      await writeBatches(store, pieceIdOf(101), a, MIB);
      assert.ok((await readBack(store, pieceIdOf(101))).equals(a));
      assert.equal(store.directBytes, direct ? 2 * MIB : 0);
      // Batches at offsets that are not block-aligned (after a 1000-byte first write) go through the page cache.
      const b = pieceBytes(MIB + 1000, 12);
      await writeBatches(store, pieceIdOf(102), b, MIB, b.subarray(0, 1000));
      assert.ok((await readBack(store, pieceIdOf(102))).equals(b));
      assert.equal(store.directBytes, direct ? 2 * MIB : 0);
      // Ordinary buffers (not from directIoBytes) too, even when aligned in size and offset.
      const c = pieceBytes(MIB, 13);
      await putPiece(store, R1, pieceIdOf(103), c, metaFor(c), 64 * 1024);
      assert.ok((await readBack(store, pieceIdOf(103))).equals(c));
      assert.equal(store.directBytes, direct ? 2 * MIB : 0);
    }, 16 * MIB);
  });

  /** Reads [offset, offset + length) with `chunkSize` chunks into buffers from `buffer`; checks each chunk's size; returns the bytes. */
  async function readRange(store: FsPieceStore, pieceId: string, offset: number, length: number, chunkSize: number, buffer: () => Uint8Array): Promise<Buffer> {
    const chunks = await collect(store.readStream(R1, pieceId, { offset, length, chunkSize, buffer }));
    for (const chunk of chunks) assert.ok(chunk.byteLength > 0 && chunk.byteLength <= chunkSize, `a chunk of ${chunk.byteLength} bytes (chunkSize ${chunkSize})`);
    return Buffer.concat(chunks);
  }

  test("reads into direct-I/O buffers bypass the page cache: any range reads back identical", async () => {
    await withStore(async (store, dir) => {
      const direct = await takesDirectIo(dir);
      // Three whole blocks and a partial one: the last direct read stops short at the end of the file.
      const size = 3 * 4096 + 777;
      const data = pieceBytes(size, 31);
      await writeBatches(store, pieceIdOf(121), data, 4096);
      const chunkSize = 8192;
      await fc.assert(
        fc.asyncProperty(
          fc.integer({ min: 0, max: size - 1 }).chain((offset) => fc.tuple(fc.constant(offset), fc.integer({ min: 1, max: size - offset }))),
          async ([offset, length]) => {
            const before = store.directReadBytes;
            const got = await readRange(store, pieceIdOf(121), offset, length, chunkSize, () => directIoBytes(chunkSize));
            assert.ok(got.equals(data.subarray(offset, offset + length)), `range ${offset}+${length}`);
            assert.equal(store.directReadBytes - before, direct ? length : 0);
          },
        ),
        { numRuns: 60 },
      );
      // Ordinary buffers, and direct buffers with a chunk size that is not whole blocks, go through the page cache.
      const before = store.directReadBytes;
      assert.ok((await readRange(store, pieceIdOf(121), 1000, 9000, chunkSize, () => new Uint8Array(chunkSize))).equals(data.subarray(1000, 10_000)));
      assert.ok((await readRange(store, pieceIdOf(121), 1000, 9000, 5000, () => directIoBytes(5000))).equals(data.subarray(1000, 10_000)));
      assert.equal(store.directReadBytes, before);
    }, 16 * MIB);
  });

  test("a direct read of a piece that is shorter on disk than its index entry fails as corrupt", async () => {
    await withStore(async (store) => {
      const data = pieceBytes(4 * 4096, 32);
      await writeBatches(store, pieceIdOf(122), data, 4096);
      await truncate(store.piecePath(R1, pieceIdOf(122)), 2 * 4096 + 100);
      await assert.rejects(readRange(store, pieceIdOf(122), 0, data.byteLength, 8192, () => directIoBytes(8192)), code("STORE_CORRUPT"));
    }, 16 * MIB);
  });

  test("a file system that refuses O_DIRECT: reads and writes go through the page cache, and it is asked only once", async () => {
    const dir = await tempDir();
    let directOpens = 0;
    const fs: StoreFileSystem = {
      ...nodeFs,
      open: (async (...args: Parameters<typeof nodeFs.open>) => {
        if (typeof args[1] === "number" && (args[1] & nodeFs.constants.O_DIRECT) !== 0) {
          directOpens++;
          throw Object.assign(new Error("EINVAL: invalid argument, open"), { code: "EINVAL", errno: -22 });
        }
        return nodeFs.open(...args);
      }) as typeof nodeFs.open,
    };
    const store = createFsPieceStore({ dir, quotaBytes: 16 * MIB, fs });
    try {
      await store.start();
      for (const n of [1, 2]) {
        const data = pieceBytes(2 * MIB, 20 + n);
        await writeBatches(store, pieceIdOf(110 + n), data, MIB);
        assert.ok((await readBack(store, pieceIdOf(110 + n))).equals(data));
        assert.ok((await readRange(store, pieceIdOf(110 + n), 0, data.byteLength, 65_536, () => directIoBytes(65_536))).equals(data));
      }
      assert.equal(store.directBytes, 0);
      assert.equal(store.directReadBytes, 0);
      assert.equal(directOpens, 1, "O_DIRECT was tried for the first batch only");
    } finally {
      await store.stop();
    }
  });
});
