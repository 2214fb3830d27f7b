/**
 * `dstor put LOCAL REMOTE`: encrypt a local file and store it on farmers.
 */
import { stat } from "node:fs/promises";
import { basename } from "node:path";
import type { CommandModule } from "yargs";
import { DstorError, isDstorError } from "../../core/errors.js";
import { readFileChunks } from "../../core/file-chunks.js";
import { addRenterOptions, openRenterFromArgs, progressBar, type RenterArgs } from "../renter-common.js";

interface PutArgs extends RenterArgs {
  local: string;
  remote: string;
}

/** `dstor put LOCAL REMOTE`. */
export const putCommand: CommandModule<object, PutArgs> = {
  command: "put <local> <remote>",
  describe: "Store a local file in the drive (REMOTE may be a directory, ending in /)",
  builder: (yargs) =>
    addRenterOptions(yargs)
      .positional("local", { type: "string", describe: "The local file" })
      .positional("remote", { type: "string", describe: "Where in the drive, e.g. /docs/report.pdf" }) as never,
  handler: async (args) => {
    let info: Awaited<ReturnType<typeof stat>>;
    try {
      info = await stat(args.local);
    } catch (cause) {
      throw new DstorError("NO_SUCH_FILE", `no such file: ${args.local}`, { cause });
    }
    if (!info.isFile()) throw new DstorError("IS_A_DIRECTORY", `${args.local} is not a regular file`);
    const node = await openRenterFromArgs(args);
    try {
      let remote = args.remote;
      if (remote.endsWith("/")) remote += basename(args.local);
      else {
        try {
          if ((await node.metadata.lookup(remote)).type === "dir") remote = `${remote}/${basename(args.local)}`;
        } catch (error) {
          if (!isDstorError(error, "NO_SUCH_FILE")) throw error;
        }
      }
      // Like `rclone copyto`: missing parent directories are created.
      const slash = remote.lastIndexOf("/");
      if (slash > 0) await node.metadata.mkdir(remote.slice(0, slash), { parents: true });
      const progress = progressBar(`put ${basename(args.local)}`, info.size, !args.json);
      const started = performance.now();
      const result = await node.renter.put(remote, readFileChunks(args.local), {
        mode: info.mode & 0o777,
        mtimeMs: info.mtimeMs,
        onProgress: (done) => progress.update(done),
      });
      progress.finish();
      const seconds = (performance.now() - started) / 1000;
      if (args.json) {
        process.stdout.write(`${JSON.stringify({ ...result, seconds })}\n`);
      } else {
        const where = result.inline ? "inline in metadata" : `${result.segments} segment(s), ${result.piecesStored} pieces`;
        process.stdout.write(`${args.local} → ${result.path} (${result.size} bytes, ${where}, ${seconds.toFixed(2)} s)\n`);
      }
    } finally {
      await node.stop();
    }
  },
};
