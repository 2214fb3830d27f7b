/**
 * `dstor unmount MOUNTPOINT`: `fusermount -u`. The mount process notices,
 * uploads what is still staged and exits.
 */
import { resolve } from "node:path";
import type { CommandModule } from "yargs";
import { DstorError } from "../../core/errors.js";
import { addOptions } from "../../core/options.js";
import { fusermount, isMountPoint } from "../../fuse/mount.js";

interface UnmountArgs {
  mountpoint: string;
  json: boolean;
}

/** `dstor unmount MOUNTPOINT`. */
export const unmountCommand: CommandModule<object, UnmountArgs> = {
  command: "unmount <mountpoint>",
  describe: "Unmount a mounted drive",
  builder: (yargs) => addOptions(yargs, ["json"]).positional("mountpoint", { type: "string", describe: "Where the drive is mounted" }) as never,
  handler: async (args) => {
    const dir = resolve(args.mountpoint);
    if (!(await isMountPoint(dir))) throw new DstorError("INVALID_ARGUMENT", `${dir} is not mounted`);
    await fusermount(dir);
    if (args.json) process.stdout.write(`${JSON.stringify({ event: "unmounted", mountpoint: dir })}\n`);
    else process.stdout.write(`unmounted ${dir}\n`);
  },
};
