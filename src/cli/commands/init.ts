/**
 * `dstor init`: create a home with a new (or given) phrase and show it once.
 */
import { readFile } from "node:fs/promises";
import type { CommandModule } from "yargs";
import { addOptions } from "../../core/options.js";
import { initHome } from "../../node/home.js";

interface InitArgs {
  home: string;
  json: boolean;
  "phrase-file"?: string;
}

/** `dstor init [--home DIR] [--phrase-file FILE]`. */
export const initCommand: CommandModule<object, InitArgs> = {
  command: "init",
  describe: "Create a home directory with a new 24-word phrase (or the one in --phrase-file)",
  builder: (yargs) =>
    addOptions(yargs, ["home", "json", "phrase-file"]) as never,
  handler: async (args) => {
    let phrase: string | undefined;
    if (args["phrase-file"] !== undefined) {
      phrase = await readFile(args["phrase-file"] === "-" ? "/dev/stdin" : args["phrase-file"], "utf8");
    }
    const identity = await initHome(args.home, phrase);
    if (args.json) {
      process.stdout.write(`${JSON.stringify({ home: args.home, address: identity.address, created: identity.created })}\n`);
      return;
    }
    if (!identity.created) {
      process.stdout.write(`${args.home} already exists; wallet ${identity.address}\n`);
      return;
    }
    process.stdout.write(
      [
        `Created ${args.home}; wallet ${identity.address}`,
        "",
        "Your phrase (write it down now and keep it offline; it is the only way to get",
        "your files back if this machine is lost, and anyone who has it has your files):",
        "",
        `    ${identity.phrase}`,
        "",
      ].join("\n"),
    );
  },
};
