/**
 * `dstor get REMOTE LOCAL`: fetch a file from farmers, verify, decode and
 * decrypt it into a local file (written to a temp file, fsynced, renamed, so
 * a failed get never leaves a truncated file under the real name).
 */
import { open, rename, rm, stat } from "node:fs/promises";
import { basename, join } from "node:path";
import type { CommandModule } from "yargs";
import { DstorError } from "../../core/errors.js";
import { addRenterOptions, openRenterFromArgs, progressBar, type RenterArgs } from "../renter-common.js";

interface GetArgs extends RenterArgs {
  remote: string;
  local: string;
  offset?: number;
  length?: number;
}

/** `dstor get REMOTE LOCAL [--offset N --length N]`. */
export const getCommand: CommandModule<object, GetArgs> = {
  command: "get <remote> <local>",
  describe: "Fetch a file from the drive into a local file ('-' for standard output)",
  builder: (yargs) =>
    addRenterOptions(yargs)
      .positional("remote", { type: "string", describe: "The file in the drive" })
      .positional("local", { type: "string", describe: "The local file (or directory) to write" })
      .option("offset", { type: "number", describe: "Fetch only bytes from this offset (with --length)" })
      .option("length", { type: "number", describe: "Fetch only this many bytes (with --offset)" }) as never,
  handler: async (args) => {
    const node = await openRenterFromArgs(args);
    try {
      const record = await node.metadata.lookup(args.remote);
      if (record.type !== "file") throw new DstorError("IS_A_DIRECTORY", `${args.remote} is a ${record.type === "dir" ? "directory" : "symbolic link"}, not a file`);
      let local = args.local;
      if (local !== "-") {
        try {
          if ((await stat(local)).isDirectory()) local = join(local, basename(args.remote));
        } catch {
          // a new file
        }
      }
      const ranged = args.offset !== undefined || args.length !== undefined;
      const total = ranged ? Math.max(0, Math.min(record.size, (args.offset ?? 0) + (args.length ?? record.size)) - (args.offset ?? 0)) : record.size;
      const progress = progressBar(`get ${basename(args.remote)}`, total, !args.json && local !== "-");
      const started = performance.now();
      const tmp = local === "-" ? undefined : `${local}.dstor-partial`;
      const handle = tmp === undefined ? undefined : await open(tmp, "w", record.mode & 0o777);
      let written = 0;
      try {
        const write = async (chunk: Uint8Array): Promise<void> => {
          if (handle === undefined) {
            await new Promise<void>((resolve, reject) => process.stdout.write(chunk, (e) => (e ? reject(e) : resolve())));
          } else {
            let at = 0;
            while (at < chunk.byteLength) at += (await handle.write(chunk, at, chunk.byteLength - at)).bytesWritten;
          }
          written += chunk.byteLength;
        };
        if (ranged) {
          await write(await node.renter.readRange(args.remote, args.offset ?? 0, args.length ?? record.size));
          progress.update(written);
        } else {
          // Transient chunks: each is written out before the next is asked for.
          for await (const chunk of node.renter.read(args.remote, { transient: true, onProgress: (done) => progress.update(done) })) await write(chunk);
        }
        if (handle !== undefined) {
          await handle.sync();
          await handle.close();
          await rename(tmp!, local);
        }
      } catch (error) {
        await handle?.close().catch(() => {});
        if (tmp !== undefined) await rm(tmp, { force: true });
        throw error;
      }
      progress.finish();
      const seconds = (performance.now() - started) / 1000;
      if (args.json) process.stdout.write(`${JSON.stringify({ path: args.remote, local, size: written, seconds })}\n`);
      else if (local !== "-") process.stdout.write(`${args.remote} → ${local} (${written} bytes, ${seconds.toFixed(2)} s)\n`);
    } finally {
      await node.stop();
    }
  },
};
