import assert from "node:assert/strict";
import { createCipheriv, createDecipheriv, createHash, randomBytes } from "node:crypto";
import { describe, it } from "node:test";
import { gcm } from "@noble/ciphers/aes.js";
import fc from "fast-check";
import { isDstorError } from "../../src/core/errors.js";
import {
  AEAD_BLOCK_BYTES,
  type AeadOptions,
  aeadImplementation,
  blockCount,
  openBlocks as openBlocksFast,
  openSegment as openSegmentFast,
  openSegmentAsync,
  plaintextLength,
  SEALED_BLOCK_BYTES,
  sealedLength,
  sealedRangeFor,
  sealSegment,
  sealSegmentInto,
} from "../../src/crypto/aead.js";
import { openSegmentReference, sealSegmentReference } from "../../src/crypto/aead-reference.js";
import { type DstorVectors, hex, loadVectors, toHexString } from "./helpers.js";

const openSegment = openSegmentFast;
const V = loadVectors<DstorVectors>("dstor-crypto.json");

/** Both fast implementations: native kernels when the addon has them (else node:crypto again), and node:crypto. */
const PATHS: [string, AeadOptions][] = [
  [`default (${aeadImplementation()})`, {}],
  ["node:crypto", { native: false }],
];

interface GcmFile {
  cases: { case: number; key: string; iv: string; plaintext: string; aad: string; ciphertext: string; tag: string }[];
}

function assertDecryptFails(fn: () => unknown): void {
  assert.throws(fn, (error: unknown) => isDstorError(error, "DECRYPT_FAILED"));
}

function randomKey(): Uint8Array {
  return new Uint8Array(randomBytes(32));
}
function randomSegmentId(): Uint8Array {
  return new Uint8Array(randomBytes(24));
}

describe("AES-256-GCM (McGrew-Viega test cases 13-18)", () => {
  const file = loadVectors<GcmFile>("gcm-aes256-mcgrew-viega.json");
  for (const c of file.cases) {
    it(`case ${c.case}: node:crypto`, () => {
      const cipher = createCipheriv("aes-256-gcm", hex(c.key), hex(c.iv));
      cipher.setAAD(hex(c.aad));
      const ct = Buffer.concat([cipher.update(hex(c.plaintext)), cipher.final()]);
      assert.equal(ct.toString("hex"), c.ciphertext);
      assert.equal(cipher.getAuthTag().toString("hex"), c.tag);
      const decipher = createDecipheriv("aes-256-gcm", hex(c.key), hex(c.iv));
      decipher.setAAD(hex(c.aad));
      decipher.setAuthTag(hex(c.tag));
      assert.equal(Buffer.concat([decipher.update(ct), decipher.final()]).toString("hex"), c.plaintext);
    });
    it(`case ${c.case}: @noble/ciphers`, () => {
      const sealed = gcm(hex(c.key), hex(c.iv), hex(c.aad)).encrypt(hex(c.plaintext));
      assert.equal(toHexString(sealed), c.ciphertext + c.tag);
      assert.equal(toHexString(gcm(hex(c.key), hex(c.iv), hex(c.aad)).decrypt(sealed)), c.plaintext);
    });
  }
});

describe("segment AEAD vectors", () => {
  const key = hex(V.aead.key);
  const id = hex(V.aead.segmentId);
  it("short plaintext", () => {
    const pt = new TextEncoder().encode(V.aead.short.plaintextAscii);
    for (const [, options] of PATHS) {
      assert.equal(toHexString(sealSegment(key, id, pt, options)), V.aead.short.sealed);
      assert.deepEqual(openSegment(key, id, hex(V.aead.short.sealed), options), pt);
    }
    assert.equal(toHexString(sealSegmentReference(key, id, pt)), V.aead.short.sealed);
  });
  it("empty plaintext is one empty last block", () => {
    for (const [, options] of PATHS) {
      assert.equal(toHexString(sealSegment(key, id, new Uint8Array(0), options)), V.aead.empty.sealed);
      assert.equal(openSegment(key, id, hex(V.aead.empty.sealed), options).length, 0);
    }
    assert.equal(V.aead.empty.sealed.length, 32);
  });
  it("two blocks", () => {
    const t = V.aead.twoBlocks;
    const pt = new Uint8Array(t.plaintextLength);
    for (let i = 0; i < pt.length; i++) pt[i] = (7 * i + 3) & 0xff;
    for (const [, options] of PATHS) {
      const sealed = sealSegment(key, id, pt, options);
      assert.equal(sealed.length, t.sealedLength);
      assert.equal(createHash("sha256").update(sealed).digest("hex"), t.sealedSha256);
      assert.equal(toHexString(sealed.subarray(SEALED_BLOCK_BYTES)), t.block1Sealed);
      assert.deepEqual(openSegment(key, id, sealed, options), pt);
    }
  });
});

