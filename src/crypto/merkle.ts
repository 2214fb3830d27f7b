/**
 * SHA-256 Merkle trees over 1 KiB leaves: each piece's integrity hash, what
 * ranged gets are verified against and what audits prove on chain. The exact
 * format (docs/formats.md, "Merkle trees") is shared with the Solidity
 * verifier, so it is deliberately simple:
 *
 * - leaf i = bytes [1024·i, min(s, 1024·(i+1))) of a piece of s bytes; the
 *   last leaf may be short and is hashed as-is; a 0-byte piece has one empty
 *   leaf. leafCount = max(1, ceil(s / 1024)).
 * - leafHash = SHA-256(0x00 ‖ leaf); node = SHA-256(0x01 ‖ left ‖ right). The
 *   distinct prefixes stop a node being passed off as a leaf (second
 *   preimage), and the deal tree's 0x02 leaves cannot pose as either.
 * - A level with an odd count PROMOTES its last node unchanged. Unlike
 *   Bitcoin-style duplication this gives no two trees the same root for
 *   different leaf counts when the count is also committed, and proof lengths
 *   are a pure function of (index, leafCount), so a verifier checks them exactly.
 *
 * Multiproofs cover a leaf-aligned range [start, end): at every level, walking
 * bottom-up, the proof holds the hash left of the known run (if the run starts
 * at an odd index) and then the hash right of it (if the run ends at an even
 * index that has a right neighbour) — nothing else. A single-leaf proof is
 * the multiproof of a one-leaf range.
 *
 * Leaf hashing uses the native addon (SHA-NI) when present, else node:crypto;
 * both give identical bytes (tests).
 */
import { createHash, hash as oneShotHash } from "node:crypto";
import { assertArgument } from "../core/errors.js";
import { loadNative, type NativeBindings } from "../core/native.js";
import { toUint64 } from "./bytes.js";

/** Bytes per Merkle leaf. */
export const LEAF_SIZE_BYTES = 1024;
/** Bytes of every hash in a tree. */
export const HASH_BYTES = 32;
/** Domain prefix of a leaf hash. */
export const LEAF_PREFIX = 0x00;
/** Domain prefix of an internal node hash. */
export const NODE_PREFIX = 0x01;
/** Domain prefix of a deal-tree leaf hash. */
export const DEAL_LEAF_PREFIX = 0x02;

/** Chooses the hashing backend; tests use `native: false` to compare both. */
export interface MerkleOptions {
  /** Use the native addon when it is available (default true). */
  native?: boolean;
}

/** A whole tree, every level kept, for farmers that answer proofs. */
export interface MerkleTree {
  /** Bytes in the piece; -1 for a tree built from leaf hashes (deal trees). */
  readonly size: number;
  /** Leaves in the tree (≥ 1). */
  readonly leafCount: number;
  /** levels[0] = leaf hashes, … levels[last] = the root; each level is count·32 bytes. */
  readonly levels: readonly Uint8Array[];
  /** The root (32 bytes). */
  readonly root: Uint8Array;
}

// loadNative() caches the addon itself and re-reads DSTOR_NO_NATIVE on every
// call, so it is asked each time rather than remembered here.
function native(options: MerkleOptions | undefined): NativeBindings | undefined {
  return options?.native === false ? undefined : loadNative();
}

/** Leaves of a piece of `size` bytes: max(1, ceil(size / 1024)). */
export function leafCount(size: number | bigint): number {
  const s = Number(toUint64(size, "piece size"));
  assertArgument(Number.isSafeInteger(s), "piece size is too large");
  return Math.max(1, Math.ceil(s / LEAF_SIZE_BYTES));
}

const LEAF_PREFIX_BYTES = new Uint8Array([LEAF_PREFIX]);

/** SHA-256(0x00 ‖ leafBytes). */
export function hashLeaf(leafBytes: Uint8Array): Uint8Array {
  return new Uint8Array(createHash("sha256").update(LEAF_PREFIX_BYTES).update(leafBytes).digest());
}

/** SHA-256(0x01 ‖ left ‖ right). */
export function hashNode(left: Uint8Array, right: Uint8Array): Uint8Array {
  const buf = new Uint8Array(1 + 2 * HASH_BYTES);
  buf[0] = NODE_PREFIX;
  buf.set(left, 1);
  buf.set(right, 1 + HASH_BYTES);
  return new Uint8Array(oneShotHash("sha256", buf, "buffer"));
}

