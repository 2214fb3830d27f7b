/**
 * The metadata backup against real farmers and a real chain (the renter runs
 * in this process; no drive): a change is snapshotted once the tree has been
 * quiet for the delay; each snapshot moves the on-chain pointer by one; the
 * pieces of snapshot N-1 are deleted from the farmers only once N+1's pointer
 * is confirmed, N's are kept; recovery into a second home gives the same
 * tree; and a pointer moved by another device in between makes the snapshot
 * fail cleanly — pointer untouched by it, its own pieces deleted, still dirty.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import { ZeroHash } from "ethers";
import { devChainPaths } from "../../src/chain/devchain.js";
import { sleep } from "../../src/core/abort.js";
import { isDstorError } from "../../src/core/errors.js";
import { deriveKeys } from "../../src/crypto/keys.js";
import type { MetadataDb } from "../../src/metadata/db.js";
import { SNAPSHOT_INODE } from "../../src/metadata/types.js";
import { initHome } from "../../src/node/home.js";
import { openRenterNode, type RenterNode } from "../../src/node/renter-node.js";
import { connectContracts } from "../../src/chain/contracts.js";
import { walletSigner } from "../../src/chain/signer.js";
import { MetadataBackup, type PointerStore, recoverMetadata } from "../../src/renter/snapshots.js";
import { startFixture } from "../chain/fixture.js";
import { type LocalFarmer, removeRoot, runCli, startLocalFarmer, tempRoot } from "../renter/network-fixture.js";

const MIB = 1024 * 1024;

/** Snapshot piece references in metadata, by snapshot sequence. */
async function snapshotPieces(db: MetadataDb, farmers: readonly LocalFarmer[]): Promise<Map<number, string[]>> {
  const out = new Map<number, string[]>();
  for (const f of farmers) {
    for (const ref of await db.piecesOn(f.wallet)) {
      if (ref.inode !== SNAPSHOT_INODE) continue;
      out.set(ref.snapshot!, [...(out.get(ref.snapshot!) ?? []), ref.pieceId]);
    }
  }
  return out;
}

/** Whether any farmer still stores piece `pieceId` on disk. */
async function onSomeFarmer(farmers: readonly LocalFarmer[], pieceId: string): Promise<boolean> {
  for (const f of farmers) {
    const names = await readdir(join(f.storage, "pieces", pieceId.slice(0, 2))).catch(() => [] as string[]);
    if (names.some((n) => n.endsWith(pieceId))) return true;
  }
  return false;
}

