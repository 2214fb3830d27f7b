/**
 * Gas benchmark (not a test): starts its own anvil, runs each market action
 * once and prints one JSON object per line: {name, gas}. The last line is the
 * break-even deal size at which chain fees are 10 % of storage pay, for a
 * 24 h epoch, the network's challenge probability, 0.01 gwei, $3000/ETH, a
 * $1 token and the default price.
 *
 * Deep piece trees (2^20 leaves = 1 GiB) are built from identical leaves, so
 * the root and proofs cost 20 hashes instead of a gigabyte of hashing; the
 * leaf bytes are non-zero so calldata is priced like real data.
 */
import { freeLoopbackPort } from "../../src/core/net.js";
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type ContractTransactionResponse, hexlify, Wallet } from "ethers";
import { connectContracts, type MarketParams, NETWORK_PARAMS, TOKEN_UNIT } from "../../src/chain/contracts.js";
import { fundDevAccount, startDevChain } from "../../src/chain/devchain.js";
import { buildChallengeAnswer, computeChallenge, type LeafSource } from "../../src/chain/proofs.js";
import { createProvider, nonceSafe } from "../../src/chain/signer.js";
import { marketDomain, signDealState, signEgressVoucher } from "../../src/chain/signing.js";
import { type DealPiece, dealRoot, hashLeaf, hashNode } from "../../src/crypto/merkle.js";

const EPOCH_SECONDS = 100;
const DEFAULT_PRICE = 1_500_000n; // 1.5 tokens per TB-month (the --price-tb-month default)
const GAS_PRICE_GWEI = 0.01;
const ETH_USD = 3000;
const TOKEN_USD = 1;
const FEE_SHARE = 0.1;
const REAL_EPOCH_SECONDS = 86_400;


/** A piece of 2^depth identical 1 KiB leaves: root and the (index-independent) proof. */
function uniformPiece(depth: number, leaf: Uint8Array): { root: Uint8Array; proof: Uint8Array[]; size: bigint } {
  let h = hashLeaf(leaf);
  const proof: Uint8Array[] = [];
  for (let i = 0; i < depth; i++) {
    proof.push(h);
    h = hashNode(h, h);
  }
  return { root: h, proof, size: BigInt(leaf.length) << BigInt(depth) };
}

