/**
 * The renter's metadata database: a tree of directories and files, each
 * file's segments → salts → pieces → farmers, the farmers and their deals,
 * and the renter's own record of how each farmer behaves. Backed by `level`
 * under HOME/renter/meta.
 *
 * Key layout (one prefix per record kind; values are JSON):
 *
 *   m/next                          next inode number to hand out
 *   i/<inode>                       InodeRecord (directories, files and symlinks)
 *   d/<parentInode>/<name>          { inode } — a directory entry
 *   s/<inode>/<index, 10 digits>    SegmentMeta — zero-padded so a range scan is in order
 *   f/<farmer>                      FarmerRecord (deal, reputation as seen by us)
 *   p/<farmer>/<pieceId>            PieceRef — pieces a farmer holds for us
 *   x/<farmer>/<pieceId>            PieceRef — pieces no file needs any more, to delete on the farmer
 *
 * Atomicity: every logical change (create a file with all its segments,
 * unlink, rename, mkdir, …) is ONE `db.batch()`, so a crash leaves either the
 * old or the new tree, never a file without segments or a segment without a
 * file. Unlinking a file moves its piece references from `p/` to `x/` in the
 * same batch: the deletions on farmers happen afterwards, and whatever a
 * crash or an unreachable farmer leaves behind is still listed for a retry.
 *
 * Concurrency: LevelDB's own lock keeps a second process out (reported as
 * `HOME_IN_USE`, naming the process that holds it). Inside this process the
 * read-modify-write operations are serialised by one async mutex (`#write`),
 * the only lock in this module; reads take no lock (a batch is applied
 * atomically, so they see a whole before- or after-state per key).
 *
 * Tree cache: because this process is the only writer, the `i/` and `d/`
 * records (what a path lookup reads: 2 gets per path component) are kept in
 * a bounded in-memory map, absent directory entries included, so a FUSE
 * getattr costs no LevelDB round trip. Every batch goes through `#batch`,
 * which writes its puts and deletes into the map after LevelDB applied them.
 * A get that missed the map stores its answer only if no batch completed
 * while it was in flight (`#epoch`): otherwise it might store a value the
 * batch already replaced. Cached records are frozen and shared; callers
 * copy before changing one (as `setattr` does).
 *
 * Farmer table: the `f/` records (a renter's farmers: hundreds to a few
 * thousand, read for every piece transfer and every segment's selection)
 * are loaded whole on first use and kept current by `#batch` the same way,
 * frozen and shared too.
 */
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { Level } from "level";
import { DstorError } from "../core/errors.js";
import { type Logger, silentLogger } from "../core/logging.js";
import type { DirEntry, FarmerRecord, InodeRecord, PieceRef, SegmentMeta, StoredFile } from "./types.js";
import { ROOT_INODE, SYMLINK_TARGET_MAX_BYTES, XATTR_NAME_MAX_BYTES, XATTR_TOTAL_MAX_BYTES, XATTR_VALUE_MAX_BYTES } from "./types.js";

type Value = InodeRecord | SegmentMeta | FarmerRecord | PieceRef | { inode: number } | { next: number };
type BatchOp = { type: "put"; key: string; value: Value } | { type: "del"; key: string };

/** Entries of the tree cache (see the module note): ~0.3 kB each, so at most ~60 MB. */
export const TREE_CACHE_MAX_ENTRIES = 200_000;
/** Marks a key known to be absent in the tree cache. */
const ABSENT = null;
const cacheable = (key: string): boolean => key.startsWith("i/") || key.startsWith("d/");

/** Freezes a record and its nested objects (cached records are shared by every caller). */
function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === "object" && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}

/** Options of {@link openMetadataDb}. */
export interface MetadataDbInit {
  /** Directory of the database (HOME/renter/meta). */
  dir: string;
  logger?: Logger;
}

/** What an unlink or a replacing write removed. */
export interface RemovedFile {
  record: InodeRecord;
  segments: SegmentMeta[];
}

const NAME_MAX_BYTES = 255;

/** Splits a drive path into validated names; `/` and `` are the root. */
export function splitPath(path: string): string[] {
  if (typeof path !== "string") throw new DstorError("INVALID_ARGUMENT", "a path must be text");
  const names = path.split("/").filter((n) => n.length > 0);
  for (const name of names) {
    if (name === "." || name === "..") throw new DstorError("INVALID_ARGUMENT", `"${path}": . and .. are not allowed in drive paths`);
    if (Buffer.byteLength(name) > NAME_MAX_BYTES) throw new DstorError("INVALID_ARGUMENT", `"${name}" is longer than ${NAME_MAX_BYTES} bytes`);
    if (name.includes("\0")) throw new DstorError("INVALID_ARGUMENT", "a name may not contain a NUL byte");
  }
  return names;
}

/** Normalised form of a drive path (`/a/b`). */
export function normalizePath(path: string): string {
  return `/${splitPath(path).join("/")}`;
}

const pad = (n: number, width: number): string => String(n).padStart(width, "0");
const inodeKey = (inode: number): string => `i/${inode}`;
const direntPrefix = (parent: number): string => `d/${parent}/`;
const direntKey = (parent: number, name: string): string => `d/${parent}/${name}`;
const segmentPrefix = (inode: number): string => `s/${inode}/`;
const segmentKey = (inode: number, index: number): string => `s/${inode}/${pad(index, 10)}`;
const FARMER_PREFIX = "f/";
const farmerKey = (address: string): string => `${FARMER_PREFIX}${address}`;
const pieceKey = (farmer: string, pieceId: string): string => `p/${farmer}/${pieceId}`;
const pendingKey = (farmer: string, pieceId: string): string => `x/${farmer}/${pieceId}`;
/** Upper bound of a prefix scan: `d/5/` → `d/50` ('/' + 1 = '0'). */
const prefixEnd = (prefix: string): string => `${prefix.slice(0, -1)}0`;