describe("sealed lengths", () => {
  it("matches L + 16·max(1, ceil(L/65536)) and inverts", () => {
    for (const [l, s] of [
      [0, 16],
      [1, 17],
      [65535, 65551],
      [65536, 65552],
      [65537, 65569],
      [131072, 131104],
      [8 * 1024 * 1024, 8 * 1024 * 1024 + 128 * 16],
    ] as const) {
      assert.equal(sealedLength(l), s);
      assert.equal(plaintextLength(s), l);
    }
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 2 ** 40 }), (l) => plaintextLength(sealedLength(l)) === l),
      { numRuns: 2000 },
    );
  });
  it("rejects lengths nothing seals to", () => {
    for (const s of [0, 15, SEALED_BLOCK_BYTES + 1, SEALED_BLOCK_BYTES + 16, SEALED_BLOCK_BYTES + 15, -1, 1.5]) {
      assert.throws(() => plaintextLength(s), (e: unknown) => isDstorError(e, "INVALID_ARGUMENT"));
    }
  });
});

describe("fast paths and reference give identical bytes", () => {
  it("fixed edge sizes", () => {
    const key = randomKey();
    const id = randomSegmentId();
    for (const size of [0, 1, 15, 16, 17, 65535, 65536, 65537, 131071, 131072, 131073, 200_000]) {
      const pt = new Uint8Array(randomBytes(size));
      const reference = sealSegmentReference(key, id, pt);
      for (const [name, options] of PATHS) {
        const fast = sealSegment(key, id, pt, options);
        assert.deepEqual(fast, reference, `${name}, size ${size}`);
        assert.deepEqual(openSegment(key, id, fast, options), pt);
      }
      assert.deepEqual(openSegmentReference(key, id, reference), pt);
    }
  });
  it("random inputs (fast-check)", () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 32, maxLength: 32 }),
        fc.uint8Array({ minLength: 24, maxLength: 24 }),
        fc.integer({ min: 0, max: 3 * AEAD_BLOCK_BYTES + 100 }),
        fc.integer(),
        (key, id, size, seed) => {
          const pt = new Uint8Array(size);
          for (let i = 0; i < size; i += 997) pt[i] = (seed + i) & 0xff;
          const reference = sealSegmentReference(key, id, pt);
          for (const [, options] of PATHS) {
            const fast = sealSegment(key, id, pt, options);
            assert.deepEqual(fast, reference);
            assert.deepEqual(openSegment(key, id, fast, options), pt);
          }
        },
      ),
      { numRuns: 25 },
    );
  });
  it("DSTOR_NO_NATIVE=1 selects node:crypto with identical bytes", () => {
    const key = randomKey();
    const id = randomSegmentId();
    const pt = new Uint8Array(randomBytes(150_000));
    const withDefault = sealSegment(key, id, pt);
    const before = process.env.DSTOR_NO_NATIVE;
    process.env.DSTOR_NO_NATIVE = "1";
    try {
      assert.equal(aeadImplementation(), "node:crypto");
      assert.deepEqual(sealSegment(key, id, pt), withDefault);
      assert.deepEqual(openSegment(key, id, withDefault), pt);
    } finally {
      if (before === undefined) delete process.env.DSTOR_NO_NATIVE;
      else process.env.DSTOR_NO_NATIVE = before;
    }
  });
  it("sealSegmentInto fills a caller buffer and checks its size", () => {
    const key = randomKey();
    const id = randomSegmentId();
    const pt = new Uint8Array(randomBytes(70_000));
    const out = new Uint8Array(sealedLength(pt.length));
    for (const [, options] of PATHS) {
      out.fill(0);
      assert.equal(sealSegmentInto(key, id, pt, out, options), out);
      assert.deepEqual(out, sealSegmentReference(key, id, pt));
    }
    assert.throws(() => sealSegmentInto(key, id, pt, new Uint8Array(out.length - 1)), (e: unknown) => isDstorError(e, "INVALID_ARGUMENT"));
    const shared = new Uint8Array(sealedLength(1000) + 10);
    assert.throws(
      () => sealSegmentInto(key, id, shared.subarray(0, 1000), shared.subarray(10, 10 + sealedLength(1000))),
      (e: unknown) => isDstorError(e, "INVALID_ARGUMENT"),
    );
  });
  it("openSegment into a caller buffer: a view of its start; on failure the buffer holds no plaintext", () => {
    const key = randomKey();
    const id = randomSegmentId();
    const pt = new Uint8Array(randomBytes(3 * AEAD_BLOCK_BYTES + 100));
    const sealed = sealSegmentReference(key, id, pt);
    for (const [name, options] of PATHS) {
      const into = new Uint8Array(pt.length + 50).fill(0xee);
      const out = openSegment(key, id, sealed, { ...options, into });
      assert.equal(out.buffer, into.buffer, name);
      assert.equal(out.byteOffset, into.byteOffset, name);
      assert.deepEqual(out, pt, name);
      assert.ok(into.subarray(pt.length).every((b) => b === 0xee), `${name}: nothing written past the plaintext`);
      // The last block tampered: the first three authenticate and decrypt, then all must be wiped.
      const bad = sealed.slice();
      bad[bad.length - 1]! ^= 1;
      into.fill(0xee);
      assertDecryptFails(() => openSegment(key, id, bad, { ...options, into }));
      assert.ok(into.subarray(0, pt.length).every((b) => b === 0), `${name}: no unauthenticated plaintext left behind`);
      assert.throws(() => openSegment(key, id, sealed, { ...options, into: new Uint8Array(pt.length - 1) }), (e: unknown) => isDstorError(e, "INVALID_ARGUMENT"));
      const shared = new Uint8Array(sealed.length + 10);
      shared.set(sealed, 10);
      assert.throws(() => openSegment(key, id, shared.subarray(10), { ...options, into: shared }), (e: unknown) => isDstorError(e, "INVALID_ARGUMENT"));
    }
  });
});