/** Leaf hashes of `data`, concatenated (leafCount·32 bytes). */
function leafHashes(data: Uint8Array, options?: MerkleOptions): Uint8Array {
  const count = leafCount(data.byteLength);
  const out = new Uint8Array(count * HASH_BYTES);
  const addon = native(options);
  if (addon !== undefined) {
    addon.merkleLeafHashes(data, out);
    return out;
  }
  for (let i = 0; i < count; i++) {
    const leaf = data.subarray(i * LEAF_SIZE_BYTES, (i + 1) * LEAF_SIZE_BYTES);
    out.set(createHash("sha256").update(LEAF_PREFIX_BYTES).update(leaf).digest(), i * HASH_BYTES);
  }
  return out;
}

/** The next level up: pairs hashed, an odd last node promoted unchanged. */
function nextLevel(level: Uint8Array, addon: NativeBindings | undefined): Uint8Array {
  const count = level.byteLength / HASH_BYTES;
  const nextCount = Math.ceil(count / 2);
  const out = new Uint8Array(nextCount * HASH_BYTES);
  const buf = new Uint8Array(1 + 2 * HASH_BYTES);
  buf[0] = NODE_PREFIX;
  for (let j = 0; j < nextCount; j++) {
    if (2 * j + 1 < count) {
      buf.set(level.subarray(2 * j * HASH_BYTES, (2 * j + 2) * HASH_BYTES), 1);
      out.set(addon !== undefined ? addon.sha256(buf) : oneShotHash("sha256", buf, "buffer"), j * HASH_BYTES);
    } else {
      out.set(level.subarray(2 * j * HASH_BYTES, (2 * j + 1) * HASH_BYTES), j * HASH_BYTES);
    }
  }
  return out;
}

function levelsFromLeafHashes(leaves: Uint8Array, addon: NativeBindings | undefined): Uint8Array[] {
  const levels = [leaves];
  while (levels[levels.length - 1]!.byteLength > HASH_BYTES) levels.push(nextLevel(levels[levels.length - 1]!, addon));
  return levels;
}

/** The Merkle root of a piece (its integrity hash). */
export function merkleRoot(data: Uint8Array, options?: MerkleOptions): Uint8Array {
  assertArgument(data instanceof Uint8Array, "piece data must be a Uint8Array");
  const addon = native(options);
  if (addon !== undefined) return new Uint8Array(addon.merkleRoot(data));
  const levels = levelsFromLeafHashes(leafHashes(data, options), undefined);
  return levels[levels.length - 1]!;
}

/**
 * {@link merkleRoot} off the event loop: with the native addon the hashing
 * runs on libuv's thread pool (leave `data` alone until it settles);
 * without it, it is {@link merkleRoot}.
 */
export async function merkleRootAsync(data: Uint8Array, options?: MerkleOptions): Promise<Uint8Array> {
  assertArgument(data instanceof Uint8Array, "piece data must be a Uint8Array");
  const addon = native(options);
  if (addon === undefined) return merkleRoot(data, options);
  return new Uint8Array(await addon.merkleRootAsync(data));
}

/** Merkle roots of several pieces (one native call when the addon is present). */
export function merkleRoots(pieces: readonly Uint8Array[], options?: MerkleOptions): Uint8Array[] {
  for (const p of pieces) assertArgument(p instanceof Uint8Array, "piece data must be a Uint8Array");
  const addon = native(options);
  if (addon === undefined) return pieces.map((p) => merkleRoot(p, options));
  const out = new Uint8Array(pieces.length * HASH_BYTES);
  addon.merkleRoots(pieces as Uint8Array[], out);
  return pieces.map((_, i) => out.slice(i * HASH_BYTES, (i + 1) * HASH_BYTES));
}

/** Builds the whole tree of a piece, keeping every level. */
export function buildMerkleTree(data: Uint8Array, options?: MerkleOptions): MerkleTree {
  assertArgument(data instanceof Uint8Array, "piece data must be a Uint8Array");
  const levels = levelsFromLeafHashes(leafHashes(data, options), native(options));
  return { size: data.byteLength, leafCount: levels[0]!.byteLength / HASH_BYTES, levels, root: levels[levels.length - 1]! };
}

