/**
 * End-to-end renter tests: ten real `dstor farm` processes on 127.0.N.1, a
 * real anvil chain, and the `dstor put/get/ls/rm/stat` commands as child
 * processes, with the default 4/6/8/10 strategy and 8 MiB segments.
 */
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import { devChainPaths } from "../../src/chain/devchain.js";
import { openMetadataDb } from "../../src/metadata/db.js";
import { startFixture } from "../chain/fixture.js";
import { type LocalFarmer, removeRoot, runCli, startLocalFarmer, tempRoot } from "../renter/network-fixture.js";

const MIB = 1024 * 1024;
const SEGMENT = 8 * MIB;
const sha = (b: Uint8Array): string => createHash("sha256").update(b).digest("hex");

async function pieceFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string): Promise<void> => {
    for (const e of await readdir(d, { withFileTypes: true }).catch(() => [])) {
      const p = join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else out.push(p);
    }
  };
  await walk(join(dir, "pieces"));
  return out;
}

test("renter end to end with real farmers", { timeout: 1_500_000 }, async (t) => {
  const f = await startFixture(t);
  const root = await tempRoot("dstor-renter-e2e-");
  const farmers: LocalFarmer[] = [];
  const cleanups: Array<() => Promise<void>> = [];
  t.after(async () => {
    await Promise.all(cleanups.map((stop) => stop()));
    await removeRoot(root);
  });
  for (let i = 1; i <= 10; i++) farmers.push(await startLocalFarmer(cleanups, root, i, f.chain.rpcUrl, f.home));
  const home = join(root, "renter");
  const init = await runCli(["init", "--home", home, "--json"]);
  assert.equal(init.code, 0, init.stderr);
  const common = ["--home", home, "--chain-rpc", f.chain.rpcUrl, "--deployment", devChainPaths(f.home).deployment];
  const dstor = (...args: string[]) => runCli([...args, ...common]);
  const files = new Map<string, string>();
  const local = (name: string): string => join(root, name);

  await t.test("put and get back files of every boundary size, 100 MiB included", async () => {
    const sizes = [0, 1, 4096, 4097, SEGMENT - 1, SEGMENT, SEGMENT + 1, 100 * MIB];
    for (const size of sizes) {
      const name = `f-${size}`;
      const data = randomBytes(size);
      files.set(name, sha(data));
      await writeFile(local(name), data);
      const put = await dstor("put", local(name), `/${name}`, "--json");
      assert.equal(put.code, 0, `put ${size}: ${put.stderr}`);
      const result = JSON.parse(put.stdout) as { size: number; inline: boolean; segments: number; unconfirmedFarmers: number };
      assert.equal(result.size, size);
      assert.equal(result.inline, size <= 4096);
      assert.equal(result.unconfirmedFarmers, 0, "every farmer co-signed a deal state with the new pieces");
      await rm(local(name));
    }
    for (const size of sizes) {
      const name = `f-${size}`;
      const get = await dstor("get", `/${name}`, local(name), "--json");
      assert.equal(get.code, 0, `get ${size}: ${get.stderr}`);
      assert.equal(sha(await readFile(local(name))), files.get(name), `size ${size} comes back identical`);
    }
  });

  await t.test("ls and stat", async () => {
    const ls = await runCli(["ls", "-l", "/", "--home", home]);
    assert.equal(ls.code, 0, ls.stderr);
    assert.match(ls.stdout, /f-104857600/);
    const st = await runCli(["stat", "/f-104857600", "--home", home, "--json"]);
    assert.equal(st.code, 0, st.stderr);
    const s = JSON.parse(st.stdout) as { health: string; segments: Array<{ healthy: number; pieces: Array<{ farmer?: string }> }> };
    assert.equal(s.segments.length, 13);
    assert.equal(s.health, "healthy");
    assert.ok(s.segments.every((seg) => seg.healthy >= 8));
    assert.doesNotMatch(st.stdout, /fileKey/, "stat --json never prints the file key");
    // The co-signed deal states reached the chain: every holder's deal lists pieces.
    const holders = new Set(s.segments.flatMap((seg) => seg.pieces.map((p) => p.farmer).filter((a): a is string => a !== undefined)));
    const renterAddress = (JSON.parse(init.stdout) as { address: string }).address;
    const meta = await openMetadataDb({ dir: join(home, "renter", "meta") });
    try {
      for (const farmer of holders) {
        const deal = await f.c.market.deal(await f.c.market.latestDeal(renterAddress, farmer));
        const held = (await meta.piecesOn(farmer)).length;
        assert.ok(held > 0);
        assert.equal(deal.pieceCount, BigInt(held), `the on-chain deal with ${farmer} lists the ${held} pieces it holds`);
      }
    } finally {
      await meta.close();
    }
  });

  await t.test("range reads at segment boundaries", async () => {
    const whole = await readFile(local("f-104857600"));
    for (const [offset, length] of [
      [SEGMENT - 5, 10],
      [SEGMENT, 1],
      [3 * SEGMENT - 1, SEGMENT + 2],
      [100 * MIB - 3, 3],
    ] as Array<[number, number]>) {
      const out = local(`range-${offset}`);
      const get = await dstor("get", "/f-104857600", out, "--offset", String(offset), "--length", String(length));
      assert.equal(get.code, 0, get.stderr);
      assert.equal(Buffer.compare(await readFile(out), whole.subarray(offset, offset + length)), 0, `range ${offset}+${length}`);
    }
  });

  await t.test("a farmer returning corrupted bytes is detected and skipped", async () => {
    // Two farmers that hold pieces of the file go to the front of `farmers`
    // (which two the upload's long tail left out varies), so the later steps
    // find the damaged ones there.
    const listed = await dstor("stat", "/f-8388609", "--json");
    assert.equal(listed.code, 0, listed.stderr);
    const holders = new Set(
      (JSON.parse(listed.stdout) as { segments: Array<{ pieces: Array<{ farmer?: string }> }> }).segments.flatMap((s) => s.pieces.map((p) => p.farmer)),
    );
    const damaged = farmers.filter((x) => holders.has(x.wallet.toLowerCase())).slice(0, 2);
    assert.equal(damaged.length, 2, "the file has holders");
    farmers.sort((a, b) => Number(damaged.includes(b)) - Number(damaged.includes(a)));
    // Corrupt every piece on those two (on disk, behind the farmer's back).
    const corrupted = new Set(farmers.slice(0, 2).map((x) => x.wallet.toLowerCase()));
    for (const farmer of farmers.slice(0, 2)) {
      for (const file of await pieceFiles(farmer.storage)) {
        const bytes = await readFile(file);
        if (bytes.byteLength === 0) continue;
        for (let i = 0; i < bytes.byteLength; i += 4096) bytes[i]! ^= 0x5a;
        await writeFile(file, bytes);
      }
    }
    // A download needs only k of 8 pieces and may or may not ask the damaged
    // farmers; it must come back identical either way.
    await rm(local("f-8388609"));
    const get = await dstor("get", "/f-8388609", local("f-8388609"));
    assert.equal(get.code, 0, get.stderr);
    assert.equal(sha(await readFile(local("f-8388609"))), files.get("f-8388609"));
    // `stat --verify` fetches every piece: exactly the damaged farmers' pieces are corrupt.
    const st = await dstor("stat", "/f-8388609", "--verify", "--json");
    assert.equal(st.code, 0, st.stderr);
    const report = JSON.parse(st.stdout) as { health: string; segments: Array<{ healthy: number; pieces: Array<{ farmer?: string; verified?: string }> }> };
    let bad = 0;
    for (const segment of report.segments) {
      for (const piece of segment.pieces.filter((p) => p.farmer !== undefined)) {
        assert.equal(piece.verified, corrupted.has(piece.farmer!) ? "corrupt" : "ok", `piece on ${piece.farmer}`);
        if (piece.verified === "corrupt") bad++;
      }
      assert.equal(segment.healthy, segment.pieces.filter((p) => p.verified === "ok").length);
    }
    assert.ok(bad >= 1, "the damaged farmers hold pieces of this file");
    const meta = await openMetadataDb({ dir: join(home, "renter", "meta") });
    try {
      const flagged = (await meta.farmers()).filter((r) => r.corrupt > 0).map((r) => r.address);
      assert.ok(flagged.length >= 1, "the corrupt farmers were reported in the renter's records");
      for (const address of flagged) assert.ok(corrupted.has(address), `${address} was not damaged but is recorded as corrupt`);
    } finally {
      await meta.close();
    }
  });

  await t.test("rm deletes the pieces on the farmers", async () => {
    const before = (await Promise.all(farmers.map((x) => pieceFiles(x.storage)))).flat().length;
    const res = await dstor("rm", "/f-104857600", "--json");
    assert.equal(res.code, 0, res.stderr);
    const r = JSON.parse(res.stdout) as { files: number; deleted: number; remaining: number };
    assert.equal(r.files, 1);
    assert.ok(r.deleted >= 13 * 8, `deleted ${r.deleted} pieces`);
    assert.equal(r.remaining, 0);
    const after = (await Promise.all(farmers.map((x) => pieceFiles(x.storage)))).flat().length;
    assert.equal(before - after, r.deleted);
    const gone = await dstor("get", "/f-104857600", local("gone"));
    assert.notEqual(gone.code, 0);
    assert.match(gone.stderr, /no such file/);
  });

  await t.test("kill total − optimal farmers before upload and optimal − k more before download", async () => {
    // Farmers 0 and 1 hold corrupt data; kill those first (the renter has marked them anyway).
    await Promise.all(farmers.slice(0, 2).map((x) => x.kill()));
    const data = randomBytes(2 * SEGMENT + 12345);
    await writeFile(local("survivor"), data);
    const put = await dstor("put", local("survivor"), "/survivor", "--json");
    assert.equal(put.code, 0, put.stderr);
    await rm(local("survivor"));
    await Promise.all(farmers.slice(2, 6).map((x) => x.kill()));
    const get = await dstor("get", "/survivor", local("survivor"));
    assert.equal(get.code, 0, get.stderr);
    assert.equal(sha(await readFile(local("survivor"))), sha(data));
  });

  await t.test("too few farmers: a clear error, a non-zero exit, nothing in metadata", async () => {
    await writeFile(local("nope"), randomBytes(SEGMENT + 1));
    const put = await dstor("put", local("nope"), "/nope");
    assert.notEqual(put.code, 0);
    assert.match(put.stderr, /not enough farmers: need 8, found 4/);
    const meta = await openMetadataDb({ dir: join(home, "renter", "meta") });
    try {
      await assert.rejects(meta.lookup("/nope"), /no such file/i);
    } finally {
      await meta.close();
    }
    assert.ok((await stat(local("nope"))).size > 0);
  });
});
