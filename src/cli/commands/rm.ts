/**
 * `dstor rm [-r] PATH`: remove a file (or a directory tree) from the drive
 * and delete its pieces on the farmers with signed delete orders.
 */
import type { CommandModule } from "yargs";
import { addRenterOptions, openRenterFromArgs, type RenterArgs } from "../renter-common.js";

interface RmArgs extends RenterArgs {
  path: string;
  recursive: boolean;
}

/** `dstor rm [-r] PATH`. */
export const rmCommand: CommandModule<object, RmArgs> = {
  command: "rm <path>",
  describe: "Remove a file (or with -r a directory) and delete its pieces on the farmers",
  builder: (yargs) =>
    addRenterOptions(yargs)
      .positional("path", { type: "string", describe: "File or directory in the drive" })
      .option("recursive", { alias: "r", type: "boolean", default: false, describe: "Remove directories and their contents" }) as never,
  handler: async (args) => {
    const node = await openRenterFromArgs(args);
    try {
      const result = await node.renter.remove(args.path, { recursive: args.recursive });
      if (args.json) {
        process.stdout.write(`${JSON.stringify({ path: args.path, ...result })}\n`);
      } else {
        const pending = result.remaining > 0 ? `; ${result.remaining} piece(s) could not be deleted yet and will be retried` : "";
        process.stdout.write(`removed ${result.files} file(s), ${result.directories} directory(ies); deleted ${result.deleted} piece(s)${pending}\n`);
      }
    } finally {
      await node.stop();
    }
  },
};
