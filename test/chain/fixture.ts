/**
 * Shared fixture for chain tests: a real anvil in a temp home on a free
 * loopback port, contracts deployed with test parameters, funded wallets and
 * helpers for time travel, seeds and deal setup. Every fixture is stopped and
 * its directory removed by `t.after`.
 */
import { freeLoopbackPort } from "../../src/core/net.js";
import { generateKeyPairSync, randomBytes, sign } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TestContext } from "node:test";
import { type HDNodeWallet, type JsonRpcProvider, Wallet, hexlify } from "ethers";
import { connectContracts, type Deployment, type DstorContracts, type MarketParams, TOKEN_UNIT } from "../../src/chain/contracts.js";
import { type DevChain, fundDevAccount, startDevChain } from "../../src/chain/devchain.js";
import { marketDomain, signDealState } from "../../src/chain/signing.js";
import { createProvider, nonceSafe, revertName, type SafeNonceManager } from "../../src/chain/signer.js";
import assert from "node:assert/strict";
import { peerBindingMessage } from "../../src/chain/proofs.js";
import { type DealPiece, dealRoot, merkleRoot } from "../../src/crypto/merkle.js";

/** Test parameters: every deal challenged every epoch, 100 s epochs. */
export const TEST_PARAMS: MarketParams = {
  epochSeconds: 100,
  challengeProbabilityPpm: 1_000_000,
  samplesPerChallenge: 4,
  minStakePerTB: 10n * TOKEN_UNIT,
  failureThreshold: 3,
  failureWindowSeconds: 100_000,
  faucet: true,
  faucetLimit: 10n ** 15n,
};

/** A free TCP port on 127.0.0.1. */
export const freePort = freeLoopbackPort;

/** A funded participant. */
export interface Party {
  wallet: HDNodeWallet;
  signer: SafeNonceManager;
  address: string;
  c: DstorContracts;
}

/** A running chain with deployed contracts. */
export interface ChainFixture {
  chain: DevChain;
  home: string;
  provider: JsonRpcProvider;
  deployment: Deployment;
  /** Read-only contracts. */
  c: DstorContracts;
  params: MarketParams;
  party(tokens?: bigint): Promise<Party>;
  /** Moves chain time forward by `seconds` and mines a block. */
  advance(seconds: number): Promise<void>;
  /** Timestamp of the latest block. */
  now(): Promise<number>;
  /** Current epoch by the latest block. */
  epoch(): Promise<bigint>;
  /** Fixes the seed of `epoch` (anchor + fix, two transactions). */
  fixSeed(epoch: bigint): Promise<string>;
  mine(): Promise<void>;
}

/** Starts a fixture; stopped and cleaned up after the test. */
export async function startFixture(t: TestContext, params: MarketParams = TEST_PARAMS): Promise<ChainFixture> {
  const home = await mkdtemp(join(tmpdir(), "dstor-chain-"));
  const port = await freePort();
  const chain = await startDevChain({ home, port, params });
  const provider = createProvider(chain.rpcUrl, { pollingIntervalMs: 50 });
  t.after(async () => {
    provider.destroy();
    await chain.stop();
    await rm(home, { recursive: true, force: true });
  });
  const deployment = chain.deployment;
  const c = connectContracts(deployment, provider);
  const keeper = await party(0n);
  async function party(tokens = 1_000_000n * TOKEN_UNIT): Promise<Party> {
    const wallet = Wallet.createRandom().connect(provider);
    await fundDevAccount(chain.rpcUrl, deployment, wallet.address, tokens);
    const signer = nonceSafe(wallet);
    return { wallet, signer, address: wallet.address, c: connectContracts(deployment, signer) };
  }
  const mine = async (): Promise<void> => {
    await provider.send("evm_mine", []);
  };
  return {
    chain,
    home,
    provider,
    deployment,
    c,
    params,
    party,
    mine,
    async advance(seconds) {
      await provider.send("evm_increaseTime", [seconds]);
      await mine();
    },
    async now() {
      return (await provider.getBlock("latest"))!.timestamp;
    },
    async epoch() {
      return c.market.epochAt((await provider.getBlock("latest"))!.timestamp);
    },
    async fixSeed(epoch) {
      await (await keeper.c.randomness.fixSeed(epoch)).wait();
      await (await keeper.c.randomness.fixSeed(epoch)).wait();
      return c.randomness.seedOf(epoch);
    },
  };
}

/** A libp2p-style Ed25519 identity: peer id bytes and a signer. */
export function peerIdentity(): { peerId: Uint8Array; signBinding(message: Uint8Array): Uint8Array } {
  const { publicKey, privateKey } = generateKeyPairSync("ed25519");
  const raw = publicKey.export({ format: "der", type: "spki" }).subarray(-32);
  // identity multihash of the protobuf-encoded Ed25519 public key, as libp2p peer ids are
  const peerId = new Uint8Array([0x00, 0x24, 0x08, 0x01, 0x12, 0x20, ...raw]);
  return { peerId, signBinding: (m) => new Uint8Array(sign(null, m, privateKey)) };
}

