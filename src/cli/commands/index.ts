/**
 * Every command of the CLI, in the order `--help` lists them.
 */
import type { CommandModule } from "yargs";
import { chainCommand } from "./chain.js";
import { initCommand } from "./init.js";

/** The registered commands. */
// biome-ignore lint/suspicious/noExplicitAny: yargs command modules have heterogenous argument types.
export const COMMANDS: CommandModule<any, any>[] = [initCommand, chainCommand];