/** Builds a tree over precomputed leaf hashes (each 32 bytes); used by the deal tree. */
export function buildMerkleTreeFromLeafHashes(leafHashList: readonly Uint8Array[]): MerkleTree {
  assertArgument(leafHashList.length >= 1, "a Merkle tree needs at least one leaf");
  const leaves = new Uint8Array(leafHashList.length * HASH_BYTES);
  leafHashList.forEach((h, i) => {
    assertArgument(h instanceof Uint8Array && h.byteLength === HASH_BYTES, "leaf hashes must be 32 bytes");
    leaves.set(h, i * HASH_BYTES);
  });
  const levels = levelsFromLeafHashes(leaves, undefined);
  return { size: -1, leafCount: leafHashList.length, levels, root: levels[levels.length - 1]! };
}

function nodeAt(level: Uint8Array, index: number): Uint8Array {
  return level.slice(index * HASH_BYTES, (index + 1) * HASH_BYTES);
}

/**
 * The multiproof of leaves [startLeaf, endLeaf): the minimal hashes needed,
 * bottom-up by level; within a level the left neighbour of the known run
 * (when the run starts at an odd index) before the right neighbour (when it
 * ends at an even index that is not the level's promoted last node).
 */
export function merkleMultiproof(tree: MerkleTree, startLeaf: number, endLeaf: number): Uint8Array[] {
  assertArgument(
    Number.isSafeInteger(startLeaf) && Number.isSafeInteger(endLeaf) && startLeaf >= 0 && startLeaf < endLeaf && endLeaf <= tree.leafCount,
    `leaf range [${startLeaf}, ${endLeaf}) is not a non-empty range of a ${tree.leafCount}-leaf tree`,
  );
  const proof: Uint8Array[] = [];
  let lo = startLeaf;
  let hi = endLeaf;
  let n = tree.leafCount;
  for (let depth = 0; n > 1; depth++) {
    const level = tree.levels[depth]!;
    if (lo % 2 === 1) proof.push(nodeAt(level, lo - 1));
    if (hi % 2 === 1 && hi < n) proof.push(nodeAt(level, hi));
    lo = Math.floor(lo / 2);
    hi = Math.ceil(hi / 2);
    n = Math.ceil(n / 2);
  }
  return proof;
}

/** The proof of one leaf: sibling hashes bottom-up, skipping levels where it is promoted. */
export function merkleProof(tree: MerkleTree, index: number): Uint8Array[] {
  return merkleMultiproof(tree, index, index + 1);
}

/** Hashes in the multiproof of [startLeaf, endLeaf) of a `count`-leaf tree. */
export function multiproofLength(count: number, startLeaf: number, endLeaf: number): number {
  let length = 0;
  let lo = startLeaf;
  let hi = endLeaf;
  for (let n = count; n > 1; n = Math.ceil(n / 2)) {
    if (lo % 2 === 1) length++;
    if (hi % 2 === 1 && hi < n) length++;
    lo = Math.floor(lo / 2);
    hi = Math.ceil(hi / 2);
  }
  return length;
}

/** Hashes in the proof of leaf `index` of a `count`-leaf tree. */
export function merkleProofLength(index: number, count: number): number {
  return multiproofLength(count, index, index + 1);
}

/**
 * Folds a run of known hashes [lo, lo + known.length) at level 0 of a
 * `count`-leaf tree up to the root with `proof`; true when every proof hash is
 * used exactly once and the result equals `root`.
 */
function foldToRoot(root: Uint8Array, count: number, lo: number, known: Uint8Array[], proof: readonly Uint8Array[]): boolean {
  let hi = lo + known.length;
  let n = count;
  let p = 0;
  let run = known;
  while (n > 1) {
    if (lo % 2 === 1) {
      const left = proof[p++];
      if (!isHash(left)) return false;
      run = [left, ...run];
      lo -= 1;
    }
    if (hi % 2 === 1 && hi < n) {
      const right = proof[p++];
      if (!isHash(right)) return false;
      run.push(right);
      hi += 1;
    }
    const next: Uint8Array[] = [];
    for (let j = 0; j < run.length; j += 2) next.push(j + 1 < run.length ? hashNode(run[j]!, run[j + 1]!) : run[j]!);
    run = next;
    lo /= 2;
    hi = Math.ceil(hi / 2);
    n = Math.ceil(n / 2);
  }
  return p === proof.length && run.length === 1 && equal32(run[0]!, root);
}

function isHash(value: unknown): value is Uint8Array {
  return value instanceof Uint8Array && value.byteLength === HASH_BYTES;
}

