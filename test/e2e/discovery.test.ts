/**
 * Farmer discovery on the DHT with real `dstor farm` processes and a real
 * chain: farmers announce themselves, a renter that knows one address finds
 * them all, and a farmer that restarts on a new port is still reached through
 * its peer id although the renter only remembers the old address.
 */
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import { devChainPaths } from "../../src/chain/devchain.js";
import { FarmerClient } from "../../src/farmer/client.js";
import { findFarmersOnDht } from "../../src/node/discovery.js";
import { createDstorLibp2p } from "../../src/node/libp2p.js";
import { farmerClientTransport } from "../../src/node/renter-node.js";
import { createFarmerDirectory, withPeer } from "../../src/renter/directory.js";
import { startFixture } from "../chain/fixture.js";
import { type LocalFarmer, removeRoot, runCli, startLocalFarmer, tempRoot } from "../renter/network-fixture.js";

const FARMERS = 5;
const sha = (b: Uint8Array): string => createHash("sha256").update(b).digest("hex");

/** Polls `probe` until it returns true or `ms` pass: farmers announce asynchronously after they are ready. */
async function eventually(probe: () => Promise<boolean>, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await probe()) return true;
    if (Date.now() > deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}

test("farmers are found on the DHT and a moved farmer is reached by its peer id", { timeout: 600_000 }, async (t) => {
  const f = await startFixture(t);
  const root = await tempRoot("dstor-discovery-e2e-");
  const cleanups: Array<() => Promise<void>> = [];
  t.after(async () => {
    await Promise.all(cleanups.map((stop) => stop()));
    await removeRoot(root);
  });
  const farmers: LocalFarmer[] = [];
  for (let i = 1; i <= FARMERS; i++) farmers.push(await startLocalFarmer(cleanups, root, i, f.chain.rpcUrl, f.home));
  const first = withPeer(farmers[0]!.addrs[0]!, farmers[0]!.peerId);

  await t.test("a node that knows one farmer finds all of them", async () => {
    const node = await createDstorLibp2p({ privateKeySeed: new Uint8Array(randomBytes(32)), allowPrivateAddresses: true });
    try {
      let found: string[] = [];
      const all = await eventually(async () => {
        found = (await findFarmersOnDht(node, [first])).map((p) => p.peerId);
        return farmers.every((x) => found.includes(x.peerId));
      }, 60_000);
      assert.ok(all, `found ${found.length} of ${FARMERS} farmers: ${found.join(", ")}`);
      // Without any registry, the directory learns wallets and prices from the farmers found.
      const directory = createFarmerDirectory({
        transport: farmerClientTransport(new FarmerClient({ node })),
        dht: (bootstrap, options) => findFarmersOnDht(node, [first, ...bootstrap], options),
      });
      const listed = await directory.list();
      assert.deepEqual(
        listed.map((c) => c.address).sort(),
        farmers.map((x) => x.wallet.toLowerCase()).sort(),
      );
      for (const c of listed) assert.equal(c.peerId, farmers.find((x) => x.wallet.toLowerCase() === c.address)!.peerId);
    } finally {
      await node.stop();
    }
  });

  await t.test("a farmer restarted on a new port is reached through the DHT", async () => {
    const home = join(root, "renter");
    assert.equal((await runCli(["init", "--home", home, "--json"])).code, 0);
    const common = ["--home", home, "--chain-rpc", f.chain.rpcUrl, "--deployment", devChainPaths(f.home).deployment, "--redundancy", "2/3/5/5", "--segment-size", "1MiB"];
    const data = randomBytes(3 * 1024 * 1024 + 7);
    await writeFile(join(root, "moved.bin"), data);
    const put = await runCli(["put", join(root, "moved.bin"), "/moved.bin", "--json", ...common]);
    assert.equal(put.code, 0, put.stderr);
    // Restart farmer 1 on a fresh port; the renter's metadata still has the old address.
    const old = farmers[0]!;
    await old.stop();
    const moved = await startLocalFarmer(cleanups, root, 1, f.chain.rpcUrl, f.home);
    assert.equal(moved.peerId, old.peerId);
    assert.notEqual(moved.addrs[0], old.addrs[0], "the farmer listens on a new port");
    const sawIt = await eventually(async () => {
      const node = await createDstorLibp2p({ privateKeySeed: new Uint8Array(randomBytes(32)), allowPrivateAddresses: true });
      try {
        const found = await findFarmersOnDht(node, [withPeer(farmers[1]!.addrs[0]!, farmers[1]!.peerId)]);
        return found.some((p) => p.peerId === moved.peerId && p.multiaddrs.some((m) => moved.addrs[0]!.startsWith(m)));
      } finally {
        await node.stop();
      }
    }, 60_000);
    assert.ok(sawIt, "the moved farmer re-announced its new address");
    const st = await runCli(["stat", "/moved.bin", "--verify", "--json", ...common]);
    assert.equal(st.code, 0, st.stderr);
    const report = JSON.parse(st.stdout) as { segments: Array<{ pieces: Array<{ farmer?: string; verified?: string }> }> };
    const onMoved = report.segments.flatMap((s) => s.pieces).filter((p) => p.farmer === moved.wallet.toLowerCase());
    assert.ok(onMoved.length > 0, "the moved farmer holds pieces of the file");
    for (const p of onMoved) assert.equal(p.verified, "ok", "pieces on the moved farmer were fetched at its new address");
    await rm(join(root, "moved.bin"));
    const get = await runCli(["get", "/moved.bin", join(root, "moved.bin"), ...common]);
    assert.equal(get.code, 0, get.stderr);
    assert.equal(sha(await readFile(join(root, "moved.bin"))), sha(data));
  });
});
