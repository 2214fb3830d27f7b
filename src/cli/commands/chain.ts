/**
 * `dstor chain`: run the embedded dev chain (anvil) in the foreground, deploy
 * the contracts on first start, print the RPC URL and contract addresses, and
 * stop it cleanly (state saved) on SIGINT/SIGTERM.
 */
import type { CommandModule } from "yargs";
import { waitForStopSignal } from "../signals.js";
import { devParams } from "../../chain/contracts.js";
import { devChainPaths, startDevChain } from "../../chain/devchain.js";
import { DstorError } from "../../core/errors.js";
import { createLogger } from "../../core/logging.js";
import { addOptions } from "../../core/options.js";

interface ChainArgs {
  home: string;
  port: number;
  "block-time": number;
  "epoch-seconds": number;
  "chain-rpc"?: string;
  json: boolean;
}

/** `dstor chain --home DIR --port N [--block-time S] [--epoch-seconds S]`. */
export const chainCommand: CommandModule<object, ChainArgs> = {
  command: "chain",
  describe: "Run the embedded local chain (anvil) with the dstor contracts until interrupted",
  builder: (yargs) => addOptions(yargs, ["home", "port", "block-time", "epoch-seconds", "chain-rpc", "json"]) as never,
  handler: async (args) => {
    if (args["chain-rpc"] !== undefined) {
      throw new DstorError(
        "INVALID_OPTION",
        "`dstor chain` runs the embedded chain; with --chain-rpc the other commands use that endpoint and nothing needs to run here",
      );
    }
    const logger = createLogger("dstor:chain", { defaultLevel: "info" });
    const chain = await startDevChain({
      home: args.home,
      port: args.port,
      blockTimeSeconds: args["block-time"],
      params: devParams(args["epoch-seconds"]),
      logger,
    });
    const { deployment } = chain;
    if (args.json) {
      process.stdout.write(`${JSON.stringify({ rpcUrl: chain.rpcUrl, ...deployment })}\n`);
    } else {
      process.stdout.write(
        [
          `dstor chain running at ${chain.rpcUrl} (chain id ${chain.chainId}, anvil pid ${chain.pid})`,
          `  token      ${deployment.token}`,
          `  registry   ${deployment.registry}`,
          `  market     ${deployment.market}`,
          `  randomness ${deployment.randomness} (epochs of ${deployment.params.epochSeconds} s)`,
          `  deployment ${devChainPaths(args.home).deployment}${chain.deployedNow ? " (deployed now)" : ""}`,
          "Press Ctrl-C to stop (state is saved).",
          "",
        ].join("\n"),
      );
    }
    await waitForStopSignal();
    await chain.stop();
  },
};
