/**
 * The drive: POSIX file semantics on top of the renter's metadata tree and
 * its put/readRange, independent of FUSE (the mount adapter in `mount.ts`
 * only translates callbacks and errno). Every method throws coded
 * {@link DstorError}s.
 *
 * Files exist in one of two states:
 *   clean  — only in metadata; reads go through the {@link SegmentCache}
 *            (decrypted segment-sized chunks fetched with `readRange`).
 *   staged — an {@link OpenItem} in `#items`, keyed by drive path, backed by
 *            a staging file (the whole new content) and a journal record.
 *            Reads, writes and truncates hit the staging file; getattr and
 *            readdir see the staged size and attributes.
 * A file becomes staged when it is created, opened for writing or
 * truncated; it is uploaded on fsync — which waits — and after its last
 * release — in the background (write-back). When an upload finishes and
 * nothing changed meanwhile, a file nobody holds open goes back to clean and
 * its staging item is deleted.
 *
 * What an upload stores: a staged file that is a change of a committed
 * version (`OpenItem.base`: the file it was staged from, or what its last
 * upload committed) goes through `rewrite`, which re-stores only the
 * segments the byte ranges written since then (`StagingItem.changes`) or a
 * truncation touched — an append re-stores the last segment onward, a patch
 * in the middle one segment. Everything else (a new file, one truncated to
 * zero, one the renter cannot rewrite) is a whole `put`. Either way one
 * metadata batch commits it.
 *
 * Symlinks are metadata records (`symlink`, `readlink`); the kernel resolves
 * them above the FUSE edge, so every path the drive sees is already resolved
 * and getattr reports links themselves (lstat semantics). Hard links are
 * refused with EPERM — what Linux answers for filesystems without them (vfat,
 * for instance), and what git, rsync, tar and cp treat as "copy or rename
 * instead"; an inode with two names would need link counts in metadata.
 * Ownership is not stored: every node reports the mounting user; chown to
 * that user is a no-op, to anyone else EPERM.
 *
 * Lock order: a namespace change (rename, unlink) first holds the upload
 * chains of the staged items it touches (see `#hold`), then calls metadata
 * (whose own mutex serialises it). Uploads of one item run one at a time on
 * that item's chain; nothing holds a lock across another item's chain.
 */
import type { SegmentCache } from "../cache/segment-cache.js";
import type { StagingArea, StagingItem } from "../cache/staging.js";
import { raceSignal } from "../core/abort.js";
import { readFileChunks } from "../core/file-chunks.js";
import { DstorError, isDstorError } from "../core/errors.js";
import { type Logger, silentLogger } from "../core/logging.js";
import type { DirEntry, InodeRecord, InodeType } from "../metadata/types.js";

/** The metadata operations the drive needs (satisfied by `MetadataDb`). */
export interface DriveMetadata {
  lookup(path: string): Promise<InodeRecord>;
  readdir(path: string): Promise<DirEntry[]>;
  mkdir(path: string, options?: { parents?: boolean; mode?: number }): Promise<InodeRecord>;
  rmdir(path: string): Promise<void>;
  unlink(path: string): Promise<unknown>;
  rename(from: string, to: string): Promise<unknown>;
  symlink(path: string, target: string): Promise<InodeRecord>;
  readlink(path: string): Promise<string>;
  setattr(path: string, attrs: { mode?: number | undefined; mtimeMs?: number | undefined }): Promise<InodeRecord>;
  setxattr(path: string, name: string, value: Uint8Array, options?: { create?: boolean; replace?: boolean }): Promise<InodeRecord>;
  removexattr(path: string, name: string): Promise<InodeRecord>;
}

/** A change of a committed file, for {@link DriveData.rewrite} (the renter's `RewriteRequest`). */
export interface StagedChange {
  /** Inode of the committed version the staged file started from. */
  baseInode: number;
  size: number;
  /** Byte ranges [start, end) written to since then. */
  written: ReadonlyArray<readonly [number, number]>;
  /** Smallest size the file had since then. */
  unchangedBelow: number;
  /** Reads exactly `length` bytes of the staged content at `offset`. */
  read(offset: number, length: number): Promise<Uint8Array>;
}

/** Options of {@link DriveData.put} and {@link DriveData.rewrite}. */
export interface DriveUploadOptions {
  mode?: number;
  mtimeMs?: number;
  signal?: AbortSignal | undefined;
  /** `background`: resolve once committed; co-sign the deal states later, coalesced (the renter's `PutOptions.dealSync`). */
  dealSync?: "wait" | "background" | undefined;
}

