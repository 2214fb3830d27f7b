import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { isDstorError } from "../../src/core/errors.js";
import { deriveKeys } from "../../src/crypto/keys.js";
import { homePaths, initHome, loadPhrase } from "../../src/node/home.js";

test("initHome creates a phrase once, keeps it private, and reloads it", async (t) => {
  const dir = await mkdtemp(join(tmpdir(), "dstor-home-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const home = join(dir, "h");
  const first = await initHome(home);
  assert.equal(first.created, true);
  assert.equal(first.phrase.split(" ").length, 24);
  assert.equal(first.address, deriveKeys(first.phrase).wallet.address);
  assert.equal((await stat(homePaths(home).phrase)).mode & 0o777, 0o600);
  const second = await initHome(home);
  assert.deepEqual(second, { ...first, created: false });
  assert.equal(await loadPhrase(home), first.phrase);
  assert.match(await readFile(homePaths(home).identity, "utf8"), new RegExp(first.address));
});

test("initHome refuses to replace a phrase and rejects a bad one", async (t) => {
  const dir = await mkdtemp(join(tmpdir(), "dstor-home-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const home = join(dir, "h");
  await initHome(home);
  const other = (await initHome(join(dir, "other"))).phrase;
  await assert.rejects(initHome(home, other), (e: unknown) => isDstorError(e, "INVALID_ARGUMENT"));
  await assert.rejects(initHome(join(dir, "bad"), "abandon abandon"), (e: unknown) => isDstorError(e, "INVALID_MNEMONIC"));
  await assert.rejects(loadPhrase(join(dir, "missing")), (e: unknown) => isDstorError(e, "NO_SUCH_FILE"));
});
