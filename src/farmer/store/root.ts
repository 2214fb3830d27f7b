/**
 * Incremental (streaming) piece Merkle root, the shared format of
 * docs/formats.md: 1 KiB leaves, leaf = SHA-256(0x00 ‖ bytes), node =
 * SHA-256(0x01 ‖ left ‖ right), an odd node at the end of a level is promoted
 * unchanged, a 0-byte piece has one empty leaf.
 *
 * Why incremental: pieces arrive in chunks of any size and may be 64 MiB or
 * more; the store must know the root at commit time without buffering the
 * piece. The hasher keeps at most one partial leaf (< 1 KiB) and one pending
 * node per tree level (a "peak"), so memory is O(log n).
 *
 * Why peaks give the promotion rule: with leaves fed left to right, the pending
 * node at level h is always the root of a perfect subtree of 2^h leaves, and
 * the peaks present are exactly the set bits of the leaf count. In the
 * level-by-level construction the only unpaired (promoted) node of any level is
 * the right-most one, which is built from the lowest peaks; folding the peaks
 * from the lowest upwards — each higher peak becoming the LEFT child — yields
 * the same tree. Tests cross-check this against a whole-buffer implementation.
 */
import { hash } from "node:crypto";
import { assertArgument } from "../../core/errors.js";
import { loadNative } from "../../core/native.js";

/** Bytes per Merkle leaf (fixed by the shared format). */
export const MERKLE_LEAF_SIZE_BYTES = 1024;
/** Bytes of a SHA-256 digest, i.e. of every tree node and of the root. */
export const MERKLE_HASH_SIZE_BYTES = 32;

/**
 * Largest perfect subtree (2^h leaves) handed to the native addon in one call.
 * The root of 2^h whole, aligned leaves is exactly the pending peak at level
 * h, so whole runs are hashed by SHA-NI (~2 GB/s) instead of one JS call per
 * leaf and node (~150 MB/s) — the farmer checks every byte it receives.
 */
const MAX_NATIVE_SUBTREE_LEVEL = 10;
/** Smaller runs are not worth a native call. */
const MIN_NATIVE_SUBTREE_LEVEL = 3;

// The one-shot crypto.hash() is about twice as fast as createHash() for
// 1 KiB inputs (no Hash object per call), and a 64 MiB piece has 65 536
// leaves and as many nodes. It takes one contiguous input, so the prefix byte
// and the data are copied into scratch buffers first (a cheap memcpy).
// Both are module-level: hashing is synchronous, so no two calls interleave.
const leafScratch = Buffer.alloc(1 + MERKLE_LEAF_SIZE_BYTES);
leafScratch[0] = 0x00;
const nodeScratch = Buffer.alloc(1 + 2 * MERKLE_HASH_SIZE_BYTES);
nodeScratch[0] = 0x01;

function hashLeaf(bytes: Uint8Array): Buffer {
  leafScratch.set(bytes, 1);
  return hash("sha256", leafScratch.subarray(0, 1 + bytes.byteLength), "buffer");
}

function hashNode(left: Uint8Array, right: Uint8Array): Buffer {
  nodeScratch.set(left, 1);
  nodeScratch.set(right, 1 + MERKLE_HASH_SIZE_BYTES);
  return hash("sha256", nodeScratch, "buffer");
}

/**
 * Computes a piece's Merkle root from its bytes fed in chunks of any size.
 * Call {@link IncrementalMerkleRoot.update} any number of times, then
 * {@link IncrementalMerkleRoot.digest} once.
 */
export class IncrementalMerkleRoot {
  /** `#peaks[h]` is the pending root of a perfect subtree of 2^h leaves, or undefined. */
  readonly #peaks: (Buffer | undefined)[] = [];
  readonly #leaf = Buffer.alloc(MERKLE_LEAF_SIZE_BYTES);
  #leafFill = 0;
  #leafCount = 0;
  #bytes = 0;
  #done = false;

  /** Bytes fed so far. */
  get bytesHashed(): number {
    return this.#bytes;
  }