async function main(): Promise<void> {
  const home = await mkdtemp(join(tmpdir(), "dstor-gas-"));
  const params: MarketParams = { ...NETWORK_PARAMS, epochSeconds: EPOCH_SECONDS, challengeProbabilityPpm: 1_000_000, faucet: true, faucetLimit: 10n ** 15n };
  const chain = await startDevChain({ home, port: await freeLoopbackPort(), params });
  const provider = createProvider(chain.rpcUrl, { pollingIntervalMs: 50 });
  const results: Record<string, bigint> = {};
  const report = (name: string, gas: bigint, extra: Record<string, unknown> = {}): void => {
    results[name] = gas;
    process.stdout.write(`${JSON.stringify({ name, gas: Number(gas), ...extra })}\n`);
  };
  const gasOf = async (tx: Promise<ContractTransactionResponse>): Promise<bigint> => (await (await tx).wait())!.gasUsed;
  try {
    const d = chain.deployment;
    const mk = async () => {
      const w = Wallet.createRandom().connect(provider);
      await fundDevAccount(chain.rpcUrl, d, w.address, 10_000_000n * TOKEN_UNIT);
      return { w, c: connectContracts(d, nonceSafe(w)) };
    };
    const farmer = await mk();
    const keeper = await mk();
    const domain = marketDomain(d.chainId, d.market);
    const stake = 100n * TOKEN_UNIT;
    await gasOf(farmer.c.token.approve(d.registry, stake));
    report(
      "join",
      await gasOf(farmer.c.registry.join(stake, DEFAULT_PRICE, 10n ** 13n, hexlify(randomBytes(38)), hexlify(randomBytes(64)), ["/ip4/203.0.113.7/tcp/4001"])),
    );

    const leaf = new Uint8Array(1024).fill(0xab);
    const PIECES = 1024;
    const runDepth = async (depth: number, first: boolean): Promise<void> => {
      const renter = await mk();
      const piece = uniformPiece(depth, leaf);
      const pieces: DealPiece[] = Array.from({ length: PIECES }, () => ({
        pieceId: new Uint8Array(randomBytes(32)),
        pieceRoot: piece.root,
        size: piece.size,
      }));
      const term = 10 * EPOCH_SECONDS;
      const escrow = 1_000_000n * TOKEN_UNIT;
      await gasOf(renter.c.token.approve(d.market, escrow));
      const openGas = await gasOf(renter.c.market.openDeal(farmer.w.address, term, escrow));
      if (first) report("open-deal", openGas);
      const dealId = await renter.c.market.latestDeal(renter.w.address, farmer.w.address);
      const deal = await renter.c.market.deal(dealId);
      const state = { root: hexlify(dealRoot(pieces)), pieceCount: BigInt(PIECES), totalBytes: piece.size * BigInt(PIECES), version: 1n };
      const msg = { dealId, term: deal.term, ...state };
      const updateGas = await gasOf(
        renter.c.market.updateState(dealId, state, await signDealState(renter.w, domain, msg), await signDealState(farmer.w, domain, msg)),
      );
      if (first) report("deal-state-update", updateGas);
      // A renter asking for the next epoch's challenge (after failed spot checks).
      if (first) report("request-challenge", await gasOf(renter.c.market.requestChallenge(dealId)));
      // Next epoch: fix its seed, answer.
      const now = (await provider.getBlock("latest"))!.timestamp;
      const e = (await renter.c.market.epochAt(now)) + 1n;
      await provider.send("evm_increaseTime", [Number(BigInt(d.genesis) + e * BigInt(EPOCH_SECONDS)) - now]);
      await provider.send("evm_mine", []);
      await gasOf(keeper.c.randomness.fixSeed(e));
      await gasOf(keeper.c.randomness.fixSeed(e));
      const seed = await renter.c.randomness.seedOf(e);
      const ch = computeChallenge(seed, dealId, e, BigInt(PIECES), BigInt(params.challengeProbabilityPpm));
      const source: LeafSource = { leafWithProof: async () => ({ leaf, proof: piece.proof }) };
      const samples = await buildChallengeAnswer(ch, pieces, params.samplesPerChallenge, source);
      const receipt = (await (await farmer.c.market.answerChallenge(dealId, e, samples)).wait())!;
      const passed = receipt.logs.some((l) => renter.c.market.interface.parseLog(l)?.name === "ChallengePassed");
      if (!passed) throw new Error(`depth ${depth}: the answer did not pass`);
      report(`audit-answer-depth-${depth}`, receipt.gasUsed, { samples: params.samplesPerChallenge, dealPieces: PIECES });
      if (first) {
        // One epoch settled on its own (the epoch after: no seed, deadline passed → unchallenged, paid).
        await provider.send("evm_increaseTime", [3 * EPOCH_SECONDS]);
        await provider.send("evm_mine", []);
        await gasOf(renter.c.market.settle(dealId, e));
        report("settle-epoch", await gasOf(renter.c.market.settle(dealId, e + 1n)));
        // The rest of the term in one call: what a worker settling in bulk pays per epoch.
        const last = await renter.c.market.lastEpoch(dealId);
        await provider.send("evm_increaseTime", [Number(deal.end) - (await provider.getBlock("latest"))!.timestamp + 2 * EPOCH_SECONDS]);
        await provider.send("evm_mine", []);
        const batch = await gasOf(renter.c.market.settle(dealId, last));
        const count = last - (e + 1n);
        report("settle-epoch-batched", batch / count, { epochs: Number(count), totalGas: Number(batch) });
        // A keeper's top-up of an open deal (the renter's allowance is set first, once).
        await gasOf(renter.c.token.approve(d.market, 10n ** 12n));
        report("top-up", await gasOf(renter.c.market.topUp(dealId, 1_000n)));
        const sig = await signEgressVoucher(renter.w, domain, { dealId, cumulativeAmount: 1_000n });
        report("redeem-voucher", await gasOf(farmer.c.market.redeemVoucher(dealId, 1_000n, sig)));
        report("withdraw", await gasOf(farmer.c.market.withdraw()));
      }
    };
    await runDepth(10, true);
    await runDepth(20, false);

    // Break-even: fees per deal per 24 h epoch = p × answer + settle; pay per epoch ∝ bytes.
    const p = NETWORK_PARAMS.challengeProbabilityPpm / 1e6;
    // Unchallenged epochs are settled in bulk (by the next answer or the close), so
    // each costs the batched per-epoch figure; challenged ones cost an answer.
    const feeGas = p * Number(results["audit-answer-depth-20"]!) + (1 - p) * Number(results["settle-epoch-batched"]!);
    const feeUsd = feeGas * GAS_PRICE_GWEI * 1e-9 * ETH_USD;
    const payUsdPerByte = ((Number(DEFAULT_PRICE) / 1e6) * TOKEN_USD * REAL_EPOCH_SECONDS) / (1e12 * 2_592_000);
    const bytes = Math.ceil(feeUsd / (FEE_SHARE * payUsdPerByte));
    process.stdout.write(
      `${JSON.stringify({
        name: "break-even",
        bytes,
        gb: Number((bytes / 1e9).toFixed(2)),
        feeGasPerEpoch: Math.round(feeGas),
        feeUsdPerEpoch: Number(feeUsd.toExponential(3)),
        assumptions: { epochSeconds: REAL_EPOCH_SECONDS, challengeProbability: p, gasPriceGwei: GAS_PRICE_GWEI, ethUsd: ETH_USD, tokenUsd: TOKEN_USD, pricePerTBMonth: 1.5, feeShare: FEE_SHARE, answer: "audit-answer-depth-20", settle: "settle-epoch-batched" },
      })}\n`,
    );
  } finally {
    provider.destroy();
    await chain.stop();
    await rm(home, { recursive: true, force: true });
  }
}

await main();