/** The data operations the drive needs (satisfied by `Renter`). */
export interface DriveData {
  /** Stores a whole file; resolves with the committed inode. */
  put(path: string, source: AsyncIterable<Uint8Array>, options: DriveUploadOptions): Promise<{ inode?: number | undefined }>;
  /**
   * Stores a change by re-uploading only the segments it touched; resolves
   * `undefined` (nothing stored) when a whole {@link put} is needed instead.
   * Optional: without it every upload is a whole put.
   */
  rewrite?(path: string, change: StagedChange, options: DriveUploadOptions): Promise<{ inode?: number | undefined } | undefined>;
  /** With `transient`, a chunk is valid only until the next is asked for (see Renter.read). */
  read(path: string, options?: { signal?: AbortSignal | undefined; transient?: boolean | undefined }): AsyncIterable<Uint8Array>;
  readRange(path: string, offset: number, length: number, options?: { signal?: AbortSignal | undefined }): Promise<Uint8Array>;
  flushDeletes(options?: { signal?: AbortSignal | undefined }): Promise<unknown>;
}

/** What getattr reports. */
export interface DriveAttr {
  type: InodeType;
  /** Permission bits only (no file type bits). */
  mode: number;
  size: number;
  mtimeMs: number;
  inode: number;
}

/** Options of a {@link Drive}. */
export interface DriveInit {
  metadata: DriveMetadata;
  data: DriveData;
  staging: StagingArea;
  cache: SegmentCache;
  readOnly?: boolean;
  /**
   * What statfs reports: bytes the network can still take from this renter
   * (src/renter/capacity.ts). Asked at most every {@link STATFS_REFRESH_MS};
   * without it statfs reports `capacityBytes`.
   */
  capacity?: (options: { signal?: AbortSignal | undefined }) => Promise<{ freeBytes: number }>;
  /** Fixed statfs capacity in bytes when there is no `capacity` (offline, tests). */
  capacityBytes?: number;
  uid?: number;
  gid?: number;
  logger?: Logger;
}

/** A staged file (see the module note). */
interface OpenItem {
  staging: StagingItem;
  /** Handles open on it. */
  opens: number;
  /** Bumped by every change of content or attributes. */
  generation: number;
  /** Generation last committed to metadata (-1: never). */
  uploaded: number;
  /** Removed from the namespace while open: never uploaded, discarded on last release. */
  unlinked: boolean;
  /** Tail of this item's upload chain. */
  chain: Promise<void>;
  /**
   * Inode of the committed version the staged content is a change of (what
   * `staging.changes` is relative to); undefined while there is none, or
   * after a truncation to zero (a whole upload then).
   */
  base: number | undefined;
  /** Wait before the next retry of a failed background upload, ms (0: none failed since the last success). */
  retryMs: number;
}

interface Handle {
  path: string;
  item?: OpenItem | undefined;
  /** A clean file opened for reading: its record at open time. */
  clean?: InodeRecord | undefined;
}

/**
 * Background (write-back) uploads running at once. Each upload also signs
 * orders and deal states on this event loop, so more at once only make the
 * FUSE operations queue behind them (tar x of a source tree waited up to
 * 0.5 s per create). fsync and unmount do not wait for a slot.
 */
export const BACKGROUND_UPLOADS_MAX = 2;

/** First and longest wait before a failed background upload is tried again, ms (doubling in between). */
export const UPLOAD_RETRY_MIN_MS = 5_000;
export const UPLOAD_RETRY_MAX_MS = 5 * 60_000;

/** Extended attributes are kept in this namespace only (the others are the kernel's, ACLs' and security modules'). */
export const XATTR_STORED_PREFIX = "user.";
/** setxattr flags. */
const XATTR_CREATE = 1;
const XATTR_REPLACE = 2;
const O_ACCMODE = 3;
const O_TRUNC = 0o1000;
const STATFS_DEFAULT_CAPACITY_BYTES = 1024 ** 5;
/**
 * How long a statfs figure from the network is reused, in ms: `df` and file
 * managers call statfs often, and asking means reading every farmer's
 * registry entry. A stale figure is answered at once while a fresh one is fetched.
 */
export const STATFS_REFRESH_MS = 60_000;
/** statfs block size: fuse-native passes block counts as 32-bit numbers, so blocks must be large for PiB figures. */
const STATFS_BLOCK_BYTES = 1024 * 1024;
const UINT32_MAX = 0xffffffff;

function parentOf(path: string): string {
  const i = path.lastIndexOf("/");
  return i <= 0 ? "/" : path.slice(0, i);
}

function norm(path: string): string {
  const names = path.split("/").filter((n) => n.length > 0);
  return `/${names.join("/")}`;
}

const isUnder = (path: string, dir: string): boolean => path === dir || path.startsWith(dir === "/" ? "/" : `${dir}/`);

/** The drive (see the module note). */
export class Drive {
  readonly #meta: DriveMetadata;
  readonly #data: DriveData;
  readonly #staging: StagingArea;
  readonly #cache: SegmentCache;
  readonly #log: Logger;
  readonly #readOnly: boolean;
  readonly #capacityBytes: number;
  readonly #capacitySource: DriveInit["capacity"];
  #capacityKnown: { freeBytes: number; at: number } | undefined;
  #capacityFetch: Promise<{ freeBytes: number }> | undefined;
  readonly uid: number;
  readonly gid: number;
  readonly #items = new Map<string, OpenItem>();
  readonly #handles = new Map<number, Handle>();
  #nextFd = 1;
  #backgroundRunning = 0;
  readonly #backgroundQueue: Array<() => void> = [];
  /** Pending retries of failed background uploads (cleared by drain). */
  readonly #retries = new Set<NodeJS.Timeout>();
  #draining = false;

