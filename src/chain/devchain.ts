/**
 * The embedded dev chain: a real anvil node (the binary shipped inside the npm
 * package @foundry-rs/anvil-linux-amd64, spawned directly — the package's .bin
 * wrapper would leave the node orphaned when the wrapper is SIGKILLed),
 * listening on 127.0.0.1 and keeping its state in HOME/chain/chain.json.
 *
 * Lifecycle: spawn → wait for eth_chainId (deadline) → deploy the contracts on
 * first start and record them in HOME/chain/deployment.json → … → stop() sends
 * SIGTERM, which makes anvil write its state, and waits for the exit. On
 * restart anvil reloads accounts, contracts, deals and the latest block (its
 * timestamp included), so epochs — derived from block timestamps — never go
 * backwards. The deployment is checked against the chain (code at the market
 * address) and redeployed if the state file was lost.
 */
import type { ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { Wallet } from "ethers";
import { type AbortOptions, abortReason, raceSignal, sleep, withDeadline } from "../core/abort.js";
import { spawnTied } from "../core/child.js";
import { DstorError } from "../core/errors.js";
import { type Logger, silentLogger } from "../core/logging.js";
import { connectContracts, type Deployment, DEV_PARAMS, deployContracts, type MarketParams, readDeployment, writeDeployment } from "./contracts.js";
import { createProvider, mined, nonceSafe } from "./signer.js";

/** How long anvil may take to answer eth_chainId after spawning. */
const START_TIMEOUT_MS = 20_000;
/**
 * Longest time deploying (or checking) the contracts may take: a dozen
 * transactions that an auto-mining anvil takes in well under a second
 * unloaded. Seen once on a heavily loaded machine: a deployment that never
 * finished; now it fails with `TIMEOUT` and anvil is stopped.
 */
const DEPLOY_TIMEOUT_MS = 120_000;
/** How long anvil may take to save its state and exit after SIGTERM. */
const STOP_TIMEOUT_MS = 15_000;
/** Default seconds between state dumps (a crash loses at most this much). */
const DEFAULT_STATE_INTERVAL_SECONDS = 2;

/** Absolute path of the anvil binary inside the npm package. */
export function anvilBinaryPath(): string {
  const require = createRequire(import.meta.url);
  const pkg = require.resolve("@foundry-rs/anvil-linux-amd64/package.json");
  return join(dirname(pkg), "bin", "anvil");
}

/** Options of {@link startDevChain}. */
export interface DevChainInit extends AbortOptions {
  /** The node's home directory; the chain lives in HOME/chain. */
  home: string;
  /** TCP port on 127.0.0.1. */
  port: number;
  /** Interval mining in seconds; undefined mines each transaction at once (tests). */
  blockTimeSeconds?: number | undefined;
  /** Seconds between state dumps. Default 2. */
  stateIntervalSeconds?: number;
  /** Longest time deploying or checking the contracts may take, in ms (default 120 s). */
  deployTimeoutMs?: number;
  /** Contract parameters for the first deployment. Default {@link DEV_PARAMS}. */
  params?: MarketParams;
  logger?: Logger;
}

/** A running dev chain. */
export interface DevChain {
  rpcUrl: string;
  chainId: number;
  deployment: Deployment;
  /** Whether the contracts were deployed by this start. */
  deployedNow: boolean;
  /** Process id of anvil. */
  pid: number;
  /** SIGTERM, wait until anvil has saved its state and exited. Idempotent. */
  stop(): Promise<void>;
}

/** Paths of the dev chain's files under `home`. */
export function devChainPaths(home: string): { dir: string; state: string; deployment: string } {
  const dir = join(home, "chain");
  return { dir, state: join(dir, "chain.json"), deployment: join(dir, "deployment.json") };
}

/** Starts (or restarts) the dev chain and makes sure the contracts are deployed. */
export async function startDevChain(init: DevChainInit): Promise<DevChain> {
  const logger = init.logger ?? silentLogger("dstor:chain");
  const paths = devChainPaths(init.home);
  await mkdir(paths.dir, { recursive: true });
  const args = [
    "--host",
    "127.0.0.1",
    "--port",
    String(init.port),
    "--state",
    paths.state,
    "--state-interval",
    String(init.stateIntervalSeconds ?? DEFAULT_STATE_INTERVAL_SECONDS),
  ];
  if (init.blockTimeSeconds !== undefined) args.push("--block-time", String(init.blockTimeSeconds));
  const binary = anvilBinaryPath();
  logger.info("starting anvil", { binary, args });
  const child = spawnTied(binary, args, { stdio: ["ignore", "pipe", "pipe"] });
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  let output = "";
  const collect = (chunk: Buffer): void => {
    const text = chunk.toString("utf8");
    if (output.length < 8192) output += text;
    for (const line of text.split("\n")) if (line.trim() !== "") logger.debug(line.trim());
  };
  child.stdout?.on("data", collect);
  child.stderr?.on("data", collect);
  // A normal exit of this process ends anvil here; a SIGKILL of this process
  // ends it through the parent-death signal spawnTied sets up.
  const onExit = (): void => {
    child.kill("SIGTERM");
  };
  process.once("exit", onExit);

  let stopped: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopped ??= (async () => {
      process.removeListener("exit", onExit);
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), STOP_TIMEOUT_MS);
      await exited;
      clearTimeout(timer);
      logger.info("anvil stopped");
    })();
    return stopped;
  };

  const rpcUrl = `http://127.0.0.1:${init.port}`;
  try {
    const chainId = await waitForChainId(rpcUrl, child, exited, () => output, {
      signal: withDeadline(init.signal, START_TIMEOUT_MS, "starting the dev chain"),
    });
    await keepTimeMonotonic(rpcUrl, logger);
    const signal = withDeadline(init.signal, init.deployTimeoutMs ?? DEPLOY_TIMEOUT_MS, "deploying the contracts");
    const { deployment, deployedNow } = await raceSignal(ensureDeployed(rpcUrl, chainId, paths.deployment, init.params ?? DEV_PARAMS, logger, signal), signal);
    return { rpcUrl, chainId, deployment, deployedNow, pid: child.pid ?? -1, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}

async function waitForChainId(
  rpcUrl: string,
  child: ChildProcess,
  exited: Promise<number | null>,
  output: () => string,
  options: AbortOptions,
): Promise<number> {
  let dead = false;
  void exited.then(() => {
    dead = true;
  });
  for (;;) {
    if (dead) {
      throw new DstorError("CHAIN_UNAVAILABLE", `anvil exited during startup (code ${child.exitCode}); is the port in use?`, {
        details: { output: output().slice(-2000) },
      });
    }
    if (options.signal?.aborted) throw abortReason(options.signal);
    try {
      const res = await fetch(rpcUrl, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "eth_chainId", params: [] }),
        signal: options.signal ?? null,
      });
      const body = (await res.json()) as { result?: string };
      if (typeof body.result === "string") return Number(BigInt(body.result));
    } catch {
      // not listening yet
    }
    await sleep(100, options);
  }
}

