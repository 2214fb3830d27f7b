/**
 * The typed loader of the native addon: it finds the addon from its own
 * location, caches it, and DSTOR_NO_NATIVE=1 switches it off at any time.
 */

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { loadNative, NO_NATIVE_ENV, nativeLoadError } from "../../src/core/native.js";
import { NATIVE_DISABLED } from "./helpers.js";

describe("loadNative", () => {
  it("DSTOR_NO_NATIVE=1 forces undefined and says why", () => {
    const saved = process.env[NO_NATIVE_ENV];
    process.env[NO_NATIVE_ENV] = "1";
    try {
      assert.equal(loadNative(), undefined);
      assert.match(nativeLoadError() ?? "", /DSTOR_NO_NATIVE=1/);
    } finally {
      if (saved === undefined) delete process.env[NO_NATIVE_ENV];
      else process.env[NO_NATIVE_ENV] = saved;
    }
  });

  it("loads the built addon once and caches it (unless DSTOR_NO_NATIVE=1)", () => {
    if (NATIVE_DISABLED) {
      assert.equal(loadNative(), undefined);
      return;
    }
    const first = loadNative();
    assert.ok(first !== undefined, `addon should load: ${nativeLoadError()}`);
    assert.equal(nativeLoadError(), undefined);
    assert.equal(loadNative(), first);
    assert.equal(typeof first.gfMatMul, "function");
  });
});