  constructor(init: DriveInit) {
    this.#meta = init.metadata;
    this.#data = init.data;
    this.#staging = init.staging;
    this.#cache = init.cache;
    this.#log = init.logger ?? silentLogger("dstor:fuse");
    this.#readOnly = init.readOnly ?? false;
    this.#capacityBytes = init.capacityBytes ?? STATFS_DEFAULT_CAPACITY_BYTES;
    this.#capacitySource = init.capacity;
    this.uid = init.uid ?? process.getuid?.() ?? 0;
    this.gid = init.gid ?? process.getgid?.() ?? 0;
  }

  /** Uploads journal leftovers of an earlier process; returns how many were replayed. */
  async start(options: { signal?: AbortSignal | undefined } = {}): Promise<number> {
    let replayed = 0;
    for (const left of await this.#staging.leftovers()) {
      const { path, mode, mtimeMs } = left.record;
      this.#log.info("replaying a staged write left by an earlier process", { path });
      const parent = parentOf(path);
      // The parent may have been renamed or removed after the write was acknowledged: recreate it rather than lose data.
      if (parent !== "/") await this.#meta.mkdir(parent, { parents: true });
      await this.#data.put(path, readFileChunks(left.dataPath), { mode, mtimeMs, signal: options.signal });
      await this.#staging.forget(left);
      replayed++;
    }
    return replayed;
  }

  #writable(): void {
    if (this.#readOnly) throw new DstorError("READ_ONLY", "the drive is mounted read-only");
  }

