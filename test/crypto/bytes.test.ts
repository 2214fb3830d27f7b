/**
 * BufferPool: buffers handed out are reused only after they are given back,
 * never twice at once, and the pool keeps no more than its byte limit.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { BufferPool } from "../../src/crypto/bytes.js";

describe("BufferPool", () => {
  test("reuses a given-back buffer, and never hands one out twice at once", () => {
    const pool = new BufferPool(1024);
    const a = pool.take(256);
    const b = pool.take(256);
    assert.notEqual(a, b);
    assert.equal(a.byteLength, 256);
    pool.give([a]);
    pool.give([a]); // twice: still only once in the pool
    assert.equal(pool.freeBytes, 256);
    assert.equal(pool.allocated, 2);
    assert.equal(pool.take(256), a);
    assert.equal(pool.allocated, 2, "a was reused, not allocated");
    assert.notEqual(pool.take(256), a, "a is in use again; the pool must allocate");
    assert.equal(pool.allocated, 3);
    assert.equal(pool.freeBytes, 0);
  });

  test("keeps at most maxBytes of free buffers, and drops them when the size changes", () => {
    const pool = new BufferPool(512);
    const taken = [pool.take(256), pool.take(256), pool.take(256)];
    pool.give(taken);
    assert.equal(pool.freeBytes, 512, "the third buffer was dropped");
    const other = pool.take(100);
    assert.equal(other.byteLength, 100);
    assert.equal(pool.freeBytes, 0, "buffers of the old size are gone");
    pool.give(taken); // old size: not kept
    assert.equal(pool.freeBytes, 0);
    pool.give([other.subarray(0, 50)]); // not a buffer of the pool's size
    assert.equal(pool.freeBytes, 0);
  });

  test("refuses a bad limit", () => {
    assert.throws(() => new BufferPool(-1), /maxBytes/);
    assert.throws(() => new BufferPool(1.5), /maxBytes/);
  });
});
