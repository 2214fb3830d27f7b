/**
 * `--epoch-seconds`: the epoch length is fixed in the randomness contract at
 * deployment, so the option reaches the chain through `dstor chain`'s first
 * deployment; the market reads it from there.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { connectContracts, type Deployment, DEV_EPOCH_SECONDS, DEV_PARAMS, devParams } from "../../src/chain/contracts.js";
import { createProvider } from "../../src/chain/signer.js";
import { stopChild } from "../../src/node/devnet.js";
import { freeLoopbackPort } from "../../src/core/net.js";
import { CLI } from "../renter/network-fixture.js";

test("devParams scales the failure window with the epoch and refuses nonsense", () => {
  assert.equal(DEV_PARAMS.epochSeconds, DEV_EPOCH_SECONDS);
  const p = devParams(7);
  assert.equal(p.epochSeconds, 7);
  assert.equal(p.failureWindowSeconds, 28 * 7);
  for (const bad of [0, 1, 2.5, -3, Number.NaN]) assert.throws(() => devParams(bad), { code: "INVALID_OPTION" });
});

test("dstor chain --epoch-seconds deploys a market with that epoch length", { timeout: 120_000 }, async (t) => {
  const home = await mkdtemp(join(tmpdir(), "dstor-epoch-"));
  const port = await freeLoopbackPort();
  const child = spawn(process.execPath, [CLI, "chain", "--home", home, "--port", String(port), "--epoch-seconds", "7", "--json"], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  t.after(async () => {
    await stopChild(child, 15_000);
    await rm(home, { recursive: true, force: true });
  });
  const line = await new Promise<string>((resolve, reject) => {
    let out = "";
    child.stdout.on("data", (d: Buffer) => {
      out += d.toString();
      const nl = out.indexOf("\n");
      if (nl >= 0) resolve(out.slice(0, nl));
    });
    child.once("exit", (code) => reject(new Error(`dstor chain exited with ${code}`)));
  });
  const deployment = JSON.parse(line) as Deployment & { rpcUrl: string };
  assert.equal(deployment.params.epochSeconds, 7);
  const provider = createProvider(deployment.rpcUrl);
  try {
    const c = connectContracts(deployment, provider);
    assert.equal(await c.market.epochSeconds(), 7n);
    assert.equal(await c.randomness.epochSeconds(), 7n);
    assert.equal(await c.registry.failureWindow(), 28n * 7n);
  } finally {
    provider.destroy();
  }
});