function equal32(a: Uint8Array, b: Uint8Array): boolean {
  if (a.byteLength !== HASH_BYTES || b.byteLength !== HASH_BYTES) return false;
  let diff = 0;
  for (let i = 0; i < HASH_BYTES; i++) diff |= a[i]! ^ b[i]!;
  return diff === 0;
}

function validCount(count: unknown): count is number {
  return typeof count === "number" && Number.isSafeInteger(count) && count >= 1;
}

/**
 * Checks the proof of one leaf. The leaf must have its exact length (1024
 * bytes, or 1..1024 for the last leaf; 0..1024 for a one-leaf tree) and the
 * proof exactly {@link merkleProofLength} hashes. Never throws.
 */
export function verifyMerkleProof(
  root: Uint8Array,
  index: number,
  count: number,
  leafBytes: Uint8Array,
  proof: readonly Uint8Array[],
): boolean {
  if (!validCount(count) || !Number.isSafeInteger(index) || index < 0 || index >= count) return false;
  if (!(leafBytes instanceof Uint8Array) || leafBytes.byteLength > LEAF_SIZE_BYTES) return false;
  return verifyMerkleMultiproof(root, count, index, leafBytes, proof);
}

/**
 * Checks the proof of one leaf given its hash (deal trees, and callers that
 * hashed the leaf themselves). Never throws.
 */
export function verifyMerkleProofForLeafHash(
  root: Uint8Array,
  index: number,
  count: number,
  leafHash: Uint8Array,
  proof: readonly Uint8Array[],
): boolean {
  if (!isHash(root) || !isHash(leafHash) || !Array.isArray(proof)) return false;
  if (!validCount(count) || !Number.isSafeInteger(index) || index < 0 || index >= count) return false;
  return foldToRoot(root, count, index, [leafHash], proof);
}

/**
 * Checks a multiproof for the leaf-aligned range starting at `startLeaf`
 * whose leaf bytes, concatenated, are `rangeBytes`. The range's end follows
 * from the length: every leaf is 1024 bytes except the tree's last, which is
 * 1..1024 bytes (0..1024 in a one-leaf tree); any other length fails, as do
 * missing or extra hashes. Never throws.
 */
export function verifyMerkleMultiproof(
  root: Uint8Array,
  count: number,
  startLeaf: number,
  rangeBytes: Uint8Array,
  proof: readonly Uint8Array[],
): boolean {
  const leaves = multiproofShape(root, count, startLeaf, rangeBytes, proof);
  if (leaves === undefined) return false;
  const nat = loadNative();
  // The whole piece (every download of a full piece): its root, natively, is the proof.
  if (nat !== undefined && startLeaf === 0 && leaves === count) return equal32(nat.merkleRoot(rangeBytes), root);
  return foldRange(nat, root, count, startLeaf, leaves, rangeBytes, proof);
}

/**
 * {@link verifyMerkleMultiproof} with a whole piece hashed off the event
 * loop (on libuv's thread pool, with the native addon; leave `rangeBytes`
 * alone until it settles). Partial ranges are checked as the synchronous one
 * does. Never rejects.
 */
export async function verifyMerkleMultiproofAsync(
  root: Uint8Array,
  count: number,
  startLeaf: number,
  rangeBytes: Uint8Array,
  proof: readonly Uint8Array[],
): Promise<boolean> {
  const leaves = multiproofShape(root, count, startLeaf, rangeBytes, proof);
  if (leaves === undefined) return false;
  const nat = loadNative();
  if (nat !== undefined && startLeaf === 0 && leaves === count) return equal32(new Uint8Array(await nat.merkleRootAsync(rangeBytes)), root);
  return foldRange(nat, root, count, startLeaf, leaves, rangeBytes, proof);
}

/** The number of leaves a multiproof's range covers, or undefined when its arguments cannot verify (see verifyMerkleMultiproof). */
function multiproofShape(root: Uint8Array, count: number, startLeaf: number, rangeBytes: Uint8Array, proof: readonly Uint8Array[]): number | undefined {
  if (!isHash(root) || !(rangeBytes instanceof Uint8Array) || !Array.isArray(proof)) return undefined;
  if (!validCount(count) || !Number.isSafeInteger(startLeaf) || startLeaf < 0 || startLeaf >= count) return undefined;
  const leaves = Math.max(1, Math.ceil(rangeBytes.byteLength / LEAF_SIZE_BYTES));
  const endLeaf = startLeaf + leaves;
  if (endLeaf > count) return undefined;
  if (endLeaf < count && rangeBytes.byteLength !== leaves * LEAF_SIZE_BYTES) return undefined;
  // Only a one-leaf tree (the empty piece) may end in an empty leaf.
  if (endLeaf === count && count > 1 && rangeBytes.byteLength === (leaves - 1) * LEAF_SIZE_BYTES) return undefined;
  if (proof.length !== multiproofLength(count, startLeaf, endLeaf)) return undefined;
  return leaves;
}

