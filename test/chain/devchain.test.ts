import assert from "node:assert/strict";
import { mkdtemp, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type TestContext, test } from "node:test";
import { type HDNodeWallet, Wallet } from "ethers";
import { connectContracts } from "../../src/chain/contracts.js";
import { isDstorError } from "../../src/core/errors.js";
import { type DevChain, devChainPaths, fundDevAccount, startDevChain } from "../../src/chain/devchain.js";
import { createProvider, type DstorProvider, mined, nonceSafe } from "../../src/chain/signer.js";
import { freePort, TEST_PARAMS } from "./fixture.js";

test("the dev chain survives a restart: deployment, balances, deals and a monotonic epoch", async (t) => {
  const home = await mkdtemp(join(tmpdir(), "dstor-devchain-"));
  const port = await freePort();
  const stops: Array<() => Promise<void>> = [];
  t.after(async () => {
    for (const s of stops) await s();
    await rm(home, { recursive: true, force: true });
  });
  const first = await startDevChain({ home, port, params: TEST_PARAMS });
  stops.push(first.stop);
  assert.equal(first.deployedNow, true);
  const provider = createProvider(first.rpcUrl);
  const renter = Wallet.createRandom();
  const farmer = Wallet.createRandom();
  await fundDevAccount(first.rpcUrl, first.deployment, renter.address, 5_000_000n);
  await fundDevAccount(first.rpcUrl, first.deployment, farmer.address, 50_000_000n);
  const fs = nonceSafe(farmer.connect(provider));
  const rs = nonceSafe(renter.connect(provider));
  const fc = connectContracts(first.deployment, fs);
  const rc = connectContracts(first.deployment, rs);
  await (await fc.token.approve(first.deployment.registry, 10_000_000n)).wait();
  await (await fc.registry.join(10_000_000n, 1_500_000n, 10n ** 12n, "0x0024080112200000", "0x", [])).wait();
  await (await rc.token.approve(first.deployment.market, 1_000n)).wait();
  await (await rc.market.openDeal(farmer.address, 3_000, 1_000n)).wait();
  // Jump ahead: the restart must not bring time (and so epochs) back.
  await provider.send("evm_increaseTime", [5_000]);
  await provider.send("evm_mine", []);
  const block = (await provider.getBlock("latest"))!;
  const epoch = await rc.market.epochAt(block.timestamp);
  const balance = await rc.token.balanceOf(renter.address);
  provider.destroy();
  await first.stop();
  await first.stop(); // idempotent
  assert.ok((await stat(devChainPaths(home).state)).size > 0, "state file written on SIGTERM");

  const second = await startDevChain({ home, port, params: TEST_PARAMS });
  stops.push(second.stop);
  assert.equal(second.deployedNow, false);
  assert.deepEqual(second.deployment, first.deployment);
  const p2 = createProvider(second.rpcUrl);
  t.after(() => p2.destroy());
  const c2 = connectContracts(second.deployment, p2);
  assert.equal(await c2.token.balanceOf(renter.address), balance);
  const deal = await c2.market.deal(1);
  assert.equal(deal.renter, renter.address);
  assert.equal(deal.deposited, 1_000n);
  assert.equal((await c2.registry.farmerInfo(farmer.address)).stake, 10_000_000n);
  await p2.send("evm_mine", []);
  const after = (await p2.getBlock("latest"))!;
  assert.ok(after.number > block.number);
  assert.ok(after.timestamp >= block.timestamp, `timestamp ${after.timestamp} went back from ${block.timestamp}`);
  assert.ok((await c2.market.epochAt(after.timestamp)) >= epoch);
  await second.stop();
});

test("a deployment that does not finish in time fails with TIMEOUT and stops anvil", async (t) => {
  const home = await mkdtemp(join(tmpdir(), "dstor-devchain-"));
  t.after(() => rm(home, { recursive: true, force: true }));
  const port = await freePort();
  await assert.rejects(startDevChain({ home, port, params: TEST_PARAMS, deployTimeoutMs: 1 }), (e) => isDstorError(e, "TIMEOUT"));
  // anvil is gone: its port is free again and a new chain starts on it.
  const chain = await startDevChain({ home, port, params: TEST_PARAMS });
  t.after(() => chain.stop());
  assert.equal(chain.deployedNow, true);
});

/** A fresh dev chain (stopped after the test) and a funded wallet with no transactions yet. */
async function fundedRenter(t: TestContext): Promise<{ chain: DevChain; provider: DstorProvider; renter: HDNodeWallet }> {
  const home = await mkdtemp(join(tmpdir(), "dstor-devchain-"));
  const chain = await startDevChain({ home, port: await freePort(), params: TEST_PARAMS });
  const provider = createProvider(chain.rpcUrl);
  t.after(async () => {
    provider.destroy();
    await chain.stop();
    await rm(home, { recursive: true, force: true });
  });
  const renter = Wallet.createRandom();
  await fundDevAccount(chain.rpcUrl, chain.deployment, renter.address, 1_000n);
  return { chain, provider, renter };
}

