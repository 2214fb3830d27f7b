/**
 * `dstor ls [-l] [PATH]`: list a directory of the drive (metadata only).
 * Like `ls -F`/`ls -l`: directories end in `/`, symlinks in `@` (`-> target` with -l).
 */
import type { CommandModule } from "yargs";
import type { InodeRecord } from "../../metadata/types.js";
import { addRenterOptions, openRenterFromArgs, type RenterArgs } from "../renter-common.js";

interface LsArgs extends RenterArgs {
  path: string;
  long: boolean;
}

function modeString(r: InodeRecord): string {
  const bits = "rwxrwxrwx";
  let out = r.type === "dir" ? "d" : r.type === "symlink" ? "l" : "-";
  for (let i = 0; i < 9; i++) out += r.mode & (1 << (8 - i)) ? bits[i] : "-";
  return out;
}

/** `dstor ls [-l] [PATH]`. */
export const lsCommand: CommandModule<object, LsArgs> = {
  command: "ls [path]",
  describe: "List a directory of the drive",
  builder: (yargs) =>
    addRenterOptions(yargs, true)
      .positional("path", { type: "string", default: "/", describe: "Directory (or file) in the drive" })
      .option("long", { alias: "l", type: "boolean", default: false, describe: "Show mode, size and modification time" }) as never,
  handler: async (args) => {
    const node = await openRenterFromArgs(args, true);
    try {
      const target = await node.metadata.lookup(args.path);
      const entries =
        target.type === "dir" ? await node.metadata.readdir(args.path) : [{ name: args.path.split("/").filter(Boolean).pop() ?? "/", record: target }];
      if (args.json) {
        const rows = entries.map((e) => ({
          name: e.name,
          type: e.record.type,
          size: e.record.size,
          mode: e.record.mode,
          mtimeMs: e.record.mtimeMs,
          ...(e.record.target === undefined ? {} : { target: e.record.target }),
        }));
        process.stdout.write(`${JSON.stringify(rows)}\n`);
        return;
      }
      const lines = entries.map((e) => {
        const name = e.record.type === "dir" ? `${e.name}/` : e.record.type === "symlink" && !args.long ? `${e.name}@` : e.name;
        if (!args.long) return name;
        const link = e.record.type === "symlink" ? ` -> ${e.record.target}` : "";
        return `${modeString(e.record)} ${String(e.record.size).padStart(12)} ${new Date(e.record.mtimeMs).toISOString()} ${name}${link}`;
      });
      if (lines.length > 0) process.stdout.write(`${lines.join("\n")}\n`);
    } finally {
      await node.stop();
    }
  },
};