/** Hashes the range's leaves and folds them up to the root with the proof. */
function foldRange(
  nat: NativeBindings | undefined,
  root: Uint8Array,
  count: number,
  startLeaf: number,
  leaves: number,
  rangeBytes: Uint8Array,
  proof: readonly Uint8Array[],
): boolean {
  const known: Uint8Array[] = [];
  if (nat !== undefined) {
    const hashes = new Uint8Array(leaves * HASH_BYTES);
    nat.merkleLeafHashes(rangeBytes, hashes);
    for (let i = 0; i < leaves; i++) known.push(hashes.subarray(i * HASH_BYTES, (i + 1) * HASH_BYTES));
  } else {
    for (let i = 0; i < leaves; i++) known.push(hashLeaf(rangeBytes.subarray(i * LEAF_SIZE_BYTES, (i + 1) * LEAF_SIZE_BYTES)));
  }
  return foldToRoot(root, count, startLeaf, known, proof);
}

// ---------------------------------------------------------------------------
// Deal tree

/** One piece as committed in a deal state. */
export interface DealPiece {
  /** The 32-byte piece id. */
  pieceId: Uint8Array;
  /** The piece's Merkle root (32 bytes). */
  pieceRoot: Uint8Array;
  /** The piece's size in bytes (uint64). */
  size: bigint | number;
}

/** SHA-256(0x02 ‖ pieceId (32) ‖ pieceRoot (32) ‖ size (u64be)). */
export function dealLeafHash(pieceId: Uint8Array, pieceRoot: Uint8Array, size: bigint | number): Uint8Array {
  assertArgument(pieceId instanceof Uint8Array && pieceId.byteLength === 32, "piece id must be 32 bytes");
  assertArgument(isHash(pieceRoot), "piece root must be 32 bytes");
  const buf = new Uint8Array(1 + 32 + HASH_BYTES + 8);
  buf[0] = DEAL_LEAF_PREFIX;
  buf.set(pieceId, 1);
  buf.set(pieceRoot, 33);
  new DataView(buf.buffer).setBigUint64(65, toUint64(size, "piece size"), false);
  return new Uint8Array(oneShotHash("sha256", buf, "buffer"));
}

/**
 * The deal's pieces in tree order: by piece id ascending, bytewise. A
 * duplicate piece id is rejected (`INVALID_ARGUMENT`): a deal holds a piece once.
 */
export function sortDealPieces<T extends DealPiece>(pieces: readonly T[]): T[] {
  const sorted = [...pieces].sort((a, b) => Buffer.compare(a.pieceId, b.pieceId));
  for (let i = 1; i < sorted.length; i++) {
    assertArgument(Buffer.compare(sorted[i - 1]!.pieceId, sorted[i]!.pieceId) !== 0, "a deal lists the same piece id twice");
  }
  return sorted;
}

function dealTree(pieces: readonly DealPiece[]): MerkleTree {
  return buildMerkleTreeFromLeafHashes(sortDealPieces(pieces).map((p) => dealLeafHash(p.pieceId, p.pieceRoot, p.size)));
}

/** The deal state root: Merkle root over deal leaves sorted by piece id; 32 zero bytes for no pieces. */
export function dealRoot(pieces: readonly DealPiece[]): Uint8Array {
  if (pieces.length === 0) return new Uint8Array(HASH_BYTES);
  return dealTree(pieces).root;
}

/**
 * The proof for the piece at position `index` of the SORTED order
 * ({@link sortDealPieces}) — the index an audit challenge names. Verify with
 * {@link verifyMerkleProofForLeafHash}(root, index, pieces.length, dealLeafHash(…), proof).
 */
export function dealProof(pieces: readonly DealPiece[], index: number): Uint8Array[] {
  assertArgument(Number.isSafeInteger(index) && index >= 0 && index < pieces.length, `piece index ${index} is not in a ${pieces.length}-piece deal`);
  return merkleProof(dealTree(pieces), index);
}
