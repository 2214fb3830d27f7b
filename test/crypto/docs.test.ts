import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { type DstorVectors, loadVectors } from "./helpers.js";

const V = loadVectors<DstorVectors>("dstor-crypto.json");

function readFormatsDoc(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++, dir = dirname(dir)) {
    try {
      return readFileSync(join(dir, "docs", "formats.md"), "utf8");
    } catch {
      // keep walking up from dist/test/crypto or test/crypto
    }
  }
  throw new Error("docs/formats.md not found");
}

/** Every string leaf of a JSON value. */
function strings(value: unknown): string[] {
  if (typeof value === "string") return [value];
  if (Array.isArray(value)) return value.flatMap(strings);
  if (value !== null && typeof value === "object") return Object.values(value).flatMap(strings);
  return [];
}

describe("docs/formats.md shows the vectors the tests assert", () => {
  const doc = readFormatsDoc();
  it("contains every hex vector of test/vectors/dstor-crypto.json", () => {
    const hexValues = strings(V).filter((s) => /^[0-9a-f]{16,}$/.test(s));
    assert.ok(hexValues.length > 40, "the vector file is complete");
    const missing = hexValues.filter((h) => !doc.includes(h));
    assert.deepEqual(missing, [], "vectors missing from docs/formats.md");
  });
  it("contains the phrase and the wallet address", () => {
    assert.ok(doc.includes(V.phrase));
    assert.ok(doc.includes(V.walletAddress));
  });
  it("keeps the sections the other areas fill in", () => {
    for (const heading of ["## Keys", "## Segment encryption", "## Piece ids", "## Merkle trees", "## Deal tree", "## Erasure coding", "## Pipeline"]) {
      assert.ok(doc.includes(`\n${heading}\n`), heading);
    }
  });
});
