/**
 * File health on the status screen (src/node/drive-status.ts): the fewest
 * pieces of any segment on farmers that are up, against the strategy.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { type FileStatus, fileHealth } from "../../src/node/drive-status.js";

const farmers = Array.from({ length: 10 }, (_, i) => `0x${String(i).padStart(40, "0")}`);

function file(holdersPerSegment: number[]): FileStatus {
  return { path: "/f", size: 1, redundancy: "4/6/8/10", inline: false, holders: holdersPerSegment.map((n) => farmers.slice(0, n)) };
}

describe("file health", () => {
  it("follows the strategy thresholds on the worst segment", () => {
    const allUp = (): boolean => true;
    assert.deepEqual(fileHealth(file([10, 8]), allUp), { health: "healthy", live: 8 });
    assert.deepEqual(fileHealth(file([10, 7]), allUp), { health: "degraded", live: 7 });
    assert.deepEqual(fileHealth(file([6, 10]), allUp), { health: "repair", live: 6 });
    assert.deepEqual(fileHealth(file([4]), allUp), { health: "repair", live: 4 });
    assert.deepEqual(fileHealth(file([3, 10]), allUp), { health: "lost", live: 3 });
  });

  it("counts only pieces on farmers that are up", () => {
    const down = new Set(farmers.slice(0, 2));
    assert.deepEqual(fileHealth(file([8, 10]), (w) => !down.has(w)), { health: "repair", live: 6 });
    assert.deepEqual(fileHealth(file([10]), (w) => !down.has(w)), { health: "healthy", live: 8 });
    assert.deepEqual(fileHealth(file([8]), () => false), { health: "lost", live: 0 });
  });

  it("inline files have no pieces and are always readable", () => {
    assert.equal(fileHealth({ ...file([]), inline: true }, () => false).health, "inline");
  });
});