/** A fresh farmer record with no history. */
export function newFarmerRecord(address: string, peerId = "", multiaddrs: string[] = []): FarmerRecord {
  return { address: address.toLowerCase(), peerId, multiaddrs, successes: 0, failures: 0, corrupt: 0, bytes: 0, ms: 0 };
}

/**
 * The metadata database. Create with {@link openMetadataDb}; `close()` is
 * idempotent. Errors carry the codes the FUSE edge maps to errno:
 * `NO_SUCH_FILE`, `FILE_EXISTS`, `NOT_A_DIRECTORY`, `IS_A_DIRECTORY`,
 * `DIRECTORY_NOT_EMPTY`.
 */
export class MetadataDb {
  readonly dir: string;
  readonly #db: Level<string, Value>;
  readonly #log: Logger;
  #tail: Promise<unknown> = Promise.resolve();
  #closed: Promise<void> | undefined;
  /** The tree cache (see the module note); {@link ABSENT} for keys known to be missing. */
  readonly #tree = new Map<string, Value | typeof ABSENT>();
  /** Bumped by every batch: a get that spans a batch does not fill the cache. */
  #epoch = 0;
  /** Every `f/` record by key, once loaded (see the module note). */
  #farmerTable: Map<string, FarmerRecord> | undefined;

  /** Use {@link openMetadataDb}. */
  constructor(dir: string, db: Level<string, Value>, logger: Logger) {
    this.dir = dir;
    this.#db = db;
    this.#log = logger;
  }

