/**
 * Typed contract bindings and deployment. ABIs and bytecode come from the
 * build (`scripts/compile-contracts.mjs` writes `generated/contracts.ts` from
 * contracts/*.sol); nothing here is hand-copied, so a contract change that
 * breaks a caller breaks the TypeScript build.
 */
import { mined } from "./signer.js";
import { readFile, mkdir, rename, writeFile } from "node:fs/promises";
import { dirname } from "node:path";
import { Contract, ContractFactory, type ContractRunner, type Signer, getAddress } from "ethers";
import { DstorError } from "../core/errors.js";
import {
  BlockhashRandomnessAbi,
  BlockhashRandomnessBytecode,
  type BlockhashRandomnessContract,
  DstorTokenAbi,
  DstorTokenBytecode,
  type DstorTokenContract,
  MarketAbi,
  MarketBytecode,
  type MarketContract,
  RegistryAbi,
  RegistryBytecode,
  type RegistryContract,
} from "./generated/contracts.js";

export * from "./generated/contracts.js";

/** Seconds in one day. */
const DAY_SECONDS = 86_400;
/** Token units per whole token (the token has 6 decimals). */
export const TOKEN_UNIT = 1_000_000n;

/** Parameters fixed at deployment. */
export interface MarketParams {
  /** Epoch length in seconds (audits and pay are per epoch). */
  epochSeconds: number;
  /** Probability, in parts per million, that a deal is challenged in an epoch. */
  challengeProbabilityPpm: number;
  /** (piece, leaf) samples per challenge. */
  samplesPerChallenge: number;
  /** Minimum farmer stake per TB of capacity, in token units. */
  minStakePerTB: bigint;
  /** Failures within the window that disqualify a farmer. */
  failureThreshold: number;
  /** The failure window, in seconds. */
  failureWindowSeconds: number;
  /** Whether the token has a faucet (dev chains only). */
  faucet: boolean;
  /** Largest amount one faucet call may mint, in token units. */
  faucetLimit: bigint;
}

/** Parameters for a real network: 24 h epochs, a challenge about once a week. */
export const NETWORK_PARAMS: MarketParams = {
  epochSeconds: DAY_SECONDS,
  challengeProbabilityPpm: 142_857,
  samplesPerChallenge: 4,
  minStakePerTB: 10n * TOKEN_UNIT,
  failureThreshold: 3,
  failureWindowSeconds: 28 * DAY_SECONDS,
  faucet: false,
  faucetLimit: 0n,
};

/** Default epoch length of the embedded dev chain, in seconds: short, so audits and pay are visible within a minute. */
export const DEV_EPOCH_SECONDS = 10;

/** Failure window of a deployment, in epochs (network: 28 days of 24 h epochs). */
const FAILURE_WINDOW_EPOCHS = 28;

/** Parameters for the embedded dev chain: short epochs so audits are visible, a faucet. */
export const DEV_PARAMS: MarketParams = devParams(DEV_EPOCH_SECONDS);

/**
 * Dev-chain parameters for epochs of `epochSeconds` (`--epoch-seconds`). The
 * failure window scales with the epoch, so disqualification takes the same
 * number of epochs whatever their length.
 */
export function devParams(epochSeconds: number): MarketParams {
  if (!Number.isInteger(epochSeconds) || epochSeconds < 2) {
    throw new DstorError("INVALID_OPTION", `--epoch-seconds must be a whole number of seconds, at least 2; got ${epochSeconds}`);
  }
  return {
    epochSeconds,
    challengeProbabilityPpm: 142_857,
    samplesPerChallenge: 4,
    minStakePerTB: 10n * TOKEN_UNIT,
    failureThreshold: 3,
    failureWindowSeconds: FAILURE_WINDOW_EPOCHS * epochSeconds,
    faucet: true,
    faucetLimit: 1_000_000n * TOKEN_UNIT,
  };
}

