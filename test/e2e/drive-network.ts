/**
 * The world of a drive e2e test: a dev chain, four real farmer processes on
 * 127.0.N.1, an initialised renter home (2/3/3/4) and an empty mount point.
 * After the test every mount is stopped (and lazily unmounted should a
 * process be gone), every farmer and the chain stopped, the root removed —
 * also when the test fails.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import type { TestContext } from "node:test";
import { promisify } from "node:util";
import { devChainPaths } from "../../src/chain/devchain.js";
import { type ChainFixture, startFixture } from "../chain/fixture.js";
import { type LocalFarmer, removeRoot, runCli, startLocalFarmer, tempRoot } from "../renter/network-fixture.js";
import type { DriveMount } from "./drive-fixture.js";

/** What {@link startDriveNetwork} sets up. */
export interface DriveNetwork {
  f: ChainFixture;
  root: string;
  /** The (empty) mount point, ROOT/mnt. */
  mnt: string;
  /** The renter's home, ROOT/renter. */
  home: string;
  /** `--home`, chain and redundancy options (plus `extraArgs`) for every `dstor` command of the test. */
  common: string[];
  /** Mounts the test spawns (spawnMount pushes here); stopped after the test. */
  mounts: DriveMount[];
  /** More stops to run after the test. */
  cleanups: Array<() => Promise<void>>;
  /** The four farmer processes. */
  farmers: LocalFarmer[];
}

/** Starts a drive test's network; see the module comment. */
export async function startDriveNetwork(
  t: TestContext,
  prefix: string,
  options: { quota?: string; extraArgs?: readonly string[] } = {},
): Promise<DriveNetwork> {
  const f = await startFixture(t);
  const root = await tempRoot(prefix);
  const mnt = join(root, "mnt");
  await mkdir(mnt);
  const cleanups: Array<() => Promise<void>> = [];
  const mounts: DriveMount[] = [];
  t.after(async () => {
    for (const m of mounts) await m.stop().catch(() => {});
    await promisify(execFile)("fusermount", ["-uz", mnt]).catch(() => {});
    await Promise.all(cleanups.map((stop) => stop()));
    await removeRoot(root);
  });
  const farmers: LocalFarmer[] = [];
  for (let i = 1; i <= 4; i++) farmers.push(await startLocalFarmer(cleanups, root, i, f.chain.rpcUrl, f.home, options.quota));
  const home = join(root, "renter");
  const init = await runCli(["init", "--home", home, "--json"]);
  assert.equal(init.code, 0, init.stderr);
  const common = ["--home", home, "--chain-rpc", f.chain.rpcUrl, "--deployment", devChainPaths(f.home).deployment, "--redundancy", "2/3/3/4", ...(options.extraArgs ?? [])];
  return { f, root, mnt, home, common, mounts, cleanups, farmers };
}
