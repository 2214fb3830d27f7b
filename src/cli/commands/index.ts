/**
 * Every command of the CLI, in the order `--help` lists them.
 */
import type { CommandModule } from "yargs";
import { chainCommand } from "./chain.js";
import { farmCommand } from "./farm.js";
import { getCommand } from "./get.js";
import { initCommand } from "./init.js";
import { lsCommand } from "./ls.js";
import { mountCommand } from "./mount.js";
import { putCommand } from "./put.js";
import { recoverCommand } from "./recover.js";
import { rmCommand } from "./rm.js";
import { statCommand } from "./stat.js";
import { statusCommand } from "./status.js";
import { unmountCommand } from "./unmount.js";
import { upCommand } from "./up.js";

/** The registered commands. */
// biome-ignore lint/suspicious/noExplicitAny: yargs command modules have heterogenous argument types.
export const COMMANDS: CommandModule<any, any>[] = [upCommand, initCommand, chainCommand, farmCommand, putCommand, getCommand, lsCommand, rmCommand, statCommand, statusCommand, mountCommand, unmountCommand, recoverCommand];
