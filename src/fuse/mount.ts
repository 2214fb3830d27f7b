/**
 * The FUSE edge: fuse-native callbacks → {@link Drive} methods. Each
 * operation runs under a deadline (an AbortSignal handed down, and a race so
 * the kernel is answered even if the work ignores it) and every failure goes
 * through {@link toErrno} — the only errno translation in dstor.
 *
 * Also here: mount-point checks (`/proc/self/mountinfo`), clearing a stale
 * mount left by a crashed process (`fusermount -uz`), and unmounting.
 */
import { execFile } from "node:child_process";
import { readdir, readFile, stat } from "node:fs/promises";
import { resolve } from "node:path";
import { promisify } from "node:util";
import { raceSignal } from "../core/abort.js";
import { DstorError } from "../core/errors.js";
import { type Logger, silentLogger } from "../core/logging.js";
import { type Drive, type DriveAttr, XATTR_STORED_PREFIX } from "./drive.js";
import { toErrno } from "./errno.js";
import { loadFuseNative } from "./native-fuse.js";

const execFileAsync = promisify(execFile);

/** Deadline of namespace operations (metadata only), in ms. */
export const META_OP_DEADLINE_MS = 30_000;
/** Deadline of reads (may fetch a segment from farmers), in ms. */
export const READ_OP_DEADLINE_MS = 120_000;
/** Deadline of fsync/truncate (may upload a whole file), in ms. */
export const UPLOAD_OP_DEADLINE_MS = 600_000;

/**
 * How long the kernel may keep a lookup or getattr answer, in seconds
 * (libfuse's default is 1 s). Safe to make long because nothing changes the
 * tree behind the kernel's back: the metadata database is locked to this
 * process, every change arrives as a kernel request on this mount (which
 * drops or refreshes the entries it touches), and what the drive itself does
 * afterwards (background uploads) changes no attribute the kernel shows.
 * The short default made every `stat` of a file created more than a second
 * earlier a round trip through this process.
 */
export const KERNEL_CACHE_TIMEOUT_S = 3600;

type Cb = (errno: number, ...values: unknown[]) => void;

interface FuseInstance {
  mount(cb: (error: Error | null) => void): void;
  unmount(cb: (error: Error | null) => void): void;
}
/**
 * After an external `fusermount -u`, fuse-native's FUSE thread ends but its
 * uv async handle still holds the event loop; `fuse.unmount()` would fail
 * (it runs fusermount again first), so release the handle through the native
 * binding directly — what fuse-native's own close does after fusermount.
 */
function releaseNativeHandle(fuse: FuseInstance): void {
  const internals = fuse as unknown as { mnt: string; _thread: Buffer | null };
  if (internals._thread !== null) loadFuseNative().binding.fuse_native_unmount(internals.mnt, internals._thread);
}

type FuseConstructor = new (mnt: string, ops: Record<string, unknown>, opts: Record<string, unknown>) => FuseInstance;

function loadFuse(logger: Logger): FuseConstructor {
  try {
    const { Fuse, mtimeFixed } = loadFuseNative();
    if (!mtimeFixed) logger.warn("fuse-native's rebuilt addon is missing (run make): tools cannot set modification times on the drive");
    return Fuse as FuseConstructor;
  } catch (cause) {
    throw new DstorError("NATIVE_UNAVAILABLE", "fuse-native is not available; install libfuse2 and reinstall dstor", { cause });
  }
}

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;
const FILE_TYPE_BITS = { dir: S_IFDIR, file: S_IFREG, symlink: S_IFLNK } as const;

function toStat(a: DriveAttr, uid: number, gid: number): Record<string, unknown> {
  const time = new Date(a.mtimeMs);
  return {
    mtime: time,
    atime: time,
    ctime: time,
    mode: FILE_TYPE_BITS[a.type] | (a.mode & 0o7777),
    size: a.type === "dir" ? 4096 : a.size,
    nlink: a.type === "dir" ? 2 : 1,
    uid,
    gid,
    ino: a.inode,
    blksize: 4096,
    blocks: Math.ceil((a.type === "dir" ? 4096 : a.size) / 512),
    dev: 0,
    rdev: 0,
  };
}

const NO_SUCH_ATTRIBUTE_ERRNO = toErrno(new DstorError("NO_SUCH_ATTRIBUTE", "the drive stores only user.* attributes"));

