/**
 * Metadata snapshots (src/metadata/snapshot.ts): a database round-trips
 * through a sealed blob record for record; the blob is deterministic for a
 * given salt; an older snapshot, a wrong sequence, a tampered header or blob,
 * a wrong key and a wrong content root are each refused with their own code.
 */
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it, type TestContext } from "node:test";
import { isDstorError } from "../../src/core/errors.js";
import { toHex } from "../../src/crypto/bytes.js";
import { deriveKeys, segmentId } from "../../src/crypto/keys.js";
import { derivePieceId } from "../../src/crypto/piece-id.js";
import { type MetadataDb, openMetadataDb } from "../../src/metadata/db.js";
import {
  decodeSnapshotLocation,
  decodeSnapshotPlaintext,
  encodeSnapshotLocation,
  encodeSnapshotPlaintext,
  exportSnapshot,
  importSnapshot,
  openSnapshot,
  SNAPSHOT_HEADER_BYTES,
  sealSnapshot,
  snapshotContentRoot,
  snapshotFileKey,
} from "../../src/metadata/snapshot.js";
import { SNAPSHOT_INODE, type StoredFile } from "../../src/metadata/types.js";

const PHRASE = "legal winner thank year wave sausage worth useful legal winner thank year wave sausage worth useful legal winner thank year wave sausage worth title";
const keys = deriveKeys(PHRASE);
const OTHER = deriveKeys("abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon art");

async function tempDb(t: TestContext): Promise<MetadataDb> {
  const root = await mkdtemp(join(tmpdir(), "dstor-snap-"));
  const db = await openMetadataDb({ dir: join(root, "renter", "meta") });
  t.after(async () => {
    await db.close();
    await rm(root, { recursive: true, force: true });
  });
  return db;
}

const hex = (n: number, bytes: number): string => n.toString(16).padStart(bytes * 2, "0");

function stored(size: number, segments: number): StoredFile {
  const farmers = ["0x000000000000000000000000000000000000000a", "0x000000000000000000000000000000000000000b"];
  return {
    size,
    content: { fileKey: hex(size, 32), fileId: hex(size, 16), segmentSize: 100, redundancy: "1/1/2/2", segmentCount: segments },
    segments: Array.from({ length: segments }, (_, index) => ({
      index,
      salt: hex(index + 1, 16),
      plaintextLength: 100,
      pieceSize: 60,
      pieceIds: farmers.map((_, n) => hex(size * 100 + index * 10 + n, 32)),
      pieceRoots: farmers.map((_, n) => hex(n + 7, 32)),
      holders: Object.fromEntries(farmers.map((f, n) => [n, f])),
    })),
  };
}

/** A database with a tree, farmers with deals, live and pending piece refs. */
async function populate(db: MetadataDb): Promise<void> {
  await db.mkdir("/docs/deep/er", { parents: true });
  await db.commitFile("/docs/a.txt", stored(10, 1));
  await db.commitFile("/docs/deep/er/big.bin", stored(20, 3));
  await db.commitFile("/gone.bin", stored(30, 1));
  await db.unlink("/gone.bin"); // leaves pending deletes
  await db.updateFarmer("0x000000000000000000000000000000000000000a", (r) => ({ ...r, dealId: "7", term: 1, stateVersion: 3, successes: 5 }));
  await db.addPieceRefs([{ farmer: "0x000000000000000000000000000000000000000b", ref: { pieceId: hex(999, 32), root: hex(1, 32), size: 60, inode: SNAPSHOT_INODE, segment: 0, number: 1, snapshot: 4 } }]);
}

async function all(db: MetadataDb): Promise<Array<[string, unknown]>> {
  const out: Array<[string, unknown]> = [];
  for await (const e of db.entries()) out.push(e);
  return out;
}

const code = (c: string) => (e: unknown) => isDstorError(e) && e.code === c;

