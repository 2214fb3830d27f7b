/**
 * The read cache (byte bound, shared misses, chunk assembly) and the staging
 * journal (records survive, leftovers come back, orphans are cleaned).
 */
import assert from "node:assert/strict";
import { mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import fc from "fast-check";
import { SegmentCache } from "../../src/cache/segment-cache.js";
import { ChangedRanges, openStagingArea } from "../../src/cache/staging.js";

const fileOf = (size: number): Uint8Array => Uint8Array.from({ length: size }, (_, i) => (i * 7 + 3) & 0xff);

test("segment cache returns exactly the requested bytes for any range", async () => {
  await fc.assert(
    fc.asyncProperty(fc.integer({ min: 0, max: 3000 }), fc.integer({ min: 1, max: 700 }), fc.nat(3500), fc.nat(3500), async (size, chunk, offset, length) => {
      const data = fileOf(size);
      const cache = new SegmentCache({ maxBytes: 2048 });
      const fetch = async (o: number, l: number): Promise<Uint8Array> => data.slice(o, Math.min(size, o + l));
      const got = await cache.read({ inode: 9, size, chunkSize: chunk }, offset, length, fetch);
      assert.deepEqual(got, data.slice(offset, Math.min(size, offset + length)));
      assert.ok(cache.bytes <= 2048);
    }),
    { numRuns: 200 },
  );
});

test("segment cache shares concurrent misses and serves hits without fetching", async () => {
  const data = fileOf(1000);
  let fetches = 0;
  const fetch = async (o: number, l: number): Promise<Uint8Array> => {
    fetches++;
    await new Promise((r) => setTimeout(r, 5));
    return data.slice(o, o + l);
  };
  const cache = new SegmentCache({ maxBytes: 10_000, readAheadChunks: 0 });
  const file = { inode: 1, size: 1000, chunkSize: 500 };
  await Promise.all([cache.read(file, 0, 100, fetch), cache.read(file, 50, 100, fetch), cache.read(file, 400, 200, fetch)]);
  assert.equal(fetches, 2, "one fetch per chunk");
  await cache.read(file, 0, 1000, fetch);
  assert.equal(fetches, 2);
  cache.forget(1);
  await cache.read(file, 0, 10, fetch);
  assert.equal(fetches, 3);
});

test("read-ahead: sequential reads fetch the next chunks in the background, bounded", async () => {
  const data = fileOf(10_000);
  const fetched: number[] = [];
  const fetch = async (o: number, l: number): Promise<Uint8Array> => {
    fetched.push(o / 1000);
    await new Promise((r) => setTimeout(r, 5));
    return data.slice(o, o + l);
  };
  const cache = new SegmentCache({ maxBytes: 100_000, readAheadChunks: 2, maxPrefetches: 2, sequentialSlackBytes: 500 });
  const file = { inode: 3, size: 10_000, chunkSize: 1000 };
  assert.deepEqual(await cache.read(file, 0, 500, fetch), data.slice(0, 500));
  assert.deepEqual(fetched, [0, 1, 2], "chunk 0 for the read, 1 and 2 ahead");
  assert.ok(cache.prefetching <= 2);
  await new Promise((r) => setTimeout(r, 30));
  assert.equal(cache.prefetching, 0);
  const before = fetched.length;
  assert.deepEqual(await cache.read(file, 500, 1000, fetch), data.slice(500, 1500), "served from the read-ahead");
  assert.deepEqual(fetched.slice(before), [3], "only the window's new end is fetched");
  await new Promise((r) => setTimeout(r, 30));
  // Reads of the kernel's own read-ahead arrive concurrently and a little out of order: still sequential.
  await Promise.all([cache.read(file, 2000, 500, fetch), cache.read(file, 1500, 500, fetch)]);
  assert.ok(fetched.includes(4), "the window moved on");
});

test("read-ahead: random access aborts read-ahead nobody asked for; a read that needs it joins it", async () => {
  const data = fileOf(10_000);
  const aborted: number[] = [];
  const fetch = (o: number, l: number, options: { signal?: AbortSignal | undefined }): Promise<Uint8Array> =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => resolve(data.slice(o, o + l)), 40);
      options.signal?.addEventListener("abort", () => {
        clearTimeout(timer);
        aborted.push(o / 1000);
        reject(new Error("aborted"));
      });
    });
  const cache = new SegmentCache({ maxBytes: 100_000, readAheadChunks: 2, sequentialSlackBytes: 500 });
  const file = { inode: 4, size: 10_000, chunkSize: 1000 };
  const first = cache.read(file, 0, 100, fetch);
  // Chunk 1 is being read ahead; a read needs it now and joins it.
  const joined = cache.read(file, 100, 1000, fetch);
  // A jump elsewhere aborts what is left of the read-ahead (chunk 2 and the window of the joined read), not chunk 1.
  const random = cache.read(file, 7000, 100, fetch);
  assert.deepEqual(await first, data.slice(0, 100));
  assert.deepEqual(await joined, data.slice(100, 1100));
  assert.deepEqual(await random, data.slice(7000, 7100));
  assert.ok(aborted.includes(2), `chunk 2's read-ahead was aborted (aborted: ${aborted})`);
  assert.ok(!aborted.includes(1) && !aborted.includes(0) && !aborted.includes(7));
  assert.equal(cache.prefetching, 0);
});