/** Builds the fuse-native operation table for `drive`. */
export function fuseOperations(drive: Drive, logger: Logger): Record<string, unknown> {
  /**
   * Runs `fn` under a deadline and answers the kernel exactly once. The
   * deadline is one timer, cleared as soon as the work ends, and an
   * AbortSignal is made only for operations that pass one down (`signal`):
   * at thousands of operations a second, a controller and a 30 s timer left
   * behind by every getattr were a large part of the mount's GC time.
   */
  const run = <T>(name: string, deadlineMs: number, cb: Cb, fn: (signal: AbortSignal | undefined) => Promise<T>, reply: (value: T) => void, signal = false): void => {
    const controller = signal ? new AbortController() : undefined;
    let answered = false;
    const fail = (error: unknown): void => {
      const errno = toErrno(error);
      logger.debug("fuse op failed", { op: name, errno, error: String(error) });
      cb(errno);
    };
    const timer = setTimeout(() => {
      if (answered) return;
      answered = true;
      const error = new DstorError("TIMEOUT", `FUSE ${name} did not finish within ${deadlineMs} ms`, { details: { timeoutMs: deadlineMs } });
      controller?.abort(error);
      fail(error);
    }, deadlineMs);
    timer.unref();
    let work: Promise<T>;
    try {
      work = fn(controller?.signal);
    } catch (error) {
      work = Promise.reject(error);
    }
    work.then(
      (value) => {
        if (answered) return;
        answered = true;
        clearTimeout(timer);
        reply(value);
      },
      (error: unknown) => {
        if (answered) return;
        answered = true;
        clearTimeout(timer);
        fail(error);
      },
    );
  };
  const ok = (cb: Cb) => () => cb(0);
  return {
    getattr: (path: string, cb: Cb) => run("getattr", META_OP_DEADLINE_MS, cb, () => drive.getattr(path), (a) => cb(0, toStat(a, drive.uid, drive.gid))),
    readdir: (path: string, cb: Cb) => run("readdir", META_OP_DEADLINE_MS, cb, () => drive.readdir(path), (names) => cb(0, names)),
    mkdir: (path: string, mode: number, cb: Cb) => run("mkdir", META_OP_DEADLINE_MS, cb, () => drive.mkdir(path, mode), ok(cb)),
    rmdir: (path: string, cb: Cb) => run("rmdir", META_OP_DEADLINE_MS, cb, () => drive.rmdir(path), ok(cb)),
    unlink: (path: string, cb: Cb) => run("unlink", UPLOAD_OP_DEADLINE_MS, cb, () => drive.unlink(path), ok(cb)),
    rename: (from: string, to: string, cb: Cb) => run("rename", UPLOAD_OP_DEADLINE_MS, cb, () => drive.rename(from, to), ok(cb)),
    chmod: (path: string, mode: number, cb: Cb) => run("chmod", META_OP_DEADLINE_MS, cb, () => drive.chmod(path, mode), ok(cb)),
    chown: (path: string, uid: number, gid: number, cb: Cb) => run("chown", META_OP_DEADLINE_MS, cb, () => drive.chown(path, uid, gid), ok(cb)),
    utimens: (path: string, _atime: number, mtime: number, cb: Cb) => run("utimens", META_OP_DEADLINE_MS, cb, () => drive.utimens(path, Number(mtime)), ok(cb)),
    statfs: (_path: string, cb: Cb) => run("statfs", META_OP_DEADLINE_MS, cb, (signal) => drive.statfs({ signal }), (figures) => cb(0, figures), true),
    // The kernel asks for security.capability before every write(2) on FUSE: names the drive never stores are answered at once.
    getxattr: (path: string, name: string, _position: number, cb: Cb) =>
      name.startsWith(XATTR_STORED_PREFIX) ? run("getxattr", META_OP_DEADLINE_MS, cb, () => drive.getxattr(path, name), (value) => cb(0, value)) : cb(NO_SUCH_ATTRIBUTE_ERRNO),
    listxattr: (path: string, cb: Cb) => run("listxattr", META_OP_DEADLINE_MS, cb, () => drive.listxattr(path), (names) => cb(0, names)),
    // `value` is the kernel's memory, detached once answered: copied before anything waits.
    setxattr: (path: string, name: string, value: Buffer, _position: number, flags: number, cb: Cb) => {
      const copy = Buffer.from(value);
      run("setxattr", UPLOAD_OP_DEADLINE_MS, cb, () => drive.setxattr(path, name, copy, flags), ok(cb));
    },
    removexattr: (path: string, name: string, cb: Cb) => run("removexattr", META_OP_DEADLINE_MS, cb, () => drive.removexattr(path, name), ok(cb)),
    // fuse-native passes (target, linkPath).
    symlink: (target: string, path: string, cb: Cb) => run("symlink", META_OP_DEADLINE_MS, cb, () => drive.symlink(target, path), ok(cb)),
    readlink: (path: string, cb: Cb) => run("readlink", META_OP_DEADLINE_MS, cb, () => drive.readlink(path), (target) => cb(0, target)),
    // Hard links: EPERM, as Linux answers for filesystems without them (see drive.ts).
    link: (_src: string, _dest: string, cb: Cb) => cb(toErrno(new DstorError("NOT_PERMITTED", "the drive has no hard links"))),
    create: (path: string, mode: number, cb: Cb) => run("create", META_OP_DEADLINE_MS, cb, () => drive.create(path, mode), (fd) => cb(0, fd)),
    open: (path: string, flags: number, cb: Cb) => run("open", READ_OP_DEADLINE_MS, cb, () => drive.open(path, flags), (fd) => cb(0, fd)),
    read: (_path: string, fd: number, buf: Buffer, len: number, pos: number, cb: Cb) =>
      run("read", READ_OP_DEADLINE_MS, cb, (signal) => drive.read(fd, buf, len, pos, { signal }), (n) => cb(n), true),
    write: (_path: string, fd: number, buf: Buffer, len: number, pos: number, cb: Cb) => run("write", META_OP_DEADLINE_MS, cb, () => drive.write(fd, buf, len, pos), (n) => cb(n)),
    truncate: (path: string, size: number, cb: Cb) => run("truncate", UPLOAD_OP_DEADLINE_MS, cb, () => drive.truncate(path, size), ok(cb)),
    ftruncate: (_path: string, fd: number, size: number, cb: Cb) => run("ftruncate", META_OP_DEADLINE_MS, cb, () => drive.ftruncate(fd, size), ok(cb)),
    flush: (_path: string, fd: number, cb: Cb) => run("flush", META_OP_DEADLINE_MS, cb, () => drive.flush(fd), ok(cb)),
    // fuse-native passes (path, datasync, fd, cb) — datasync before fd.
    fsync: (_path: string, _datasync: number, fd: number, cb: Cb) => run("fsync", UPLOAD_OP_DEADLINE_MS, cb, (signal) => drive.fsync(fd, { signal }), ok(cb), true),
    release: (_path: string, fd: number, cb: Cb) => run("release", META_OP_DEADLINE_MS, cb, () => drive.release(fd), ok(cb)),
  };
}

