/**
 * The GFNI kernel cannot run on CPUs without GFNI (like the development
 * machine), so its C source is compiled with the instruction replaced by a
 * software model and compared with the scalar kernel
 * (native-bindings/test/gfni_emulation.c). Needs gcc, which the native build
 * needs anyway.
 */

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";

// dist/test/native/ -> package root (three levels up), same from test/native/.
const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, here.includes(`${join("dist", "test")}`) ? "../../.." : "../..");
const nativeDir = join(root, "native-bindings");

describe("GFNI kernel under instruction emulation", () => {
  it("matches the scalar kernel byte for byte", () => {
    const dir = mkdtempSync(join(tmpdir(), "dstor-gfni-"));
    try {
      const exe = join(dir, "gfni_emulation");
      execFileSync(
        "gcc",
        [
          "-O2",
          "-std=c11",
          "-mavx2",
          `-I${nativeDir}`,
          join(nativeDir, "test", "gfni_emulation.c"),
          join(nativeDir, "gf_tables.c"),
          join(nativeDir, "gf_scalar.c"),
          "-lpthread",
          "-o",
          exe,
        ],
        { stdio: "pipe" },
      );
      const out = execFileSync(exe, { encoding: "utf8" });
      assert.match(out, /mismatches: 0\b/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
