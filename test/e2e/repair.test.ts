/**
 * Repair end to end: six real `dstor farm` processes on 127.0.N.1, a real
 * anvil chain, files put with 2/3/4/4 (k = 2, repair = 3, optimal = 4).
 * Farmers holding pieces are killed until segments are at or below the
 * repair threshold; the renter node's repair worker rebuilds the missing
 * pieces onto the surviving farmers (one per /24), the deals list them, and
 * the files read back identical.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import { devChainPaths } from "../../src/chain/devchain.js";
import { sleep } from "../../src/core/abort.js";
import { createLogger, formatLogRecord } from "../../src/core/logging.js";
import { openRenterNode } from "../../src/node/renter-node.js";
import { walkFiles } from "../../src/workers/repair.js";
import { startFixture, TEST_PARAMS } from "../chain/fixture.js";
import { type LocalFarmer, removeRoot, runCli, startLocalFarmer, tempRoot } from "../renter/network-fixture.js";

const MIB = 1024 * 1024;

test("killed farmers: repair restores optimal on the survivors and files stay identical", { timeout: 900_000 }, async (t) => {
  const f = await startFixture(t, { ...TEST_PARAMS, epochSeconds: 10 });
  const root = await tempRoot("dstor-repair-e2e-");
  const cleanups: Array<() => Promise<void>> = [];
  t.after(async () => {
    await Promise.all(cleanups.map((stop) => stop()));
    await removeRoot(root);
  });
  const farmers: LocalFarmer[] = [];
  for (let i = 1; i <= 6; i++) farmers.push(await startLocalFarmer(cleanups, root, i, f.chain.rpcUrl, f.home));
  const home = join(root, "renter");
  const init = await runCli(["init", "--home", home, "--json"]);
  assert.equal(init.code, 0, init.stderr);
  const deployment = devChainPaths(f.home).deployment;
  const common = ["--home", home, "--chain-rpc", f.chain.rpcUrl, "--deployment", deployment, "--redundancy", "2/3/4/4", "--segment-size", "1MiB"];
  const files = new Map<string, Buffer>([
    // DSTOR_REPAIR_MIB measures a bigger repair (the report's figure); the default keeps the test short.
    ["/big", randomBytes(Number(process.env.DSTOR_REPAIR_MIB ?? 16) * MIB + 4321)],
    ["/small", randomBytes(300_000)],
  ]);
  for (const [name, data] of files) {
    await writeFile(join(root, "in"), data);
    const put = await runCli(["put", join(root, "in"), name, "--json", ...common]);
    assert.equal(put.code, 0, put.stderr);
  }

  // Kill the two farmers holding the most pieces: many segments fall to 3 (= repair) or 2 (= k) healthy pieces.
  const renterLog: string[] = [];
  const logger = createLogger("dstor:renter", { defaultLevel: "info", enable: "", sink: (r) => renterLog.push(formatLogRecord(r)) });
  t.after(async () => {
    if (process.env.DSTOR_TEST_LOGS !== undefined) await writeFile(join(process.env.DSTOR_TEST_LOGS, "repair-renter.log"), renterLog.join("\n"));
  });
  let node = await openRenterNode({ home, chainRpc: f.chain.rpcUrl, deployment, redundancy: "2/3/4/4", offline: true });
  const held = await Promise.all(farmers.map(async (x) => ({ x, n: (await node.metadata.piecesOn(x.wallet.toLowerCase())).length })));
  await node.stop();
  held.sort((a, b) => b.n - a.n);
  const dead = new Set(held.slice(0, 2).map((h) => h.x.wallet.toLowerCase()));
  await Promise.all(held.slice(0, 2).map((h) => h.x.kill()));
  const bytesToRebuild = held.slice(0, 2).reduce((n, h) => n + h.n, 0);
  t.diagnostic(`killed farmers holding ${bytesToRebuild} pieces`);

  // The long-running renter node: its repair worker notices and repairs.
  const began = Date.now();
  node = await openRenterNode({ home, chainRpc: f.chain.rpcUrl, deployment, redundancy: "2/3/4/4", workers: true, logger });
  let stopped = false;
  const stopNode = async (): Promise<void> => {
    if (!stopped) await node.stop();
    stopped = true;
  };
  cleanups.push(stopNode);
  const deadline = Date.now() + 600_000;
  let atRiskSeen = false;
  for (;;) {
    let healthy = true;
    for (const file of await walkFiles(node.metadata)) {
      for (const s of await node.metadata.segments(file.inode)) {
        const alive = Object.values(s.holders).filter((a) => !dead.has(a));
        if (alive.length <= 3) atRiskSeen = true;
        if (alive.length < 4 || Object.keys(s.holders).length !== 4) healthy = false;
      }
    }
    if (healthy) break;
    assert.ok(Date.now() < deadline, "repair restores every segment within ten minutes");
    await sleep(1_000);
  }
  const repairMs = Date.now() - began;
  assert.ok(atRiskSeen, "segments were at or below the repair threshold");
  // Deals follow: every surviving holder's on-chain deal lists exactly the pieces metadata has on it.
  // repairFile writes a file's metadata first and co-signs the deal states after it, so the
  // last file's states may still be in flight when metadata first looks healthy: wait for them.
  const renterAddress = node.address;
  const dealsDeadline = Date.now() + 120_000;
  for (const farmer of farmers.filter((x) => !dead.has(x.wallet.toLowerCase()))) {
    for (;;) {
      const pieces = await node.metadata.piecesOn(farmer.wallet.toLowerCase());
      if (pieces.length === 0) break;
      const deal = await f.c.market.deal(await f.c.market.latestDeal(renterAddress, farmer.wallet));
      if (deal.pieceCount === BigInt(pieces.length)) break;
      assert.ok(Date.now() < dealsDeadline, `farmer ${farmer.index}'s deal lists its ${pieces.length} pieces (it lists ${deal.pieceCount})`);
      await sleep(1_000);
    }
  }
  // Subnet rule: one piece per /24 (every farmer has its own 127.0.N.1).
  for (const file of await walkFiles(node.metadata)) {
    for (const s of await node.metadata.segments(file.inode)) assert.equal(new Set(Object.values(s.holders)).size, 4);
  }
  await stopNode();
  const summary = renterLog.filter((l) => l.includes("repair round") && !l.includes(" 0 repaired"));
  t.diagnostic(`repair finished ${repairMs} ms after the renter node started; ${summary.map((l) => l.replace(/ \{.*$/, "")).join(" | ")}`);
  const last = JSON.parse(await readFile(join(home, "renter", "last-repair.json"), "utf8")) as { pieces: number; bytes: number };
  assert.ok(last.pieces > 0 && last.bytes > 0);

  for (const [name, data] of files) {
    const out = join(root, `out${name.replace("/", "-")}`);
    const get = await runCli(["get", name, out, ...common]);
    assert.equal(get.code, 0, get.stderr);
    assert.equal(Buffer.compare(await readFile(out), data), 0, `${name} reads back identical`);
  }
});
