import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { isDstorError } from "../../src/core/errors.js";
import { MemorySerialStore, openLevelSerialStore, type SerialStore } from "../../src/protocol/serials.js";

const renterA = `0x${"a".repeat(40)}`;
const renterB = `0x${"b".repeat(40)}`;
const serial = (): string => randomBytes(16).toString("hex");

/**
 * One compliance suite, run against every SerialStore implementation (the
 * js-libp2p interface-compliance model).
 */
function serialStoreCompliance(name: string, open: () => Promise<SerialStore>): void {
  describe(`SerialStore compliance: ${name}`, () => {
    test("claim records once; has sees it; renters are separate namespaces", async () => {
      const store = await open();
      try {
        const s = serial();
        assert.equal(await store.has(renterA, s), false);
        assert.equal(await store.claim(renterA, s, 100), true);
        assert.equal(await store.has(renterA, s), true);
        assert.equal(await store.claim(renterA, s, 100), false);
        assert.equal(await store.claim(renterB, s, 100), true, "another renter's serial is unrelated");
      } finally {
        await store.close();
      }
    });

    test("concurrent claims of one serial: exactly one wins", async () => {
      const store = await open();
      try {
        const s = serial();
        const results = await Promise.all(Array.from({ length: 25 }, () => store.claim(renterA, s, 500)));
        assert.equal(results.filter(Boolean).length, 1);
      } finally {
        await store.close();
      }
    });

    test("prune forgets exactly the serials whose expiry is at or before now", async () => {
      const store = await open();
      try {
        // Expiries of different digit counts: the level index must sort them numerically.
        const entries = [9, 10, 99, 100, 101, 1000, 1_800_000_000].map((expiry) => ({ expiry, s: serial() }));
        for (const { expiry, s } of entries) assert.equal(await store.claim(renterA, s, expiry), true);
        assert.equal(await store.prune(100), 4);
        for (const { expiry, s } of entries) assert.equal(await store.has(renterA, s), expiry > 100, `expiry ${expiry}`);
        assert.equal(await store.prune(100), 0);
        assert.equal(await store.prune(10n ** 19n), 3);
        // Once forgotten a serial can be claimed again (its order is expired by then anyway).
        assert.equal(await store.claim(renterA, entries[0]!.s, 2_000_000_000), true);
      } finally {
        await store.close();
      }
    });

    test("malformed keys are INVALID_ARGUMENT; a closed store is STORE_CLOSED; close is idempotent", async () => {
      const store = await open();
      const s = serial();
      for (const [r, x] of [
        [renterA.toUpperCase(), s],
        [renterA, s.toUpperCase()],
        [renterA, "00"],
        ["", s],
      ] as const) {
        await assert.rejects(store.claim(r, x, 1), (e: unknown) => isDstorError(e, "INVALID_ARGUMENT"));
      }
      await assert.rejects(store.claim(renterA, s, -1), (e: unknown) => isDstorError(e, "INVALID_ARGUMENT"));
      await assert.rejects(store.claim(renterA, s, 1.5), (e: unknown) => isDstorError(e, "INVALID_ARGUMENT"));
      await store.close();
      await store.close();
      await assert.rejects(store.claim(renterA, s, 1), (e: unknown) => isDstorError(e, "STORE_CLOSED"));
      await assert.rejects(store.has(renterA, s), (e: unknown) => isDstorError(e, "STORE_CLOSED"));
    });

    test("an aborted signal is honoured", async () => {
      const store = await open();
      try {
        const controller = new AbortController();
        controller.abort();
        await assert.rejects(store.claim(renterA, serial(), 1, { signal: controller.signal }), (e: unknown) => isDstorError(e, "ABORTED"));
      } finally {
        await store.close();
      }
    });
  });
}

let dir: string;
let n = 0;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), "dstor-serials-"));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

serialStoreCompliance("memory", async () => new MemorySerialStore());
serialStoreCompliance("level", () => openLevelSerialStore({ path: join(dir, `db${n++}`) }));

describe("LevelSerialStore persistence", () => {
  test("serials and prunes survive close and reopen", async () => {
    const path = join(dir, "persist");
    const kept = serial();
    const expired = serial();
    let store = await openLevelSerialStore({ path });
    await store.claim(renterA, kept, 5000);
    await store.claim(renterA, expired, 50);
    await store.close();

    store = await openLevelSerialStore({ path });
    assert.equal(await store.claim(renterA, kept, 5000), false);
    assert.equal(await store.has(renterA, expired), true);
    assert.equal(await store.prune(1000), 1);
    await store.close();

    store = await openLevelSerialStore({ path });
    try {
      assert.equal(await store.has(renterA, kept), true);
      assert.equal(await store.has(renterA, expired), false);
    } finally {
      await store.close();
    }
  });

  test("a second opener of the same database is refused while the first holds it", async () => {
    const path = join(dir, "locked");
    const store = await openLevelSerialStore({ path });
    try {
      await assert.rejects(openLevelSerialStore({ path }), (e: unknown) => isDstorError(e, "HOME_IN_USE"));
    } finally {
      await store.close();
    }
  });
});
