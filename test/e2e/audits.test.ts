/**
 * Audits and pay end to end: real `dstor farm` processes (each running its
 * audit/payment worker) on 127.0.N.1, a real anvil chain with 10 s epochs in
 * which every deal is challenged every epoch, and `dstor put` as a child
 * process. Honest farmers answer every challenge and are paid exactly
 * price × bytes × seconds for the settled epochs; the renter's escrow goes
 * down by the same amount, to the token unit.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import { devChainPaths } from "../../src/chain/devchain.js";
import { storageCost } from "../../src/chain/proofs.js";
import { sleep } from "../../src/core/abort.js";
import { createLogger, formatLogRecord } from "../../src/core/logging.js";
import { openRenterNode } from "../../src/node/renter-node.js";
import type { RenterStatus } from "../../src/node/status.js";
import { walkFiles } from "../../src/workers/repair.js";
import { type ChainFixture, startFixture, TEST_PARAMS } from "../chain/fixture.js";
import { type LocalFarmer, removeRoot, runCli, startLocalFarmer, tempRoot } from "../renter/network-fixture.js";

/** Every deal challenged every epoch; 10 s epochs so several pass within a minute. */
export const AUDIT_PARAMS = { ...TEST_PARAMS, epochSeconds: 10, challengeProbabilityPpm: 1_000_000 };

/**
 * Tokens per TB-month: high enough that a few MiB for a minute are worth
 * whole token units (at 1.5 they would round to zero and prove nothing).
 */
export const HIGH_PRICE = "1000000";

const OUTCOME_PASSED = 1n;
const OUTCOME_FAILED = 2n;

/** Byte-seconds of `dealId` up to `t`, from its DealStateUpdated events (independent of the contract's checkpoints). */
export async function byteSecondsFromEvents(f: ChainFixture, dealId: bigint, t: number): Promise<bigint> {
  const events = await f.c.market.queryFilter(f.c.market.filters.DealStateUpdated!(dealId), 0, "latest");
  const points: Array<{ time: number; bytes: bigint }> = [];
  for (const e of events) {
    const block = await f.provider.getBlock(e.blockNumber);
    const args = (e as unknown as { args: [bigint, bigint, string, bigint, bigint] }).args;
    points.push({ time: block!.timestamp, bytes: args[4] });
  }
  let total = 0n;
  for (let i = 0; i < points.length; i++) {
    const from = points[i]!.time;
    const to = Math.min(t, points[i + 1]?.time ?? t);
    if (to > from) total += points[i]!.bytes * BigInt(to - from);
  }
  return total;
}

/** The deals each farmer has with `renter`. */
export async function dealsOf(f: ChainFixture, renter: string, farmers: readonly LocalFarmer[]): Promise<Map<string, bigint>> {
  const out = new Map<string, bigint>();
  for (const farmer of farmers) {
    const id = await f.c.market.latestDeal(renter, farmer.wallet);
    if (id !== 0n) out.set(farmer.wallet, id);
  }
  return out;
}

/** Collects a farmer's stderr (its log lines); written out when DSTOR_TEST_LOGS names a directory. */
export function collectLog(farmer: LocalFarmer): string[] {
  const lines: string[] = [];
  farmer.child.stderr?.on("data", (d: Buffer) => lines.push(d.toString()));
  return lines;
}

/** Sum of the faucet mints to `account`. */
export async function mintedTo(f: ChainFixture, account: string): Promise<bigint> {
  const mints = await f.c.token.queryFilter(f.c.token.filters.FaucetMint!(account), 0, "latest");
  return mints.reduce((s, log) => s + (log as unknown as { args: [string, bigint] }).args[1], 0n);
}

/** Egress price of the honest farmers (tokens per GB): high, so a few MiB of reads are worth many token units. */
const EGRESS_PRICE_GB = "100";
const EGRESS_UNITS_PER_GB = 100_000_000n;

/** The newest egress voucher a farmer holds for `dealId` (its durable voucher book), 0 when none. */
async function heldVoucher(farmer: LocalFarmer, dealId: bigint): Promise<bigint> {
  try {
    const book = JSON.parse(await readFile(join(farmer.home, "farmer-egress-vouchers.json"), "utf8")) as { vouchers: Record<string, { cumulativeAmount: string }> };
    return BigInt(book.vouchers[dealId.toString()]?.cumulativeAmount ?? "0");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return 0n;
    throw error;
  }
}