test("a transaction that is never mined fails with TIMEOUT, naming it, instead of hanging its caller", async (t) => {
  const { chain, provider, renter } = await fundedRenter(t);
  const { token } = connectContracts(chain.deployment, nonceSafe(renter.connect(provider)));
  await provider.send("evm_setAutomine", [false]);
  await assert.rejects(
    mined(token.approve(chain.deployment.market, 1n), "approving the market", 1_000),
    (e: unknown) =>
      isDstorError(e, "TIMEOUT") &&
      /^approving the market: transaction 0x[0-9a-f]{64} \(nonce 0\) was not mined within 1 s: it is next in line in the node's pool \(the chain is not mining\)$/.test(
        (e as Error).message,
      ),
  );
  // Once the chain mines again, the next transaction goes through (it queues behind the first).
  await provider.send("evm_setAutomine", [true]);
  const receipt = await mined(token.approve(chain.deployment.market, 2n), "approving the market");
  assert.equal(receipt.status, 1);
  assert.equal(await token.allowance(renter.address, chain.deployment.market), 2n);
});

test("concurrent sends from one signer, one of them refused by the node, leave no nonce gap; a gap is named when a wait times out", async (t) => {
  const { chain, provider, renter } = await fundedRenter(t);
  const signer = nonceSafe(renter.connect(provider));
  const { token } = connectContracts(chain.deployment, signer);
  // Six approvals at once; the third carries a gas limit under the intrinsic
  // cost, so the node refuses its broadcast after it was given a nonce.
  const sends = Array.from({ length: 6 }, (_, i) =>
    i === 2 ? token.approve(chain.deployment.market, 100n + BigInt(i), { gasLimit: 1_000n }) : token.approve(chain.deployment.market, 100n + BigInt(i)),
  );
  const outcomes = await Promise.allSettled(sends.map((s) => mined(s, `approval ${sends.indexOf(s)}`, 10_000)));
  assert.equal(outcomes[2]?.status, "rejected", "the under-gassed send is refused");
  const failures = outcomes.filter((o, i) => i !== 2 && o.status === "rejected").map((o) => String((o as PromiseRejectedResult).reason));
  assert.deepEqual(failures, [], "every other send is mined");
  assert.equal(await provider.getTransactionCount(renter.address, "latest"), 5, "five transactions, nonces 0–4");
  // The next send after all that takes the next nonce.
  assert.equal((await mined(token.approve(chain.deployment.market, 7n), "approval 7")).status, 1);
  assert.equal(await provider.getTransactionCount(renter.address, "latest"), 6);

  // A transaction sent past a nonce nobody used waits behind the gap, and the timeout says so.
  const skipping = await renter.connect(provider).sendTransaction({ to: renter.address, value: 0n, nonce: 8 });
  await assert.rejects(mined(skipping, "a skipping transfer", 1_000), (e: unknown) =>
    isDstorError(e, "TIMEOUT") && /: it waits behind nonce 6, which was not mined either \(a nonce gap or a stalled chain\)$/.test((e as Error).message),
  );
});

test("dev accounts funded at the same time (as by farmers and renters starting together) all get their tokens", async (t) => {
  const { chain, provider } = await fundedRenter(t);
  const { token } = connectContracts(chain.deployment, provider);
  const wallets = Array.from({ length: 8 }, () => Wallet.createRandom());
  for (let round = 1; round <= 2; round++) {
    const outcomes = await Promise.allSettled(wallets.map((w) => fundDevAccount(chain.rpcUrl, chain.deployment, w.address, 1_000n)));
    assert.deepEqual(
      outcomes.filter((o) => o.status === "rejected").map((o) => String((o as PromiseRejectedResult).reason)),
      [],
      `round ${round}: every funding went through`,
    );
    for (const w of wallets) assert.equal(await token.balanceOf(w.address), 1_000n * BigInt(round));
  }
});

test("transactions the node dropped: a wait behind the gap times out, and the next send fills it", async (t) => {
  const { chain, provider, renter } = await fundedRenter(t);
  const { token } = connectContracts(chain.deployment, nonceSafe(renter.connect(provider)));
  await provider.send("evm_setAutomine", [false]);
  const first = await token.approve(chain.deployment.market, 1n);
  const second = await token.approve(chain.deployment.market, 2n);
  assert.deepEqual([first.nonce, second.nonce], [0, 1]);
  // Dropping the first drops the second, which depends on it, too.
  await provider.send("anvil_dropTransaction", [first.hash]);
  assert.equal(await provider.getTransaction(second.hash), null);
  await provider.send("evm_setAutomine", [true]);
  const third = await token.approve(chain.deployment.market, 3n);
  assert.equal(third.nonce, 2, "the signer counts on from what the node accepted");
  await assert.rejects(mined(third, "the third approval", 1_000), (e: unknown) =>
    isDstorError(e, "TIMEOUT") && /: it waits behind nonce 0, which was not mined either \(a nonce gap or a stalled chain\)$/.test((e as Error).message),
  );
  // The timeout made the signer ask the node: the next send takes nonce 0, and the third follows it.
  const fourth = await token.approve(chain.deployment.market, 4n);
  assert.equal(fourth.nonce, 0);
  assert.equal((await mined(fourth, "the fourth approval", 10_000)).status, 1);
  assert.equal(await provider.getTransactionCount(renter.address, "latest"), 1, "the third still waits behind nonce 1");
  assert.equal((await mined(token.approve(chain.deployment.market, 5n), "the fifth approval", 10_000)).status, 1);
  assert.equal((await provider.waitForTransaction(third.hash, 1, 10_000))?.status, 1, "with nonce 1 taken, the third is mined");
  assert.equal(await token.allowance(renter.address, chain.deployment.market), 3n, "mined in nonce order: fourth, fifth, third");
});