  #handle(fd: number): Handle {
    const h = this.#handles.get(fd);
    if (h === undefined) throw new DstorError("INVALID_ARGUMENT", `no open file with handle ${fd}`);
    return h;
  }

  #addHandle(handle: Handle): number {
    const fd = this.#nextFd++;
    this.#handles.set(fd, handle);
    if (handle.item !== undefined) handle.item.opens++;
    return fd;
  }

  // ---------------------------------------------------------------- namespace

  /** Attributes of `path` (staged state wins over metadata). */
  async getattr(path: string): Promise<DriveAttr> {
    const p = norm(path);
    const item = this.#items.get(p);
    if (item !== undefined) {
      const r = item.staging.record;
      return { type: "file", mode: r.mode, size: r.size, mtimeMs: r.mtimeMs, inode: 0 };
    }
    const record = await this.#meta.lookup(p);
    return { type: record.type, mode: record.mode, size: record.size, mtimeMs: record.mtimeMs, inode: record.inode };
  }

  /** Names in directory `path`, staged files included. */
  async readdir(path: string): Promise<string[]> {
    const p = norm(path);
    // Staged names first: an upload that commits while metadata is read takes its item out of staging only after the commit, so every file is in one list or the other.
    const staged: string[] = [];
    for (const itemPath of this.#items.keys()) if (parentOf(itemPath) === p) staged.push(itemPath.slice(itemPath.lastIndexOf("/") + 1));
    const names = new Set((await this.#meta.readdir(p)).map((e) => e.name));
    for (const name of staged) names.add(name);
    return [...names].sort();
  }

  /** Creates a directory. */
  async mkdir(path: string, mode: number): Promise<void> {
    this.#writable();
    const p = norm(path);
    if (this.#items.has(p)) throw new DstorError("FILE_EXISTS", `${p} already exists`);
    await this.#meta.mkdir(p, { mode: mode & 0o7777 });
  }

  /** Removes an empty directory (staged files count as entries). */
  async rmdir(path: string): Promise<void> {
    this.#writable();
    const p = norm(path);
    for (const itemPath of this.#items.keys()) {
      if (isUnder(itemPath, p) && itemPath !== p) throw new DstorError("DIRECTORY_NOT_EMPTY", `${p} is not empty`);
    }
    if (this.#items.has(p)) throw new DstorError("NOT_A_DIRECTORY", `${p} is not a directory`);
    await this.#meta.rmdir(p);
  }

  /** Removes a file; open handles keep working until released. */
  async unlink(path: string): Promise<void> {
    this.#writable();
    const p = norm(path);
    const held = this.#items.get(p);
    const release = held === undefined ? undefined : await this.#hold([held]);
    try {
      // Read only now: an upload that just ended may have taken the item out of staging.
      const item = this.#items.get(p);
      if (item === undefined) {
        await this.#unlinkMeta(p);
        return;
      }
      this.#items.delete(p);
      item.unlinked = true;
      item.generation++;
      if (item.uploaded >= 0) await this.#unlinkMeta(p);
      if (item.opens === 0) await this.#staging.discard(item.staging);
    } finally {
      release?.();
    }
  }

  async #unlinkMeta(p: string): Promise<void> {
    const record = await this.#meta.lookup(p);
    if (record.type === "dir") throw new DstorError("IS_A_DIRECTORY", `${p} is a directory`);
    await this.#meta.unlink(p);
    this.#cache.forget(record.inode);
    this.#backgroundDeletes();
  }

  #backgroundDeletes(): void {
    this.#data.flushDeletes().catch((error: unknown) => this.#log.warn("deleting old pieces failed; will retry later", { error: String(error) }));
  }

  /** Renames atomically, replacing a file or an empty directory at `to`. */
  async rename(from: string, to: string): Promise<void> {
    this.#writable();
    const src = norm(from);
    const dst = norm(to);
    if (src === dst) return;
    if (isUnder(dst, src)) throw new DstorError("INVALID_ARGUMENT", `cannot move ${src} into itself`);
    const release = await this.#hold([...this.#items.entries()].filter(([p]) => isUnder(p, src) || p === dst).map(([, i]) => i));
    try {
      await this.#renameHeld(src, dst);
    } finally {
      release();
    }
  }

  /** rename() while no upload of the items it touches can start or be running. */
  async #renameHeld(src: string, dst: string): Promise<void> {
    // Read only now: an upload that just ended may have taken items out of staging.
    const moving = [...this.#items.entries()].filter(([p]) => isUnder(p, src));
    const target = this.#items.get(dst);
    // Decide what metadata holds: the source may exist only in staging.
    let srcInMeta = true;
    let srcRecord: InodeRecord | undefined;
    try {
      srcRecord = await this.#meta.lookup(src);
    } catch (error) {
      if (!isDstorError(error, "NO_SUCH_FILE")) throw error;
      srcInMeta = false;
      if (!this.#items.has(src)) throw error;
    }
    let dstRecord: InodeRecord | undefined;
    try {
      dstRecord = await this.#meta.lookup(dst);
    } catch (error) {
      if (!isDstorError(error, "NO_SUCH_FILE")) throw error;
      // The target's parent must exist and be a directory.
      const parent = await this.#meta.lookup(parentOf(dst));
      if (parent.type !== "dir") throw new DstorError("NOT_A_DIRECTORY", `${parentOf(dst)} is not a directory`);
    }
    // Staged files are entries metadata does not know yet: they make a target directory non-empty and a staged target a file.
    if (dstRecord?.type === "dir" && [...this.#items.keys()].some((p) => isUnder(p, dst) && p !== dst)) throw new DstorError("DIRECTORY_NOT_EMPTY", `${dst} is not empty`);
    if (target !== undefined && srcRecord?.type === "dir") throw new DstorError("NOT_A_DIRECTORY", `${dst} is not a directory`);
    if (srcInMeta) {
      await this.#meta.rename(src, dst);
      if (dstRecord?.type === "file") this.#backgroundDeletes();
    } else if (dstRecord !== undefined) {
      // A staged-only file replaces a committed one: drop the committed one now; the staged data is uploaded under dst.
      if (dstRecord.type === "dir") throw new DstorError("IS_A_DIRECTORY", `${dst} is a directory`);
      await this.#meta.unlink(dst);
      this.#backgroundDeletes();
    }
    if (target !== undefined) {
      this.#items.delete(dst);
      target.unlinked = true;
      target.generation++;
      if (target.opens === 0) await this.#staging.discard(target.staging);
    }
    for (const [p, item] of moving) {
      const moved = dst + p.slice(src.length);
      this.#items.delete(p);
      this.#items.set(moved, item);
      item.staging.record.path = moved;
      await this.#staging.writeRecord(item.staging, { durable: false });
    }
    for (const h of this.#handles.values()) if (isUnder(h.path, src)) h.path = dst + h.path.slice(src.length);
  }

  /**
   * Waits until no upload of `items` runs and keeps new ones from starting
   * until the returned release is called: the step of the lock order that
   * makes a namespace change atomic with respect to uploads (an upload
   * captures its path when it starts).
   */
  async #hold(items: OpenItem[]): Promise<() => void> {
    let release!: () => void;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const before = items.map((item) => {
      const previous = item.chain;
      item.chain = previous.then(() => gate);
      return previous;
    });
    await Promise.all(before);
    return release;
  }

  /** Creates a symbolic link at `path` pointing at `target` (stored verbatim). */
  async symlink(target: string, path: string): Promise<void> {
    this.#writable();
    const p = norm(path);
    if (this.#items.has(p)) throw new DstorError("FILE_EXISTS", `${p} already exists`);
    await this.#meta.symlink(p, target);
  }

  /** The target of the symlink at `path` (EINVAL when it is not one). */
  readlink(path: string): Promise<string> {
    return this.#meta.readlink(norm(path));
  }

  /**
   * Sets attributes: in metadata for a clean file (one batch, no upload); in
   * the journal record of a staged one, whose upload carries them (or, if its
   * content is already committed, in metadata too).
   *
   * It does not wait for an upload in progress: tar x, cp -a and rsync set
   * modes and times right after close, while the background upload of that
   * file runs, and waiting made every extracted file cost a whole upload.
   * A running upload commits the record as it is when its put ends (#upload
   * compares it with what it started with); content already committed gets
   * the change in metadata here. Both are decided in the same synchronous
   * step as the record change, and the journal write is queued in it too, so
   * a discard that starts later waits for it.
   */
  async #setattr(p: string, attrs: { mode?: number; mtimeMs?: number }): Promise<void> {
    const item = this.#items.get(p);
    if (item === undefined) {
      await this.#meta.setattr(p, attrs);
      return;
    }
    Object.assign(item.staging.record, attrs);
    const committed = item.generation === item.uploaded;
    const journal = this.#staging.writeRecord(item.staging, { durable: false });
    if (committed) await this.#meta.setattr(p, attrs);
    await journal;
  }

  /** Changes permission bits. */
  async chmod(path: string, mode: number): Promise<void> {
    this.#writable();
    await this.#setattr(norm(path), { mode: mode & 0o7777 });
  }

  /** Sets the modification time (atime is not kept). */
  async utimens(path: string, mtimeMs: number): Promise<void> {
    this.#writable();
    await this.#setattr(norm(path), { mtimeMs });
  }

  /** Ownership is not stored: a no-op for the mounting user (or -1), EPERM otherwise. */
  async chown(path: string, uid: number, gid: number): Promise<void> {
    await this.getattr(path);
    const keeps = (want: number, have: number): boolean => want === -1 || want === 0xffffffff || want === have;
    if (!keeps(uid, this.uid) || !keeps(gid, this.gid)) throw new DstorError("NOT_PERMITTED", "the drive does not store file ownership");
  }

  // ------------------------------------------------------------ xattrs

  /**
   * Extended attributes live in the node's metadata record (`user.` names
   * only), so they need the file committed: a staged file metadata does not
   * know yet is uploaded first (as fsync would). A rewrite of the content
   * keeps them (MetadataDb.commitFile carries them over).
   */
  async #committed(p: string): Promise<void> {
    const item = this.#items.get(p);
    if (item === undefined || item.uploaded >= 0) return;
    try {
      await this.#meta.lookup(p);
      return;
    } catch (error) {
      if (!isDstorError(error, "NO_SUCH_FILE")) throw error;
    }
    await this.#upload(item);
  }

  /** The record attributes are read from, or undefined for a staged file metadata does not know yet (it has none). */
  async #xattrRecord(p: string): Promise<InodeRecord | undefined> {
    try {
      return await this.#meta.lookup(p);
    } catch (error) {
      if (isDstorError(error, "NO_SUCH_FILE") && this.#items.has(p)) return undefined;
      throw error;
    }
  }

  /** The value of extended attribute `name` (`NO_SUCH_ATTRIBUTE` when unset; names outside `user.` are never set). */
  async getxattr(path: string, name: string): Promise<Buffer> {
    const p = norm(path);
    const value = (await this.#xattrRecord(p))?.xattrs?.[name];
    if (value === undefined || !name.startsWith(XATTR_STORED_PREFIX)) throw new DstorError("NO_SUCH_ATTRIBUTE", `${p} has no attribute ${name}`);
    return Buffer.from(value, "base64");
  }

  /** Names of the extended attributes set on `path`. */
  async listxattr(path: string): Promise<string[]> {
    return Object.keys((await this.#xattrRecord(norm(path)))?.xattrs ?? {});
  }

  /** Sets extended attribute `name` (`user.` only: others are `NOT_SUPPORTED`); `flags` as setxattr(2). */
  async setxattr(path: string, name: string, value: Uint8Array, flags: number): Promise<void> {
    this.#writable();
    const p = norm(path);
    if (!name.startsWith(XATTR_STORED_PREFIX)) throw new DstorError("NOT_SUPPORTED", `the drive stores only ${XATTR_STORED_PREFIX}* attributes`);
    await this.#committed(p);
    await this.#meta.setxattr(p, name, value, { create: (flags & XATTR_CREATE) !== 0, replace: (flags & XATTR_REPLACE) !== 0 });
  }

  /** Removes extended attribute `name`. */
  async removexattr(path: string, name: string): Promise<void> {
    this.#writable();
    const p = norm(path);
    if (!name.startsWith(XATTR_STORED_PREFIX)) throw new DstorError("NOT_SUPPORTED", `the drive stores only ${XATTR_STORED_PREFIX}* attributes`);
    if ((await this.#xattrRecord(p)) === undefined) throw new DstorError("NO_SUCH_ATTRIBUTE", `${p} has no attribute ${name}`);
    await this.#meta.removexattr(p, name);
  }

  /** Free bytes for statfs: the network's figure (cached, see {@link STATFS_REFRESH_MS}) or the fixed one. */
  async #freeBytes(options: { signal?: AbortSignal | undefined }): Promise<number> {
    const source = this.#capacitySource;
    if (source === undefined) return this.#capacityBytes;
    const known = this.#capacityKnown;
    if (known !== undefined && Date.now() - known.at < STATFS_REFRESH_MS) return known.freeBytes;
    this.#capacityFetch ??= source({})
      .then((fresh) => {
        this.#capacityKnown = { freeBytes: fresh.freeBytes, at: Date.now() };
        return fresh;
      })
      .finally(() => {
        this.#capacityFetch = undefined;
      });
    const fetching = this.#capacityFetch;
    // A stale figure now beats a wait on the chain; the first one has to be fetched.
    if (known !== undefined) {
      fetching.catch((error: unknown) => this.#log.warn("could not refresh the network's capacity for statfs", { error: String(error) }));
      return known.freeBytes;
    }
    return (await raceSignal(fetching, options.signal)).freeBytes;
  }

  /** Capacity figures for statfs, in {@link STATFS_BLOCK_BYTES} blocks: total = free = what the network can still take. */
  async statfs(options: { signal?: AbortSignal | undefined } = {}): Promise<{ bsize: number; frsize: number; blocks: number; bfree: number; bavail: number; files: number; ffree: number; favail: number; namemax: number }> {
    const blocks = Math.min(UINT32_MAX, Math.floor((await this.#freeBytes(options)) / STATFS_BLOCK_BYTES));
    return { bsize: STATFS_BLOCK_BYTES, frsize: STATFS_BLOCK_BYTES, blocks, bfree: blocks, bavail: blocks, files: 1e9, ffree: 1e9, favail: 1e9, namemax: 255 };
  }

  // --------------------------------------------------------------------- data

  /** Stages an existing clean file (or an empty one with `truncate`). */
  async #stage(p: string, truncate: boolean): Promise<OpenItem> {
    const existing = this.#items.get(p);
    if (existing !== undefined) return existing;
    const record = await this.#meta.lookup(p);
    if (record.type === "dir") throw new DstorError("IS_A_DIRECTORY", `${p} is a directory`);
    if (record.type !== "file") throw new DstorError("INVALID_ARGUMENT", `${p} is not a regular file`);
    const staging = await this.#staging.create({ path: p, size: truncate ? 0 : record.size, mode: record.mode, mtimeMs: truncate ? Date.now() : record.mtimeMs }, { durable: false });
    try {
      if (!truncate && record.size > 0) {
        let at = 0;
        // Each chunk is written before the next is asked for.
        for await (const chunk of this.#data.read(p, { transient: true })) {
          await staging.handle.write(chunk, 0, chunk.byteLength, at);
          at += chunk.byteLength;
        }
        await this.#staging.writeRecord(staging, { durable: false });
      }
    } catch (error) {
      await this.#staging.discard(staging);
      throw error;
    }
    // Another open may have staged the same file while this one was copying: keep the first.
    const raced = this.#items.get(p);
    if (raced !== undefined) {
      await this.#staging.discard(staging);
      return raced;
    }
    const item: OpenItem = { staging, opens: 0, generation: truncate ? 1 : 0, uploaded: truncate ? -1 : 0, unlinked: false, chain: Promise.resolve(), base: truncate ? undefined : record.inode, retryMs: 0 };
    this.#items.set(p, item);
    return item;
  }

  /** Creates (or truncates) a file and opens it. */
  async create(path: string, mode: number): Promise<number> {
    this.#writable();
    const p = norm(path);
    if (this.#items.has(p)) {
      const item = await this.#stage(p, true);
      await this.#truncateItem(item, 0);
      return this.#addHandle({ path: p, item });
    }
    let exists = false;
    try {
      const record = await this.#meta.lookup(p);
      if (record.type === "dir") throw new DstorError("IS_A_DIRECTORY", `${p} is a directory`);
      exists = true;
    } catch (error) {
      if (!isDstorError(error, "NO_SUCH_FILE")) throw error;
      const parent = await this.#meta.lookup(parentOf(p));
      if (parent.type !== "dir") throw new DstorError("NOT_A_DIRECTORY", `${parentOf(p)} is not a directory`);
    }
    if (exists) return this.#addHandle({ path: p, item: await this.#stage(p, true) });
    const staging = await this.#staging.create({ path: p, size: 0, mode: mode & 0o7777, mtimeMs: Date.now() }, { durable: false });
    const item: OpenItem = { staging, opens: 0, generation: 1, uploaded: -1, unlinked: false, chain: Promise.resolve(), base: undefined, retryMs: 0 };
    this.#items.set(p, item);
    return this.#addHandle({ path: p, item });
  }

  /** Opens a file; write access (or O_TRUNC) stages it. */
  async open(path: string, flags: number): Promise<number> {
    const p = norm(path);
    const writing = (flags & O_ACCMODE) !== 0 || (flags & O_TRUNC) !== 0;
    const item = this.#items.get(p);
    if (writing) {
      this.#writable();
      const staged = await this.#stage(p, (flags & O_TRUNC) !== 0);
      if ((flags & O_TRUNC) !== 0 && staged.staging.record.size !== 0) await this.#truncateItem(staged, 0);
      return this.#addHandle({ path: p, item: staged });
    }
    if (item !== undefined) return this.#addHandle({ path: p, item });
    const record = await this.#meta.lookup(p);
    if (record.type === "dir") throw new DstorError("IS_A_DIRECTORY", `${p} is a directory`);
    return this.#addHandle({ path: p, clean: record });
  }

  /** Reads up to `length` bytes at `position` into `buffer`; returns the count. */
  async read(fd: number, buffer: Buffer, length: number, position: number, options: { signal?: AbortSignal | undefined } = {}): Promise<number> {
    const h = this.#handle(fd);
    // A file staged after this handle opened it clean is read from staging too.
    const item = h.item ?? (h.clean === undefined ? undefined : this.#items.get(h.path));
    if (item !== undefined) {
      // A handle that opened the file clean is not counted in `opens`: count it while it reads, so the item's upload cannot close the staging file under the read.
      const borrowed = h.item === undefined;
      if (borrowed) item.opens++;
      try {
        const want = Math.max(0, Math.min(length, item.staging.record.size - position));
        if (want === 0) return 0;
        const { bytesRead } = await item.staging.handle.read(buffer, 0, want, position);
        return bytesRead;
      } finally {
        if (borrowed && --item.opens === 0 && !item.unlinked) this.#background(item);
      }
    }
    const record = h.clean!;
    const chunkSize = record.file?.segmentSize ?? 8 * 1024 * 1024;
    const path = h.path;
    const bytes = await this.#cache.read(
      { inode: record.inode, size: record.size, chunkSize },
      position,
      length,
      (offset, len, o) => this.#data.readRange(path, offset, len, o),
      options,
    );
    buffer.set(bytes, 0);
    return bytes.byteLength;
  }

  /** Writes `length` bytes of `buffer` at `position` into the staged file. */
  async write(fd: number, buffer: Buffer, length: number, position: number): Promise<number> {
    this.#writable();
    const h = this.#handle(fd);
    if (h.item === undefined) throw new DstorError("INVALID_ARGUMENT", "the file was not opened for writing");
    const item = h.item;
    const { bytesWritten } = await item.staging.handle.write(buffer, 0, length, position);
    item.staging.changes.write(position, bytesWritten);
    item.generation++;
    const r = item.staging.record;
    r.size = Math.max(r.size, position + bytesWritten);
    r.mtimeMs = Date.now();
    return bytesWritten;
  }

  async #truncateItem(item: OpenItem, size: number): Promise<void> {
    await item.staging.handle.truncate(size);
    item.staging.changes.truncate(size);
    item.staging.record.size = size;
    item.staging.record.mtimeMs = Date.now();
    item.generation++;
    await this.#staging.writeRecord(item.staging, { durable: false });
  }

  /** Truncates by path (stages the file; uploads at once when nobody holds it open). */
  async truncate(path: string, size: number): Promise<void> {
    this.#writable();
    const p = norm(path);
    if (!this.#items.has(p)) {
      const record = await this.#meta.lookup(p);
      // Same size: only the mtime changes (POSIX), which needs no upload.
      if (record.type === "file" && record.size === size) {
        await this.#meta.setattr(p, { mtimeMs: Date.now() });
        return;
      }
    }
    const item = await this.#stage(p, size === 0);
    await this.#truncateItem(item, size);
    if (item.opens === 0) await this.#upload(item);
  }

  /** Truncates an open file. */
  async ftruncate(fd: number, size: number): Promise<void> {
    this.#writable();
    const h = this.#handle(fd);
    if (h.item === undefined) throw new DstorError("INVALID_ARGUMENT", "the file was not opened for writing");
    await this.#truncateItem(h.item, size);
  }

  /**
   * close(): journals the staged record, so an acknowledged close survives a
   * crash of this process (the staged bytes are in the kernel's page cache);
   * like a local file system, only fsync makes it survive a power loss.
   */
  async flush(fd: number): Promise<void> {
    const h = this.#handle(fd);
    if (h.item !== undefined && !h.item.unlinked && h.item.generation !== h.item.uploaded) await this.#staging.writeRecord(h.item.staging, { durable: false });
  }

  /** fsync(): returns once the file is stored on farmers and committed in metadata. */
  async fsync(fd: number, options: { signal?: AbortSignal | undefined } = {}): Promise<void> {
    const h = this.#handle(fd);
    if (h.item !== undefined) await this.#upload(h.item, { ...options, durable: true });
  }

  /** Last close of a handle: dirty files are uploaded in the background. */
  async release(fd: number): Promise<void> {
    const h = this.#handle(fd);
    this.#handles.delete(fd);
    const item = h.item;
    if (item === undefined) return;
    item.opens--;
    if (item.unlinked) {
      if (item.opens === 0) await this.#staging.discard(item.staging);
      return;
    }
    if (item.opens === 0) this.#background(item);
  }

  /** Uploads `item` in the background, at most {@link BACKGROUND_UPLOADS_MAX} at once (queued in order). */
  #background(item: OpenItem): void {
    const start = (): void => {
      this.#backgroundRunning++;
      this.#upload(item)
        .then(
          () => {
            item.retryMs = 0;
          },
          (error: unknown) => {
            item.retryMs = Math.min(UPLOAD_RETRY_MAX_MS, Math.max(UPLOAD_RETRY_MIN_MS, item.retryMs * 2));
            this.#log.warn(`background upload failed; the write stays staged and is tried again in ${item.retryMs / 1000} s (or at the next release, fsync or unmount)`, {
              path: item.staging.record.path,
              error: String(error),
            });
            this.#retryLater(item);
          },
        )
        .finally(() => {
          this.#backgroundRunning--;
          this.#backgroundQueue.shift()?.();
        });
    };
    if (this.#backgroundRunning < BACKGROUND_UPLOADS_MAX) start();
    else this.#backgroundQueue.push(start);
  }

  /** Tries a failed background upload again after its backoff, unless the file is open, gone or the drive is draining. */
  #retryLater(item: OpenItem): void {
    const timer = setTimeout(() => {
      this.#retries.delete(timer);
      if (this.#draining || item.unlinked || item.opens > 0 || ![...this.#items.values()].includes(item)) return;
      this.#background(item);
    }, item.retryMs);
    timer.unref();
    this.#retries.add(timer);
  }

  /**
   * Uploads `item` if it changed since its last upload (queued on the item's
   * chain). Afterwards a clean, unopened item leaves staging.
   */
  #upload(item: OpenItem, options: { signal?: AbortSignal | undefined; durable?: boolean } = {}): Promise<void> {
    const run = item.chain.then(async () => {
      if (item.unlinked) return;
      if (item.generation !== item.uploaded) {
        const generation = item.generation;
        const { path, mode, mtimeMs, size } = item.staging.record;
        // Durable before an upload fsync waits for; a background upload needs only what close gave.
        await this.#staging.writeRecord(item.staging, { durable: options.durable === true });
        // Writes from here on are changes of the version this upload commits.
        const taken = item.staging.changes.take(size);
        try {
          // fsync waits for the farmers' deal states too; write-back lets them be co-signed later, many files in one round trip per farmer.
          const put: DriveUploadOptions = { mode, mtimeMs, signal: options.signal, dealSync: options.durable === true ? "wait" : "background" };
          let committed: { inode?: number | undefined } | undefined;
          if (item.base !== undefined && this.#data.rewrite !== undefined) {
            const change = { baseInode: item.base, size, written: taken.ranges, unchangedBelow: taken.unchangedBelow, read: (offset: number, length: number) => this.#readStaged(item.staging, offset, length) };
            committed = await this.#data.rewrite(path, change, put);
          }
          committed ??= await this.#data.put(path, readFileChunks(item.staging.dataPath), put);
          item.base = committed.inode;
        } catch (error) {
          item.staging.changes.restore(taken);
          throw error;
        }
        item.uploaded = generation;
        // chmod/utimens during the put changed only the record: commit them without another upload.
        const now = item.staging.record;
        if (item.generation === generation && (now.mode !== mode || now.mtimeMs !== mtimeMs)) await this.#meta.setattr(path, { mode: now.mode, mtimeMs: now.mtimeMs });
        this.#log.debug("uploaded", { path, size: item.staging.record.size });
        this.#backgroundDeletes();
      }
      if (item.opens === 0 && !item.unlinked && item.generation === item.uploaded) {
        const path = item.staging.record.path;
        if (this.#items.get(path) === item) this.#items.delete(path);
        await this.#staging.discard(item.staging);
      }
    });
    item.chain = run.catch(() => {});
    return run;
  }

  /** Exactly `length` bytes of a staged file at `offset` (zeros past its end: a truncation raced the upload, which a later one repeats). */
  async #readStaged(staging: StagingItem, offset: number, length: number): Promise<Uint8Array> {
    const out = Buffer.alloc(length);
    for (let at = 0; at < length; ) {
      const { bytesRead } = await staging.handle.read(out, at, length - at, offset + at);
      if (bytesRead === 0) break;
      at += bytesRead;
    }
    return out;
  }

  /** Uploads every staged file (used before unmounting); returns how many failed. */
  async drain(options: { signal?: AbortSignal | undefined } = {}): Promise<number> {
    this.#draining = true;
    for (const timer of this.#retries) clearTimeout(timer);
    this.#retries.clear();
    let failed = 0;
    await Promise.all(
      [...this.#items.values()].map((item) =>
        this.#upload(item, options).catch((error: unknown) => {
          failed++;
          this.#log.error("could not upload a staged file; it stays in the journal and is replayed on the next mount", { path: item.staging.record.path, error: String(error) });
        }),
      ),
    );
    return failed;
  }

  /** Staged files not yet uploaded. */
  get pending(): number {
    return this.#items.size;
  }
}