/** Joins `farmer` with enough stake for `capacity` bytes at `price`. */
export async function joinFarmer(f: ChainFixture, farmer: Party, price = 1_500_000n, capacity = 10n ** 12n): Promise<Uint8Array> {
  const id = peerIdentity();
  const sig = id.signBinding(peerBindingMessage(f.deployment.chainId, f.deployment.registry, farmer.address));
  const stake = (f.params.minStakePerTB * capacity + 10n ** 12n - 1n) / 10n ** 12n;
  await (await farmer.c.token.approve(f.deployment.registry, stake)).wait();
  await (await farmer.c.registry.join(stake, price, capacity, id.peerId, sig, ["/ip4/127.0.0.1/tcp/4001"])).wait();
  return id.peerId;
}

/** Random pieces with real contents. */
export function makePieces(count: number, size: number): { pieces: DealPiece[]; data: Map<string, Uint8Array> } {
  const data = new Map<string, Uint8Array>();
  const pieces: DealPiece[] = [];
  for (let i = 0; i < count; i++) {
    const bytes = new Uint8Array(randomBytes(size));
    const pieceId = new Uint8Array(randomBytes(32));
    data.set(hexlify(pieceId), bytes);
    pieces.push({ pieceId, pieceRoot: merkleRoot(bytes), size: bytes.byteLength });
  }
  return { pieces, data };
}

/** Opens a deal from renter to farmer and returns its id. */
export async function openDeal(f: ChainFixture, renter: Party, farmer: Party, termSeconds: number, escrow: bigint): Promise<bigint> {
  await (await renter.c.token.approve(f.deployment.market, escrow)).wait();
  await (await renter.c.market.openDeal(farmer.address, termSeconds, escrow)).wait();
  return renter.c.market.latestDeal(renter.address, farmer.address);
}

/** A co-signed deal state ready for Market.updateState. */
export async function coSign(
  f: ChainFixture,
  dealId: bigint,
  renter: Party,
  farmer: Party,
  pieces: DealPiece[],
  version: bigint,
  overrides: { term?: bigint; chainId?: number; dealId?: bigint; totalBytes?: bigint; renterSigner?: Party; farmerSigner?: Party } = {},
): Promise<{ state: { root: string; pieceCount: bigint; totalBytes: bigint; version: bigint }; renterSig: string; farmerSig: string }> {
  const deal = await f.c.market.deal(dealId);
  const state = {
    root: hexlify(dealRoot(pieces)),
    pieceCount: BigInt(pieces.length),
    totalBytes: overrides.totalBytes ?? pieces.reduce((s, p) => s + BigInt(p.size), 0n),
    version,
  };
  const domain = marketDomain(overrides.chainId ?? f.deployment.chainId, f.deployment.market);
  const message = { dealId: overrides.dealId ?? dealId, term: overrides.term ?? deal.term, ...state };
  return {
    state,
    renterSig: await signDealState((overrides.renterSigner ?? renter).wallet, domain, message),
    farmerSig: await signDealState((overrides.farmerSigner ?? farmer).wallet, domain, message),
  };
}

/** Moves chain time to at least `timestamp` (mining one block). */
export async function advanceTo(f: ChainFixture, timestamp: bigint | number): Promise<void> {
  const now = await f.now();
  const target = Number(timestamp);
  if (target > now) await f.advance(target - now);
  else await f.mine();
}

/** Start time of `epoch`. */
export function epochStart(f: ChainFixture, epoch: bigint): bigint {
  return BigInt(f.deployment.genesis) + epoch * BigInt(f.params.epochSeconds);
}

/** Asserts that `action` reverts with the custom error `name`. */
export async function expectRevert(action: Promise<unknown> | (() => Promise<unknown>), name: string): Promise<void> {
  await assert.rejects(typeof action === "function" ? action() : action, (error: unknown) => {
    const got = revertName(error);
    assert.equal(got, name, `expected revert ${name}, got ${got ?? String(error)}`);
    return true;
  });
}

/**
 * Token conservation: the balances of every party and contract add up to the
 * total supply, and the supply is exactly what the faucet minted.
 */
export async function assertConservation(f: ChainFixture, parties: Party[]): Promise<void> {
  const holders = [...parties.map((p) => p.address), f.deployment.registry, f.deployment.market];
  let sum = 0n;
  for (const h of holders) sum += await f.c.token.balanceOf(h);
  const supply = await f.c.token.totalSupply();
  const mints = await f.c.token.queryFilter(f.c.token.filters.FaucetMint!(), 0, "latest");
  const minted = mints.reduce((s, log) => s + (log as unknown as { args: [string, bigint] }).args[1], 0n);
  assert.equal(sum, supply, "balances add up to the total supply");
  assert.equal(supply, minted, "supply equals faucet mints");
}

/** Party used for ad-hoc multi-party tests. */
export type { Party as ChainParty };
