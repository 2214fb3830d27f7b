import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { parseRedundancyStrategy } from "../../src/erasure/strategy.js";
import { newFarmerRecord } from "../../src/metadata/db.js";
import type { FarmerRecord } from "../../src/metadata/types.js";
import { networkCapacity, pieceColumnBytes } from "../../src/renter/capacity.js";
import type { FarmerCandidate } from "../../src/renter/types.js";

function candidate(i: number, freeBytes: bigint | undefined, extra: Partial<FarmerCandidate> = {}): FarmerCandidate {
  return {
    address: `0x${i.toString(16).padStart(40, "0")}`,
    peerId: `p${i}`,
    multiaddrs: [`/ip4/10.0.${i}.1/tcp/4001`],
    priceTbMonth: 100n,
    freeBytes,
    chainSuccesses: 0,
    chainFailures: 0,
    disqualified: false,
    ...extra,
  };
}

describe("network capacity (statfs)", () => {
  it("equal farmers: free space over the expansion factor optimal/k", () => {
    const candidates = [1, 2, 3, 4].map((i) => candidate(i, 1000n));
    const c = networkCapacity({ candidates, records: new Map(), strategy: parseRedundancyStrategy("2/3/3/4") });
    assert.equal(c.freeBytes, Math.floor((4000 * 2) / 3));
    assert.equal(c.farmers, 4);
    assert.equal(c.piecesPerSegment, 3);
  });

  it("a farmer holds one piece per segment: one huge farmer counts only as much as the others let it", () => {
    // optimal 3 of k=1: every byte needs 3 distinct farmers; the small two allow 10 + 10 → x = 10 (the big one capped at 10).
    assert.equal(pieceColumnBytes([10, 10, 1_000_000], 3), 10);
    const c = networkCapacity({ candidates: [candidate(1, 10n), candidate(2, 10n), candidate(3, 10n ** 6n)], records: new Map(), strategy: parseRedundancyStrategy("1/3/3/3") });
    assert.equal(c.freeBytes, 10);
  });

  it("fewer eligible farmers than optimal: nothing can be written", () => {
    const records = new Map<string, FarmerRecord>([[candidate(3, 0n).address, { ...newFarmerRecord(candidate(3, 0n).address), disqualified: true }]]);
    const candidates = [candidate(1, 1000n), candidate(2, 1000n, { disqualified: true }), candidate(3, 1000n), candidate(4, undefined), candidate(5, 1000n)];
    const c = networkCapacity({ candidates, records, strategy: parseRedundancyStrategy("2/3/3/4") });
    assert.equal(c.farmers, 2, "disqualified on-chain, by this renter, and unknown capacity are not counted");
    assert.equal(c.freeBytes, 0);
  });

  it("water-filling: the column fits (Σ min(free, x) ≥ p·x) and no larger one does", () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 1_000_000 }), { maxLength: 12 }), fc.integer({ min: 1, max: 6 }), (free, p) => {
        const x = pieceColumnBytes(free, p);
        const fits = (y: number): boolean => free.reduce((sum, f) => sum + Math.min(f, y), 0) >= p * y - 1e-6;
        assert.ok(x >= 0 && fits(x));
        if (free.filter((f) => f > 0).length >= p) assert.ok(!fits(x * 1.001 + 1e-3), `x=${x} is not the largest for ${free} p=${p}`);
        else assert.equal(x, 0);
      }),
    );
  });
});
