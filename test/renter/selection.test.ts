import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { newFarmerRecord } from "../../src/metadata/db.js";
import type { FarmerRecord } from "../../src/metadata/types.js";
import { FAILURE_COOLDOWN_MS, ineligibleReason, selectFarmers, subnetKey } from "../../src/renter/selection.js";
import type { FarmerCandidate } from "../../src/renter/types.js";

function candidate(i: number, ip: string, extra: Partial<FarmerCandidate> = {}): FarmerCandidate {
  return {
    address: `0x${i.toString(16).padStart(40, "0")}`,
    peerId: `p${i}`,
    multiaddrs: [`/ip4/${ip}/tcp/4001`],
    priceTbMonth: 100n,
    freeBytes: 10n ** 9n,
    chainSuccesses: 0,
    chainFailures: 0,
    disqualified: false,
    ...extra,
  };
}

describe("selection", () => {
  it("subnet keys: /24 for IPv4, /48 for IPv6, host for DNS", () => {
    assert.equal(subnetKey(["/ip4/192.168.7.9/tcp/1"], "a"), "ip4:192.168.7");
    assert.equal(subnetKey(["/ip6/2001:db8:1:2::5/tcp/1"], "a"), "ip6:2001:0db8:0001");
    assert.equal(subnetKey(["/dns4/Farm.example/tcp/1"], "a"), "dns:farm.example");
    assert.equal(subnetKey([], "0xabc"), "addr:0xabc");
  });

  it("never puts two farmers of one /24 in a selection", () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 5 }), { minLength: 1, maxLength: 40 }), fc.integer({ min: 1, max: 30 }), (subnets, count) => {
        const cands = subnets.map((s, i) => candidate(i, `10.0.${s}.${i + 1}`));
        const picked = selectFarmers({ candidates: cands, records: new Map(), count, pieceBytes: 1, policy: {} });
        const keys = picked.map((c) => subnetKey(c.multiaddrs, c.address));
        assert.equal(new Set(keys).size, keys.length);
        assert.equal(picked.length, Math.min(count, new Set(subnets).size));
      }),
    );
  });

  it("sameSubnetOk lets loopback farmers share a subnet", () => {
    const cands = Array.from({ length: 10 }, (_, i) => candidate(i, "127.0.0.1"));
    assert.equal(selectFarmers({ candidates: cands, records: new Map(), count: 10, pieceBytes: 1, policy: {} }).length, 1);
    assert.equal(selectFarmers({ candidates: cands, records: new Map(), count: 10, pieceBytes: 1, policy: { sameSubnetOk: true } }).length, 10);
  });

  it("filters by price, capacity, disqualification, our record and exclusions", () => {
    const records = new Map<string, FarmerRecord>();
    const cands = [
      candidate(1, "10.0.1.1", { priceTbMonth: 1000n }),
      candidate(2, "10.0.2.1", { freeBytes: 10n }),
      candidate(3, "10.0.3.1", { disqualified: true }),
      candidate(4, "10.0.4.1"),
      candidate(5, "10.0.5.1"),
      candidate(6, "10.0.6.1"),
      candidate(7, "10.0.7.1"),
    ];
    records.set(cands[3]!.address, { ...newFarmerRecord(cands[3]!.address), corrupt: 3 });
    const now = 1_000_000_000;
    records.set(cands[4]!.address, { ...newFarmerRecord(cands[4]!.address), successes: 1, failures: 9, lastFailureAt: now - 1000 });
    records.set(cands[5]!.address, { ...newFarmerRecord(cands[5]!.address), disqualified: true });
    const policy = { maxPriceTbMonth: 500n, now: () => now };
    assert.equal(ineligibleReason(cands[0]!, undefined, policy, 100), "too expensive");
    assert.equal(ineligibleReason(cands[1]!, undefined, policy, 100), "not enough free space");
    assert.equal(ineligibleReason(cands[2]!, undefined, policy, 100), "disqualified on-chain");
    assert.equal(ineligibleReason(cands[3]!, records.get(cands[3]!.address), policy, 100), "returned corrupt data");
    assert.equal(ineligibleReason(cands[4]!, records.get(cands[4]!.address), policy, 100), "fails too often");
    assert.equal(ineligibleReason(cands[5]!, records.get(cands[5]!.address), policy, 100), "disqualified by this renter");
    const picked = selectFarmers({ candidates: cands, records, count: 10, pieceBytes: 100, policy });
    assert.deepEqual(picked.map((c) => c.address), [cands[6]!.address]);
    assert.deepEqual(selectFarmers({ candidates: cands, records, count: 10, pieceBytes: 100, policy, exclude: new Set([cands[6]!.address]) }), []);
    // A farmer that failed while it was down is tried again once the cool-down has passed.
    const later = { ...policy, now: () => now + FAILURE_COOLDOWN_MS };
    assert.equal(ineligibleReason(cands[4]!, records.get(cands[4]!.address), later, 100), undefined);
  });

  it("prefers reliable, fast farmers", () => {
    const cands = Array.from({ length: 20 }, (_, i) => candidate(i, `10.1.${i}.1`));
    const records = new Map<string, FarmerRecord>();
    cands.forEach((c, i) => {
      records.set(c.address, i === 0 ? { ...newFarmerRecord(c.address), successes: 100, bytes: 1e9, ms: 1e3 } : { ...newFarmerRecord(c.address), successes: 5, failures: 4, bytes: 1e6, ms: 1e3 });
    });
    let seed = 1;
    const random = (): number => {
      seed = (seed * 16807) % 2147483647;
      return seed / 2147483647;
    };
    let first = 0;
    for (let i = 0; i < 200; i++) {
      const [top] = selectFarmers({ candidates: cands, records, count: 1, pieceBytes: 1, policy: {}, random });
      if (top!.address === cands[0]!.address) first++;
    }
    assert.ok(first > 60, `the best farmer was first ${first} times of 200 (uniform would be ~10)`);
  });
});
