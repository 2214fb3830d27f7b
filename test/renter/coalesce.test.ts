/**
 * The per-key coalescer behind deal-state syncs: every caller gets a run
 * that starts after its call, callers close together share one.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { Coalescer } from "../../src/renter/coalesce.js";

test("callers during a run share the next one, which sees every change made before them", async () => {
  let state = 0;
  const seen: number[] = [];
  let release!: () => void;
  const coalescer = new Coalescer<string>(async () => {
    const at = state;
    await new Promise<void>((resolve) => {
      release = resolve;
    });
    seen.push(at);
  });
  state = 1;
  const first = coalescer.run("a");
  await new Promise((r) => setImmediate(r));
  // Ten callers change the state while the first run is in progress.
  const later = Array.from({ length: 10 }, () => {
    state++;
    return coalescer.run("a");
  });
  release();
  await first;
  await new Promise((r) => setImmediate(r));
  release();
  await Promise.all(later);
  assert.equal(coalescer.runs, 2, "eleven callers, two runs");
  assert.deepEqual(seen, [1, 11], "the shared run started after the last caller's change");
});

test("keys are independent; a failed run rejects only its callers, the run after it goes ahead", async () => {
  const runs: string[] = [];
  const coalescer = new Coalescer<string>(async (key) => {
    runs.push(key);
    const nth = runs.filter((k) => k === key).length;
    await new Promise((r) => setImmediate(r));
    if (key === "x" && nth === 1) throw new Error("boom");
  });
  const x = coalescer.run("x");
  const joined = coalescer.run("x");
  const y = coalescer.run("y");
  await assert.rejects(x, /boom/);
  await y;
  await joined;
  await coalescer.run("x");
  assert.deepEqual(runs.sort(), ["x", "x", "x", "y"]);
  assert.equal(coalescer.runs, 4);
});
