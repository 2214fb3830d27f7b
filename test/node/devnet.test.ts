import assert from "node:assert/strict";
import { once } from "node:events";
import { test } from "node:test";
import { NODE_FLAGS } from "../../src/core/v8-flags.js";
import { spawnCliProcess } from "../../src/node/devnet.js";

test("spawnCliProcess starts node with NODE_FLAGS, which V8 only reads at start", async () => {
  const script = `console.log(JSON.stringify({ event: "ready", execArgv: process.execArgv }));`;
  const proc = spawnCliProcess(["-e", script], "ready", { name: "probe", timeoutMs: 30_000 });
  try {
    const ready = await proc.ready;
    // Then come `-e` and the script, which are node options too.
    assert.deepEqual((ready.execArgv as string[]).slice(0, NODE_FLAGS.length), [...NODE_FLAGS]);
    assert.ok(NODE_FLAGS.length > 0);
  } finally {
    if (proc.child.exitCode === null && proc.child.signalCode === null) await once(proc.child, "exit");
  }
});
