import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { test } from "node:test";
import { promisify } from "node:util";
import { NODE_FLAGS } from "../../src/core/v8-flags.js";

const run = promisify(execFile);
const DSTOR = resolve(import.meta.dirname, "../../../bin/dstor");

test("bin/dstor starts node with every NODE_FLAGS option", async () => {
  const exec = (await readFile(DSTOR, "utf8")).split("\n").find((line) => line.startsWith("exec "));
  assert.ok(exec !== undefined, "bin/dstor execs node");
  assert.equal(exec, `exec "$node" ${NODE_FLAGS.join(" ")} "$root/dist/src/cli/main.js" "$@"`);
});

test("dstor --help lists the commands and exits 0", async () => {
  const { stdout } = await run(DSTOR, ["--help"]);
  assert.match(stdout, /dstor init/);
});

test("dstor init --json creates a home; a bad phrase exits non-zero with a clear message", async (t) => {
  const dir = await mkdtemp(join(tmpdir(), "dstor-cli-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const { stdout } = await run(DSTOR, ["init", "--home", join(dir, "h"), "--json"]);
  const out = JSON.parse(stdout) as { address: string; created: boolean };
  assert.match(out.address, /^0x[0-9a-fA-F]{40}$/);
  assert.equal(out.created, true);
  await assert.rejects(run(DSTOR, ["init", "--home", join(dir, "x"), "--phrase-file", "/dev/null"]), (e: { code: number; stderr: string }) => {
    assert.equal(e.code, 1);
    assert.match(e.stderr, /has 0 words but must have 24/);
    return true;
  });
  await assert.rejects(run(DSTOR, ["no-such-command"]), (e: { code: number }) => e.code !== 0);
});

test("dstor farm refuses a bad --bulk-port before doing anything", async (t) => {
  const dir = await mkdtemp(join(tmpdir(), "dstor-cli-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  for (const bad of ["70000", "-2", "1.5"]) {
    await assert.rejects(run(DSTOR, ["farm", "--home", join(dir, "h"), "--bulk-port", bad]), (e: { code: number; stderr: string }) => {
      assert.equal(e.code, 1);
      assert.match(e.stderr, /--bulk-port must be a port number/);
      return true;
    });
  }
});
