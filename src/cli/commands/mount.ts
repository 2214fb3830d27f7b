/**
 * `dstor mount MOUNTPOINT`: the drive over FUSE, in the foreground. Replays
 * staged writes an earlier process left, mounts, prints a ready line, and on
 * SIGINT/SIGTERM (or an external `dstor unmount`) uploads every staged file,
 * unmounts and stops.
 */
import { join } from "node:path";
import type { CommandModule } from "yargs";
import { SegmentCache } from "../../cache/segment-cache.js";
import { openStagingArea } from "../../cache/staging.js";
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
}

/** How often the mount process checks whether it was unmounted from outside, in ms. */
const UNMOUNT_POLL_MS = 1_000;

/** `dstor mount MOUNTPOINT`. */
export const mountCommand: CommandModule<object, MountArgs> = {
  command: "mount <mountpoint>",
  describe: "Mount the drive at MOUNTPOINT (an empty directory) and serve it until interrupted",
  builder: (yargs) =>
    addOptions(addRenterOptions(yargs), ["allow-other", "cache-dir", "cache-size", "read-only"]).positional("mountpoint", {
      type: "string",
      describe: "An empty directory",
    }) as never,
  handler: (args) => serveDrive(args),
};

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
  } finally {
    await node.stop();
    await status.stop();
    await status.write().catch(() => {});
  }
}
