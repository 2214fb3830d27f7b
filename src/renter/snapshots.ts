/**
 * Metadata backup in the network (ARCHITECTURE §5): after changes to the tree
 * settle, and on a clean shutdown, the whole metadata database is sealed as
 * a snapshot (metadata/snapshot.ts), stored on farmers like a file's bytes,
 * and the on-chain pointer is moved to it by compare-and-swap. `dstor
 * recover` follows the pointer back with the phrase alone.
 *
 * One snapshot N+1:
 *   1. read the pointer (sequence N); seal every record as N+1
 *   2. store the blob (Renter.storeBlob); add its piece references to
 *      metadata (inode SNAPSHOT_INODE, `snapshot` = N+1) and co-sign deal
 *      states with them, so farmers keep the pieces
 *   3. setPointer(N → N+1) and wait for the receipt
 *   4. only then retire the pieces of snapshots older than N (the previous
 *      snapshot N is kept, §5) and delete them on farmers
 * A failure before 3 leaves the pointer at N and retires N+1's pieces
 * instead — after asking the chain, since a write whose receipt was lost may
 * have moved the pointer after all (and when the chain cannot be asked, the
 * pieces are kept: garbage is cheaper than a pointer to deleted pieces). Snapshot N+1 itself lists the pieces of N and older (it was sealed
 * before its own were stored); recovery adds N+1's and retires the older ones.
 *
 * Only changes to the tree (inodes, directory entries, segments, the inode
 * counter) make the backup dirty: farmer scores and piece bookkeeping change
 * with every transfer and on every snapshot, and are caught up by the next
 * one. Dirtiness survives a crash in a marker file, so a renter that died
 * before its snapshot makes one on its next start.
 *
 * One-shot commands (`dstor put`, `rm`) run the backup with `auto: false`:
 * they only leave the marker, and the drive — or the next process that backs
 * up — stores the snapshot, so a script of a hundred puts does not make a
 * hundred snapshots.
 *
 * Concurrency: snapshots run one at a time (`#running`); a change during a
 * snapshot marks it dirty again and re-arms the timer.
 */
import { randomBytes } from "node:crypto";
import { rm, stat, writeFile } from "node:fs/promises";
import { DstorError } from "../core/errors.js";
import { type Logger, silentLogger } from "../core/logging.js";
import { FILE_ID_BYTES } from "../crypto/keys.js";
import type { MetadataDb } from "../metadata/db.js";
import {
  decodeSnapshotLocation,
  encodeSnapshotLocation,
  exportSnapshot,
  importSnapshot,
  snapshotFileKey,
  type SnapshotLocation,
} from "../metadata/snapshot.js";
import { type PieceRef, SNAPSHOT_INODE, type StoredFile } from "../metadata/types.js";
import type { Renter } from "./renter.js";

/** The renter's metadata pointer as the chain holds it. */
export interface MetadataPointer {
  sequence: number;
  /** 32 bytes. */
  contentRoot: Uint8Array;
  location: Uint8Array;
}

/** The on-chain pointer, as the backup needs it (Registry.pointer / setPointer). */
export interface PointerStore {
  read(options?: { signal?: AbortSignal | undefined }): Promise<MetadataPointer>;
  /** Compare-and-swap from `expectedSequence` to `expectedSequence + 1`; resolves once confirmed. */
  write(expectedSequence: number, location: Uint8Array, contentRoot: Uint8Array, options?: { signal?: AbortSignal | undefined }): Promise<void>;
}

/** The keys the backup needs (from the phrase). */
export interface SnapshotKeys {
  metadataKey: Uint8Array;
  contentRootKey: Uint8Array;
  pieceIdKey: Uint8Array;
}

/** Injected dependencies of a {@link MetadataBackup}. */
export interface MetadataBackupComponents {
  renter: Pick<Renter, "storeBlob" | "readStored" | "syncDeals" | "flushDeletes">;
  metadata: MetadataDb;
  pointer: PointerStore;
  logger?: Logger;
}

/** Options of a {@link MetadataBackup}. */
export interface MetadataBackupInit {
  keys: SnapshotKeys;
  /** Quiet time after the last change to the tree before a snapshot, in ms. */
  delayMs: number;
  /** File whose existence means "the tree changed since the last snapshot" (survives a crash). */
  dirtyMarker: string;
  /**
   * `false`: only keep the dirty marker up to date, never store a snapshot
   * by itself (one-shot commands such as `dstor put`: the drive, or the next
   * process that backs up, stores it). Default true.
   */
  auto?: boolean;
}

/** What one snapshot did. */
export interface SnapshotResult {
  sequence: number;
  bytes: number;
  entries: number;
  /** Pieces of older snapshots retired after the pointer moved. */
  retired: number;
}

/** True for keys of records that make up the tree (see the module note). */
function isTreeKey(key: string): boolean {
  return key.startsWith("i/") || key.startsWith("d/") || key.startsWith("s/") || key.startsWith("m/");
}

