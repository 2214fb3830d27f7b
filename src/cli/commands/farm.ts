/**
 * `dstor farm`: run a farmer daemon in the foreground. Creates or loads the
 * farmer's identity, opens the piece store, starts the libp2p node with the
 * dstor protocols, joins or updates the on-chain registry, prints its PeerId,
 * addresses and wallet, and stops cleanly on SIGINT/SIGTERM (uploads in
 * flight are aborted, never left half-written).
 */
import { readFile } from "node:fs/promises";
import type { CommandModule } from "yargs";
import { waitForStopSignal } from "../signals.js";
import { resolveChainEndpoint } from "../../chain/devchain.js";
import { DstorError } from "../../core/errors.js";
import { createLogger } from "../../core/logging.js";
import { addOptions } from "../../core/options.js";
import { formatBytes } from "../../core/units.js";
import { EXPIRY_SWEEP_INTERVAL_MS } from "../../farmer/service.js";
import { checkBulkPort, startFarmerNode } from "../../node/farmer-node.js";

interface FarmArgs {
  home: string;
  storage?: string;
  quota: number;
  "price-tb-month": number;
  "egress-price-gb": number;
  confirmations?: number;
  listen: string[];
  "bulk-port": number;
  bootstrap?: string[];
  dht: boolean;
  "chain-rpc"?: string;
  deployment?: string;
  port: number;
  "unconfirmed-ttl": number;
  "dev-refuse-reads": boolean;
  json: boolean;
  "phrase-file"?: string;
}

/** `dstor farm --storage DIR --quota 500GB --price-tb-month 1.5 --listen /ip4/0.0.0.0/tcp/PORT`. */
export const farmCommand: CommandModule<object, FarmArgs> = {
  command: "farm",
  describe: "Offer disk space as a farmer: serve pieces over libp2p and register on-chain, until interrupted",
  builder: (yargs) =>
    addOptions(yargs, ["home", "storage", "quota", "price-tb-month", "egress-price-gb", "listen", "bulk-port", "bootstrap", "dht", "chain-rpc", "deployment", "port", "unconfirmed-ttl", "confirmations", "dev-refuse-reads", "json"]).option(
      "phrase-file",
      { type: "string", describe: "Create the home with the phrase in this file (first run only) instead of a new one" },
    ) as never,
  handler: async (args) => {
    if (!(args["unconfirmed-ttl"] > 0)) throw new DstorError("INVALID_OPTION", "--unconfirmed-ttl must be a positive number of seconds");
    checkBulkPort(args["bulk-port"]);
    const logger = createLogger("dstor:farmer", { defaultLevel: "info" });
    const phrase = args["phrase-file"] === undefined ? undefined : await readFile(args["phrase-file"], "utf8");
    const { rpcUrl, deployment } = await resolveChainEndpoint({
      home: args.home,
      chainRpc: args["chain-rpc"],
      port: args.port,
      deploymentPath: args.deployment,
    });
    if (args["dev-refuse-reads"] && !deployment.params.faucet) {
      throw new DstorError("INVALID_OPTION", "--dev-refuse-reads is a test hook for dev chains only");
    }
    const ttlMs = Math.round(args["unconfirmed-ttl"] * 1000);
    const farmer = await startFarmerNode({
      home: args.home,
      ...(phrase === undefined ? {} : { phrase }),
      ...(args.storage === undefined ? {} : { storageDir: args.storage }),
      quotaBytes: args.quota,
      priceTbMonth: args["price-tb-month"],
      egressPriceGb: args["egress-price-gb"],
      ...(args.confirmations === undefined ? {} : { confirmations: args.confirmations }),
      listen: args.listen,
      bulkPort: args["bulk-port"],
      bootstrap: args.bootstrap ?? [],
      dht: args.dht,
      rpcUrl,
      deployment,
      unconfirmedPieceTtlMs: ttlMs,
      refuseReads: args["dev-refuse-reads"],
      // Short TTLs (dev, tests) need a sweep that runs often enough to honour them.
      sweepIntervalMs: Math.min(EXPIRY_SWEEP_INTERVAL_MS, Math.max(250, Math.floor(ttlMs / 2))),
      allowPrivateAddresses: args.listen.some((a) => a.startsWith("/ip4/127.") || a.startsWith("/ip4/0.0.0.0")),
      logger,
    });
    if (args.json) {
      process.stdout.write(
        `${JSON.stringify({
          event: "ready",
          peerId: farmer.peerId,
          addrs: farmer.addrs,
          bulkPort: farmer.bulkPort ?? null,
          wallet: farmer.wallet,
          chainId: farmer.chainId.toString(),
          registration: farmer.registration,
          pid: process.pid,
        })}\n`,
      );
    } else {
      process.stdout.write(
        [
          `dstor farmer running (${farmer.registration === "joined" ? "joined the registry" : `registry: ${farmer.registration}`})`,
          `  peer id  ${farmer.peerId}`,
          `  wallet   ${farmer.wallet}`,
          `  quota    ${formatBytes(args.quota)} at ${args["price-tb-month"]} tokens per TB-month`,
          ...farmer.addrs.map((a) => `  listen   ${a}`),
          ...(farmer.bulkPort === undefined ? [] : [`  direct   port ${farmer.bulkPort} (piece transfers)`]),
          "Press Ctrl-C to stop.",
          "",
        ].join("\n"),
      );
    }
    await waitForStopSignal();
    await farmer.stop();
    if (args.json) process.stdout.write(`${JSON.stringify({ event: "stopped" })}\n`);
  },
};