for (const [pathName, options] of PATHS) describe(`tampering is detected: ${pathName}`, () => {
  const openSegment = (k: Uint8Array, i: Uint8Array, s: Uint8Array) => openSegmentFast(k, i, s, options);
  const openBlocks = (k: Uint8Array, i: Uint8Array, s: Uint8Array, f: number, t: number) => openBlocksFast(k, i, s, f, t, options);
  const key = randomKey();
  const id = randomSegmentId();
  const pt = new Uint8Array(randomBytes(3 * AEAD_BLOCK_BYTES + 1000));
  const sealed = sealSegment(key, id, pt);

  it("any single-bit flip (fast-check over positions)", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: sealed.length - 1 }), fc.integer({ min: 0, max: 7 }), (pos, bit) => {
        const bad = sealed.slice();
        bad[pos]! ^= 1 << bit;
        assertDecryptFails(() => openSegment(key, id, bad));
      }),
      { numRuns: 60 },
    );
  });
  it("any single-byte change on a small segment, both implementations", () => {
    const small = sealSegment(key, id, new Uint8Array(randomBytes(40)));
    fc.assert(
      fc.property(fc.integer({ min: 0, max: small.length - 1 }), fc.integer({ min: 1, max: 255 }), (pos, delta) => {
        const bad = small.slice();
        bad[pos] = (bad[pos]! + delta) & 0xff;
        assertDecryptFails(() => openSegment(key, id, bad));
        assertDecryptFails(() => openSegmentReference(key, id, bad));
      }),
      { numRuns: 100 },
    );
  });
  it("truncation: last block dropped, bytes cut, emptied", () => {
    assertDecryptFails(() => openSegment(key, id, sealed.subarray(0, 3 * SEALED_BLOCK_BYTES)));
    assertDecryptFails(() => openSegment(key, id, sealed.subarray(0, 2 * SEALED_BLOCK_BYTES)));
    assertDecryptFails(() => openSegment(key, id, sealed.subarray(0, sealed.length - 1)));
    assertDecryptFails(() => openSegment(key, id, sealed.subarray(0, sealed.length - 17)));
    assertDecryptFails(() => openSegment(key, id, new Uint8Array(0)));
    assertDecryptFails(() => openSegmentReference(key, id, sealed.subarray(0, 3 * SEALED_BLOCK_BYTES)));
    // An empty-looking segment (a lone tag) is not accepted for a real segment.
    assertDecryptFails(() => openSegment(key, id, sealed.subarray(0, 16)));
  });
  it("appending bytes or a block", () => {
    const extra = new Uint8Array(sealed.length + 16);
    extra.set(sealed);
    assertDecryptFails(() => openSegment(key, id, extra));
    const dup = new Uint8Array(sealed.length + SEALED_BLOCK_BYTES);
    dup.set(sealed);
    dup.set(sealed.subarray(0, SEALED_BLOCK_BYTES), sealed.length);
    assertDecryptFails(() => openSegment(key, id, dup));
  });
  it("reordering blocks", () => {
    const swapped = sealed.slice();
    swapped.set(sealed.subarray(SEALED_BLOCK_BYTES, 2 * SEALED_BLOCK_BYTES), 0);
    swapped.set(sealed.subarray(0, SEALED_BLOCK_BYTES), SEALED_BLOCK_BYTES);
    assertDecryptFails(() => openSegment(key, id, swapped));
  });
  it("splicing a block from another segment id or another key", () => {
    const otherId = id.slice();
    otherId[23]! ^= 1;
    const fromOtherId = sealSegment(key, otherId, pt);
    const fromOtherKey = sealSegment(randomKey(), id, pt);
    for (const other of [fromOtherId, fromOtherKey]) {
      const spliced = sealed.slice();
      spliced.set(other.subarray(SEALED_BLOCK_BYTES, 2 * SEALED_BLOCK_BYTES), SEALED_BLOCK_BYTES);
      assertDecryptFails(() => openSegment(key, id, spliced));
    }
    assertDecryptFails(() => openSegment(key, otherId, sealed));
    assertDecryptFails(() => openSegment(randomKey(), id, sealed));
  });
  it("wrong last flag: a full segment cut at a block boundary, or a non-last block presented as last", () => {
    const twoFull = sealSegment(key, id, new Uint8Array(randomBytes(2 * AEAD_BLOCK_BYTES)));
    // Block 0 alone looks like a complete one-block segment but was sealed with last = 0.
    assertDecryptFails(() => openSegment(key, id, twoFull.subarray(0, SEALED_BLOCK_BYTES)));
    assertDecryptFails(() => openBlocks(key, id, twoFull.subarray(0, SEALED_BLOCK_BYTES), 0, 1));
    // The last block claimed to be a middle one.
    assertDecryptFails(() => openBlocks(key, id, twoFull.subarray(SEALED_BLOCK_BYTES), 1, 3));
  });
});