  /** Feeds the next bytes of the piece. The chunk is not retained. */
  update(chunk: Uint8Array): this {
    assertArgument(!this.#done, "IncrementalMerkleRoot.update() after digest()");
    assertArgument(chunk instanceof Uint8Array, "chunk must be a Uint8Array");
    let offset = 0;
    const length = chunk.byteLength;
    this.#bytes += length;
    // Finish a partially filled leaf first.
    if (this.#leafFill > 0) {
      const take = Math.min(MERKLE_LEAF_SIZE_BYTES - this.#leafFill, length);
      this.#leaf.set(chunk.subarray(0, take), this.#leafFill);
      this.#leafFill += take;
      offset = take;
      // A full leaf hashes the same whether or not it turns out to be the
      // last one, so it can be folded in at once.
      if (this.#leafFill === MERKLE_LEAF_SIZE_BYTES) {
        this.#pushLeaf(hashLeaf(this.#leaf));
        this.#leafFill = 0;
      }
    }
    // Whole leaves straight from the chunk, without copying: aligned runs of
    // 2^h leaves as one native subtree root where possible, else leaf by leaf.
    const native = loadNative();
    while (length - offset >= MERKLE_LEAF_SIZE_BYTES) {
      const available = Math.floor((length - offset) / MERKLE_LEAF_SIZE_BYTES);
      let level = 0;
      // A subtree of 2^(level+1) leaves may start here only if the leaves so
      // far fill whole subtrees of that size (the lower peaks are all empty).
      while (level < MAX_NATIVE_SUBTREE_LEVEL && 2 ** (level + 1) <= available && this.#leafCount % 2 ** (level + 1) === 0) level++;
      if (native !== undefined && level >= MIN_NATIVE_SUBTREE_LEVEL) {
        const bytes = 2 ** level * MERKLE_LEAF_SIZE_BYTES;
        this.#pushNode(Buffer.from(native.merkleRoot(chunk.subarray(offset, offset + bytes))), level);
        this.#leafCount += 2 ** level;
        offset += bytes;
        continue;
      }
      this.#pushLeaf(hashLeaf(chunk.subarray(offset, offset + MERKLE_LEAF_SIZE_BYTES)));
      offset += MERKLE_LEAF_SIZE_BYTES;
    }
    if (offset < length) {
      this.#leaf.set(chunk.subarray(offset), 0);
      this.#leafFill = length - offset;
    }
    return this;
  }

  /** Returns the 32-byte root. The hasher cannot be used afterwards. */
  digest(): Uint8Array {
    assertArgument(!this.#done, "IncrementalMerkleRoot.digest() called twice");
    this.#done = true;
    // The short last leaf is hashed as-is; a 0-byte piece has one empty leaf.
    if (this.#leafFill > 0 || this.#leafCount === 0) {
      this.#pushLeaf(hashLeaf(this.#leaf.subarray(0, this.#leafFill)));
      this.#leafFill = 0;
    }
    let carry: Buffer | undefined;
    for (const peak of this.#peaks) {
      if (peak === undefined) continue; // the carry is promoted through this level
      carry = carry === undefined ? peak : hashNode(peak, carry);
    }
    return new Uint8Array(carry!);
  }

  #pushLeaf(leafHash: Buffer): void {
    this.#leafCount++;
    this.#pushNode(leafHash, 0);
  }

  /** Adds the root of a perfect subtree of 2^level leaves (the leaf count is kept by the caller). */
  #pushNode(subtreeRoot: Buffer, level: number): void {
    let node = subtreeRoot;
    // Binary-counter carry: two equal-height subtrees merge into one.
    for (;;) {
      const left = this.#peaks[level];
      if (left === undefined) {
        this.#peaks[level] = node;
        return;
      }
      this.#peaks[level] = undefined;
      node = hashNode(left, node);
      level++;
    }
  }
}

/** The Merkle root of a whole piece held in memory (same result as the incremental hasher). */
export function pieceMerkleRoot(data: Uint8Array): Uint8Array {
  return new IncrementalMerkleRoot().update(data).digest();
}