/** Where the contracts of one deployment live (the deployment file's content). */
export interface Deployment {
  chainId: number;
  token: string;
  registry: string;
  market: string;
  randomness: string;
  /** Block the market was deployed in (where event scans start). */
  deployBlock: number;
  /** Timestamp at which epoch 0 starts. */
  genesis: number;
  params: Omit<MarketParams, "minStakePerTB" | "faucetLimit"> & { minStakePerTB: string; faucetLimit: string };
}

/** The four connected contracts. */
export interface DstorContracts {
  token: DstorTokenContract;
  registry: RegistryContract;
  market: MarketContract;
  randomness: BlockhashRandomnessContract;
}

/** Connects typed contract objects for `deployment` through `runner` (a provider or signer). */
export function connectContracts(deployment: Deployment, runner: ContractRunner): DstorContracts {
  return {
    token: new Contract(deployment.token, DstorTokenAbi, runner) as unknown as DstorTokenContract,
    registry: new Contract(deployment.registry, RegistryAbi, runner) as unknown as RegistryContract,
    market: new Contract(deployment.market, MarketAbi, runner) as unknown as MarketContract,
    randomness: new Contract(deployment.randomness, BlockhashRandomnessAbi, runner) as unknown as BlockhashRandomnessContract,
  };
}

/**
 * Deploys token, randomness, registry and market with `signer` and links them.
 * Epoch 0 starts at the latest block's timestamp.
 */
export async function deployContracts(signer: Signer, params: MarketParams): Promise<Deployment> {
  const provider = signer.provider;
  if (provider === null) throw new DstorError("INVALID_ARGUMENT", "the deployer signer needs a provider");
  const deployer = await signer.getAddress();
  const network = await provider.getNetwork();
  const latest = await provider.getBlock("latest");
  if (latest === null) throw new DstorError("CHAIN_UNAVAILABLE", "the chain returned no latest block");
  const genesis = latest.timestamp;
  const deploy = async (abi: unknown, bytecode: string, args: unknown[]): Promise<string> => {
    const factory = new ContractFactory(abi as never, bytecode, signer);
    const c = await factory.deploy(...args);
    await c.waitForDeployment();
    return getAddress(await c.getAddress());
  };
  const token = await deploy(DstorTokenAbi, DstorTokenBytecode, [params.faucet, params.faucetLimit, deployer, 0n]);
  const randomness = await deploy(BlockhashRandomnessAbi, BlockhashRandomnessBytecode, [genesis, params.epochSeconds]);
  const registry = await deploy(RegistryAbi, RegistryBytecode, [
    token,
    params.minStakePerTB,
    params.failureThreshold,
    params.failureWindowSeconds,
  ]);
  const market = await deploy(MarketAbi, MarketBytecode, [
    token,
    registry,
    randomness,
    params.challengeProbabilityPpm,
    params.samplesPerChallenge,
  ]);
  const reg = new Contract(registry, RegistryAbi, signer) as unknown as RegistryContract;
  const receipt = await mined(reg.setMarket(market), "linking the registry to the market");
  return {
    chainId: Number(network.chainId),
    token,
    registry,
    market,
    randomness,
    deployBlock: receipt?.blockNumber ?? latest.number,
    genesis,
    params: { ...params, minStakePerTB: params.minStakePerTB.toString(), faucetLimit: params.faucetLimit.toString() },
  };
}

/** Reads a deployment file; `CHAIN_NOT_DEPLOYED` if it is missing. */
export async function readDeployment(path: string): Promise<Deployment> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (cause) {
    throw new DstorError("CHAIN_NOT_DEPLOYED", `no deployment at ${path}; start the chain with \`dstor chain\` first`, { cause });
  }
  return JSON.parse(text) as Deployment;
}

/** Writes a deployment file atomically (temp file + rename). */
export async function writeDeployment(path: string, deployment: Deployment): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const tmp = `${path}.tmp`;
  await writeFile(tmp, `${JSON.stringify(deployment, null, 2)}\n`);
  await rename(tmp, path);
}
