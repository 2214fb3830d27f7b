/**
 * `dstor mount MOUNTPOINT`: the drive over FUSE, in the foreground. Replays
 * staged writes an earlier process left, mounts, prints a ready line, and on
 * SIGINT/SIGTERM (or an external `dstor unmount`) uploads every staged file,
 * unmounts and stops. With `--daemon` the same runs in a detached process
 * (its output in HOME/renter/mount.log) and the command returns once the
 * drive is mounted, like rclone's and gocryptfs' background mode.
 */
import { spawn } from "node:child_process";
import { mkdir, open, readFile } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import type { CommandModule } from "yargs";
import { SegmentCache } from "../../cache/segment-cache.js";
import { openStagingArea } from "../../cache/staging.js";
import { sleep } from "../../core/abort.js";
import { DstorError } from "../../core/errors.js";
import { createLogger } from "../../core/logging.js";
import { addOptions } from "../../core/options.js";
import { Drive } from "../../fuse/drive.js";
import { isMountPoint, mountDrive, prepareMountPoint } from "../../fuse/mount.js";
import { DriveStatusReporter } from "../../node/drive-status.js";
import { homePaths } from "../../node/home.js";
import { addRenterOptions, openRenterFromArgs, type RenterArgs } from "../renter-common.js";

/** Parsed options of `dstor mount`. */
export interface MountArgs extends RenterArgs {
  mountpoint: string;
  "read-only": boolean;
  "allow-other": boolean;
  "cache-size": number;
  "cache-dir"?: string;
  daemon?: boolean;
}

/** How often the mount process checks whether it was unmounted from outside, in ms. */
const UNMOUNT_POLL_MS = 1_000;

/** Longest wait for a background mount to report that it is mounted, in ms. */
const DAEMON_READY_TIMEOUT_MS = 120_000;

/** `dstor mount MOUNTPOINT`. */
export const mountCommand: CommandModule<object, MountArgs> = {
  command: "mount <mountpoint>",
  describe: "Mount the drive at MOUNTPOINT (an empty directory) and serve it until interrupted",
  builder: (yargs) =>
    addOptions(addRenterOptions(yargs), ["allow-other", "cache-dir", "cache-size", "daemon", "read-only"]).positional("mountpoint", {
      type: "string",
      describe: "An empty directory",
    }) as never,
  handler: (args) => (args.daemon === true ? startDaemon(args) : serveDrive(args)),
};

/**
 * `dstor mount --daemon`: runs this same command without `--daemon` (and
 * with `--json`) in a detached session, its stdout and stderr appended to
 * HOME/renter/mount.log, and returns once it reports `mounted`. If it exits
 * or stays silent past the deadline first, the command fails with its last
 * error line (`MOUNT_FAILED`) and nothing keeps running.
 */
async function startDaemon(args: MountArgs): Promise<void> {
  const logPath = join(homePaths(args.home).renter, "mount.log");
  await mkdir(dirname(logPath), { recursive: true });
  const log = await open(logPath, "a");
  const from = (await log.stat()).size;
  // Later flags win in yargs: the child serves in the foreground and speaks JSON.
  const argv = [...process.execArgv, process.argv[1]!, ...process.argv.slice(2), "--no-daemon", "--json"];
  const child = spawn(process.execPath, argv, { detached: true, stdio: ["ignore", log.fd, log.fd] });
  await log.close();
  let exitCode: number | null = null;
  child.once("exit", (code, signal) => {
    exitCode = code ?? (signal === null ? 1 : 128);
  });
  const output = async (): Promise<string> => (await readFile(logPath)).subarray(from).toString("utf8");
  const deadline = Date.now() + DAEMON_READY_TIMEOUT_MS;
  for (;;) {
    const text = await output();
    const mounted = text
      .split("\n")
      .map((line) => {
        try {
          return JSON.parse(line) as { event?: string; mountpoint?: string; replayed?: number };
        } catch {
          return undefined;
        }
      })
      .find((event) => event?.event === "mounted");
    if (mounted !== undefined) {
      child.unref();
      if (args.json) process.stdout.write(`${JSON.stringify({ ...mounted, daemon: true, pid: child.pid, log: logPath })}\n`);
      else process.stdout.write(`dstor drive mounted at ${mounted.mountpoint} in the background (pid ${child.pid}, log ${logPath}); \`dstor unmount ${mounted.mountpoint}\` stops it\n`);
      return;
    }
    const failed = exitCode !== null;
    if (failed || Date.now() > deadline) {
      if (!failed) child.kill("SIGTERM");
      const last = text.split("\n").filter((line) => line.startsWith("dstor: ")).pop() ?? text.trim().split("\n").pop() ?? "";
      throw new DstorError(
        "MOUNT_FAILED",
        failed
          ? `the background mount of ${resolve(args.mountpoint)} exited (code ${exitCode}): ${last.replace(/^dstor: /, "")} (log: ${logPath})`
          : `the background mount of ${resolve(args.mountpoint)} was not ready within ${DAEMON_READY_TIMEOUT_MS / 1000} s; stopped it (log: ${logPath})`,
        { details: { log: logPath } },
      );
    }
    await sleep(200);
  }
}

