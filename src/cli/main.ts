/**
 * The `dstor` command line. Each command lives in src/cli/commands/ as a
 * yargs CommandModule; options come from the one table in src/core/options.ts.
 * This is the only layer that prints to the console or sets exit codes.
 */
import "../core/v8-flags.js";
import yargs from "yargs";
import { hideBin } from "yargs/helpers";
import { isDstorError } from "../core/errors.js";
import { COMMANDS } from "./commands/index.js";

/** Runs the CLI with `argv` (without node and script). Resolves to the exit code. */
export async function runCli(argv: string[]): Promise<number> {
  let failed: unknown;
  const parser = yargs(argv)
    .scriptName("dstor")
    .usage("$0 <command> [options]\n\ndstor: an encrypted drive stored on independent farmers.")
    .strict()
    .recommendCommands()
    .demandCommand(1, "Name a command; `dstor --help` lists them.")
    .help()
    .alias("h", "help")
    .version()
    .wrap(Math.min(110, process.stdout.columns ?? 100))
    .fail((message, error) => {
      failed = error ?? new Error(message);
    });
  for (const command of COMMANDS) parser.command(command);
  try {
    await parser.parseAsync();
  } catch (error) {
    failed ??= error;
  }
  if (failed === undefined) return 0;
  if (isDstorError(failed)) {
    process.stderr.write(`dstor: ${failed.message}\n`);
    return 1;
  }
  const message = failed instanceof Error ? failed.message : String(failed);
  process.stderr.write(`dstor: ${message}\n`);
  return 2;
}

if (import.meta.url === `file://${process.argv[1]}` || process.argv[1]?.endsWith("/dist/src/cli/main.js")) {
  const code = await runCli(hideBin(process.argv));
  process.exitCode = code;
}
