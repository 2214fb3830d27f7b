/**
 * The local network `dstor up` runs: the embedded chain and a set of farmer
 * processes, each on its own loopback address 127.0.N.1 (so the renter's
 * one-piece-per-/24 rule holds on one machine), all under one home:
 *
 *   HOME/chain/          anvil state and the deployment file
 *   HOME/farmers/fNN/    each farmer's own home (phrase, piece store)
 *   HOME/renter/         the renter's home (phrase shown once)
 *   HOME/up.json         what scripts need to find the network
 *
 * Farmers are separate processes (a crash of one is a crash of one farmer),
 * tied to this process's lifetime (spawnTied). Stop order: farmers, chain.
 */
import type { ChildProcess } from "node:child_process";
import { mkdir, rename, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { connectContracts, DEV_EPOCH_SECONDS, type Deployment, devParams } from "../chain/contracts.js";
import { type DevChain, startDevChain } from "../chain/devchain.js";
import { createProvider } from "../chain/signer.js";
import { type AbortOptions, withDeadline } from "../core/abort.js";
import { spawnTied } from "../core/child.js";
import { DstorError } from "../core/errors.js";
import { type Logger, silentLogger } from "../core/logging.js";
import { NODE_FLAGS } from "../core/v8-flags.js";

/** Default TCP port every local farmer listens on (each on its own 127.0.N.1). */
export const DEVNET_FARMER_PORT = 7001;
/** Longest wait for a farmer to register and say it is ready. */
const FARMER_START_TIMEOUT_MS = 120_000;
/** Longest wait for a farmer to stop after SIGTERM before SIGKILL. */
const FARMER_STOP_TIMEOUT_MS = 15_000;

/** Options of {@link startDevNet}. */
export interface DevNetInit extends AbortOptions {
  home: string;
  farmerCount: number;
  /** Port of the embedded chain on 127.0.0.1. */
  chainPort: number;
  /** Seconds between blocks of the embedded chain. */
  blockTimeSeconds: number;
  /** Epoch length of a first deployment, in seconds (default {@link DEV_EPOCH_SECONDS}). */
  epochSeconds?: number | undefined;
  /** Use this chain instead of starting the embedded one (needs HOME/chain/deployment.json). */
  chainRpc?: string | undefined;
  /** Quota of each farmer, bytes. */
  farmerQuotaBytes: number;
  /** TCP port of the farmers (default {@link DEVNET_FARMER_PORT}). */
  farmerPort?: number | undefined;
  /** Price of farmer N is this × (1 + N/20), so prices differ a little. */
  priceTbMonth: number;
  logger?: Logger;
}

/** One farmer process of the dev network. */
export interface DevNetFarmer {
  index: number;
  home: string;
  listen: string;
  peerId?: string;
  wallet?: string;
  addrs?: string[];
  pid?: number;
  /** Whether the process is running. */
  up: boolean;
  /** Last words of a farmer that exited. */
  exitReason?: string;
}

/** A running dev network. */
export interface DevNet {
  rpcUrl: string;
  deployment: Deployment;
  farmers: readonly DevNetFarmer[];
  /** Current chain facts, per-farmer registry facts and the renter's balances, for the status screen. */
  status(options?: AbortOptions & { renter?: string | undefined }): Promise<DevNetStatus>;
  /** Process id of the embedded chain (undefined with an external chain). */
  chainPid: number | undefined;
  /** Stops farmers, then the chain. Idempotent. */
  stop(): Promise<void>;
}

/** What the status screen shows. */
export interface DevNetStatus {
  block: number;
  epoch: number;
  /** The renter's wallet and balances (token units), when a renter address was given. */
  renter?: { address: string; tokens: string; withdrawable: string };
  farmers: Array<{
    index: number;
    up: boolean;
    peerId?: string | undefined;
    wallet?: string | undefined;
    listen: string;
    capacityBytes?: string;
    pricePerTBMonth?: string;
    successes?: string;
    failures?: string;
    stake?: string;
    earned?: string;
  }>;
}

/** The path of the CLI entry (dist/src/cli/main.js) next to this module. */
export function cliMain(): string {
  return fileURLToPath(new URL("../cli/main.js", import.meta.url));
}

/** A `dstor` child process that announces readiness with a JSON line on stdout. */
export interface CliProcess {
  child: ChildProcess;
  /** The parsed ready line; rejects if the process exits or the deadline passes first. */
  ready: Promise<Record<string, unknown>>;
}

/**
 * Spawns `node <NODE_FLAGS> <args>` tied to this process's lifetime and resolves `ready`
 * with the first stdout JSON line whose `event` is `readyEvent`. Other
 * stdout lines are ignored; the tail of stderr explains an early exit.
 */
export function spawnCliProcess(
  args: readonly string[],
  readyEvent: string,
  options: { name: string; timeoutMs: number; signal?: AbortSignal | undefined; onExit?: (reason: string) => void },
): CliProcess {
  const child = spawnTied(process.execPath, [...NODE_FLAGS, ...args], { stdio: ["ignore", "pipe", "pipe"] });
  let stderrTail = "";
  child.stderr?.on("data", (chunk: Buffer) => {
    stderrTail = (stderrTail + chunk.toString()).slice(-2000);
  });
  const ready = new Promise<Record<string, unknown>>((resolveReady, rejectReady) => {
    let buffered = "";
    child.stdout?.on("data", (chunk: Buffer) => {
      buffered += chunk.toString();
      for (let newline = buffered.indexOf("\n"); newline >= 0; newline = buffered.indexOf("\n")) {
        const line = buffered.slice(0, newline);
        buffered = buffered.slice(newline + 1);
        try {
          const event = JSON.parse(line) as Record<string, unknown>;
          if (event.event === readyEvent) resolveReady(event);
        } catch {
          // Not a JSON line: ignore (children log to stderr).
        }
      }
    });
    child.once("exit", (code, signal) => {
      const reason = `exited with ${signal ?? code}: ${stderrTail.trim().split("\n").slice(-3).join(" | ")}`;
      options.onExit?.(reason);
      rejectReady(new DstorError("INTERNAL", `${options.name} did not start: ${reason}`));
    });
    const deadline = withDeadline(options.signal, options.timeoutMs, `starting ${options.name}`);
    deadline.addEventListener("abort", () => rejectReady(deadline.reason), { once: true });
  });
  // Whoever awaits `ready` sees the failure; this keeps a late one from being unhandled.
  ready.catch(() => {});
  return { child, ready };
}

/** SIGTERM, then SIGKILL after `timeoutMs`; resolves when the child has exited. */
export async function stopChild(child: ChildProcess, timeoutMs: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
  await exited;
  clearTimeout(timer);
}

/** Starts the chain (unless `chainRpc`) and `farmerCount` farmers; resolves when all are registered. */
export async function startDevNet(init: DevNetInit): Promise<DevNet> {
  const logger = init.logger ?? silentLogger("dstor:devnet");
  if (!Number.isInteger(init.farmerCount) || init.farmerCount < 1 || init.farmerCount > 250) {
    throw new DstorError("INVALID_OPTION", `--farmer-count must be between 1 and 250, got ${init.farmerCount}`);
  }
  const home = resolve(init.home);
  let chain: DevChain | undefined;
  let rpcUrl: string;
  let deployment: Deployment;
  if (init.chainRpc === undefined) {
    chain = await startDevChain({
      home,
      port: init.chainPort,
      blockTimeSeconds: init.blockTimeSeconds,
      params: devParams(init.epochSeconds ?? DEV_EPOCH_SECONDS),
      logger: logger.child("chain"),
      signal: init.signal,
    });
    rpcUrl = chain.rpcUrl;
    deployment = chain.deployment;
  } else {
    const { resolveChainEndpoint } = await import("../chain/devchain.js");
    ({ rpcUrl, deployment } = await resolveChainEndpoint({ home, chainRpc: init.chainRpc, signal: init.signal }));
  }
  const deploymentFile = join(home, "chain", "deployment.json");
  const farmers: DevNetFarmer[] = [];
  const children = new Map<number, ChildProcess>();
  let stopping = false;

  const startFarmer = async (index: number): Promise<void> => {
    const farmer: DevNetFarmer = {
      index,
      home: join(home, "farmers", `f${String(index).padStart(2, "0")}`),
      listen: `/ip4/127.0.${index}.1/tcp/${init.farmerPort ?? DEVNET_FARMER_PORT}`,
      up: false,
    };
    farmers.push(farmer);
    await mkdir(farmer.home, { recursive: true });
    const price = (init.priceTbMonth * (1 + index / 20)).toFixed(4);
    const args = [
      cliMain(),
      "farm",
      "--home",
      farmer.home,
      "--listen",
      farmer.listen,
      "--chain-rpc",
      rpcUrl,
      "--deployment",
      deploymentFile,
      "--quota",
      String(init.farmerQuotaBytes),
      "--price-tb-month",
      price,
      "--json",
    ];
    const proc = spawnCliProcess(args, "ready", {
      name: `farmer ${index}`,
      signal: init.signal,
      timeoutMs: FARMER_START_TIMEOUT_MS,
      onExit: (reason) => {
        farmer.up = false;
        farmer.exitReason = reason;
        if (!stopping) logger.warn(`farmer ${index} ${reason}`);
      },
    });
    children.set(index, proc.child);
    farmer.pid = proc.child.pid;
    const event = (await proc.ready) as { peerId?: string; wallet?: string; addrs?: string[] };
    farmer.peerId = event.peerId;
    farmer.wallet = event.wallet;
    farmer.addrs = event.addrs;
    farmer.up = true;
  };

  const stopFarmers = async (): Promise<void> => {
    stopping = true;
    await Promise.all([...children.values()].map((child) => stopChild(child, FARMER_STOP_TIMEOUT_MS)));
  };

  try {
    // Farmers start one after another: each registers on-chain from its own
    // wallet, and the faucet's deployer account must not race itself.
    for (let i = 1; i <= init.farmerCount; i++) await startFarmer(i);
  } catch (error) {
    await stopFarmers();
    await chain?.stop();
    throw error;
  }

  let stopped: Promise<void> | undefined;
  const provider = createProvider(rpcUrl);
  const contracts = connectContracts(deployment, provider);
  return {
    rpcUrl,
    deployment,
    farmers,
    chainPid: chain?.pid,
    status: async (options = {}) => {
      const block = await provider.getBlock("latest");
      const timestamp = block?.timestamp ?? 0;
      const epochSeconds = Number(deployment.params.epochSeconds);
      const epoch = timestamp < deployment.genesis ? 0 : Math.floor((timestamp - deployment.genesis) / epochSeconds);
      const rows = await Promise.all(
        farmers.map(async (f) => {
          const row: DevNetStatus["farmers"][number] = { index: f.index, up: f.up, peerId: f.peerId, wallet: f.wallet, listen: f.listen };
          if (f.wallet === undefined) return row;
          try {
            const info = await contracts.registry.farmerInfo(f.wallet);
            const earned = await contracts.market.withdrawable(f.wallet);
            return {
              ...row,
              capacityBytes: info.capacityBytes.toString(),
              pricePerTBMonth: info.pricePerTBMonth.toString(),
              successes: info.successes.toString(),
              failures: info.failures.toString(),
              stake: info.stake.toString(),
              earned: earned.toString(),
            };
          } catch {
            return row;
          }
        }),
      );
      const result: DevNetStatus = { block: block?.number ?? 0, epoch, farmers: rows };
      if (options.renter !== undefined) {
        const [tokens, withdrawable] = await Promise.all([contracts.token.balanceOf(options.renter), contracts.market.withdrawable(options.renter)]);
        result.renter = { address: options.renter, tokens: tokens.toString(), withdrawable: withdrawable.toString() };
      }
      return result;
    },
    stop: () => {
      stopped ??= (async () => {
        await stopFarmers();
        await provider.close();
        await chain?.stop();
      })();
      return stopped;
    },
  };
}

/** Writes HOME/up.json atomically: what scripts need to find the network. */
export async function writeUpFile(home: string, net: DevNet, extra: Record<string, unknown>): Promise<string> {
  const path = join(resolve(home), "up.json");
  const body = {
    rpcUrl: net.rpcUrl,
    chainId: net.deployment.chainId,
    chainPid: net.chainPid,
    pid: process.pid,
    contracts: {
      token: net.deployment.token,
      registry: net.deployment.registry,
      market: net.deployment.market,
      randomness: net.deployment.randomness,
    },
    farmers: net.farmers.map((f) => ({ index: f.index, pid: f.pid, peerId: f.peerId, wallet: f.wallet, addrs: f.addrs, listen: f.listen })),
    ...extra,
  };
  await writeFile(`${path}.tmp`, `${JSON.stringify(body, null, 2)}\n`);
  await rename(`${path}.tmp`, path);
  return path;
}