/**
 * Serves the drive of `args.home` at `args.mountpoint` until SIGINT/SIGTERM
 * or an external unmount (the body of `dstor mount`, also run by `dstor
 * recover --mount`).
 */
export async function serveDrive(args: MountArgs): Promise<void> {
  const log = createLogger("dstor:fuse");
  const mountpoint = await prepareMountPoint(args.mountpoint, log);
  // The drive is the long-running renter: it keeps the metadata snapshot in
  // the network up to date and runs the background workers.
  const node = await openRenterFromArgs(args, false, { snapshots: "auto", workers: true });
  let pending = 0;
  const status = new DriveStatusReporter({ home: args.home, mountpoint, metadata: node.metadata, backup: node.backup, logger: log });
  try {
    const staging = await openStagingArea(args["cache-dir"] ?? join(homePaths(args.home).renter, "cache"));
    const drive = new Drive({
      metadata: node.metadata,
      data: status.track(node.renter),
      staging,
      cache: new SegmentCache({ maxBytes: args["cache-size"] }),
      readOnly: args["read-only"],
      ...(node.capacity === undefined ? {} : { capacity: node.capacity }),
      logger: log,
    });
    status.start();
    const replayed = await drive.start();
    const mounted = await mountDrive(drive, mountpoint, { allowOther: args["allow-other"], logger: log });
    if (args.json) process.stdout.write(`${JSON.stringify({ event: "mounted", mountpoint, pid: process.pid, replayed, readOnly: args["read-only"] })}\n`);
    else process.stdout.write(`dstor drive mounted at ${mountpoint} (pid ${process.pid}${replayed > 0 ? `, ${replayed} staged write(s) replayed` : ""}); Ctrl-C to unmount\n`);
    await new Promise<void>((resolve) => {
      const finish = (): void => {
        clearInterval(poll);
        process.removeListener("SIGINT", finish);
        process.removeListener("SIGTERM", finish);
        resolve();
      };
      const poll = setInterval(() => {
        isMountPoint(mountpoint).then((still) => {
          if (!still) finish();
        }, () => {});
      }, UNMOUNT_POLL_MS);
      process.once("SIGINT", finish);
      process.once("SIGTERM", finish);
    });
    const failed = await drive.drain();
    await mounted.unmount().catch((error: unknown) => log.warn("unmount failed", { error: String(error) }));
    if (args.json) process.stdout.write(`${JSON.stringify({ event: "unmounted", mountpoint, failedUploads: failed })}\n`);
    else process.stdout.write(`unmounted ${mountpoint}${failed > 0 ? `; ${failed} staged file(s) could not be uploaded and will be replayed on the next mount` : ""}\n`);
    // The data is safe in the journal, but not in the network yet: scripts must see it.
    if (failed > 0) pending = failed;
  } finally {
    await node.stop();
    await status.stop();
    await status.write().catch(() => {});
  }
  if (pending > 0) {
    throw new DstorError(
      "UPLOAD_PENDING",
      `${pending} staged file(s) could not be uploaded at unmount; they stay in the journal and are uploaded on the next mount (see the log above)`,
      { details: { pending } },
    );
  }
}