/**
 * anvil restores the latest block (timestamp included) from the state file
 * but not its clock offset, so after a restart that follows an
 * `evm_increaseTime` the next block would be stamped with wall-clock time —
 * earlier than the restored block — and epochs would go backwards. Moving
 * the clock to just past the restored block keeps them monotonic.
 */
async function keepTimeMonotonic(rpcUrl: string, logger: Logger): Promise<void> {
  const provider = createProvider(rpcUrl);
  try {
    const latest = await provider.getBlock("latest");
    const wall = Math.floor(Date.now() / 1000);
    if (latest !== null && latest.number > 0 && latest.timestamp >= wall) {
      const ahead = latest.timestamp - wall + 1;
      await provider.send("evm_increaseTime", [ahead]);
      logger.info("chain time restored ahead of the wall clock", { seconds: ahead });
    }
  } finally {
    await provider.close();
  }
}

async function ensureDeployed(
  rpcUrl: string,
  chainId: number,
  deploymentPath: string,
  params: MarketParams,
  logger: Logger,
  signal: AbortSignal,
): Promise<{ deployment: Deployment; deployedNow: boolean }> {
  const provider = createProvider(rpcUrl);
  // At the deadline, stop the provider's polling and requests so nothing keeps running.
  const onAbort = (): void => provider.destroy();
  signal.addEventListener("abort", onAbort, { once: true });
  try {
    if (existsSync(deploymentPath)) {
      const existing = await readDeployment(deploymentPath);
      const code = await provider.getCode(existing.market);
      if (existing.chainId === chainId && code !== "0x") {
        // Epochs are fixed in the randomness contract at deployment: a new --epoch-seconds needs a new chain.
        if (Number(existing.params.epochSeconds) !== params.epochSeconds) {
          logger.warn("the chain keeps the epoch length it was deployed with; remove HOME/chain to use a new one", {
            deployed: existing.params.epochSeconds,
            requested: params.epochSeconds,
          });
        }
        return { deployment: existing, deployedNow: false };
      }
      logger.warn("deployment file does not match the chain state; redeploying", { market: existing.market });
    }
    const signer = nonceSafe(await provider.getSigner(0));
    const deployment = await deployContracts(signer, params);
    await writeDeployment(deploymentPath, deployment);
    logger.info("contracts deployed", { ...deployment, params: undefined });
    return { deployment, deployedNow: true };
  } finally {
    signal.removeEventListener("abort", onAbort);
    if (!signal.aborted) await provider.close();
  }
}