/** Decodes the octal escapes of a /proc/self/mountinfo field. */
function unescapeMountField(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(Number.parseInt(oct, 8)));
}

/** Whether `dir` (absolute) is a mount point according to /proc/self/mountinfo. */
export async function isMountPoint(dir: string): Promise<boolean> {
  const text = await readFile("/proc/self/mountinfo", "utf8").catch(() => "");
  return text.split("\n").some((line) => unescapeMountField(line.split(" ")[4] ?? "") === dir);
}

/**
 * Checks `mountpoint` before mounting: a stale FUSE mount (left by a crashed
 * process: `ENOTCONN`) is cleared with `fusermount -uz`; a live mount or a
 * non-empty directory is refused. Returns the absolute path.
 */
export async function prepareMountPoint(mountpoint: string, logger: Logger = silentLogger("dstor:fuse")): Promise<string> {
  const dir = resolve(mountpoint);
  if (await isMountPoint(dir)) {
    const probe = await raceSignal(
      stat(dir).then(
        () => "live" as const,
        (error: NodeJS.ErrnoException) => (error.code === "ENOTCONN" || error.code === "ECONNABORTED" ? ("stale" as const) : ("live" as const)),
      ),
      AbortSignal.timeout(5_000),
    ).catch(() => "live" as const);
    if (probe === "live") throw new DstorError("FILE_EXISTS", `${dir} is already mounted; run \`dstor unmount ${mountpoint}\` first`, { details: { mountpoint: dir } });
    logger.warn("clearing a stale mount left by an earlier process", { mountpoint: dir });
    await fusermount(dir, true);
  }
  let entries: string[];
  try {
    if (!(await stat(dir)).isDirectory()) throw new DstorError("NOT_A_DIRECTORY", `${dir} is not a directory`);
    entries = await readdir(dir);
  } catch (error) {
    if (error instanceof DstorError) throw error;
    throw new DstorError("NO_SUCH_FILE", `mount point ${dir} does not exist; create it with mkdir`, { cause: error });
  }
  if (entries.length > 0) throw new DstorError("DIRECTORY_NOT_EMPTY", `mount point ${dir} is not empty; mount on an empty directory`, { details: { mountpoint: dir } });
  return dir;
}