describe("metadata snapshots", () => {
  it("round-trip: every record of one database comes back in a fresh one", async (t) => {
    const source = await tempDb(t);
    await populate(source);
    const snap = await exportSnapshot(source, 5, keys);
    assert.ok(snap.entries > 10);
    const target = await tempDb(t);
    // Fetching the snapshot scored a farmer in the fresh database: tolerated, and replaced by the snapshot's record.
    await target.updateFarmer("0x000000000000000000000000000000000000000a", (r) => ({ ...r, successes: 1 }));
    const imported = await importSnapshot(target, snap.blob, { sequence: 5, contentRoot: snap.contentRoot }, keys);
    assert.equal(imported, snap.entries);
    assert.deepEqual(await all(target), await all(source));
    assert.equal((await target.lookup("/docs/deep/er/big.bin")).size, 20);
    assert.equal((await target.segments((await target.lookup("/docs/deep/er/big.bin")).inode)).length, 3);
    assert.equal((await target.farmer("0x000000000000000000000000000000000000000a"))?.dealId, "7");
    assert.equal((await target.pendingDeletes()).length, 2);
    // A recovered database keeps working: new inodes do not collide.
    await target.commitFile("/docs/new.txt", stored(40, 1));
    const inodes = new Set((await target.readdir("/docs")).map((e) => e.record.inode));
    assert.equal(inodes.size, 3);
  });

  it("importing over a database that already has files is refused", async (t) => {
    const source = await tempDb(t);
    await populate(source);
    const snap = await exportSnapshot(source, 1, keys);
    const busy = await tempDb(t);
    await busy.mkdir("/mine");
    await assert.rejects(importSnapshot(busy, snap.blob, { sequence: 1, contentRoot: snap.contentRoot }, keys), code("FILE_EXISTS"));
    assert.deepEqual((await busy.readdir("/")).map((e) => e.name), ["mine"]);
  });

  it("is deterministic: same records and salt give the same bytes", async (t) => {
    const db = await tempDb(t);
    await populate(db);
    const entries = await all(db);
    const salt = new Uint8Array(16).fill(3);
    const a = sealSnapshot(keys.metadataKey, 9, encodeSnapshotPlaintext(entries, 9), salt);
    const b = sealSnapshot(keys.metadataKey, 9, encodeSnapshotPlaintext(entries, 9), salt);
    assert.deepEqual(a, b);
    assert.deepEqual(decodeSnapshotPlaintext(openSnapshot(keys.metadataKey, a, 9)), { sequence: 9, entries });
    // A fresh salt per snapshot: the same records never give the same ciphertext twice.
    assert.notDeepEqual(sealSnapshot(keys.metadataKey, 9, encodeSnapshotPlaintext(entries, 9)), a);
  });

  it("refuses an older snapshot, another sequence, a forged header, a wrong key and a wrong root", async (t) => {
    const db = await tempDb(t);
    await populate(db);
    const snap = await exportSnapshot(db, 3, keys);
    // The pointer has moved on to 4: snapshot 3 is a rollback.
    assert.throws(() => openSnapshot(keys.metadataKey, snap.blob, 4), code("SNAPSHOT_STALE"));
    const fresh = await tempDb(t);
    await assert.rejects(importSnapshot(fresh, snap.blob, { sequence: 4, contentRoot: snap.contentRoot }, keys), code("SNAPSHOT_STALE"));
    assert.throws(() => openSnapshot(keys.metadataKey, snap.blob, 2), code("INTEGRITY_MISMATCH"));
    // Rewriting the header's sequence does not help: it is bound into key and AAD.
    const forged = new Uint8Array(snap.blob);
    new DataView(forged.buffer).setBigUint64(9, 4n, false);
    assert.throws(() => openSnapshot(keys.metadataKey, forged, 4), code("DECRYPT_FAILED"));
    const flipped = new Uint8Array(snap.blob);
    flipped[SNAPSHOT_HEADER_BYTES + 5]! ^= 1;
    assert.throws(() => openSnapshot(keys.metadataKey, flipped, 3), code("DECRYPT_FAILED"));
    assert.throws(() => openSnapshot(OTHER.metadataKey, snap.blob, 3), code("DECRYPT_FAILED"));
    await assert.rejects(importSnapshot(fresh, snap.blob, { sequence: 3, contentRoot: new Uint8Array(32) }, keys), code("INTEGRITY_MISMATCH"));
    await assert.rejects(importSnapshot(fresh, flipped, { sequence: 3, contentRoot: snap.contentRoot }, keys), code("INTEGRITY_MISMATCH"));
    assert.deepEqual((await all(fresh)).map(([k]) => k), ["i/1", "m/next"], "nothing was imported by a refused snapshot");
    assert.deepEqual(snapshotContentRoot(keys.contentRootKey, snap.blob), snap.contentRoot);
    assert.notDeepEqual(snapshotContentRoot(OTHER.contentRootKey, snap.blob), snap.contentRoot);
  });

  it("a location round-trips with piece ids and the file key derived from the phrase", () => {
    const fileId = new Uint8Array(16).fill(9);
    const s = stored(50, 2);
    s.content.fileId = toHex(fileId);
    s.content.fileKey = toHex(snapshotFileKey(keys.metadataKey, fileId));
    for (const seg of s.segments) {
      seg.pieceIds = seg.pieceRoots.map((_, n) => toHex(derivePieceId(keys.pieceIdKey, segmentId(fileId, seg.index), Buffer.from(seg.salt, "hex"), n)));
    }
    const bytes = encodeSnapshotLocation({ stored: s, deals: { "0x000000000000000000000000000000000000000a": "7" } });
    const back = decodeSnapshotLocation(bytes, keys);
    assert.deepEqual(back.stored, s);
    assert.deepEqual(back.deals, { "0x000000000000000000000000000000000000000a": "7" });
    // Another phrase derives other piece ids and another file key: the location alone reveals neither.
    const other = decodeSnapshotLocation(bytes, OTHER).stored;
    assert.notEqual(other.content.fileKey, s.content.fileKey);
    assert.notDeepEqual(other.segments[0]!.pieceIds, s.segments[0]!.pieceIds);
    assert.throws(() => decodeSnapshotLocation(new Uint8Array([1, 2, 3]), keys), code("STORE_CORRUPT"));
  });
});