test("honest farmers answer every challenge and are paid exactly price × bytes × time plus redeemed egress", { timeout: 900_000 }, async (t) => {
  const f = await startFixture(t, AUDIT_PARAMS);
  const root = await tempRoot("dstor-audits-e2e-");
  const cleanups: Array<() => Promise<void>> = [];
  t.after(async () => {
    await Promise.all(cleanups.map((stop) => stop()));
    await removeRoot(root);
  });
  const farmers: LocalFarmer[] = [];
  for (let i = 1; i <= 4; i++) {
    farmers.push(await startLocalFarmer(cleanups, root, i, f.chain.rpcUrl, f.home, "2GB", HIGH_PRICE, ["--egress-price-gb", EGRESS_PRICE_GB]));
  }
  const logs = farmers.map((x) => collectLog(x));
  t.after(async () => {
    if (process.env.DSTOR_TEST_LOGS !== undefined) {
      for (const [i, l] of logs.entries()) await writeFile(join(process.env.DSTOR_TEST_LOGS, `farmer-${i + 1}.log`), l.join(""));
    }
  });
  const startBalances = new Map<string, bigint>();
  for (const farmer of farmers) startBalances.set(farmer.wallet, await f.c.token.balanceOf(farmer.wallet));

  const home = join(root, "renter");
  const init = await runCli(["init", "--home", home, "--json"]);
  assert.equal(init.code, 0, init.stderr);
  const renter = (JSON.parse(init.stdout) as { address: string }).address;
  const common = ["--home", home, "--chain-rpc", f.chain.rpcUrl, "--deployment", devChainPaths(f.home).deployment, "--redundancy", "2/3/4/4"];
  await writeFile(join(root, "a"), randomBytes(3 * 1024 * 1024 + 777));
  const put = await runCli(["put", join(root, "a"), "/a", "--json", "--segment-size", "1MiB", ...common]);
  assert.equal(put.code, 0, put.stderr);
  const deals = await dealsOf(f, renter, farmers);
  assert.equal(deals.size, 4, "one deal per farmer");
  // Reads: each `dstor get` pays for the bytes it received and verified with vouchers (sent as it exits).
  const GETS = 2;
  const original = await readFile(join(root, "a"));
  for (let i = 0; i < GETS; i++) {
    const get = await runCli(["get", "/a", join(root, `a.${i}`), "--max-egress-price-gb", "1000", ...common]);
    assert.equal(get.code, 0, get.stderr);
    assert.equal(Buffer.compare(await readFile(join(root, `a.${i}`)), original), 0);
  }
  // What a get must have received (k pieces of every segment) and at most could (every piece).
  let minBytes = 0n;
  let maxBytes = 0n;
  const offline = await openRenterNode({ home, offline: true });
  for (const file of await walkFiles(offline.metadata)) {
    for (const s of await offline.metadata.segments(file.inode)) {
      minBytes += BigInt(GETS * 2 * s.pieceSize);
      maxBytes += BigInt(GETS * Object.keys(s.holders).length * s.pieceSize);
    }
  }
  await offline.stop();
  let vouchersTotal = 0n;
  for (const farmer of farmers) vouchersTotal += await heldVoucher(farmer, deals.get(farmer.wallet)!);
  // Each voucher rounds down once per deal and process: at most one unit lost per deal and get.
  assert.ok(vouchersTotal >= (minBytes * EGRESS_UNITS_PER_GB) / 1_000_000_000n - BigInt(GETS * deals.size), `vouchers ${vouchersTotal} pay at least k pieces per segment`);
  assert.ok(vouchersTotal <= (maxBytes * EGRESS_UNITS_PER_GB) / 1_000_000_000n, `vouchers ${vouchersTotal} pay no more than every piece`);

  // Wait until every deal has passed at least three challenges (answered by the farmers' workers)
  // and every farmer has redeemed the voucher it holds.
  const PASSES = 3;
  const deadline = Date.now() + 300_000;
  for (;;) {
    let ready = true;
    for (const farmer of farmers) {
      const id = deals.get(farmer.wallet)!;
      if ((await f.c.market.deal(id)).egressPaid !== (await heldVoucher(farmer, id))) ready = false;
    }
    for (const id of deals.values()) {
      const d = await f.c.market.deal(id);
      let passed = 0;
      for (let e = await f.c.market.epochAt(d.start); e < d.nextEpoch; e++) if ((await f.c.market.outcomes(id, e)) === OUTCOME_PASSED) passed++;
      if (passed < PASSES) ready = false;
    }
    if (ready) break;
    assert.ok(Date.now() < deadline, "every deal passes three challenges within five minutes");
    await sleep(2_000);
  }
  // Freeze the chain: with the farmers stopped nothing sends transactions any more.
  await Promise.all(farmers.map((x) => x.stop()));

  let paidTotal = 0n;
  let egressTotal = 0n;
  let depositedTotal = 0n;
  let remainingTotal = 0n;
  for (const farmer of farmers) {
    const id = deals.get(farmer.wallet)!;
    const d = await f.c.market.deal(id);
    const first = await f.c.market.epochAt(d.start);
    const failed = await f.c.market.queryFilter(f.c.market.filters.ChallengeFailed!(id), 0, "latest");
    const reasons = failed.map((x) => (x as unknown as { args: [bigint, bigint, string, bigint] }).args).map((a) => `epoch ${a[1]} reason ${a[3]}`);
    for (let e = first; e < d.nextEpoch; e++) {
      assert.notEqual(await f.c.market.outcomes(id, e), OUTCOME_FAILED, `deal ${id} epoch ${e} did not fail (${reasons.join(", ")})`);
    }
    const [successes, failures] = await f.c.registry.reputation(farmer.wallet);
    assert.ok(successes >= BigInt(PASSES), `farmer ${farmer.index} has ${successes} audit successes`);
    assert.equal(failures, 0n);
    // Paid for [start, end of the last settled epoch): exactly price × byte-seconds / (TB × month), rounded down once.
    const settledUntil = Math.min(Number(d.end), Number(BigInt(f.deployment.genesis) + d.nextEpoch * BigInt(f.params.epochSeconds)));
    const byteSeconds = await byteSecondsFromEvents(f, id, settledUntil);
    assert.ok(byteSeconds > 0n);
    assert.equal(await f.c.market.byteSecondsAt(id, settledUntil), byteSeconds);
    assert.equal(d.storagePaid, storageCost(d.pricePerTBMonth, byteSeconds), `deal ${id} paid price × bytes × time`);
    assert.equal(d.storageRefunded, 0n);
    // Egress: exactly the voucher the renter signed and the farmer holds was redeemed.
    assert.equal(d.egressPaid, await heldVoucher(farmer, id), `deal ${id} redeemed the renter's newest voucher`);
    const redeemed = await f.c.market.queryFilter(f.c.market.filters.VoucherRedeemed!(id), 0, "latest");
    assert.equal(redeemed.reduce((n, x) => n + (x as unknown as { args: [bigint, bigint, bigint] }).args[2], 0n), d.egressPaid);
    egressTotal += d.egressPaid;
    // What the farmer earned is in its wallet (withdrawn by its worker) or still withdrawable.
    const gained = (await f.c.token.balanceOf(farmer.wallet)) - startBalances.get(farmer.wallet)! + (await f.c.market.withdrawable(farmer.wallet));
    assert.equal(gained, d.storagePaid + d.egressPaid, `farmer ${farmer.index} received exactly its pay and its redeemed egress`);
    const remaining = await f.c.market.escrowRemaining(id);
    assert.equal(remaining, d.deposited - d.storagePaid - d.egressPaid, "the renter's escrow went down by the pay and the egress");
    paidTotal += d.storagePaid;
    depositedTotal += d.deposited;
    remainingTotal += remaining;
  }
  assert.ok(paidTotal > 0n);
  assert.equal(egressTotal, vouchersTotal, "every voucher was redeemed");
  assert.ok(egressTotal > 0n);
  // The renter's tokens: minted − deposited; the market holds exactly the escrows left and what is withdrawable.
  assert.equal(await f.c.token.balanceOf(renter), (await mintedTo(f, renter)) - depositedTotal);
  let withdrawable = await f.c.market.withdrawable(renter);
  for (const farmer of farmers) withdrawable += await f.c.market.withdrawable(farmer.wallet);
  assert.equal(await f.c.token.balanceOf(f.deployment.market), remainingTotal + withdrawable);
  t.diagnostic(`paid ${paidTotal} token units for storage and ${egressTotal} for egress over ${deals.size} deals`);
  const redeems = await f.c.market.queryFilter(f.c.market.filters.VoucherRedeemed!(), 0, "latest");
  let redeemGas = 0n;
  for (const hash of new Set(redeems.map((x) => x.transactionHash))) redeemGas += (await f.provider.getTransactionReceipt(hash))!.gasUsed;
  t.diagnostic(`voucher redemptions: ${redeems.length}, ${redeems.length === 0 ? 0n : redeemGas / BigInt(redeems.length)} gas each`);
  // Audit cost per deal per epoch, as the farmers' workers actually paid it.
  const answers = await f.c.market.queryFilter(f.c.market.filters.ChallengePassed!(), 0, "latest");
  const answerTxs = new Set(answers.map((x) => x.transactionHash));
  let answerGas = 0n;
  let answerBytes = 0;
  for (const hash of answerTxs) {
    const [tx, receipt] = await Promise.all([f.provider.getTransaction(hash), f.provider.getTransactionReceipt(hash)]);
    answerGas += receipt!.gasUsed;
    answerBytes += (tx!.data.length - 2) / 2;
  }
  const settles = (await f.c.market.queryFilter(f.c.market.filters.EpochSettled!(), 0, "latest")).filter((x) => !answerTxs.has(x.transactionHash));
  const settleTxs = new Set(settles.map((x) => x.transactionHash));
  let settleGas = 0n;
  for (const hash of settleTxs) settleGas += (await f.provider.getTransactionReceipt(hash))!.gasUsed;
  assert.ok(answerTxs.size > 0);
  t.diagnostic(
    `audit answers: ${answerTxs.size}, ${answerGas / BigInt(answerTxs.size)} gas and ${Math.round(answerBytes / answerTxs.size)} calldata bytes each; ` +
      `separate settle txs: ${settleTxs.size} covering ${settles.length} epochs, ${settleTxs.size === 0 ? 0n : settleGas / BigInt(settleTxs.size)} gas each`,
  );
});

