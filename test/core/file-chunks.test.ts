/** readFileChunks (src/core/file-chunks.ts): a file read in two alternating reused buffers. */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { readdirSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { isDstorError } from "../../src/core/errors.js";
import { FILE_CHUNK_BYTES, readFileChunks } from "../../src/core/file-chunks.js";

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), "dstor-file-chunks-"));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

const openFds = (): number => readdirSync("/proc/self/fd").length;

test("files of every boundary size come back identical, in chunks no larger than asked or than the file", async () => {
  const MIB = FILE_CHUNK_BYTES;
  for (const size of [0, 1, 16 * 1024 - 1, 16 * 1024, MIB - 1, MIB, MIB + 1, 3 * MIB + 12_345]) {
    const data = randomBytes(size);
    const path = join(dir, `f-${size}`);
    await writeFile(path, data);
    const copies: Buffer[] = [];
    let chunks = 0;
    for await (const chunk of readFileChunks(path)) {
      assert.ok(chunk.byteLength > 0 && chunk.byteLength <= MIB, `chunk of ${chunk.byteLength} bytes`);
      copies.push(Buffer.from(chunk));
      chunks++;
    }
    assert.ok(Buffer.concat(copies).equals(data), `size ${size}`);
    if (size > 0 && size < MIB) assert.equal(chunks, 1, `a ${size}-byte file is read in one chunk`);
    const small = join(dir, `g-${size}`);
    await writeFile(small, data);
    const parts: Buffer[] = [];
    for await (const chunk of readFileChunks(small, { chunkBytes: 20_000 })) {
      assert.ok(chunk.byteLength <= 20_000);
      parts.push(Buffer.from(chunk));
    }
    assert.ok(Buffer.concat(parts).equals(data), `size ${size} in 20 000-byte chunks`);
  }
});

test("chunks are transient: two buffers alternate", async () => {
  const path = join(dir, "alternating");
  await writeFile(path, randomBytes(5 * 20_000));
  const buffers: ArrayBufferLike[] = [];
  for await (const chunk of readFileChunks(path, { chunkBytes: 20_000 })) buffers.push(chunk.buffer);
  assert.equal(buffers.length, 5);
  assert.equal(new Set(buffers).size, 2);
  assert.equal(buffers[0], buffers[2]);
  assert.equal(buffers[1], buffers[3]);
});

test("the file is closed when the reader stops early, and a missing file is an error naming it", async () => {
  const path = join(dir, "early");
  await writeFile(path, randomBytes(3 * FILE_CHUNK_BYTES));
  const before = openFds();
  for await (const chunk of readFileChunks(path)) {
    assert.ok(chunk.byteLength > 0);
    assert.equal(openFds(), before + 1, "the file is open while reading");
    break;
  }
  assert.equal(openFds(), before, "closed after an early break");
  const missing = join(dir, "missing");
  await assert.rejects(
    async () => {
      for await (const _ of readFileChunks(missing)) assert.fail("no chunk expected");
    },
    (error: NodeJS.ErrnoException) => error.code === "ENOENT" && String(error.message).includes(missing) && !isDstorError(error),
  );
});
