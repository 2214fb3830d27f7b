/**
 * What the mounted drive tells `dstor up`'s status screen: uploads in flight
 * with their progress, the files with where their pieces are, and the state
 * of the metadata backup. The drive process writes it to
 * HOME/renter/drive-status.json (temp file + rename, so a reader never sees
 * half a file) once a second; `dstor up`
 * reads it. A file, not a socket: nothing to connect, nothing to clean up,
 * and `cat` shows it.
 *
 * File health needs to know which farmers are up, which only `dstor up`
 * knows; so the drive lists each file's holders per segment and
 * {@link fileHealth} combines them with the farmers' liveness.
 */
import { readFile, rename, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { Logger } from "../core/logging.js";
import { parseRedundancyStrategy } from "../erasure/strategy.js";
import type { MetadataDb } from "../metadata/db.js";
import type { DriveData } from "../fuse/drive.js";
import type { Renter } from "../renter/renter.js";
import type { MetadataBackup } from "../renter/snapshots.js";
import { homePaths } from "./home.js";

/** How often the status file is rewritten, in ms. */
export const DRIVE_STATUS_INTERVAL_MS = 1_000;
/** How often the file list is re-read from metadata, in ms. */
const FILE_LIST_INTERVAL_MS = 5_000;
/** Files listed at most (the screen shows the count of the rest). */
export const DRIVE_STATUS_MAX_FILES = 200;

/** One upload from staging to the network. */
export interface UploadStatus {
  path: string;
  bytesDone: number;
  /** Total bytes, when known. */
  bytes?: number | undefined;
  startedAt: number;
}

/** One file of the drive. */
export interface FileStatus {
  path: string;
  size: number;
  /** `k/repair/optimal/total`. */
  redundancy: string;
  /** Stored inline in metadata (no pieces). */
  inline: boolean;
  /** Per segment, the wallets holding its pieces. */
  holders: string[][];
}

/** One farmer of the drive's metadata: pieces it holds and our audit record of it (for `dstor status` while mounted). */
export interface DriveFarmerStatus {
  address: string;
  pieces: number;
  successes: number;
  failures: number;
  corrupt: number;
  disqualified: boolean;
}

/** The content of drive-status.json. */
export interface DriveStatus {
  time: string;
  pid: number;
  mountpoint: string;
  uploads: UploadStatus[];
  files: FileStatus[];
  /** Files beyond {@link DRIVE_STATUS_MAX_FILES}, not listed. */
  moreFiles: number;
  /** The farmers in metadata (refreshed with the file list); absent in files of older drives. */
  farmers?: DriveFarmerStatus[] | undefined;
  /** `sequence`/`at`: the last snapshot this drive stored; `onChain`: the pointer's sequence when the drive started. */
  snapshot: {
    sequence?: number | undefined;
    at?: string | undefined;
    onChain?: number | undefined;
    dirty: boolean;
    /** A snapshot is being stored right now. */
    storing?: boolean | undefined;
    error?: string | undefined;
  };
}

/** The path of the drive status file of `home`. */
export function driveStatusPath(home: string): string {
  return join(homePaths(home).renter, "drive-status.json");
}

/** Reads the drive status of `home`; undefined when there is none (yet) or it is unreadable. */
export async function readDriveStatus(home: string): Promise<DriveStatus | undefined> {
  try {
    return JSON.parse(await readFile(driveStatusPath(home), "utf8")) as DriveStatus;
  } catch {
    return undefined;
  }
}

/**
 * Health of a file given which farmers are up: the lowest number of live
 * pieces over its segments against its strategy — `healthy` (≥ optimal),
 * `degraded` (> repair), `repair` (≥ k), `lost` (< k); `inline` for files
 * kept in metadata.
 */
export function fileHealth(file: FileStatus, isUp: (wallet: string) => boolean): { health: "inline" | "healthy" | "degraded" | "repair" | "lost"; live: number } {
  if (file.inline) return { health: "inline", live: 0 };
  const strategy = parseRedundancyStrategy(file.redundancy);
  const live = file.holders.reduce((min, holders) => Math.min(min, holders.filter(isUp).length), Number.POSITIVE_INFINITY);
  const n = Number.isFinite(live) ? live : 0;
  const health = n >= strategy.optimal ? "healthy" : n > strategy.repair ? "degraded" : n >= strategy.k ? "repair" : "lost";
  return { health, live: n };
}

/** Writes drive-status.json for one mounted drive; see the module note. */
export class DriveStatusReporter {
  readonly #path: string;
  readonly #mountpoint: string;
  readonly #metadata: MetadataDb;
  readonly #backup: MetadataBackup | undefined;
  readonly #log: Logger;
  readonly #uploads = new Map<number, UploadStatus>();
  #nextUpload = 0;
  #files: { list: FileStatus[]; more: number; farmers: DriveFarmerStatus[] } = { list: [], more: 0, farmers: [] };
  #filesAt = 0;
  #timer: NodeJS.Timeout | undefined;
  #writing: Promise<void> = Promise.resolve();
  #unsubscribe: (() => void) | undefined;

  constructor(init: { home: string; mountpoint: string; metadata: MetadataDb; backup?: MetadataBackup | undefined; logger: Logger }) {
    this.#path = driveStatusPath(init.home);
    this.#mountpoint = init.mountpoint;
    this.#metadata = init.metadata;
    this.#backup = init.backup;
    this.#log = init.logger;
  }

  /** Runs one upload listed among the uploads in flight (with its progress) until it ends; the file list is refreshed after it. */
  async #tracked<T>(path: string, bytes: number | undefined, run: (onProgress: (done: number) => void) => Promise<T>): Promise<T> {
    const id = this.#nextUpload++;
    const upload: UploadStatus = { path, bytesDone: 0, bytes, startedAt: Date.now() };
    this.#uploads.set(id, upload);
    try {
      return await run((done) => {
        upload.bytesDone = done;
      });
    } finally {
      this.#uploads.delete(id);
      this.#filesAt = 0; // the file list changed
    }
  }

  /**
   * The renter as the drive's data source, with every put and rewrite tracked as an
   * upload in flight: progress is the bytes of whole segments stored on
   * `optimal` farmers (the renter's own progress), of the staged file's size.
   */
  track(renter: Renter): DriveData {
    return {
      put: async (path, source, options) => {
        const file = (source as { path?: unknown }).path;
        const bytes = typeof file === "string" ? await stat(file).then((s) => s.size, () => undefined) : undefined;
        return this.#tracked(path, bytes, (onProgress) => renter.put(path, source, { ...options, onProgress }));
      },
      rewrite: (path, change, options) => this.#tracked(path, change.size, (onProgress) => renter.rewrite(path, change, { ...options, onProgress })),
      read: (path, options) => renter.read(path, options),
      readRange: (path, offset, length, options) => renter.readRange(path, offset, length, options),
      flushDeletes: (options) => renter.flushDeletes(options),
    };
  }

  /** Starts writing the status file. */
  start(): void {
    this.#unsubscribe = this.#metadata.onChange((keys) => {
      if (keys.some((k) => k.startsWith("d/") || k.startsWith("i/"))) this.#filesAt = 0;
    });
    this.#timer = setInterval(() => {
      this.#writing = this.#writing.then(() => this.#tick()).catch((error: unknown) => this.#log.debug("drive status not written", { error: String(error) }));
    }, DRIVE_STATUS_INTERVAL_MS);
    this.#timer.unref();
  }

  async #listFiles(): Promise<void> {
    const list: FileStatus[] = [];
    let more = 0;
    const walk = async (dir: string): Promise<void> => {
      for (const entry of await this.#metadata.readdir(dir)) {
        const path = `${dir === "/" ? "" : dir}/${entry.name}`;
        const r = entry.record;
        if (r.type === "dir") {
          await walk(path);
          continue;
        }
        if (r.type !== "file" || r.file === undefined) continue;
        if (list.length >= DRIVE_STATUS_MAX_FILES) {
          more++;
          continue;
        }
        const inline = r.file.inline !== undefined;
        const holders = inline ? [] : (await this.#metadata.segments(r.inode)).map((s) => Object.values(s.holders));
        list.push({ path, size: r.size, redundancy: r.file.redundancy, inline, holders });
      }
    };
    await walk("/");
    const farmers: DriveFarmerStatus[] = [];
    for (const r of await this.#metadata.farmers()) {
      const pieces = (await this.#metadata.piecesOn(r.address)).length;
      farmers.push({ address: r.address, pieces, successes: r.successes, failures: r.failures, corrupt: r.corrupt, disqualified: r.disqualified === true });
    }
    this.#files = { list, more, farmers };
    this.#filesAt = Date.now();
  }

  async #tick(): Promise<void> {
    if (Date.now() - this.#filesAt > FILE_LIST_INTERVAL_MS) await this.#listFiles();
    await this.write();
  }

  /** Writes the status file now. */
  async write(): Promise<void> {
    const backup = this.#backup;
    const error = backup?.lastError;
    const last = backup?.last;
    const status: DriveStatus = {
      time: new Date().toISOString(),
      pid: process.pid,
      mountpoint: this.#mountpoint,
      uploads: [...this.#uploads.values()],
      files: this.#files.list,
      moreFiles: this.#files.more,
      farmers: this.#files.farmers,
      snapshot: {
        ...(last === undefined ? {} : { sequence: last.sequence, at: new Date(last.at).toISOString() }),
        ...(backup?.pointerAtStart === undefined ? {} : { onChain: backup.pointerAtStart }),
        dirty: backup?.dirty ?? false,
        storing: backup?.storing ?? false,
        ...(error === undefined ? {} : { error: String((error as Error).message ?? error) }),
      },
    };
    await writeFile(`${this.#path}.tmp`, `${JSON.stringify(status)}\n`);
    await rename(`${this.#path}.tmp`, this.#path);
  }

  /** Stops writing (idempotent); the last status stays on disk. */
  async stop(): Promise<void> {
    clearInterval(this.#timer);
    this.#timer = undefined;
    this.#unsubscribe?.();
    this.#unsubscribe = undefined;
    await this.#writing;
  }
}
