/**
 * CopyBlocks (src/node/bulk.ts): the blocks a direct connection copies
 * received bytes into, recycled through a pool while the reader's reads are
 * transient. The property: a byte anyone may still read is never in a block
 * that went back to the pool (checked by scribbling over every pooled buffer
 * after each step).
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { BufferPool } from "../../src/crypto/bytes.js";
import { CopyBlocks } from "../../src/node/bulk.js";

type Op =
  | { kind: "copy"; length: number; seed: number }
  | { kind: "hand"; count: number }
  | { kind: "start" }
  | { kind: "stop" }
  | { kind: "release" }
  | { kind: "begin" };

const op: fc.Arbitrary<Op> = fc.oneof(
  { arbitrary: fc.record({ kind: fc.constant("copy" as const), length: fc.integer({ min: 1, max: 40_000 }), seed: fc.integer({ min: 0, max: 255 }) }), weight: 6 },
  { arbitrary: fc.record({ kind: fc.constant("hand" as const), count: fc.integer({ min: 1, max: 6 }) }), weight: 4 },
  { arbitrary: fc.record({ kind: fc.constant("start" as const) }), weight: 2 },
  { arbitrary: fc.record({ kind: fc.constant("stop" as const) }), weight: 1 },
  { arbitrary: fc.record({ kind: fc.constant("release" as const) }), weight: 3 },
  { arbitrary: fc.record({ kind: fc.constant("begin" as const) }), weight: 1 },
);

interface Copied {
  view: Uint8Array;
  expected: Uint8Array;
  end: number;
  /** Handed to the reader while its reads were transient: dead once released past. */
  transient: boolean;
  handed: boolean;
  dead: boolean;
}

/** Takes every free buffer out of the pool, overwrites it and gives it back. */
function scribble(pool: BufferPool, size: number): number {
  const taken: Uint8Array[] = [];
  while (pool.freeBytes > 0) taken.push(pool.take(size));
  for (const buffer of taken) buffer.fill(0xee);
  pool.give(taken);
  return taken.length;
}

test("a byte the reader may still read is never in a block given back to the pool", () => {
  const BLOCK = 64 * 1024;
  let runsThatRecycled = 0;
  fc.assert(
    fc.property(fc.array(op, { minLength: 20, maxLength: 120 }), (ops) => {
      const pool = new BufferPool(64 * BLOCK);
      const blocks = new CopyBlocks(pool);
      const copies: Copied[] = [];
      let handedThrough = 0;
      let recycling = false;
      let recycled = false;
      for (const step of ops) {
        switch (step.kind) {
          case "copy": {
            const bytes = new Uint8Array(step.length).map((_, i) => (step.seed + i * 7) & 0xff);
            const view = blocks.copy(bytes);
            copies.push({ view, expected: bytes, end: blocks.copied, transient: false, handed: false, dead: false });
            break;
          }
          case "hand": {
            // The reader is handed the next copies, in order (the exchange yields them).
            for (const c of copies.filter((x) => !x.handed).slice(0, step.count)) {
              c.handed = true;
              c.transient = recycling;
              handedThrough = c.end;
            }
            break;
          }
          case "start":
            if (!recycling) blocks.startRecycling(handedThrough);
            recycling = true;
            break;
          case "stop":
            blocks.stopRecycling();
            recycling = false;
            break;
          case "release":
            // The reader asks for more: it is past everything handed so far;
            // what it read transiently is dead, what it read otherwise it may keep.
            blocks.release(handedThrough);
            for (const c of copies) if (c.handed && c.transient) c.dead = true;
            break;
          case "begin":
            // A new exchange (the connection stops recycling first, as BulkConnection.begin does).
            blocks.stopRecycling();
            recycling = false;
            blocks.beginExchange();
            break;
        }
        if (scribble(pool, BLOCK) > 0) recycled = true;
        for (const c of copies) {
          // (Not deepEqual: its diff of two 40 KB arrays takes minutes.)
          if (!c.dead) assert.ok(Buffer.from(c.view).equals(c.expected), `bytes ending at position ${c.end} were overwritten`);
        }
      }
      if (recycled) runsThatRecycled++;
    }),
    // No shrinking: it re-runs long op lists many times over; the failing list is reported as is.
    { numRuns: 300, endOnFailure: true },
  );
  assert.ok(runsThatRecycled >= 30, `only ${runsThatRecycled} of 300 runs recycled a block: the property would be nearly vacuous`);
});

test("without recycling nothing goes back to the pool; with it, a block read past goes back and is reused", () => {
  const pool = new BufferPool(1 << 20);
  const blocks = new CopyBlocks(pool);
  const record = new Uint8Array(16 * 1024).fill(1);
  for (let i = 0; i < 8; i++) blocks.copy(record);
  blocks.release(blocks.copied);
  assert.equal(pool.freeBytes, 0, "bytes read while not transient may be kept by the reader");

  const from = blocks.copied;
  blocks.startRecycling(from);
  const views = Array.from({ length: 8 }, () => blocks.copy(record));
  blocks.release(blocks.copied - 1);
  // The first recycled block is full (four records) and read past; the second is still being filled.
  assert.equal(pool.freeBytes, 64 * 1024);
  const reused = views[0]!.buffer;
  blocks.copy(record);
  const next = Array.from({ length: 4 }, () => blocks.copy(record));
  assert.equal(next[0]!.buffer, reused, "the block given back is taken again");
  blocks.stopRecycling();
  blocks.release(blocks.copied);
  assert.equal(pool.freeBytes, 0, "blocks still lent when recycling stops are not given back");
});

test("a reader that has read past every byte, transiently, gets the block being filled refilled from its start", () => {
  const pool = new BufferPool(1 << 20);
  const blocks = new CopyBlocks(pool);
  const record = new Uint8Array(16 * 1024).fill(2);
  blocks.startRecycling(0);
  const first = blocks.copy(record);
  blocks.copy(record);
  blocks.release(blocks.copied);
  const again = blocks.copy(record);
  assert.equal(again.buffer, first.buffer);
  assert.equal(again.byteOffset, first.byteOffset, "the block is refilled from its start");
  assert.equal(pool.allocated, 1);
  // Not past every byte: filled on.
  blocks.release(blocks.copied - 1);
  assert.equal(blocks.copy(record).byteOffset, first.byteOffset + record.byteLength);
  // Not transient: the reader may keep what it read, so nothing is overwritten.
  blocks.stopRecycling();
  blocks.release(blocks.copied);
  assert.equal(blocks.copy(record).byteOffset, first.byteOffset + 2 * record.byteLength);
  // A new exchange starts in a block of its own; one holding nothing yet is kept for it.
  blocks.beginExchange();
  const fresh = blocks.copy(record);
  assert.notEqual(fresh.buffer, first.buffer);
  blocks.startRecycling(blocks.copied - record.byteLength);
  blocks.release(blocks.copied);
  blocks.beginExchange();
  assert.equal(blocks.copy(record).buffer, fresh.buffer, "the emptied block is the next exchange's");
});