/** The tree (inodes, entries, segments) of a database, for comparison. */
async function tree(db: MetadataDb): Promise<Array<[string, unknown]>> {
  const out: Array<[string, unknown]> = [];
  for await (const [key, value] of db.entries()) if (/^[ids]\/|^m\//.test(key)) out.push([key, value]);
  return out;
}

test("metadata backup: debounce, pointer sequence, old pieces deleted after the new pointer, recovery, CAS conflict", { timeout: 900_000 }, async (t) => {
  const f = await startFixture(t);
  const root = await tempRoot("dstor-snapshots-");
  const farmers: LocalFarmer[] = [];
  const cleanups: Array<() => Promise<void>> = [];
  const nodes: RenterNode[] = [];
  t.after(async () => {
    for (const n of nodes) await n.stop();
    await Promise.all(cleanups.map((stop) => stop()));
    await removeRoot(root);
  });
  for (let i = 1; i <= 8; i++) farmers.push(await startLocalFarmer(cleanups, root, i, f.chain.rpcUrl, f.home));
  const home = join(root, "renter");
  assert.equal((await runCli(["init", "--home", home, "--json"])).code, 0);
  const phrase = (await readFile(join(home, "phrase"), "utf8")).trim();
  const chain = { chainRpc: f.chain.rpcUrl, deployment: devChainPaths(f.home).deployment };
  const node = await openRenterNode({ home, ...chain, snapshots: "auto", snapshotDelayMs: 1_000, segmentSize: MIB });
  nodes.push(node);
  const backup = node.backup!;
  const pointer = node.pointer!;

  // A change is snapshotted by itself once the tree has been quiet for the delay.
  // (Not asserting `dirty` right after the put: the put's own deal sync can
  // outlast the quiet time, so the snapshot may already be under way.)
  await node.renter.put("/a.bin", [randomBytes(MIB + 3)]);
  for (let i = 0; i < 600 && backup.last === undefined; i++) await sleep(100);
  assert.equal(backup.last?.sequence, 1, "snapshot 1 stored after the quiet time");
  assert.equal((await pointer.read()).sequence, 1);
  assert.equal(backup.dirty, false);
  assert.equal(await backup.snapshot(), undefined, "nothing changed: no snapshot");

  // Snapshots 2 and 3: after 3's pointer is confirmed, 1's pieces are gone, 2's kept.
  await node.renter.put("/b.bin", [randomBytes(5000)]);
  const second = backup.snapshot();
  assert.equal(backup.storing, true, "a snapshot in flight shows as storing");
  assert.equal((await second)?.sequence, 2);
  assert.equal(backup.storing, false);
  const before3 = await snapshotPieces(node.metadata, farmers);
  assert.ok((before3.get(1)?.length ?? 0) >= 8 && (before3.get(2)?.length ?? 0) >= 8, "snapshots 1 and 2 are both held");
  await node.metadata.mkdir("/dir");
  const third = await backup.snapshot();
  assert.equal(third?.sequence, 3);
  assert.ok((third?.retired ?? 0) >= 8);
  const after3 = await snapshotPieces(node.metadata, farmers);
  assert.deepEqual([...after3.keys()].sort(), [2, 3]);
  assert.equal((await node.metadata.pendingDeletes()).length, 0);
  for (const id of before3.get(1)!) assert.equal(await onSomeFarmer(farmers, id), false, `piece ${id} of snapshot 1 was deleted`);
  for (const id of after3.get(2)!) assert.equal(await onSomeFarmer(farmers, id), true, `piece ${id} of snapshot 2 is kept`);

  // Recovery into a second home gives the same tree, and the snapshot pieces it knows of.
  const home2 = join(root, "renter-2");
  await initHome(home2, phrase);
  const node2 = await openRenterNode({ home: home2, ...chain, snapshots: "off" });
  nodes.push(node2);
  const recovered = await recoverMetadata({ renter: node2.renter, metadata: node2.metadata, pointer: node2.pointer! }, node2.snapshotKeys);
  assert.equal(recovered.sequence, 3);
  assert.deepEqual(await tree(node2.metadata), await tree(node.metadata));
  assert.deepEqual([...(await snapshotPieces(node2.metadata, farmers)).keys()].sort(), [2, 3]);
  const chunks: Uint8Array[] = [];
  for await (const c of node2.renter.read("/b.bin")) chunks.push(c);
  assert.equal(Buffer.concat(chunks).byteLength, 5000);
  await node2.stop();

  // Another device moves the pointer while this one snapshots: the CAS fails,
  // nothing of this snapshot is left behind, the backup stays dirty.
  const keys = deriveKeys(phrase);
  const { registry } = connectContracts(f.deployment, walletSigner(keys.wallet.privateKey, f.provider));
  const racing: PointerStore = {
    read: (options) => pointer.read(options),
    async write(expected, location, contentRoot, options) {
      const current = await registry.pointer(keys.wallet.address);
      await (await registry.setPointer(current.sequence, ZeroHash, current.location, current.contentRoot)).wait();
      return pointer.write(expected, location, contentRoot, options);
    },
  };
  const contender = new MetadataBackup(
    { renter: node.renter, metadata: node.metadata, pointer: racing },
    { keys: node.snapshotKeys, delayMs: 60_000, dirtyMarker: join(root, "contender-dirty"), auto: false },
  );
  await assert.rejects(contender.snapshot({ force: true }), (e: unknown) => isDstorError(e, "SNAPSHOT_STALE"));
  assert.equal(contender.dirty, true);
  assert.equal((await pointer.read()).sequence, 4, "only the other device's move happened");
  assert.deepEqual([...(await snapshotPieces(node.metadata, farmers)).keys()].sort(), [2, 3], "the failed snapshot's pieces were retired");
  assert.equal((await node.metadata.pendingDeletes()).length, 0, "and deleted on the farmers");
  await contender.stop();
});