for (const [pathName, options] of PATHS) describe(`ranged decrypt: ${pathName}`, () => {
  const openBlocks = (k: Uint8Array, i: Uint8Array, s: Uint8Array, f: number, t: number) => openBlocksFast(k, i, s, f, t, options);
  const key = randomKey();
  const id = randomSegmentId();
  const size = 5 * AEAD_BLOCK_BYTES + 12345;
  const pt = new Uint8Array(randomBytes(size));
  const sealed = sealSegment(key, id, pt);

  it("sealedRangeFor + openBlocks return exactly the requested bytes (fast-check)", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: size - 1 }), fc.integer({ min: 1, max: 3 * AEAD_BLOCK_BYTES }), (offset, want) => {
        const length = Math.min(want, size - offset);
        const r = sealedRangeFor(size, offset, length);
        assert.equal(r.totalBlocks, blockCount(size));
        assert.ok(r.blockCount <= Math.ceil(length / AEAD_BLOCK_BYTES) + 1);
        const opened = openBlocks(key, id, sealed.subarray(r.sealedStart, r.sealedEnd), r.firstBlock, r.totalBlocks);
        assert.deepEqual(opened.subarray(r.plaintextSkip, r.plaintextSkip + length), pt.subarray(offset, offset + length));
      }),
      { numRuns: 40 },
    );
  });
  it("a small read touches one block", () => {
    const r = sealedRangeFor(size, 3 * AEAD_BLOCK_BYTES + 10, 100);
    assert.deepEqual(
      { firstBlock: r.firstBlock, blockCount: r.blockCount, sealedStart: r.sealedStart, sealedEnd: r.sealedEnd, plaintextSkip: r.plaintextSkip },
      { firstBlock: 3, blockCount: 1, sealedStart: 3 * SEALED_BLOCK_BYTES, sealedEnd: 4 * SEALED_BLOCK_BYTES, plaintextSkip: 10 },
    );
    const last = sealedRangeFor(size, size - 1, 1);
    assert.equal(last.sealedEnd, sealed.length);
  });
  it("rejects bad ranges and misplaced blocks", () => {
    assert.throws(() => sealedRangeFor(size, size, 1), (e: unknown) => isDstorError(e, "INVALID_ARGUMENT"));
    assert.throws(() => sealedRangeFor(size, 0, 0), (e: unknown) => isDstorError(e, "INVALID_ARGUMENT"));
    const block2 = sealed.subarray(2 * SEALED_BLOCK_BYTES, 3 * SEALED_BLOCK_BYTES);
    assert.deepEqual(openBlocks(key, id, block2, 2, 6), pt.subarray(2 * AEAD_BLOCK_BYTES, 3 * AEAD_BLOCK_BYTES));
    assertDecryptFails(() => openBlocks(key, id, block2, 1, 6));
    assertDecryptFails(() => openBlocks(key, id, block2.subarray(0, block2.length - 1), 2, 6));
    assertDecryptFails(() => openBlocks(key, id, sealed.subarray(4 * SEALED_BLOCK_BYTES), 4, 7));
    assertDecryptFails(() => openBlocks(key, id, sealed.subarray(4 * SEALED_BLOCK_BYTES), 5, 6));
    assert.throws(() => openBlocks(key, id, block2, 6, 6), (e: unknown) => isDstorError(e, "INVALID_ARGUMENT"));
  });
});