  /** Serialises read-modify-write operations of this process (see the module note). */
  #write<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#tail.then(() => {
      if (this.#closed !== undefined) throw new DstorError("STORE_CLOSED", "the metadata database is closed");
      return fn();
    });
    this.#tail = run.catch(() => {});
    return run;
  }

  async #get<T extends Value>(key: string): Promise<T | undefined> {
    if (this.#closed !== undefined) throw new DstorError("STORE_CLOSED", "the metadata database is closed");
    if (!cacheable(key)) return (await this.#db.get(key)) as T | undefined;
    const hit = this.#tree.get(key);
    if (hit !== undefined) return hit === ABSENT ? undefined : (hit as T);
    const epoch = this.#epoch;
    const value = (await this.#db.get(key)) as T | undefined;
    if (epoch === this.#epoch) this.#remember(key, value === undefined ? ABSENT : deepFreeze(value));
    return value;
  }

  #remember(key: string, value: Value | typeof ABSENT): void {
    if (this.#tree.size >= TREE_CACHE_MAX_ENTRIES && !this.#tree.has(key)) {
      // Oldest first: Map iterates in insertion order.
      const oldest = this.#tree.keys().next();
      if (oldest.done !== true) this.#tree.delete(oldest.value);
    }
    this.#tree.set(key, value);
  }

  /** Writes `ops` as one LevelDB batch and applies them to the tree cache (the only way this class writes). */
  async #batch(ops: BatchOp[]): Promise<void> {
    try {
      await this.#db.batch(ops);
    } catch (error) {
      // LevelDB applied all or nothing, but which is unknown here: forget what may be stale.
      this.#epoch++;
      this.#tree.clear();
      this.#farmerTable = undefined;
      throw error;
    }
    this.#epoch++;
    for (const op of ops) {
      if (this.#farmerTable !== undefined && op.key.startsWith(FARMER_PREFIX)) {
        if (op.type === "put") this.#farmerTable.set(op.key, deepFreeze(structuredClone(op.value as FarmerRecord)));
        else this.#farmerTable.delete(op.key);
      }
      if (!cacheable(op.key)) continue;
      // A value put here may still be the caller's own object: cache a frozen copy.
      this.#remember(op.key, op.type === "put" ? deepFreeze(structuredClone(op.value)) : ABSENT);
    }
  }

  async #scan<T extends Value>(prefix: string, limit = -1): Promise<Array<[string, T]>> {
    if (this.#closed !== undefined) throw new DstorError("STORE_CLOSED", "the metadata database is closed");
    const out: Array<[string, T]> = [];
    for await (const [key, value] of this.#db.iterator({ gte: prefix, lt: prefixEnd(prefix), limit })) out.push([key, value as T]);
    return out;
  }

  /** Creates the root directory on first open. */
  async init(): Promise<void> {
    await this.#write(async () => {
      if ((await this.#get(inodeKey(ROOT_INODE))) !== undefined) return;
      const root: InodeRecord = { inode: ROOT_INODE, type: "dir", mode: 0o755, mtimeMs: Date.now(), size: 0 };
      await this.#batch([
        { type: "put", key: inodeKey(ROOT_INODE), value: root },
        { type: "put", key: "m/next", value: { next: ROOT_INODE + 1 } },
      ]);
    });
  }

  async #allocInode(ops: BatchOp[], count = 1): Promise<number> {
    // Only called under #write, so read-then-bump is safe; the bump rides in the caller's batch.
    const next = ((await this.#get<{ next: number }>("m/next")) ?? { next: ROOT_INODE + 1 }).next;
    ops.push({ type: "put", key: "m/next", value: { next: next + count } });
    return next;
  }

  /** Resolves a path to its parent directory's inode and its own name (the root has no parent). */
  async #resolveParent(path: string): Promise<{ parent: InodeRecord; name: string; names: string[] }> {
    const names = splitPath(path);
    if (names.length === 0) throw new DstorError("INVALID_ARGUMENT", "the root directory cannot be the target of this operation");
    const parent = await this.#walk(names.slice(0, -1), path);
    if (parent.type !== "dir") throw new DstorError("NOT_A_DIRECTORY", `${normalizePath(path)}: a parent is not a directory`, { details: { path } });
    return { parent, name: names[names.length - 1]!, names };
  }

  async #walk(names: string[], path: string): Promise<InodeRecord> {
    let current = await this.#get<InodeRecord>(inodeKey(ROOT_INODE));
    if (current === undefined) throw new DstorError("STORE_CORRUPT", "the metadata database has no root directory");
    for (const name of names) {
      if (current.type !== "dir") throw new DstorError("NOT_A_DIRECTORY", `${normalizePath(path)}: a parent is not a directory`, { details: { path } });
      const entry: { inode: number } | undefined = await this.#get<{ inode: number }>(direntKey(current.inode, name));
      if (entry === undefined) throw new DstorError("NO_SUCH_FILE", `no such file or directory: ${normalizePath(path)}`, { details: { path } });
      const next: InodeRecord | undefined = await this.#get<InodeRecord>(inodeKey(entry.inode));
      if (next === undefined) throw new DstorError("STORE_CORRUPT", `directory entry ${name} points at missing inode ${entry.inode}`);
      current = next;
    }
    return current;
  }

  async #child(parent: number, name: string): Promise<InodeRecord | undefined> {
    const entry = await this.#get<{ inode: number }>(direntKey(parent, name));
    return entry === undefined ? undefined : this.#get<InodeRecord>(inodeKey(entry.inode));
  }

  /** The record at `path`; `NO_SUCH_FILE` / `NOT_A_DIRECTORY` when a component is missing or not a directory. */
  async lookup(path: string): Promise<InodeRecord> {
    return this.#walk(splitPath(path), path);
  }

  /** Entries of the directory at `path`, sorted by name; `NOT_A_DIRECTORY` for a file. */
  async readdir(path: string): Promise<DirEntry[]> {
    const dir = await this.lookup(path);
    if (dir.type !== "dir") throw new DstorError("NOT_A_DIRECTORY", `${normalizePath(path)} is not a directory`, { details: { path } });
    const prefix = direntPrefix(dir.inode);
    const out: DirEntry[] = [];
    for (const [key, entry] of await this.#scan<{ inode: number }>(prefix)) {
      let inode = entry.inode;
      let record = await this.#get<InodeRecord>(inodeKey(inode));
      // A batch after the scan may have put a new inode under this name (a
      // replace or a rewrite) and deleted the old one: follow the entry again.
      for (let tries = 0; record === undefined && tries < 8; tries++) {
        const now = await this.#get<{ inode: number }>(key);
        if (now === undefined || now.inode === inode) break; // the name is really gone
        inode = now.inode;
        record = await this.#get<InodeRecord>(inodeKey(inode));
      }
      if (record !== undefined) out.push({ name: key.slice(prefix.length), record });
    }
    return out;
  }

  /** Creates a directory (and missing parents with `parents`); `FILE_EXISTS` if the name is taken. */
  mkdir(path: string, options: { parents?: boolean; mode?: number } = {}): Promise<InodeRecord> {
    return this.#write(async () => {
      const names = splitPath(path);
      if (names.length === 0) {
        if (options.parents) return this.lookup("/");
        throw new DstorError("FILE_EXISTS", "/ already exists");
      }
      const ops: BatchOp[] = [];
      let current = (await this.#get<InodeRecord>(inodeKey(ROOT_INODE)))!;
      let created: InodeRecord | undefined;
      const first = await this.#allocInode(ops, names.length);
      let nextInode = first;
      for (let i = 0; i < names.length; i++) {
        const name = names[i]!;
        const last = i === names.length - 1;
        const existing = created === undefined ? await this.#child(current.inode, name) : undefined;
        if (existing !== undefined) {
          if (last && !options.parents) throw new DstorError("FILE_EXISTS", `${normalizePath(path)} already exists`, { details: { path } });
          if (existing.type !== "dir") throw new DstorError("NOT_A_DIRECTORY", `${normalizePath(names.slice(0, i + 1).join("/"))} is not a directory`);
          current = existing;
          if (last) return existing;
          continue;
        }
        if (!last && !options.parents) throw new DstorError("NO_SUCH_FILE", `no such directory: ${normalizePath(names.slice(0, i + 1).join("/"))}`);
        const record: InodeRecord = { inode: nextInode++, type: "dir", mode: options.mode ?? 0o755, mtimeMs: Date.now(), size: 0 };
        ops.push({ type: "put", key: inodeKey(record.inode), value: record });
        ops.push({ type: "put", key: direntKey(current.inode, name), value: { inode: record.inode } });
        created = record;
        current = record;
      }
      await this.#batch(ops);
      return current;
    });
  }

  /** Removes an empty directory; `DIRECTORY_NOT_EMPTY`, `NOT_A_DIRECTORY` otherwise. */
  rmdir(path: string): Promise<void> {
    return this.#write(async () => {
      const { parent, name } = await this.#resolveParent(path);
      const dir = await this.#child(parent.inode, name);
      if (dir === undefined) throw new DstorError("NO_SUCH_FILE", `no such directory: ${normalizePath(path)}`, { details: { path } });
      if (dir.type !== "dir") throw new DstorError("NOT_A_DIRECTORY", `${normalizePath(path)} is not a directory`, { details: { path } });
      if ((await this.#scan(direntPrefix(dir.inode), 1)).length > 0) {
        throw new DstorError("DIRECTORY_NOT_EMPTY", `${normalizePath(path)} is not empty; use rm -r to remove it with its contents`, { details: { path } });
      }
      await this.#batch([
        { type: "del", key: direntKey(parent.inode, name) },
        { type: "del", key: inodeKey(dir.inode) },
      ]);
    });
  }

  /**
   * Creates a symbolic link at `path` pointing at `target` (stored verbatim,
   * never resolved here: the kernel resolves links above the FUSE edge).
   * `FILE_EXISTS` if the name is taken.
   */
  symlink(path: string, target: string, options: { mtimeMs?: number } = {}): Promise<InodeRecord> {
    return this.#write(async () => {
      if (typeof target !== "string" || target.length === 0 || target.includes("\0")) throw new DstorError("INVALID_ARGUMENT", "a symlink target must be non-empty text without NUL bytes");
      const size = Buffer.byteLength(target);
      if (size > SYMLINK_TARGET_MAX_BYTES) throw new DstorError("INVALID_ARGUMENT", `a symlink target is longer than ${SYMLINK_TARGET_MAX_BYTES} bytes`);
      const { parent, name } = await this.#resolveParent(path);
      if ((await this.#child(parent.inode, name)) !== undefined) throw new DstorError("FILE_EXISTS", `${normalizePath(path)} already exists`, { details: { path } });
      const ops: BatchOp[] = [];
      const inode = await this.#allocInode(ops);
      const record: InodeRecord = { inode, type: "symlink", mode: 0o777, mtimeMs: options.mtimeMs ?? Date.now(), size, target };
      ops.push({ type: "put", key: inodeKey(inode), value: record });
      ops.push({ type: "put", key: direntKey(parent.inode, name), value: { inode } });
      await this.#batch(ops);
      return record;
    });
  }

  /** The target of the symlink at `path`; `INVALID_ARGUMENT` (EINVAL, as readlink(2)) when it is not a symlink. */
  async readlink(path: string): Promise<string> {
    const record = await this.lookup(path);
    if (record.type !== "symlink" || record.target === undefined) throw new DstorError("INVALID_ARGUMENT", `${normalizePath(path)} is not a symbolic link`, { details: { path } });
    return record.target;
  }

  /**
   * Changes attributes of the node at `path` in one batch (read-modify-write
   * under the mutex, so it never loses a concurrent commit of the same record).
   * Only the permission bits of `mode` are kept.
   */
  setattr(path: string, attrs: { mode?: number | undefined; mtimeMs?: number | undefined }): Promise<InodeRecord> {
    return this.#write(async () => {
      if (attrs.mode !== undefined && (!Number.isInteger(attrs.mode) || attrs.mode < 0)) throw new DstorError("INVALID_ARGUMENT", "mode must be a non-negative integer");
      if (attrs.mtimeMs !== undefined && !Number.isFinite(attrs.mtimeMs)) throw new DstorError("INVALID_ARGUMENT", "mtimeMs must be a finite number");
      const record = await this.lookup(path);
      const next: InodeRecord = { ...record };
      if (attrs.mode !== undefined) next.mode = attrs.mode & 0o7777;
      if (attrs.mtimeMs !== undefined) next.mtimeMs = attrs.mtimeMs;
      await this.#batch([{ type: "put", key: inodeKey(record.inode), value: next }]);
      return next;
    });
  }

  /**
   * Sets extended attribute `name` of the node at `path` (read-modify-write
   * under the mutex, like setattr). `create`: `FILE_EXISTS` if it is set;
   * `replace`: `NO_SUCH_ATTRIBUTE` if it is not (setxattr's XATTR_CREATE /
   * XATTR_REPLACE). `TOO_LARGE` beyond {@link XATTR_VALUE_MAX_BYTES},
   * `DISK_FULL` when the node's attributes would pass {@link XATTR_TOTAL_MAX_BYTES}.
   * Only the `user.` namespace is stored: the caller checks names.
   */
  setxattr(path: string, name: string, value: Uint8Array, options: { create?: boolean; replace?: boolean } = {}): Promise<InodeRecord> {
    return this.#write(async () => {
      if (Buffer.byteLength(name) > XATTR_NAME_MAX_BYTES || name.length === 0) throw new DstorError("INVALID_ARGUMENT", `an attribute name is 1 to ${XATTR_NAME_MAX_BYTES} bytes`);
      if (value.byteLength > XATTR_VALUE_MAX_BYTES) throw new DstorError("TOO_LARGE", `an attribute value is at most ${XATTR_VALUE_MAX_BYTES} bytes`);
      const record = await this.lookup(path);
      const has = record.xattrs !== undefined && Object.hasOwn(record.xattrs, name);
      if (options.create && has) throw new DstorError("FILE_EXISTS", `${normalizePath(path)} already has attribute ${name}`);
      if (options.replace && !has) throw new DstorError("NO_SUCH_ATTRIBUTE", `${normalizePath(path)} has no attribute ${name}`);
      const xattrs = { ...record.xattrs, [name]: Buffer.from(value).toString("base64") };
      let total = 0;
      for (const [n, v] of Object.entries(xattrs)) total += Buffer.byteLength(n) + Buffer.byteLength(v, "base64");
      if (total > XATTR_TOTAL_MAX_BYTES) throw new DstorError("DISK_FULL", `${normalizePath(path)}: extended attributes are limited to ${XATTR_TOTAL_MAX_BYTES} bytes per file`);
      const next: InodeRecord = { ...record, xattrs };
      await this.#batch([{ type: "put", key: inodeKey(record.inode), value: next }]);
      return next;
    });
  }

  /** Removes extended attribute `name` of the node at `path`; `NO_SUCH_ATTRIBUTE` if it is not set. */
  removexattr(path: string, name: string): Promise<InodeRecord> {
    return this.#write(async () => {
      const record = await this.lookup(path);
      if (record.xattrs === undefined || !Object.hasOwn(record.xattrs, name)) throw new DstorError("NO_SUCH_ATTRIBUTE", `${normalizePath(path)} has no attribute ${name}`);
      const { [name]: _removed, ...rest } = record.xattrs;
      const next: InodeRecord = { ...record, xattrs: Object.keys(rest).length === 0 ? undefined : rest };
      if (next.xattrs === undefined) delete next.xattrs;
      await this.#batch([{ type: "put", key: inodeKey(record.inode), value: next }]);
      return next;
    });
  }

  /** Ops that drop a file's segments and move its pieces to the pending-delete set. */
  async #dropFileOps(record: InodeRecord, ops: BatchOp[]): Promise<SegmentMeta[]> {
    const segments = (await this.#scan<SegmentMeta>(segmentPrefix(record.inode))).map(([, s]) => s);
    for (const s of segments) {
      ops.push({ type: "del", key: segmentKey(record.inode, s.index) });
      for (const [number, farmer] of Object.entries(s.holders)) {
        const n = Number(number);
        const ref: PieceRef = { pieceId: s.pieceIds[n]!, root: s.pieceRoots[n]!, size: s.pieceSize, inode: record.inode, segment: s.index, number: n };
        ops.push({ type: "del", key: pieceKey(farmer, ref.pieceId) });
        ops.push({ type: "put", key: pendingKey(farmer, ref.pieceId), value: ref });
      }
    }
    ops.push({ type: "del", key: inodeKey(record.inode) });
    return segments;
  }

  /**
   * Creates or replaces the file at `path` with its content and every segment,
   * in one batch. A replaced file's pieces move to the pending-delete set
   * (returned, so the caller can delete them on farmers). `IS_A_DIRECTORY` when
   * `path` is a directory; `FILE_EXISTS` when it is a file and `overwrite` is false.
   */
  commitFile(path: string, stored: StoredFile, options: { overwrite?: boolean } = {}): Promise<{ record: InodeRecord; replaced?: RemovedFile }> {
    return this.#write(async () => {
      const { parent, name } = await this.#resolveParent(path);
      const ops: BatchOp[] = [];
      const existing = await this.#child(parent.inode, name);
      let replaced: RemovedFile | undefined;
      if (existing !== undefined) {
        if (existing.type === "dir") throw new DstorError("IS_A_DIRECTORY", `${normalizePath(path)} is a directory`, { details: { path } });
        if (options.overwrite === false) throw new DstorError("FILE_EXISTS", `${normalizePath(path)} already exists`, { details: { path } });
        replaced = { record: existing, segments: await this.#dropFileOps(existing, ops) };
      }
      const inode = await this.#allocInode(ops);
      const record: InodeRecord = {
        inode,
        type: "file",
        mode: stored.mode ?? 0o644,
        mtimeMs: stored.mtimeMs ?? Date.now(),
        size: stored.size,
        file: { ...stored.content, segmentCount: stored.segments.length },
        // Rewriting a file's content keeps its extended attributes (the drive uploads a changed file this way).
        ...(existing?.xattrs === undefined ? {} : { xattrs: existing.xattrs }),
      };
      ops.push({ type: "put", key: inodeKey(inode), value: record });
      ops.push({ type: "put", key: direntKey(parent.inode, name), value: { inode } });
      putSegments(ops, inode, stored.segments);
      await this.#batch(ops);
      this.#log.debug("file committed", { path: normalizePath(path), inode, segments: stored.segments.length });
      return replaced === undefined ? { record } : { record, replaced };
    });
  }

  /**
   * Commits a partial rewrite of the file at `path`, in one batch. The file
   * gets a new inode (as every committed write does, so chunks cached under
   * the old one are never served for the new content) whose segments are
   * `stored.segments` (the rewritten ones, under fresh salts) plus the old
   * inode's segments listed in `keep`, carried over unchanged with their
   * salts and pieces (their piece references are re-pointed at the new
   * inode). The pieces of every old segment not kept move to the
   * pending-delete set; those segments are returned as `replaced`. `NO_SUCH_FILE` (and nothing written) when `path` is no
   * longer inode `baseInode`; `INVALID_ARGUMENT` when kept and new segments
   * do not make up segments 0 … n−1 exactly once.
   */
  commitRewrite(
    path: string,
    baseInode: number,
    stored: StoredFile & { keep: readonly number[] },
  ): Promise<{ record: InodeRecord; replaced: RemovedFile }> {
    return this.#write(async () => {
      const { parent, name } = await this.#resolveParent(path);
      const existing = await this.#child(parent.inode, name);
      if (existing?.inode !== baseInode || existing.type !== "file") {
        throw new DstorError("NO_SUCH_FILE", `${normalizePath(path)} changed before its rewrite was committed`, { details: { path } });
      }
      const indexes = [...stored.keep, ...stored.segments.map((s) => s.index)].sort((a, b) => a - b);
      if (indexes.some((index, i) => index !== i)) throw new DstorError("INVALID_ARGUMENT", `a rewrite of ${normalizePath(path)} must cover segments 0 … n−1 exactly once`);
      const old = new Map((await this.segments(baseInode)).map((s) => [s.index, s]));
      const keep = new Set(stored.keep);
      for (const index of keep) if (!old.has(index)) throw new DstorError("INVALID_ARGUMENT", `segment ${index} of ${normalizePath(path)} is not stored and cannot be kept`);
      const ops: BatchOp[] = [];
      const inode = await this.#allocInode(ops);
      const record: InodeRecord = {
        inode,
        type: "file",
        mode: stored.mode ?? existing.mode,
        mtimeMs: stored.mtimeMs ?? Date.now(),
        size: stored.size,
        file: { ...stored.content, segmentCount: indexes.length },
        ...(existing.xattrs === undefined ? {} : { xattrs: existing.xattrs }),
      };
      const dropped: SegmentMeta[] = [];
      for (const s of old.values()) {
        ops.push({ type: "del", key: segmentKey(baseInode, s.index) });
        const kept = keep.has(s.index);
        if (!kept) dropped.push(s);
        for (const [number, farmer] of Object.entries(s.holders)) {
          const n = Number(number);
          const ref: PieceRef = { pieceId: s.pieceIds[n]!, root: s.pieceRoots[n]!, size: s.pieceSize, inode: kept ? inode : baseInode, segment: s.index, number: n };
          if (kept) {
            ops.push({ type: "put", key: pieceKey(farmer, ref.pieceId), value: ref });
          } else {
            ops.push({ type: "del", key: pieceKey(farmer, ref.pieceId) });
            ops.push({ type: "put", key: pendingKey(farmer, ref.pieceId), value: ref });
          }
        }
        if (kept) ops.push({ type: "put", key: segmentKey(inode, s.index), value: s });
      }
      putSegments(ops, inode, stored.segments);
      ops.push({ type: "del", key: inodeKey(baseInode) });
      ops.push({ type: "put", key: inodeKey(inode), value: record });
      ops.push({ type: "put", key: direntKey(parent.inode, name), value: { inode } });
      await this.#batch(ops);
      this.#log.debug("file rewritten", { path: normalizePath(path), inode, rewritten: stored.segments.length, kept: keep.size });
      return { record, replaced: { record: existing, segments: dropped } };
    });
  }

  /** Removes the file or symlink at `path` in one batch; a file's pieces move to the pending-delete set. `IS_A_DIRECTORY` for directories. */
  unlink(path: string): Promise<RemovedFile> {
    return this.#write(async () => {
      const { parent, name } = await this.#resolveParent(path);
      const record = await this.#child(parent.inode, name);
      if (record === undefined) throw new DstorError("NO_SUCH_FILE", `no such file: ${normalizePath(path)}`, { details: { path } });
      if (record.type === "dir") throw new DstorError("IS_A_DIRECTORY", `${normalizePath(path)} is a directory; use rm -r`, { details: { path } });
      const ops: BatchOp[] = [{ type: "del", key: direntKey(parent.inode, name) }];
      const segments = await this.#dropFileOps(record, ops);
      await this.#batch(ops);
      return { record, segments };
    });
  }

  /**
   * Moves `from` to `to` atomically, replacing a file or an empty directory
   * at `to` as POSIX rename does. A replaced file's pieces move to the
   * pending-delete set.
   */
  rename(from: string, to: string): Promise<{ replaced?: RemovedFile }> {
    return this.#write(async () => {
      const src = await this.#resolveParent(from);
      const dst = await this.#resolveParent(to);
      const record = await this.#child(src.parent.inode, src.name);
      if (record === undefined) throw new DstorError("NO_SUCH_FILE", `no such file or directory: ${normalizePath(from)}`, { details: { path: from } });
      if (src.parent.inode === dst.parent.inode && src.name === dst.name) return {};
      if (record.type === "dir") {
        // Moving a directory below itself would detach a cycle from the tree.
        const srcPath = src.names.join("/");
        const dstPath = dst.names.join("/");
        if (dstPath.startsWith(`${srcPath}/`)) throw new DstorError("INVALID_ARGUMENT", `cannot move ${normalizePath(from)} into itself`);
      }
      const ops: BatchOp[] = [];
      let replaced: RemovedFile | undefined;
      const target = await this.#child(dst.parent.inode, dst.name);
      if (target !== undefined) {
        if (target.type === "dir" && record.type !== "dir") throw new DstorError("IS_A_DIRECTORY", `${normalizePath(to)} is a directory`);
        if (target.type !== "dir" && record.type === "dir") throw new DstorError("NOT_A_DIRECTORY", `${normalizePath(to)} is not a directory`);
        if (target.type === "dir") {
          if ((await this.#scan(direntPrefix(target.inode), 1)).length > 0) throw new DstorError("DIRECTORY_NOT_EMPTY", `${normalizePath(to)} is not empty`);
          ops.push({ type: "del", key: inodeKey(target.inode) });
        } else {
          replaced = { record: target, segments: await this.#dropFileOps(target, ops) };
        }
      }
      ops.push({ type: "del", key: direntKey(src.parent.inode, src.name) });
      ops.push({ type: "put", key: direntKey(dst.parent.inode, dst.name), value: { inode: record.inode } });
      await this.#batch(ops);
      return replaced === undefined ? {} : { replaced };
    });
  }

  /**
   * Moves pieces of file `inode` to new holders (repair), all segments in one
   * batch: each change gives a segment's new holder map. A dropped holder's
   * piece goes to the pending-delete set; a new holder's piece is indexed.
   * `NO_SUCH_FILE` (and nothing written) when the file was removed or
   * replaced meanwhile, or a segment no longer has the piece ids the repair
   * rebuilt.
   */
  moveSegmentPieces(inode: number, changes: ReadonlyArray<{ index: number; pieceIds: readonly string[]; holders: Record<number, string> }>): Promise<void> {
    return this.#write(async () => {
      const ops: BatchOp[] = [];
      for (const change of changes) {
        const s = await this.#get<SegmentMeta>(segmentKey(inode, change.index));
        if (s === undefined || s.pieceIds.join() !== change.pieceIds.join()) {
          throw new DstorError("NO_SUCH_FILE", `segment ${change.index} of inode ${inode} changed during repair`, { details: { inode } });
        }
        const ref = (n: number): PieceRef => ({ pieceId: s.pieceIds[n]!, root: s.pieceRoots[n]!, size: s.pieceSize, inode, segment: s.index, number: n });
        for (const [number, farmer] of Object.entries(s.holders)) {
          const n = Number(number);
          if (change.holders[n] === farmer) continue;
          ops.push({ type: "del", key: pieceKey(farmer, s.pieceIds[n]!) });
          ops.push({ type: "put", key: pendingKey(farmer, s.pieceIds[n]!), value: ref(n) });
        }
        for (const [number, farmer] of Object.entries(change.holders)) {
          const n = Number(number);
          if (s.holders[n] !== farmer) ops.push({ type: "put", key: pieceKey(farmer, s.pieceIds[n]!), value: ref(n) });
        }
        ops.push({ type: "put", key: segmentKey(inode, change.index), value: { ...s, holders: { ...change.holders } } });
      }
      await this.#batch(ops);
    });
  }

  /** The segments of file `inode`, in order. */
  async segments(inode: number): Promise<SegmentMeta[]> {
    return (await this.#scan<SegmentMeta>(segmentPrefix(inode))).map(([, s]) => s);
  }

  /** One segment of file `inode`. */
  segment(inode: number, index: number): Promise<SegmentMeta | undefined> {
    return this.#get<SegmentMeta>(segmentKey(inode, index));
  }

  /** The renter's record of `address`, if any (frozen: copy it to change it). */
  async farmer(address: string): Promise<FarmerRecord | undefined> {
    return (await this.#farmers()).get(farmerKey(address.toLowerCase()));
  }

  /** Every farmer the renter has a record of (frozen records). */
  async farmers(): Promise<FarmerRecord[]> {
    return [...(await this.#farmers()).values()];
  }

  /** The farmer table, loaded on first use; a load that spans a batch is not kept (its scan may predate the batch). */
  async #farmers(): Promise<ReadonlyMap<string, FarmerRecord>> {
    if (this.#farmerTable !== undefined) return this.#farmerTable;
    const epoch = this.#epoch;
    const table = new Map<string, FarmerRecord>();
    for (const [key, record] of await this.#scan<FarmerRecord>(FARMER_PREFIX)) table.set(key, deepFreeze(record));
    if (epoch === this.#epoch && this.#farmerTable === undefined) this.#farmerTable = table;
    return table;
  }

  /**
   * Read-modify-write of a farmer record (created fresh when missing). Used
   * for deals (`dealId`, `term`) and for the renter's own reputation table.
   */
  updateFarmer(address: string, update: (record: FarmerRecord) => FarmerRecord): Promise<FarmerRecord> {
    return this.#write(async () => {
      const key = farmerKey(address.toLowerCase());
      const current = (await this.#farmers()).get(key) ?? newFarmerRecord(address);
      const next = update({ ...current });
      await this.#batch([{ type: "put", key, value: next }]);
      return next;
    });
  }

  /** Pieces `farmer` holds for live files. */
  async piecesOn(farmer: string): Promise<PieceRef[]> {
    return (await this.#scan<PieceRef>(`p/${farmer.toLowerCase()}/`)).map(([, p]) => p);
  }

  /** Pieces waiting to be deleted on farmers (left by unlink / replace). */
  async pendingDeletes(limit = -1): Promise<Array<{ farmer: string; ref: PieceRef }>> {
    return (await this.#scan<PieceRef>("x/", limit)).map(([key, ref]) => ({ farmer: key.split("/")[1]!, ref }));
  }

  /** Marks a pending deletion as done. */
  clearPendingDeletes(done: Array<{ farmer: string; pieceId: string }>): Promise<void> {
    if (done.length === 0) return Promise.resolve();
    return this.#write(() => this.#batch(done.map((d) => ({ type: "del" as const, key: pendingKey(d.farmer.toLowerCase(), d.pieceId) }))));
  }

  /**
   * Every record, in key order, as stored (plain JSON values). Reads one
   * consistent view of the database (LevelDB iterators read from an implicit
   * snapshot), so a concurrent batch is either wholly in it or not at all.
   * Used by metadata snapshots (snapshot.ts).
   */
  async *entries(): AsyncGenerator<[string, unknown]> {
    if (this.#closed !== undefined) throw new DstorError("STORE_CLOSED", "the metadata database is closed");
    for await (const [key, value] of this.#db.iterator()) yield [key, value];
  }

  /**
   * Replaces a fresh database (nothing but the root directory, and farmer
   * records — the transfers that fetched the snapshot score farmers) with
   * `entries`, in one batch; records of the same key are overwritten.
   * `FILE_EXISTS` when the database already holds files, directories or
   * pieces: recovering over live metadata would lose it.
   */
  importEntries(entries: ReadonlyArray<readonly [string, unknown]>): Promise<void> {
    return this.#write(async () => {
      for await (const key of this.#db.keys()) {
        if (key !== inodeKey(ROOT_INODE) && key !== "m/next" && !key.startsWith(FARMER_PREFIX)) {
          throw new DstorError("FILE_EXISTS", `the renter metadata in ${this.dir} is not empty; recover into a fresh --home`);
        }
      }
      const ops: BatchOp[] = [{ type: "del", key: inodeKey(ROOT_INODE) }, { type: "del", key: "m/next" }];
      for (const [key, value] of entries) ops.push({ type: "put", key, value: value as Value });
      await this.#batch(ops);
    });
  }

  /**
   * Calls `listener` with the keys of every batch written from now on;
   * returns the unsubscribe function. Lets the snapshot scheduler notice that
   * the tree changed without every writer having to tell it.
   */
  onChange(listener: (keys: string[]) => void): () => void {
    const handler = (ops: Array<{ key: unknown }>): void => listener(ops.map((op) => String(op.key)));
    this.#db.on("write", handler);
    return () => this.#db.off("write", handler);
  }

  /** Adds piece references that belong to no file (metadata snapshots: `inode` {@link SNAPSHOT_INODE}). */
  addPieceRefs(refs: ReadonlyArray<{ farmer: string; ref: PieceRef }>): Promise<void> {
    if (refs.length === 0) return Promise.resolve();
    return this.#write(() => this.#batch(refs.map(({ farmer, ref }) => ({ type: "put" as const, key: pieceKey(farmer.toLowerCase(), ref.pieceId), value: ref }))));
  }

  /** Moves every live piece reference `retire` selects to the pending-delete set, in one batch; returns how many. */
  retirePieceRefs(retire: (ref: PieceRef) => boolean): Promise<number> {
    return this.#write(async () => {
      const ops: BatchOp[] = [];
      for (const [key, ref] of await this.#scan<PieceRef>("p/")) {
        if (!retire(ref)) continue;
        const farmer = key.split("/")[1]!;
        ops.push({ type: "del", key }, { type: "put", key: pendingKey(farmer, ref.pieceId), value: ref });
      }
      if (ops.length > 0) await this.#batch(ops);
      return ops.length / 2;
    });
  }

  /** Closes the database (idempotent); waits for writes in progress. */
  close(): Promise<void> {
    this.#closed ??= (async () => {
      await this.#tail.catch(() => {});
      await this.#db.close();
      await rm(join(this.dir, "..", "meta.pid"), { force: true }).catch(() => {});
    })();
    return this.#closed;
  }
}

function errCode(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" ? code : undefined;
}

/**
 * Opens (creating if needed) the metadata database in `dir`. A second opener
 * — another process, or this one twice — gets `HOME_IN_USE` naming the
 * process that holds it (from the `meta.pid` file written next to the database).
 */
export async function openMetadataDb(init: MetadataDbInit): Promise<MetadataDb> {
  const logger = init.logger ?? silentLogger("dstor:metadata");
  const db = new Level<string, Value>(init.dir, { valueEncoding: "json" });
  const pidFile = join(init.dir, "..", "meta.pid");
  try {
    await mkdir(init.dir, { recursive: true });
    await db.open({ createIfMissing: true });
  } catch (error) {
    const cause = (error as { cause?: unknown }).cause;
    if (errCode(cause) === "LEVEL_LOCKED" || errCode(error) === "LEVEL_LOCKED") {
      const pid = (await readFile(pidFile, "utf8").catch(() => "")).trim();
      throw new DstorError(
        "HOME_IN_USE",
        `the renter metadata in ${init.dir} is in use by another dstor process${pid === "" ? "" : ` (pid ${pid})`}; stop it or use another --home`,
        { cause: error, details: { dir: init.dir, pid } },
      );
    }
    throw new DstorError("STORE_CORRUPT", `cannot open the renter metadata in ${init.dir}: ${(error as Error).message}`, { cause: error });
  }
  await writeFile(pidFile, `${process.pid}\n`).catch(() => {});
  const meta = new MetadataDb(init.dir, db, logger);
  try {
    await meta.init();
  } catch (error) {
    await meta.close();
    throw error;
  }
  return meta;
}

/** The batch operations that store `segments` of `inode` and index each held piece by its farmer. */
function putSegments(ops: BatchOp[], inode: number, segments: readonly SegmentMeta[]): void {
  for (const s of segments) {
    ops.push({ type: "put", key: segmentKey(inode, s.index), value: s });
    for (const [number, farmer] of Object.entries(s.holders)) {
      const n = Number(number);
      const ref: PieceRef = { pieceId: s.pieceIds[n]!, root: s.pieceRoots[n]!, size: s.pieceSize, inode, segment: s.index, number: n };
      ops.push({ type: "put", key: pieceKey(farmer, ref.pieceId), value: ref });
    }
  }
}
