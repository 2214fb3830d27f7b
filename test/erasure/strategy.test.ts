import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { isDstorError } from "../../src/core/errors.js";
import { createRedundancyStrategy, formatRedundancyStrategy, parseRedundancyStrategy } from "../../src/erasure/index.js";

const invalidParams = (e: unknown): boolean => isDstorError(e, "ERASURE_INVALID_PARAMS");

describe("RedundancyStrategy", () => {
  it("parses k/repair/optimal/total and formats it back", () => {
    const s = parseRedundancyStrategy("10/14/20/30");
    assert.deepEqual({ ...s }, { k: 10, repair: 14, optimal: 20, total: 30 });
    assert.equal(formatRedundancyStrategy(s), "10/14/20/30");
    assert.deepEqual({ ...parseRedundancyStrategy(" 4 / 6 / 8 / 10 ") }, { k: 4, repair: 6, optimal: 8, total: 10 });
    assert.ok(Object.isFrozen(s));
  });

  it("fills defaults upward from k", () => {
    assert.deepEqual({ ...createRedundancyStrategy({ k: 3 }) }, { k: 3, repair: 3, optimal: 3, total: 3 });
    assert.deepEqual({ ...createRedundancyStrategy({ k: 3, total: 9 }) }, { k: 3, repair: 3, optimal: 9, total: 9 });
  });

  it("accepts the extremes 1/1/1/1 and 255/255/255/255", () => {
    assert.equal(createRedundancyStrategy({ k: 1 }).total, 1);
    assert.equal(createRedundancyStrategy({ k: 255 }).total, 255);
    assert.equal(createRedundancyStrategy({ k: 64, total: 255 }).total, 255);
  });

  it("rejects out-of-order or out-of-range values with ERASURE_INVALID_PARAMS", () => {
    for (const text of ["0/1/1/1", "5/4/6/8", "4/6/5/8", "4/6/8/7", "4/6/8/256", "10/14/20", "a/b/c/d", "", "1/2/3/4/5", "-1/2/3/4"]) {
      assert.throws(() => parseRedundancyStrategy(text), invalidParams, text);
    }
    assert.throws(() => createRedundancyStrategy({ k: 2.5, total: 4 }), invalidParams);
    assert.throws(() => createRedundancyStrategy({ k: Number.NaN }), invalidParams);
    assert.throws(() => createRedundancyStrategy({ k: 4, total: 3 }), invalidParams);
  });

  it("says what a valid strategy looks like", () => {
    assert.throws(() => parseRedundancyStrategy("5/4/6/8"), (e) => invalidParams(e) && /10\/14\/20\/30/.test((e as Error).message));
  });
});