describe("openSegmentAsync (the native kernel on libuv's thread pool)", () => {
  const key = new Uint8Array(randomBytes(32));
  const id = new Uint8Array(randomBytes(24));

  it("opens exactly what openSegment opens, into a given buffer or new memory, for every size", async () => {
    for (const size of [0, 1, AEAD_BLOCK_BYTES - 1, AEAD_BLOCK_BYTES, AEAD_BLOCK_BYTES + 1, 5 * AEAD_BLOCK_BYTES + 777]) {
      const pt = new Uint8Array(randomBytes(size));
      const sealed = sealSegment(key, id, pt);
      for (const [name, options] of PATHS) {
        assert.deepEqual(await openSegmentAsync(key, id, sealed, options), pt, `${name}, ${size} bytes`);
        const into = new Uint8Array(size + 5).fill(0xee);
        const opened = await openSegmentAsync(key, id, sealed, { ...options, into });
        assert.equal(opened.buffer, into.buffer);
        assert.deepEqual(opened, pt);
        assert.equal(into[size], 0xee, "nothing written past the plaintext");
      }
    }
  });

  it("fails like openSegment on any altered or cut block, and leaves zeros in a given buffer", async () => {
    const pt = new Uint8Array(randomBytes(3 * AEAD_BLOCK_BYTES + 10));
    const sealed = sealSegment(key, id, pt);
    const bad = sealed.slice();
    bad[2 * SEALED_BLOCK_BYTES + 5]! ^= 1;
    for (const [name, options] of PATHS) {
      const into = new Uint8Array(pt.length).fill(0xee);
      await assert.rejects(openSegmentAsync(key, id, bad, { ...options, into }), (e: unknown) => isDstorError(e, "DECRYPT_FAILED") && /block 2\b/.test((e as Error).message), name);
      assert.ok(into.every((b) => b === 0), `${name}: no unauthenticated byte left behind`);
      await assert.rejects(openSegmentAsync(key, id, sealed.subarray(0, SEALED_BLOCK_BYTES), options), (e: unknown) => isDstorError(e, "DECRYPT_FAILED"), name);
      await assert.rejects(openSegmentAsync(new Uint8Array(32), id, sealed, options), (e: unknown) => isDstorError(e, "DECRYPT_FAILED"), name);
    }
  });

  it("refuses an output buffer overlapping the sealed bytes", async () => {
    const sealed = sealSegment(key, id, new Uint8Array(randomBytes(1000)));
    await assert.rejects(openSegmentAsync(key, id, sealed, { into: sealed }), (e: unknown) => isDstorError(e, "INVALID_ARGUMENT"));
  });

  it("many opens in flight at once each get their own bytes", async () => {
    const pts = Array.from({ length: 12 }, (_, i) => new Uint8Array(randomBytes(2 * AEAD_BLOCK_BYTES + i)));
    const opened = await Promise.all(pts.map((pt) => openSegmentAsync(key, id, sealSegment(key, id, pt))));
    for (let i = 0; i < pts.length; i++) assert.deepEqual(opened[i], pts[i]);
  });
});
