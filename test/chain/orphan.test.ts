import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { sleep } from "../../src/core/abort.js";
import { canTieToParent } from "../../src/core/child.js";
import { alive } from "../e2e/up-fixture.js";
import { freePort } from "./fixture.js";


test("anvil does not outlive a SIGKILLed parent", { timeout: 60_000 }, async (t) => {
  assert.ok(canTieToParent(), "setpriv (util-linux) must be present on Linux");
  const home = await mkdtemp(join(tmpdir(), "dstor-orphan-"));
  const port = await freePort();
  const parent = spawn(process.execPath, [join(import.meta.dirname, "fixtures", "chain-parent.js"), home, String(port)], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  let anvilPid = 0;
  t.after(async () => {
    if (parent.exitCode === null && parent.signalCode === null) parent.kill("SIGKILL");
    if (anvilPid > 0 && alive(anvilPid)) process.kill(anvilPid, "SIGKILL");
    await rm(home, { recursive: true, force: true });
  });
  const line = await new Promise<string>((resolve, reject) => {
    let text = "";
    parent.stdout!.on("data", (chunk: Buffer) => {
      text += chunk.toString();
      const newline = text.indexOf("\n");
      if (newline >= 0) resolve(text.slice(0, newline));
    });
    parent.once("exit", (code) => reject(new Error(`the parent exited early with ${code}`)));
  });
  anvilPid = (JSON.parse(line) as { anvilPid: number }).anvilPid;
  assert.ok(alive(anvilPid), "anvil runs while its parent does");
  parent.kill("SIGKILL");
  // The kernel delivers the parent-death signal at once; anvil then saves and exits.
  for (let i = 0; i < 100 && alive(anvilPid); i++) await sleep(100);
  assert.equal(alive(anvilPid), false, "anvil was left running after its parent was killed");
});