test("staging journal: records come back as leftovers, orphans are removed", async (t) => {
  const dir = await mkdtemp(join(tmpdir(), "dstor-staging-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const area = await openStagingArea(dir);
  const kept = await area.create({ path: "/a", size: 0, mode: 0o644, mtimeMs: 1 });
  await kept.handle.write(Buffer.from("hello"), 0, 5, 0);
  kept.record.size = 5;
  await Promise.all([area.writeRecord(kept), area.writeRecord(kept), area.writeRecord(kept)]);
  const dropped = await area.create({ path: "/b", size: 0, mode: 0o644, mtimeMs: 2 });
  await area.discard(dropped);
  await writeFile(join(dir, "orphan.data"), "never acknowledged");
  await kept.handle.close();
  const again = await openStagingArea(dir);
  const left = await again.leftovers();
  assert.equal(left.length, 1);
  assert.deepEqual(left[0]!.record, { path: "/a", size: 5, mode: 0o644, mtimeMs: 1 });
  assert.deepEqual((await readdir(dir)).sort(), [`${left[0]!.id}.data`, `${left[0]!.id}.json`].sort());
  await again.forget(left[0]!);
  assert.deepEqual(await readdir(dir), []);
});

test("changed ranges: merged writes cover exactly the bytes written; take starts clean; restore gives back", () => {
  fc.assert(
    fc.property(fc.array(fc.tuple(fc.nat(2000), fc.nat(300)), { maxLength: 40 }), (writes) => {
      const changes = new ChangedRanges(5000);
      const written = new Set<number>();
      for (const [position, length] of writes) {
        changes.write(position, length);
        for (let b = position; b < position + length; b++) written.add(b);
      }
      const { ranges, unchangedBelow } = changes.take(4000);
      assert.equal(unchangedBelow, 5000);
      const covered = new Set<number>();
      ranges.forEach(([start, end], i) => {
        assert.ok(start < end, "no empty range");
        if (i > 0) assert.ok(start > ranges[i - 1]![1], "sorted, disjoint and not touching");
        for (let b = start; b < end; b++) covered.add(b);
      });
      assert.deepEqual([...covered].sort((a, b) => a - b), [...written].sort((a, b) => a - b));
      assert.deepEqual(changes.take(4000), { ranges: [], unchangedBelow: 4000 });
    }),
  );
  const changes = new ChangedRanges(100);
  changes.write(10, 5);
  changes.truncate(40);
  changes.truncate(60);
  const taken = changes.take(60);
  changes.write(50, 5);
  changes.restore(taken);
  assert.deepEqual(changes.take(0), { ranges: [[10, 15], [50, 55]], unchangedBelow: 40 });
  // Past the limit the ranges collapse into one that spans them all.
  for (let i = 0; i <= ChangedRanges.MAX_RANGES; i++) changes.write(i * 10, 1);
  assert.deepEqual(changes.take(0).ranges, [[0, ChangedRanges.MAX_RANGES * 10 + 1]]);
});
