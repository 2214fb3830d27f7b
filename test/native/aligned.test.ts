/**
 * alignedBytes: buffers whose memory starts on a 4096-byte boundary, for
 * O_DIRECT writes of piece batches (src/farmer/store/direct-io.ts). JS cannot
 * see an address, so alignment is checked the way the kernel checks it: an
 * O_DIRECT write of such a buffer succeeds, one of a misaligned view fails.
 */
import assert from "node:assert/strict";
import { mkdtemp, open, rm } from "node:fs/promises";
import * as nodeFs from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { loadNative } from "../../src/core/native.js";
import { NATIVE_DISABLED } from "./helpers.js";

const dirs: string[] = [];
after(async () => {
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
});

describe("native alignedBytes", () => {
  it("gives Uint8Arrays of the asked size and refuses bad sizes", () => {
    if (NATIVE_DISABLED) return assert.equal(loadNative(), undefined);
    const native = loadNative()!;
    for (const size of [1, 4096, 1 << 20, 3 * 4096 + 7]) {
      const bytes = native.alignedBytes(size);
      assert.ok(bytes instanceof Uint8Array);
      assert.equal(bytes.byteLength, size);
      assert.equal(bytes.byteOffset, 0);
      bytes.fill(0xab);
      assert.equal(bytes[size - 1], 0xab);
    }
    for (const bad of [0, -1, 1.5, 2 ** 31, Number.NaN]) assert.throws(() => native.alignedBytes(bad), RangeError, `size ${bad}`);
    assert.throws(() => native.alignedBytes("4096" as unknown as number), TypeError);
  });

  it("its memory takes O_DIRECT writes where an ordinary misaligned view does not", async (t) => {
    if (NATIVE_DISABLED) return assert.equal(loadNative(), undefined);
    const dir = await mkdtemp(join(tmpdir(), "dstor-aligned-"));
    dirs.push(dir);
    let handle: nodeFs.FileHandle;
    try {
      handle = await open(join(dir, "f"), nodeFs.constants.O_WRONLY | nodeFs.constants.O_CREAT | nodeFs.constants.O_DIRECT, 0o600);
    } catch (error) {
      // tmpfs refuses O_DIRECT altogether; the store then writes through the page cache.
      assert.equal((error as NodeJS.ErrnoException).code, "EINVAL");
      t.diagnostic("the temp directory's file system refuses O_DIRECT");
      return;
    }
    try {
      const bytes = loadNative()!.alignedBytes(2 * 4096).fill(7);
      assert.equal((await handle.write(bytes, 0, 4096, 0)).bytesWritten, 4096);
      // A view one byte in is aligned to no block size.
      await assert.rejects(handle.write(bytes, 1, 4096, 4096), (error: NodeJS.ErrnoException) => error.code === "EINVAL");
    } finally {
      await handle.close();
    }
  });
});