function snapshotRefs(stored: StoredFile, sequence: number): Array<{ farmer: string; ref: PieceRef }> {
  const refs: Array<{ farmer: string; ref: PieceRef }> = [];
  for (const s of stored.segments) {
    for (const [number, farmer] of Object.entries(s.holders)) {
      const n = Number(number);
      refs.push({ farmer, ref: { pieceId: s.pieceIds[n]!, root: s.pieceRoots[n]!, size: s.pieceSize, inode: SNAPSHOT_INODE, segment: s.index, number: n, snapshot: sequence } });
    }
  }
  return refs;
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

/** Keeps the renter's metadata snapshot in the network up to date; see the module note. */
export class MetadataBackup {
  readonly #c: MetadataBackupComponents;
  readonly #init: MetadataBackupInit;
  readonly #log: Logger;
  #dirty = false;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<SnapshotResult | undefined> | undefined;
  #unsubscribe: (() => void) | undefined;
  #stopped: Promise<void> | undefined;
  #lastError: unknown;
  #last: { sequence: number; at: number } | undefined;
  #pointerAtStart: number | undefined;

  constructor(components: MetadataBackupComponents, init: MetadataBackupInit) {
    this.#c = components;
    this.#init = init;
    this.#log = components.logger ?? silentLogger("dstor:renter:snapshots");
  }

  /** Whether the tree changed since the last snapshot. */
  get dirty(): boolean {
    return this.#dirty;
  }

  /** Whether a snapshot is being stored right now. */
  get storing(): boolean {
    return this.#running !== undefined;
  }

  /** The last snapshot this process stored (sequence, ms since the epoch). */
  get last(): { sequence: number; at: number } | undefined {
    return this.#last;
  }

  /** The pointer's sequence when this backup started (before it stored any), if it could be read. */
  get pointerAtStart(): number | undefined {
    return this.#pointerAtStart;
  }

  /** The error of the last failed snapshot, if the last one failed. */
  get lastError(): unknown {
    return this.#lastError;
  }

  /** Starts watching the tree; a dirty marker left by an earlier process schedules a snapshot at once. */
  async start(): Promise<void> {
    if (this.#unsubscribe !== undefined) return;
    this.#unsubscribe = this.#c.metadata.onChange((keys) => {
      if (keys.some(isTreeKey)) this.#markDirty();
    });
    if (await exists(this.#init.dirtyMarker)) {
      this.#dirty = true;
      this.#arm();
    }
    // Only for the status screen; a chain that does not answer yet is not an error here.
    this.#c.pointer.read().then(
      (p) => {
        this.#pointerAtStart = p.sequence;
      },
      () => {},
    );
  }

  get #auto(): boolean {
    return this.#init.auto !== false;
  }

  #markDirty(): void {
    if (this.#stopped !== undefined) return;
    if (!this.#dirty) {
      this.#dirty = true;
      writeFile(this.#init.dirtyMarker, "").catch((error: unknown) => this.#log.warn("could not write the snapshot marker", { error }));
    }
    this.#arm();
  }

  #arm(): void {
    if (!this.#auto) return;
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.snapshot().catch(() => {}); // logged inside; the next change or stop retries
    }, this.#init.delayMs);
    this.#timer.unref();
  }

  /**
   * Makes a snapshot now if the tree changed since the last one (or always,
   * with `force`). Waits for a snapshot already running first. Resolves
   * `undefined` when there was nothing to do.
   */
  async snapshot(options: { force?: boolean; signal?: AbortSignal | undefined } = {}): Promise<SnapshotResult | undefined> {
    while (this.#running !== undefined) await this.#running.catch(() => {});
    if (!this.#dirty && !options.force) return undefined;
    const run = this.#snapshotOnce(options.signal);
    this.#running = run;
    try {
      return await run;
    } finally {
      this.#running = undefined;
    }
  }

  async #snapshotOnce(signal: AbortSignal | undefined): Promise<SnapshotResult> {
    const { metadata, renter, pointer } = this.#c;
    const { keys } = this.#init;
    // Cleared before reading: a change from here on belongs to the next snapshot.
    this.#dirty = false;
    let sequence = 0;
    let stored: StoredFile | undefined;
    let contentRoot: Uint8Array | undefined;
    let pointerMoved = false;
    try {
      const current = await pointer.read({ signal });
      sequence = current.sequence + 1;
      const snapshot = await exportSnapshot(metadata, sequence, keys);
      const fileId = new Uint8Array(randomBytes(FILE_ID_BYTES));
      stored = await renter.storeBlob([snapshot.blob], { fileKey: snapshotFileKey(keys.metadataKey, fileId), fileId, signal });
      const refs = snapshotRefs(stored, sequence);
      await metadata.addPieceRefs(refs);
      const holders = [...new Set(refs.map((r) => r.farmer))];
      const unconfirmed = await renter.syncDeals(holders, { signal });
      if (unconfirmed > 0) this.#log.warn("snapshot pieces not yet in a co-signed deal state on every holder", { unconfirmed });
      const deals: Record<string, string> = {};
      for (const address of holders) {
        const dealId = (await metadata.farmer(address))?.dealId;
        if (dealId !== undefined) deals[address] = dealId;
      }
      const location: SnapshotLocation = { stored, deals };
      contentRoot = snapshot.contentRoot;
      await pointer.write(current.sequence, encodeSnapshotLocation(location), snapshot.contentRoot, { signal });
      pointerMoved = true;
      // Confirmed: snapshots older than the previous one are no longer needed.
      const retired = await metadata.retirePieceRefs((ref) => ref.inode === SNAPSHOT_INODE && ref.snapshot !== undefined && ref.snapshot < sequence - 1);
      if (retired > 0) await renter.flushDeletes({ signal }).catch((error: unknown) => this.#log.warn("deleting old snapshot pieces failed; will retry", { error }));
      if (!this.#dirty) await rm(this.#init.dirtyMarker, { force: true });
      this.#lastError = undefined;
      this.#last = { sequence, at: Date.now() };
      this.#log.info("metadata snapshot stored", { sequence, bytes: snapshot.blob.byteLength, entries: snapshot.entries, retired });
      return { sequence, bytes: snapshot.blob.byteLength, entries: snapshot.entries, retired };
    } catch (error) {
      this.#dirty = true;
      this.#lastError = error;
      // A write whose confirmation was lost (RPC error, abort) may still have
      // moved the pointer: ask the chain before treating the pieces as garbage.
      if (stored !== undefined && !pointerMoved && contentRoot !== undefined) {
        const root = contentRoot;
        pointerMoved = await pointer.read().then(
          (p) => p.sequence === sequence && Buffer.compare(p.contentRoot, root) === 0,
          () => true, // unknown: keep the pieces rather than risk deleting what the pointer names
        );
      }
      if (stored !== undefined && !pointerMoved) {
        // The pointer did not move to these pieces: they are garbage.
        const failed = sequence;
        await metadata
          .retirePieceRefs((ref) => ref.inode === SNAPSHOT_INODE && ref.snapshot === failed)
          .then(() => renter.flushDeletes())
          .catch(() => {});
      }
      this.#log.warn("metadata snapshot failed; will retry after the next change or at stop", { sequence, error: String(error) });
      throw error;
    }
  }

  /**
   * Stops watching; makes a final snapshot if the tree changed since the last
   * one (clean shutdown). Idempotent. A failed final snapshot is logged and
   * leaves the dirty marker for the next start.
   */
  stop(options: { signal?: AbortSignal | undefined } = {}): Promise<void> {
    this.#stopped ??= (async () => {
      clearTimeout(this.#timer);
      this.#timer = undefined;
      this.#unsubscribe?.();
      if (this.#auto) await this.snapshot(options).catch(() => {});
    })();
    return this.#stopped;
  }
}

/** What {@link recoverMetadata} restored. */
export interface RecoverResult {
  sequence: number;
  entries: number;
  bytes: number;
}

/**
 * Rebuilds the fresh metadata database `metadata` from the snapshot the
 * pointer names: fetch through `renter` (whose metadata may be empty),
 * verify against the content root, refuse an older sequence, import; then
 * record the snapshot's own pieces and retire those of older snapshots, as
 * the renter that wrote it would have after its pointer moved.
 */
export async function recoverMetadata(
  components: { renter: Pick<Renter, "readStored">; metadata: MetadataDb; pointer: PointerStore },
  keys: SnapshotKeys,
  options: { signal?: AbortSignal | undefined } = {},
): Promise<RecoverResult> {
  const pointer = await components.pointer.read(options);
  if (pointer.sequence === 0) {
    throw new DstorError("NO_SUCH_FILE", "this phrase has no metadata snapshot on this chain: nothing was ever backed up, or this is the wrong chain (--chain-rpc / --deployment)");
  }
  const location = decodeSnapshotLocation(pointer.location, keys);
  const dealIds = new Map(Object.entries(location.deals).map(([address, id]) => [address, BigInt(id)]));
  const chunks: Uint8Array[] = [];
  for await (const chunk of components.renter.readStored(location.stored, { signal: options.signal, dealIds })) chunks.push(chunk);
  const blob = new Uint8Array(Buffer.concat(chunks));
  const entries = await importSnapshot(components.metadata, blob, { sequence: pointer.sequence, contentRoot: pointer.contentRoot }, keys);
  await components.metadata.addPieceRefs(snapshotRefs(location.stored, pointer.sequence));
  await components.metadata.retirePieceRefs((ref) => ref.inode === SNAPSHOT_INODE && ref.snapshot !== undefined && ref.snapshot < pointer.sequence - 1);
  return { sequence: pointer.sequence, entries, bytes: blob.byteLength };
}
