/**
 * A local network for renter end-to-end tests and the network benchmark:
 * `dstor farm` child processes, each on its own loopback address 127.0.N.1
 * (so each sits in its own /24, as distinct machines would), registered on a
 * real anvil chain; and a renter home made with `dstor init`. Everything is
 * stopped and removed by the caller's cleanup.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { spawnCliProcess, stopChild } from "../../src/node/devnet.js";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { devChainPaths } from "../../src/chain/devchain.js";

/** The built CLI entry point. */
export const CLI = join(import.meta.dirname, "../../src/cli/main.js");

/** A running farmer process. */
export interface LocalFarmer {
  index: number;
  home: string;
  storage: string;
  peerId: string;
  wallet: string;
  addrs: string[];
  child: ChildProcess;
  /** SIGKILL and wait for the exit. */
  kill(): Promise<void>;
  /** SIGTERM (SIGKILL after 3 s) and wait. */
  stop(): Promise<void>;
}

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once("exit", () => resolve()));
}

/**
 * Starts `dstor farm` on 127.0.`index`.1 and waits for its ready line. The
 * process's stop function goes into `cleanups` as soon as it is spawned, so
 * a farmer that never gets ready is stopped too. Start farmers one at a time:
 * each funds itself from the dev chain's first account, and parallel funding
 * transactions from separate processes would race for its nonce.
 */
export async function startLocalFarmer(
  cleanups: Array<() => Promise<void>>,
  root: string,
  index: number,
  rpcUrl: string,
  chainHome: string,
  quota = "2GB",
  priceTbMonth = "1.5",
  extraArgs: readonly string[] = [],
): Promise<LocalFarmer> {
  const home = join(root, `farmer-${index}`);
  const storage = join(home, "farmer");
  const args = [
    CLI,
    "farm",
    "--json",
    "--home",
    home,
    "--storage",
    storage,
    "--quota",
    quota,
    "--price-tb-month",
    priceTbMonth,
    "--listen",
    `/ip4/127.0.${index}.1/tcp/0`,
    "--chain-rpc",
    rpcUrl,
    "--deployment",
    devChainPaths(chainHome).deployment,
    ...extraArgs,
  ];
  const proc = spawnCliProcess(args, "ready", { name: `farmer ${index}`, timeoutMs: 90_000 });
  const child = proc.child;
  const stop = (): Promise<void> => stopChild(child, 3_000);
  cleanups.push(stop);
  const ready = (await proc.ready) as { peerId: string; addrs: string[]; wallet: string; bulkPort: number | null };
  // Every farmer here offers direct transfers (src/node/bulk.ts) unless told not to.
  if (!extraArgs.includes("--bulk-port") && !(Number.isInteger(ready.bulkPort) && ready.bulkPort! > 0)) {
    throw new Error(`farmer ${index} reports no direct-transfer port: ${JSON.stringify(ready.bulkPort)}`);
  }
  return {
    index,
    home,
    storage,
    ...ready,
    child,
    stop,
    async kill() {
      child.kill("SIGKILL");
      await exited(child);
    },
  };
}

/** Result of one CLI run. */
export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `dstor ARGS` to completion, with `input` (if given) on its standard input. */
export function runCli(args: string[], timeoutMs = 600_000, input?: string): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { stdio: [input === undefined ? "ignore" : "pipe", "pipe", "pipe"] });
    if (input !== undefined) child.stdin!.end(input);
    let stdout = "";
    let stderr = "";
    child.stdout!.on("data", (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr!.on("data", (d: Buffer) => {
      stderr += d.toString();
    });
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`dstor ${args.join(" ")} did not finish in ${timeoutMs} ms; stderr:\n${stderr}`));
    }, timeoutMs);
    child.once("exit", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** A temp directory (the caller removes it). */
export function tempRoot(prefix: string): Promise<string> {
  return mkdtemp(join(tmpdir(), prefix));
}

/** Removes a temp directory. */
export function removeRoot(dir: string): Promise<void> {
  return rm(dir, { recursive: true, force: true });
}
