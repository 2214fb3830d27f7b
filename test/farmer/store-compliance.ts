/**
 * The PieceStore compliance suite (the js-libp2p interface-compliance-tests
 * model): every implementation of `PieceStore` runs these same tests through
 * the interface only. Implementation-specific behaviour (durability,
 * reconciliation, file layout) is tested next to the implementation.
 *
 * Usage, in `test/<area>/<impl>.test.ts`:
 * ```ts
 * runPieceStoreCompliance("fs", { create: async ({ quotaBytes }) => ..., cleanup: async () => ... });
 * ```
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { type DstorErrorCode, isDstorError } from "../../src/core/errors.js";
import type { PieceStore } from "../../src/farmer/store/types.js";
import { collect, metaFor, pieceBytes, pieceIdOf, putPiece, renterAddress, writeAll } from "./helpers.js";

/** How the suite gets stores of the implementation under test. */
export interface PieceStoreHarness {
  /** A fresh, empty, NOT yet started store with the given quota. */
  create(init: { quotaBytes: number }): Promise<PieceStore>;
  /** Removes whatever `create` made (called after the store is stopped). */
  cleanup(store: PieceStore): Promise<void>;
}

function concat(chunks: Uint8Array[]): Uint8Array {
  return new Uint8Array(Buffer.concat(chunks));
}

/** An assert.rejects predicate for DstorError codes. */
export function code(...codes: DstorErrorCode[]): (error: unknown) => boolean {
  return (error: unknown) => {
    assert.ok(isDstorError(error, ...codes), `expected ${codes.join("|")}, got ${String((error as { code?: unknown })?.code)}: ${String(error)}`);
    return true;
  };
}

function assertInvariant(store: PieceStore): void {
  const u = store.usage();
  assert.ok(u.used + u.reserved <= u.quota, `used ${u.used} + reserved ${u.reserved} exceeds quota ${u.quota}`);
  assert.equal(u.free, Math.max(0, u.quota - u.used - u.reserved));
}

const R1 = renterAddress(1);
const R2 = renterAddress(2);