test("a farmer that deletes its pieces fails its challenges, is not paid for them, is disqualified and slashed; repair moves its pieces; status shows it; files stay whole", { timeout: 900_000 }, async (t) => {
  const f = await startFixture(t, AUDIT_PARAMS);
  const root = await tempRoot("dstor-audits-bad-e2e-");
  const cleanups: Array<() => Promise<void>> = [];
  t.after(async () => {
    await Promise.all(cleanups.map((stop) => stop()));
    await removeRoot(root);
  });
  const farmers: LocalFarmer[] = [];
  // Five farmers: four hold each segment, the fifth is where repair moves the lost pieces.
  for (let i = 1; i <= 5; i++) farmers.push(await startLocalFarmer(cleanups, root, i, f.chain.rpcUrl, f.home, "2GB", HIGH_PRICE));
  const logs = farmers.map((x) => collectLog(x));
  t.after(async () => {
    if (process.env.DSTOR_TEST_LOGS !== undefined) {
      for (const [i, l] of logs.entries()) await writeFile(join(process.env.DSTOR_TEST_LOGS, `bad-farmer-${i + 1}.log`), l.join(""));
    }
  });
  const home = join(root, "renter");
  const init = await runCli(["init", "--home", home, "--json"]);
  assert.equal(init.code, 0, init.stderr);
  const renter = (JSON.parse(init.stdout) as { address: string }).address;
  const deployment = devChainPaths(f.home).deployment;
  const common = ["--home", home, "--chain-rpc", f.chain.rpcUrl, "--deployment", deployment, "--redundancy", "2/3/4/4"];
  const data = randomBytes(3 * 1024 * 1024 + 777);
  await writeFile(join(root, "a"), data);
  const put = await runCli(["put", join(root, "a"), "/a", "--json", "--segment-size", "1MiB", ...common]);
  assert.equal(put.code, 0, put.stderr);
  const deals = await dealsOf(f, renter, farmers);
  // The farmer holding the most pieces loses them.
  const offline = await openRenterNode({ home, offline: true });
  const held = await Promise.all(farmers.map(async (x) => ({ x, n: (await offline.metadata.piecesOn(x.wallet.toLowerCase())).length })));
  await offline.stop();
  held.sort((a, b) => b.n - a.n);
  const bad = held[0]!.x;
  assert.ok(held[0]!.n > 0);
  const badDeal = deals.get(bad.wallet)!;
  const stake = (await f.c.registry.farmerInfo(bad.wallet)).stake;
  assert.ok(stake > 0n);

  // The farmer loses its data behind its own back.
  await rm(join(bad.storage, "pieces"), { recursive: true, force: true });
  const lostAt = await f.c.market.epochAt(Math.floor(Date.now() / 1000));

  // The renter's long-running node (its keeper fixes seeds, settles, closes, claims).
  const renterLog: string[] = [];
  const logger = createLogger("dstor:renter", { defaultLevel: "debug", enable: "", sink: (r) => renterLog.push(formatLogRecord(r)) });
  t.after(async () => {
    if (process.env.DSTOR_TEST_LOGS !== undefined) await writeFile(join(process.env.DSTOR_TEST_LOGS, "renter.log"), renterLog.join("\n"));
  });
  const node = await openRenterNode({ home, chainRpc: f.chain.rpcUrl, deployment, redundancy: "2/3/4/4", workers: true, logger });
  let nodeStopped = false;
  const stopNode = async (): Promise<void> => {
    if (!nodeStopped) await node.stop();
    nodeStopped = true;
  };
  cleanups.push(stopNode);
  const deadline = Date.now() + 300_000;
  const repaired = async (): Promise<boolean> => {
    for (const file of await walkFiles(node.metadata)) {
      for (const s of await node.metadata.segments(file.inode)) {
        const holders = Object.values(s.holders);
        if (holders.includes(bad.wallet.toLowerCase()) || holders.length !== 4) return false;
      }
    }
    return true;
  };
  while (!(await f.c.market.deal(badDeal)).closed || (await f.c.registry.claimable(bad.wallet, renter)) > 0n || !(await repaired())) {
    assert.ok(Date.now() < deadline, "the farmer is disqualified, its deal closed, its stake claimed and its pieces moved within five minutes");
    await sleep(2_000);
  }
  await stopNode();
  // dstor status tells the story.
  const status = await runCli(["status", "--json", ...common]);
  assert.equal(status.code, 0, status.stderr);
  const st = JSON.parse(status.stdout) as RenterStatus;
  assert.deepEqual(st.files.map((x) => [x.path, x.health]), [["/a", "healthy"]]);
  assert.ok(st.files[0]!.segments.every((x) => x.healthy === 4 && x.total === 4));
  const badRow = st.farmers.find((x) => x.address === bad.wallet.toLowerCase())!;
  assert.equal(badRow.pieces, 0);
  assert.equal(badRow.chain?.disqualified, true);
  assert.equal(badRow.chain?.failures, String(f.params.failureThreshold));
  assert.ok(badRow.audits.failures > 0 || badRow.deal?.closed === true);
  assert.equal(badRow.deal?.closed, true);
  assert.ok(BigInt(badRow.deal?.refunded ?? "0") > 0n);
  assert.ok(st.lastRepair !== undefined && st.lastRepair.pieces > 0);
  assert.ok(st.balances !== undefined && BigInt(st.balances.tokens) > 0n);
  const text = await runCli(["status", ...common]);
  assert.equal(text.code, 0, text.stderr);
  assert.match(text.stdout, /DISQUALIFIED/);
  assert.match(text.stdout, /\/a {2}healthy/);
  // The file is still whole.
  const get = await runCli(["get", "/a", join(root, "a.out"), ...common]);
  assert.equal(get.code, 0, get.stderr);
  assert.equal(Buffer.compare(await readFile(join(root, "a.out")), data), 0);
  await Promise.all(farmers.map((x) => x.stop()));

  const [, failures, , disqualified] = await f.c.registry.reputation(bad.wallet);
  assert.equal(disqualified, true);
  assert.equal(failures, BigInt(f.params.failureThreshold));
  assert.equal(await f.c.registry.slashedStake(bad.wallet), stake);
  const claims = await f.c.registry.queryFilter(f.c.registry.filters.StakeClaimed!(bad.wallet, renter), 0, "latest");
  assert.equal(claims.length, 1);
  assert.equal((claims[0] as unknown as { args: [string, string, bigint] }).args[2], stake, "the only renter claims the whole stake");

  // Every failed epoch was refunded, none paid; nothing after the loss was paid.
  const settled = await f.c.market.queryFilter(f.c.market.filters.EpochSettled!(badDeal), 0, "latest");
  const byEpoch = new Map(settled.map((x) => (x as unknown as { args: [bigint, bigint, bigint, bigint] }).args).map((a) => [a[1], a] as const));
  let failedEpochs = 0;
  for (const [epoch, a] of byEpoch) {
    const outcome = await f.c.market.outcomes(badDeal, epoch);
    if (outcome === OUTCOME_FAILED) {
      failedEpochs++;
      assert.equal(a[2], 0n, `failed epoch ${epoch} is not paid`);
    }
    if (epoch > lostAt) assert.equal(a[2], 0n, `epoch ${epoch} after the loss is not paid`);
  }
  assert.equal(failedEpochs, f.params.failureThreshold);
  const d = await f.c.market.deal(badDeal);
  assert.equal(d.closed, true);
  assert.ok(d.storageRefunded > 0n, "the renter was refunded");
  assert.equal(d.storagePaid + d.storageRefunded + d.egressPaid <= d.deposited, true);
  // The honest farmers kept a clean record.
  for (const farmer of farmers.filter((x) => x !== bad)) {
    const [, fails, , dq] = await f.c.registry.reputation(farmer.wallet);
    assert.equal(fails, 0n, `farmer ${farmer.index} has no failures`);
    assert.equal(dq, false);
  }
  // The renter received everything back: refunds and the claim were withdrawn.
  assert.equal(await f.c.market.withdrawable(renter), 0n);

});
