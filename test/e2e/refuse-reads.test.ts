/**
 * A farmer that keeps its pieces and passes its on-chain audits but refuses
 * every read (`dstor farm --dev-refuse-reads`, a test hook): the renter
 * node's spot checks mark it, repair moves its pieces to other farmers,
 * selection no longer gives it new pieces, and the files read back.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import { devChainPaths } from "../../src/chain/devchain.js";
import { sleep } from "../../src/core/abort.js";
import { openRenterNode } from "../../src/node/renter-node.js";
import { ineligibleReason } from "../../src/renter/selection.js";
import { walkFiles } from "../../src/workers/repair.js";
import { startFixture, TEST_PARAMS } from "../chain/fixture.js";
import { type LocalFarmer, removeRoot, runCli, startLocalFarmer, tempRoot } from "../renter/network-fixture.js";

test("a farmer that refuses reads is marked by spot checks, avoided, and repaired away", { timeout: 900_000 }, async (t) => {
  const f = await startFixture(t, { ...TEST_PARAMS, epochSeconds: 10 });
  const root = await tempRoot("dstor-refuse-e2e-");
  const cleanups: Array<() => Promise<void>> = [];
  t.after(async () => {
    await Promise.all(cleanups.map((stop) => stop()));
    await removeRoot(root);
  });
  const farmers: LocalFarmer[] = [];
  const refuser = await startLocalFarmer(cleanups, root, 1, f.chain.rpcUrl, f.home, "2GB", "1.5", ["--dev-refuse-reads"]);
  farmers.push(refuser);
  for (let i = 2; i <= 5; i++) farmers.push(await startLocalFarmer(cleanups, root, i, f.chain.rpcUrl, f.home));
  const home = join(root, "renter");
  assert.equal((await runCli(["init", "--home", home, "--json"])).code, 0);
  const deployment = devChainPaths(f.home).deployment;
  const common = ["--home", home, "--chain-rpc", f.chain.rpcUrl, "--deployment", deployment, "--redundancy", "2/3/4/4", "--segment-size", "1MiB"];
  const data = randomBytes(6 * 1024 * 1024 + 99);
  await writeFile(join(root, "in"), data);
  const put = await runCli(["put", join(root, "in"), "/a", "--json", ...common]);
  assert.equal(put.code, 0, put.stderr);
  const address = refuser.wallet.toLowerCase();

  const node = await openRenterNode({ home, chainRpc: f.chain.rpcUrl, deployment, redundancy: "2/3/4/4", workers: true });
  let stopped = false;
  const stopNode = async (): Promise<void> => {
    if (!stopped) await node.stop();
    stopped = true;
  };
  cleanups.push(stopNode);
  assert.ok((await node.metadata.piecesOn(address)).length > 0, "the refusing farmer was given pieces");
  const asCandidate = { address, peerId: "", multiaddrs: [], priceTbMonth: 0n, chainSuccesses: 0, chainFailures: 0, disqualified: false };
  const deadline = Date.now() + 600_000;
  for (;;) {
    let onRefuser = 0;
    let short = 0;
    for (const file of await walkFiles(node.metadata)) {
      for (const s of await node.metadata.segments(file.inode)) {
        if (Object.values(s.holders).includes(address)) onRefuser++;
        if (Object.keys(s.holders).length !== 4) short++;
      }
    }
    const verdict = ineligibleReason(asCandidate, await node.metadata.farmer(address), {}, 1);
    if (onRefuser === 0 && short === 0 && verdict === "fails too often") break;
    assert.ok(Date.now() < deadline, "spot checks and repair move every piece off the refusing farmer within ten minutes");
    await sleep(2_000);
  }
  const record = await node.metadata.farmer(address);
  // "Fails too often" is more failures than successes (over at least 4 tries);
  // how many it took depends on how many pieces (successful puts) it got.
  assert.ok(record !== undefined && record.failures >= 3 && record.failures > record.successes, `spot checks recorded the refusals: ${JSON.stringify(record)}`);
  assert.equal(ineligibleReason(asCandidate, record, {}, 1), "fails too often", "selection leaves it out");
  // The failed checks asked the chain to challenge its deal with us (it answers those too).
  const dealId = await f.c.market.latestDeal(node.address, refuser.wallet);
  const requested = await f.c.market.queryFilter(f.c.market.filters.ChallengeRequested(dealId));
  assert.ok(requested.length >= 1, "a failed spot check requested an on-chain challenge of the refusing farmer's deal");
  await stopNode();

  // It passes its on-chain audits all the while: the chain alone would not have caught it.
  const [, chainFailures] = await f.c.registry.reputation(refuser.wallet);
  assert.equal(chainFailures, 0n);
  // A new upload avoids it (its record says it fails too often).
  await writeFile(join(root, "in2"), randomBytes(3 * 1024 * 1024));
  const put2 = await runCli(["put", join(root, "in2"), "/b", "--json", ...common]);
  assert.equal(put2.code, 0, put2.stderr);
  const check = await openRenterNode({ home, offline: true });
  try {
    assert.equal((await check.metadata.piecesOn(address)).length, 0, "no new piece goes to the refusing farmer");
  } finally {
    await check.stop();
  }
  const get = await runCli(["get", "/a", join(root, "out"), ...common]);
  assert.equal(get.code, 0, get.stderr);
  assert.equal(Buffer.compare(await readFile(join(root, "out")), data), 0);
});
