/**
 * `dstor status`: per-file health, the farmers holding our pieces with their
 * on-chain reputation and our own audit record, deals and balances, and the
 * last repair (src/node/status.ts). Reads metadata and the chain only — or,
 * while the drive is mounted (its process holds the metadata database), the
 * drive's status file and the chain; the output names its source.
 */
import type { CommandModule } from "yargs";
import { resolveChainEndpoint } from "../../chain/devchain.js";
import { DstorError, isDstorError } from "../../core/errors.js";
import { deriveKeys } from "../../crypto/keys.js";
import { readDriveStatus } from "../../node/drive-status.js";
import { loadPhrase } from "../../node/home.js";
import { collectStatus, driveView, metadataView, renderStatus, type StatusView } from "../../node/status.js";
import { addRenterOptions, openRenterFromArgs, type RenterArgs } from "../renter-common.js";

/** Whether process `pid` is alive (signal 0 only checks). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** The view of `home`: its metadata, or the mounted drive's status file when the drive holds the metadata. */
async function openView(args: RenterArgs): Promise<{ address: string; view: StatusView }> {
  let node: Awaited<ReturnType<typeof openRenterFromArgs>>;
  try {
    node = await openRenterFromArgs(args, true);
  } catch (error) {
    if (!isDstorError(error, "HOME_IN_USE")) throw error;
    const drive = await readDriveStatus(args.home);
    const holder = Number((error.details as { pid?: unknown }).pid);
    // Only the drive writes that file: a holder that is another process (a `dstor put`) has no status to read.
    if (drive === undefined || !alive(drive.pid) || (Number.isSafeInteger(holder) && holder > 0 && holder !== drive.pid)) {
      throw new DstorError("HOME_IN_USE", `${error.message}; and no mounted drive's status file is available to read instead`, { cause: error });
    }
    return { address: deriveKeys(await loadPhrase(args.home)).wallet.address.toLowerCase(), view: driveView(drive) };
  }
  try {
    return { address: node.address, view: await metadataView(node.metadata) };
  } finally {
    await node.stop();
  }
}

/** `dstor status [--json]`. */
export const statusCommand: CommandModule<object, RenterArgs> = {
  command: "status",
  describe: "Show file health, farmers (reputation, audits), deals, balances and the last repair (also while the drive is mounted)",
  builder: (yargs) => addRenterOptions(yargs) as never,
  handler: async (args) => {
    const { address, view } = await openView(args);
    const chain = await resolveChainEndpoint({ home: args.home, chainRpc: args["chain-rpc"], port: args.port, deploymentPath: args.deployment });
    const status = await collectStatus(args.home, address, view, chain);
    process.stdout.write(args.json ? `${JSON.stringify(status)}\n` : `${renderStatus(status)}\n`);
  },
};
