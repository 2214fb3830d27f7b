/**
 * `dstor status`: per-file health, the farmers holding our pieces with their
 * on-chain reputation and our own audit record, deals and balances, and the
 * last repair (src/node/status.ts). Reads metadata and the chain only.
 */
import type { CommandModule } from "yargs";
import { resolveChainEndpoint } from "../../chain/devchain.js";
import { collectStatus, renderStatus } from "../../node/status.js";
import { addRenterOptions, openRenterFromArgs, type RenterArgs } from "../renter-common.js";

/** `dstor status [--json]`. */
export const statusCommand: CommandModule<object, RenterArgs> = {
  command: "status",
  describe: "Show file health, farmers (reputation, audits), deals, balances and the last repair",
  builder: (yargs) => addRenterOptions(yargs) as never,
  handler: async (args) => {
    const node = await openRenterFromArgs(args, true);
    try {
      const chain = await resolveChainEndpoint({ home: args.home, chainRpc: args["chain-rpc"], port: args.port, deploymentPath: args.deployment });
      const status = await collectStatus(args.home, node.address, node.metadata, chain);
      process.stdout.write(args.json ? `${JSON.stringify(status)}\n` : `${renderStatus(status)}\n`);
    } finally {
      await node.stop();
    }
  },
};
