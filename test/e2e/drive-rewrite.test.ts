/**
 * Writes into a committed multi-segment file through a REAL FUSE mount
 * re-upload only the segments they touch: the other segments keep their
 * salts and pieces, the replaced segments' old pieces are deleted on the
 * farmers, and the file reads back identical after a remount (empty cache).
 * Four real farmers on 127.0.N.1, a real anvil chain, redundancy 2/3/3/4,
 * 1 MiB segments.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { open, readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import { spawnMount } from "./drive-fixture.js";
import { startDriveNetwork } from "./drive-network.js";
import { runCli } from "../renter/network-fixture.js";

const MIB = 1024 * 1024;

interface StatJson {
  record: { size: number };
  health: string;
  segments: Array<{ index: number; plaintextLength: number; pieces: Array<{ pieceId: string; farmer?: string }> }>;
}

/** Piece ids stored under each farmer's `pieces/` directory (files are named `<renter>-<pieceId>`). */
async function storedPieceIds(root: string, farmers: number): Promise<Set<string>> {
  const out = new Set<string>();
  for (let i = 1; i <= farmers; i++) {
    const dir = join(root, `farmer-${i}`, "farmer", "pieces");
    for (const entry of await readdir(dir, { recursive: true, withFileTypes: true }).catch(() => [])) {
      if (entry.isFile()) out.add(entry.name.slice(entry.name.lastIndexOf("-") + 1));
    }
  }
  return out;
}

test("a write into a multi-segment file re-uploads only the segments it touched", { timeout: 900_000 }, async (t) => {
  const { root, mnt, common, mounts } = await startDriveNetwork(t, "dstor-drive-rewrite-", { extraArgs: ["--segment-size", "1MiB"] });
  const file = join(mnt, "big.bin");

  /** Mounts, runs `fn` on the mount, unmounts (which uploads anything staged). */
  const mounted = async (fn: () => Promise<void>): Promise<void> => {
    const m = await spawnMount(mnt, common, mounts);
    await fn();
    assert.equal(await m.stop(), 0, m.stderr());
  };
  /** `dstor stat --json` of the file (the mount is down: the metadata is the renter's own). */
  const statFile = async (): Promise<StatJson> => {
    const r = await runCli(["stat", "/big.bin", "--json", ...common]);
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout) as StatJson;
  };
  const ids = (s: StatJson, index: number): string[] => s.segments[index]!.pieces.filter((p) => p.farmer !== undefined).map((p) => p.pieceId);
  /** Writes `data` at `position` in place (no truncation) and fsyncs. */
  const writeAt = async (data: Uint8Array, position: number, flags = "r+"): Promise<void> => {
    const fh = await open(file, flags);
    try {
      await fh.write(data, 0, data.byteLength, position);
      await fh.sync();
    } finally {
      await fh.close();
    }
  };

  // Two whole 1 MiB segments and a short third one.
  const expected = Buffer.from(randomBytes(2 * MIB + 300 * 1024));
  await mounted(() => writeAt(expected, 0, "w"));
  const before = await statFile();
  assert.deepEqual(before.segments.map((s) => s.plaintextLength), [MIB, MIB, 300 * 1024]);

  await t.test("an overwrite in the middle segment re-stores that segment only", async () => {
    const patch = randomBytes(8192);
    await mounted(async () => {
      await writeAt(patch, MIB + 500 * 1024);
      patch.copy(expected, MIB + 500 * 1024);
    });
    const after = await statFile();
    assert.equal(after.segments.length, 3);
    assert.deepEqual(ids(after, 0), ids(before, 0), "segment 0 kept its pieces");
    assert.deepEqual(ids(after, 2), ids(before, 2), "segment 2 kept its pieces");
    const fresh = ids(after, 1);
    assert.equal(fresh.length, 3, "the rewritten segment is stored at optimal");
    for (const id of fresh) assert.ok(!ids(before, 1).includes(id), "the rewritten segment has new piece ids (a fresh salt)");
    const onFarmers = await storedPieceIds(root, 4);
    for (const id of ids(before, 1)) assert.ok(!onFarmers.has(id), `old piece ${id} of the rewritten segment was deleted on its farmer`);
    for (const id of [...ids(after, 0), ...fresh, ...ids(after, 2)]) assert.ok(onFarmers.has(id), `live piece ${id} is on a farmer`);
    before.segments = after.segments;
  });

  await t.test("an append re-stores the last (short) segment onward only", async () => {
    const tail = randomBytes(900 * 1024);
    await mounted(() => writeAt(tail, expected.length, "a"));
    const grown = Buffer.concat([expected, tail]);
    const after = await statFile();
    assert.equal(after.record.size, grown.length);
    assert.deepEqual(after.segments.map((s) => s.plaintextLength), [MIB, MIB, MIB, 176 * 1024]);
    assert.deepEqual(ids(after, 0), ids(before, 0), "segment 0 kept its pieces");
    assert.deepEqual(ids(after, 1), ids(before, 1), "segment 1 kept its pieces");
    for (const id of ids(after, 2)) assert.ok(!ids(before, 2).includes(id), "the extended segment has new piece ids");

    // A fresh mount has an empty segment cache: every byte comes from the farmers.
    await mounted(async () => {
      assert.deepEqual(await readFile(file), grown, "the file reads back identical");
    });
    const verify = await runCli(["stat", "/big.bin", "--json", "--verify", ...common]);
    assert.equal(verify.code, 0, verify.stderr);
    assert.equal((JSON.parse(verify.stdout) as StatJson).health, "healthy");
  });
});