/** `fusermount -u` (`lazy`: `-uz`) of `dir`. */
export async function fusermount(dir: string, lazy = false): Promise<void> {
  try {
    await execFileAsync("fusermount", [lazy ? "-uz" : "-u", dir], { timeout: 10_000 });
  } catch (error) {
    const stderr = String((error as { stderr?: unknown }).stderr ?? "").trim();
    throw new DstorError("INTERNAL", `could not unmount ${dir}: ${stderr || String(error)}`, { cause: error, details: { mountpoint: dir } });
  }
}

/** Options of {@link mountDrive}. */
export interface MountInit {
  allowOther?: boolean;
  logger?: Logger;
}

/** A mounted drive. */
export interface MountedDrive {
  mountpoint: string;
  /** Unmounts (idempotent). */
  unmount(): Promise<void>;
}

/**
 * Largest write the kernel hands us in one FUSE request, in bytes. libfuse 2
 * splits writes into 4 KiB requests unless mounted with `big_writes`: a
 * 64 MiB sequential write was 16 384 round trips through the event loop and
 * took 7.5 s; with 128 KiB requests it takes 0.35 s (bench:fuse --quick).
 */
export const FUSE_MAX_WRITE_BYTES = 128 * 1024;

/**
 * fuse-native has no setting for `big_writes`/`max_write`, but joins its
 * options into one `-o a,b,c` argument: riding on `fsname` passes them to
 * libfuse as options of their own (the file system is still named `dstor`).
 */
const FSNAME_WITH_OPTIONS = `dstor,big_writes,max_write=${FUSE_MAX_WRITE_BYTES}`;

/** Mounts `drive` at the (prepared) absolute `mountpoint`. */
export async function mountDrive(drive: Drive, mountpoint: string, init: MountInit = {}): Promise<MountedDrive> {
  const logger = init.logger ?? silentLogger("dstor:fuse");
  const Fuse = loadFuse(logger);
  // fuse-native's own timeouts are a backstop behind ours (they answer ETIMEDOUT too).
  const backstop = 30_000;
  const fuse = new Fuse(mountpoint, fuseOperations(drive, logger), {
    force: false,
    mkdir: false,
    allowOther: init.allowOther ?? false,
    fsname: FSNAME_WITH_OPTIONS,
    subtype: "dstor",
    // auto_cache: the kernel keeps a file's pages across opens while its size and mtime stay the same
    // (every change goes through this mount, so they change with it): warm reads run at page-cache speed.
    autoCache: true,
    entryTimeout: KERNEL_CACHE_TIMEOUT_S,
    attrTimeout: KERNEL_CACHE_TIMEOUT_S,
    timeout: {
      default: META_OP_DEADLINE_MS + backstop,
      read: READ_OP_DEADLINE_MS + backstop,
      open: READ_OP_DEADLINE_MS + backstop,
      fsync: UPLOAD_OP_DEADLINE_MS + backstop,
      truncate: UPLOAD_OP_DEADLINE_MS + backstop,
      unlink: UPLOAD_OP_DEADLINE_MS + backstop,
      setxattr: UPLOAD_OP_DEADLINE_MS + backstop,
      rename: UPLOAD_OP_DEADLINE_MS + backstop,
    },
  });
  await new Promise<void>((res, rej) => fuse.mount((error) => (error ? rej(new DstorError("INTERNAL", `mounting ${mountpoint} failed: ${error.message}`, { cause: error })) : res())));
  let unmounting: Promise<void> | undefined;
  return {
    mountpoint,
    unmount() {
      unmounting ??= (async () => {
        if (!(await isMountPoint(mountpoint))) {
          releaseNativeHandle(fuse);
          return;
        }
        await new Promise<void>((res, rej) => fuse.unmount((error) => (error ? rej(error) : res())));
      })();
      return unmounting;
    },
  };
}