/** Registers the compliance tests for one PieceStore implementation. */
export function runPieceStoreCompliance(name: string, harness: PieceStoreHarness): void {
  async function withStore(quotaBytes: number, fn: (store: PieceStore) => Promise<void>): Promise<void> {
    const store = await harness.create({ quotaBytes });
    try {
      await store.start();
      await fn(store);
    } finally {
      await store.stop();
      await harness.cleanup(store);
    }
  }

  describe(`PieceStore compliance: ${name}`, () => {
    test("lifecycle: stop is idempotent; operations outside start/stop fail with STORE_CLOSED", async () => {
      const store = await harness.create({ quotaBytes: 1000 });
      try {
        await store.stop(); // before start: fine
        await store.start();
        await store.start(); // already started: fine
        await store.stop();
        await store.stop();
        await assert.rejects(store.stat(R1, pieceIdOf(1)), code("STORE_CLOSED"));
        await assert.rejects(store.reserve(R1, pieceIdOf(1), 1, metaFor(new Uint8Array(1))), code("STORE_CLOSED"));
        await assert.rejects(collect(store.list()), code("STORE_CLOSED"));
      } finally {
        await store.stop();
        await harness.cleanup(store);
      }
    });

    test("round trip for sizes 0, 1, 1023, 1024, 1025 and 5 MiB, with stat, read and readStream", async () => {
      await withStore(16 * 1024 * 1024, async (store) => {
        const sizes = [0, 1, 1023, 1024, 1025, 5 * 1024 * 1024];
        for (const [i, size] of sizes.entries()) {
          const data = pieceBytes(size, i + 1);
          const meta = metaFor(data, BigInt(100 + i), 1_900_000_000_000);
          // Odd chunk sizes so leaves straddle chunk boundaries.
          await putPiece(store, R1, pieceIdOf(i), data, meta, 1000 + i * 337);
          const info = await store.stat(R1, pieceIdOf(i));
          assert.ok(info !== undefined);
          assert.equal(info.size, size);
          assert.deepEqual(new Uint8Array(info.root), meta.root);
          assert.equal(info.dealId, BigInt(100 + i));
          assert.equal(info.expiresAt, 1_900_000_000_000);
          assert.equal(info.confirmed, false);
          assert.deepEqual(await store.read(R1, pieceIdOf(i), 0, size), data);
          if (size > 2) assert.deepEqual(await store.read(R1, pieceIdOf(i), 1, size - 2), data.subarray(1, size - 1));
          assert.deepEqual(await store.read(R1, pieceIdOf(i), size, 0), new Uint8Array(0));
          assert.deepEqual(concat(await collect(store.readStream(R1, pieceIdOf(i), { chunkSize: 4096 }))), data);
          if (size > 10) {
            const ranged = await collect(store.readStream(R1, pieceIdOf(i), { offset: 3, length: size - 10, chunkSize: 1000 }));
            assert.deepEqual(concat(ranged), data.subarray(3, size - 7));
          }
        }
        const total = sizes.reduce((a, b) => a + b, 0);
        assert.deepEqual(store.usage(), { quota: 16 * 1024 * 1024, used: total, reserved: 0, free: 16 * 1024 * 1024 - total });
      });
    });

    test("readStream into the caller's buffers: each chunk is a view of the buffer given for it; a short buffer is refused", async () => {
      await withStore(1024 * 1024, async (store) => {
        const data = pieceBytes(10_000, 7);
        await putPiece(store, R1, pieceIdOf(1), data, metaFor(data), 3000);
        const given: Uint8Array[] = [];
        const got: number[] = [];
        const buffer = (): Uint8Array => {
          const b = new Uint8Array(4096).fill(0xee);
          given.push(b);
          return b;
        };
        for await (const chunk of store.readStream(R1, pieceIdOf(1), { offset: 5, length: 9000, chunkSize: 4000, buffer })) {
          const mine = given[given.length - 1]!;
          assert.equal(chunk.buffer, mine.buffer, "the chunk lives in the buffer given for it");
          assert.equal(chunk.byteOffset, mine.byteOffset);
          got.push(...chunk);
          // The caller owns it: scribbling must not disturb later chunks.
          mine.fill(0);
        }
        assert.equal(given.length, 3);
        assert.deepEqual(new Uint8Array(got), data.subarray(5, 9005));
        await assert.rejects(collect(store.readStream(R1, pieceIdOf(1), { chunkSize: 4000, buffer: () => new Uint8Array(3999) })), code("INVALID_ARGUMENT"));
      });
    });

    test("quota is reserved before the first byte and moves to used on commit", async () => {
      await withStore(5000, async (store) => {
        const data = pieceBytes(3000);
        const writer = await store.reserve(R1, pieceIdOf(1), 3000, metaFor(data));
        assert.deepEqual(store.usage(), { quota: 5000, used: 0, reserved: 3000, free: 2000 });
        await assert.rejects(store.reserve(R1, pieceIdOf(2), 2001, metaFor(pieceBytes(2001))), code("QUOTA_EXCEEDED"));
        await writeAll(writer, data, 700);
        assert.equal(writer.bytesWritten, 3000);
        await writer.commit();
        assert.deepEqual(store.usage(), { quota: 5000, used: 3000, reserved: 0, free: 2000 });
      });
    });

    test("quota exactly reached, then exceeded by one byte", async () => {
      await withStore(4096, async (store) => {
        await putPiece(store, R1, pieceIdOf(1), pieceBytes(4000));
        await putPiece(store, R1, pieceIdOf(2), pieceBytes(96, 2));
        assert.deepEqual(store.usage(), { quota: 4096, used: 4096, reserved: 0, free: 0 });
        await assert.rejects(store.reserve(R1, pieceIdOf(3), 1, metaFor(pieceBytes(1))), code("QUOTA_EXCEEDED"));
        // A 0-byte piece still fits a full store.
        await putPiece(store, R1, pieceIdOf(4), new Uint8Array(0));
        await store.delete(R1, pieceIdOf(2));
        await assert.rejects(store.reserve(R1, pieceIdOf(3), 97, metaFor(pieceBytes(97))), code("QUOTA_EXCEEDED"));
        await putPiece(store, R1, pieceIdOf(3), pieceBytes(96, 3));
        assert.equal(store.usage().free, 0);
      });
    });

    test("concurrent writers racing for the last bytes of quota never overcommit", async () => {
      await withStore(10_000, async (store) => {
        await putPiece(store, R1, pieceIdOf(0), pieceBytes(4_000));
        // 6000 bytes left; 15 uploads of 1000 race: exactly 6 may win.
        const datas = Array.from({ length: 15 }, (_, i) => pieceBytes(1000, i + 10));
        const attempts = datas.map(async (data, i) => {
          const writer = await store.reserve(i % 2 === 0 ? R1 : R2, pieceIdOf(i + 1), 1000, metaFor(data));
          assertInvariant(store);
          await writeAll(writer, data, 333);
          assertInvariant(store);
          await writer.commit();
          assertInvariant(store);
        });
        const results = await Promise.allSettled(attempts);
        const won = results.filter((r) => r.status === "fulfilled").length;
        const lost = results.filter((r) => r.status === "rejected");
        assert.equal(won, 6);
        for (const r of lost) code("QUOTA_EXCEEDED")((r as PromiseRejectedResult).reason);
        assert.deepEqual(store.usage(), { quota: 10_000, used: 10_000, reserved: 0, free: 0 });
        assert.equal((await collect(store.list())).length, 7);
      });
    });

    test("PIECE_EXISTS while an upload is open and after it is committed; another renter's same id is another piece", async () => {
      await withStore(100_000, async (store) => {
        const data = pieceBytes(2000);
        const writer = await store.reserve(R1, pieceIdOf(1), 2000, metaFor(data));
        await assert.rejects(store.reserve(R1, pieceIdOf(1), 2000, metaFor(data)), code("PIECE_EXISTS"));
        assert.equal(store.usage().reserved, 2000);
        await writeAll(writer, data);
        await writer.commit();
        await assert.rejects(store.reserve(R1, pieceIdOf(1), 2000, metaFor(data)), code("PIECE_EXISTS"));
        // Two concurrent reserves of one new piece: exactly one wins.
        const both = await Promise.allSettled([
          store.reserve(R1, pieceIdOf(9), 10, metaFor(pieceBytes(10))),
          store.reserve(R1, pieceIdOf(9), 10, metaFor(pieceBytes(10))),
        ]);
        assert.equal(both.filter((r) => r.status === "fulfilled").length, 1);
        for (const r of both) if (r.status === "fulfilled") await r.value.abort();
        // Same piece id, other renter: independent.
        const other = pieceBytes(500, 7);
        await putPiece(store, R2, pieceIdOf(1), other);
        assert.deepEqual(await store.read(R1, pieceIdOf(1), 0, 2000), data);
        assert.deepEqual(await store.read(R2, pieceIdOf(1), 0, 500), other);
        await store.delete(R2, pieceIdOf(1));
        assert.ok((await store.stat(R1, pieceIdOf(1))) !== undefined);
        assert.equal(await store.stat(R2, pieceIdOf(1)), undefined);
      });
    });

    test("a root mismatch keeps nothing and releases the reservation; a retry with the right bytes succeeds", async () => {
      await withStore(100_000, async (store) => {
        const data = pieceBytes(3000);
        const tampered = new Uint8Array(data);
        tampered[2500] = tampered[2500]! ^ 1;
        const writer = await store.reserve(R1, pieceIdOf(1), 3000, metaFor(data));
        await writeAll(writer, tampered, 1024);
        await assert.rejects(writer.commit(), code("INTEGRITY_MISMATCH"));
        assert.equal(await store.stat(R1, pieceIdOf(1)), undefined);
        await assert.rejects(store.read(R1, pieceIdOf(1), 0, 1), code("PIECE_NOT_FOUND"));
        assert.deepEqual(store.usage(), { quota: 100_000, used: 0, reserved: 0, free: 100_000 });
        assert.equal((await collect(store.list())).length, 0);
        await assert.rejects(writer.write(new Uint8Array(1)));
        await putPiece(store, R1, pieceIdOf(1), data);
        assert.deepEqual(await store.read(R1, pieceIdOf(1), 0, 3000), data);
      });
    });

    test("size mismatches: too few bytes fail at commit, too many at write; nothing is kept", async () => {
      await withStore(100_000, async (store) => {
        const data = pieceBytes(2048);
        const short = await store.reserve(R1, pieceIdOf(1), 2048, metaFor(data));
        await short.write(data.subarray(0, 2047));
        await assert.rejects(short.commit(), code("INTEGRITY_MISMATCH"));
        const long = await store.reserve(R1, pieceIdOf(2), 2048, metaFor(data));
        await long.write(data);
        await assert.rejects(long.write(new Uint8Array(1)), code("INTEGRITY_MISMATCH"));
        await assert.rejects(long.commit());
        assert.equal(await store.stat(R1, pieceIdOf(1)), undefined);
        assert.equal(await store.stat(R1, pieceIdOf(2)), undefined);
        assert.deepEqual(store.usage(), { quota: 100_000, used: 0, reserved: 0, free: 100_000 });
      });
    });

    test("abort keeps nothing, is idempotent and frees the id; commit or write afterwards fail", async () => {
      await withStore(100_000, async (store) => {
        const data = pieceBytes(5000);
        const writer = await store.reserve(R1, pieceIdOf(1), 5000, metaFor(data));
        await writer.write(data.subarray(0, 2500));
        await writer.abort();
        await writer.abort();
        await assert.rejects(writer.write(data.subarray(2500)));
        await assert.rejects(writer.commit());
        assert.equal(await store.stat(R1, pieceIdOf(1)), undefined);
        assert.deepEqual(store.usage(), { quota: 100_000, used: 0, reserved: 0, free: 100_000 });
        await putPiece(store, R1, pieceIdOf(1), data);
        await writer.abort(); // still harmless after the id was reused
        assert.deepEqual(await store.read(R1, pieceIdOf(1), 0, 5000), data);
      });
    });

    test("aborting the reserve signal aborts the upload", async () => {
      await withStore(100_000, async (store) => {
        const data = pieceBytes(4000);
        const controller = new AbortController();
        const writer = await store.reserve(R1, pieceIdOf(1), 4000, metaFor(data), { signal: controller.signal });
        await writer.write(data.subarray(0, 1000));
        controller.abort();
        await assert.rejects(writer.write(data.subarray(1000)), code("ABORTED"));
        await assert.rejects(writer.commit(), code("ABORTED"));
        await writer.abort();
        assert.deepEqual(store.usage().reserved, 0);
        assert.equal(await store.stat(R1, pieceIdOf(1)), undefined);
        const already = AbortSignal.abort();
        await assert.rejects(store.reserve(R1, pieceIdOf(2), 1, metaFor(pieceBytes(1)), { signal: already }), code("ABORTED"));
      });
    });

    test("invalid piece ids and renters are rejected with coded errors", async () => {
      await withStore(100_000, async (store) => {
        const badIds = ["", "../x", "..", "/etc/passwd", pieceIdOf(1).toUpperCase(), `${pieceIdOf(1)}0`, pieceIdOf(1).slice(1), `${"0".repeat(63)}g`, "a".repeat(4096)];
        const badRenters = ["", "../x", renterAddress(0xabcdef).toUpperCase().replace("0X", "0x"), R1.slice(2), `${R1}0`, "0x", `0x${"A".repeat(40)}`];
        const meta = metaFor(new Uint8Array(1));
        for (const id of badIds) {
          await assert.rejects(store.reserve(R1, id, 1, meta), code("PIECE_ID_INVALID"), id);
          await assert.rejects(store.read(R1, id, 0, 1), code("PIECE_ID_INVALID"));
          await assert.rejects(store.stat(R1, id), code("PIECE_ID_INVALID"));
          await assert.rejects(store.delete(R1, id), code("PIECE_ID_INVALID"));
          await assert.rejects(store.confirm(R1, [pieceIdOf(2), id], 1n), code("PIECE_ID_INVALID"));
          await assert.rejects(collect(store.readStream(R1, id)), code("PIECE_ID_INVALID"));
        }
        for (const renter of badRenters) {
          await assert.rejects(store.reserve(renter, pieceIdOf(1), 1, meta), code("INVALID_ARGUMENT"), renter);
          await assert.rejects(store.read(renter, pieceIdOf(1), 0, 1), code("INVALID_ARGUMENT"));
          await assert.rejects(store.stat(renter, pieceIdOf(1)), code("INVALID_ARGUMENT"));
          await assert.rejects(store.delete(renter, pieceIdOf(1)), code("INVALID_ARGUMENT"));
          await assert.rejects(store.confirm(renter, [pieceIdOf(1)], 1n), code("INVALID_ARGUMENT"));
          await assert.rejects(collect(store.list(renter)), code("INVALID_ARGUMENT"));
        }
        for (const size of [-1, 1.5, Number.NaN, 2 ** 60]) {
          await assert.rejects(store.reserve(R1, pieceIdOf(1), size, meta), code("INVALID_ARGUMENT"), String(size));
        }
        await assert.rejects(store.reserve(R1, pieceIdOf(1), 1, { ...meta, root: new Uint8Array(31) }), code("INVALID_ARGUMENT"));
        await assert.rejects(store.reserve(R1, pieceIdOf(1), 1, { ...meta, dealId: -1n }), code("INVALID_ARGUMENT"));
        await assert.rejects(store.reserve(R1, pieceIdOf(1), 1, { ...meta, expiresAt: -5 }), code("INVALID_ARGUMENT"));
        assert.deepEqual(store.usage(), { quota: 100_000, used: 0, reserved: 0, free: 100_000 });
        assert.equal((await collect(store.list())).length, 0);
      });
    });

    test("reads: PIECE_NOT_FOUND for missing pieces, INVALID_ARGUMENT for ranges past the end", async () => {
      await withStore(100_000, async (store) => {
        await assert.rejects(store.read(R1, pieceIdOf(1), 0, 0), code("PIECE_NOT_FOUND"));
        await assert.rejects(collect(store.readStream(R1, pieceIdOf(1))), code("PIECE_NOT_FOUND"));
        assert.equal(await store.stat(R1, pieceIdOf(1)), undefined);
        await putPiece(store, R1, pieceIdOf(1), pieceBytes(100));
        await assert.rejects(store.read(R1, pieceIdOf(1), 0, 101), code("INVALID_ARGUMENT"));
        await assert.rejects(store.read(R1, pieceIdOf(1), 101, 0), code("INVALID_ARGUMENT"));
        await assert.rejects(store.read(R1, pieceIdOf(1), -1, 1), code("INVALID_ARGUMENT"));
        await assert.rejects(collect(store.readStream(R1, pieceIdOf(1), { offset: 50, length: 51 })), code("INVALID_ARGUMENT"));
        await assert.rejects(store.read(R2, pieceIdOf(1), 0, 1), code("PIECE_NOT_FOUND"));
      });
    });

    test("delete frees quota; a second delete is PIECE_NOT_FOUND; list filters by renter in order", async () => {
      await withStore(100_000, async (store) => {
        for (let i = 0; i < 5; i++) await putPiece(store, R1, pieceIdOf(i), pieceBytes(100 + i, i));
        for (let i = 0; i < 3; i++) await putPiece(store, R2, pieceIdOf(i), pieceBytes(200 + i, i));
        const all = await collect(store.list());
        assert.equal(all.length, 8);
        const mine = await collect(store.list(R1));
        assert.deepEqual(
          mine.map((e) => e.pieceId),
          [0, 1, 2, 3, 4].map(pieceIdOf).sort(),
        );
        assert.ok(mine.every((e) => e.renter === R1 && e.root.byteLength === 32 && e.confirmed === false));
        assert.deepEqual(
          (await collect(store.list(R2))).map((e) => e.size).sort(),
          [200, 201, 202],
        );
        assert.equal((await collect(store.list(renterAddress(3)))).length, 0);
        const before = store.usage().used;
        await store.delete(R1, pieceIdOf(2));
        assert.equal(store.usage().used, before - 102);
        await assert.rejects(store.delete(R1, pieceIdOf(2)), code("PIECE_NOT_FOUND"));
        await assert.rejects(store.read(R1, pieceIdOf(2), 0, 1), code("PIECE_NOT_FOUND"));
        assert.equal((await collect(store.list(R1))).length, 4);
      });
    });

    test("confirm clears expiry (all or nothing); collectExpired removes only expired unconfirmed pieces", async () => {
      await withStore(100_000, async (store) => {
        const t0 = 1_800_000_000_000;
        for (let i = 0; i < 4; i++) await putPiece(store, R1, pieceIdOf(i), pieceBytes(1000, i), metaFor(pieceBytes(1000, i), 5n, t0 + i * 1000));
        await putPiece(store, R2, pieceIdOf(0), pieceBytes(10), metaFor(pieceBytes(10), 6n, t0));
        // Missing piece: nothing changes.
        await assert.rejects(store.confirm(R1, [pieceIdOf(0), pieceIdOf(99)], 8n), code("PIECE_NOT_FOUND"));
        assert.equal((await store.stat(R1, pieceIdOf(0)))!.confirmed, false);
        await store.confirm(R1, [pieceIdOf(0), pieceIdOf(2), pieceIdOf(0)], 8n);
        await store.confirm(R1, [], 8n);
        const confirmed = (await store.stat(R1, pieceIdOf(0)))!;
        assert.equal(confirmed.confirmed, true);
        assert.equal(confirmed.expiresAt, undefined);
        assert.equal(confirmed.dealId, 8n);

        assert.deepEqual(await store.collectExpired(t0 - 1), []);
        const removed = await store.collectExpired(t0 + 1000);
        assert.deepEqual(
          removed.map((r) => [r.renter, r.pieceId, r.size]).sort(),
          [
            [R1, pieceIdOf(1), 1000],
            [R2, pieceIdOf(0), 10],
          ].sort(),
        );
        assert.equal(await store.stat(R1, pieceIdOf(1)), undefined);
        assert.ok((await store.stat(R1, pieceIdOf(3))) !== undefined);
        assert.equal(store.usage().used, 3000);
        // Far future: only the unconfirmed piece 3 goes; confirmed ones stay forever.
        const later = await store.collectExpired(t0 + 10 ** 12);
        assert.deepEqual(
          later.map((r) => r.pieceId),
          [pieceIdOf(3)],
        );
        assert.deepEqual(
          (await collect(store.list())).map((e) => e.pieceId).sort(),
          [pieceIdOf(0), pieceIdOf(2)].sort(),
        );
        assert.equal(store.usage().used, 2000);
        // A collected piece may be uploaded again.
        await putPiece(store, R1, pieceIdOf(1), pieceBytes(1000, 1));
      });
    });

    test("an upload open at stop() is aborted and its bytes are not kept", async () => {
      const store = await harness.create({ quotaBytes: 100_000 });
      try {
        await store.start();
        const data = pieceBytes(3000);
        const writer = await store.reserve(R1, pieceIdOf(1), 3000, metaFor(data));
        await writer.write(data.subarray(0, 1000));
        await store.stop();
        await assert.rejects(writer.write(data.subarray(1000)), code("STORE_CLOSED"));
        await assert.rejects(writer.commit(), code("STORE_CLOSED"));
      } finally {
        await store.stop();
        await harness.cleanup(store);
      }
    });
  });
}