/**
 * Gives `address` ether for gas and tokens from the faucet on a dev chain
 * (anvil_setBalance; the faucet is disabled on real networks). The faucet
 * call is sent from a fresh throwaway wallet: a shared sender (anvil's first
 * account) used by several processes at once would hand two of them the same
 * nonce, and one funding would fail or be replaced.
 */
export async function fundDevAccount(
  rpcUrl: string,
  deployment: Deployment,
  address: string,
  tokens: bigint,
  weiBalance = 10n ** 20n,
): Promise<void> {
  const provider = createProvider(rpcUrl);
  try {
    await provider.send("anvil_setBalance", [address, `0x${weiBalance.toString(16)}`]);
    if (tokens > 0n) {
      const sender = Wallet.createRandom(provider);
      await provider.send("anvil_setBalance", [sender.address, `0x${(10n ** 18n).toString(16)}`]);
      const { token } = connectContracts(deployment, nonceSafe(sender));
      await mined(token.faucet(address, tokens), "funding a dev account");
    }
  } finally {
    await provider.close();
  }
}

/** Where a command finds the chain: `--chain-rpc` if given, else the embedded chain on `port`. */
export interface ChainEndpointInit extends AbortOptions {
  home: string;
  /** `--chain-rpc`: any EVM JSON-RPC endpoint. */
  chainRpc?: string | undefined;
  /** Port of the embedded chain (`--port`). Default 8545. */
  port?: number | undefined;
  /** `--deployment`: the deployment file; default HOME/chain/deployment.json. */
  deploymentPath?: string | undefined;
}

/**
 * Resolves the RPC URL and the deployment (`deploymentPath`, default HOME/chain/deployment.json) a
 * command should use, and checks that the endpoint answers with the chain id
 * the deployment was made on. `CHAIN_UNAVAILABLE` if the endpoint is down,
 * `CHAIN_NOT_DEPLOYED` if there is no matching deployment.
 */
export async function resolveChainEndpoint(init: ChainEndpointInit): Promise<{ rpcUrl: string; deployment: Deployment }> {
  const rpcUrl = init.chainRpc ?? `http://127.0.0.1:${init.port ?? 8545}`;
  const deploymentPath = init.deploymentPath ?? devChainPaths(init.home).deployment;
  const deployment = await readDeployment(deploymentPath);
  const provider = createProvider(rpcUrl);
  try {
    let chainId: number;
    try {
      chainId = Number((await provider.getNetwork()).chainId);
    } catch (cause) {
      throw new DstorError("CHAIN_UNAVAILABLE", `no chain answers at ${rpcUrl}; start it with \`dstor chain\` or pass --chain-rpc`, { cause });
    }
    if (chainId !== deployment.chainId) {
      throw new DstorError("CHAIN_NOT_DEPLOYED", `${deploymentPath} is for chain ${deployment.chainId}, but ${rpcUrl} is chain ${chainId}`);
    }
    return { rpcUrl, deployment };
  } finally {
    await provider.close();
  }
}
