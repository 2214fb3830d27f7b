/**
 * Audit challenges and their answers, computed exactly as Market.sol does, so
 * a farmer's worker knows what it will be asked and builds an answer the
 * contract accepts: challenge = keccak256(abi.encode(seed, dealId, epoch));
 * the deal is challenged when challenge mod 10^6 < p (ppm); sample k asks the
 * piece at index keccak(challenge, k, 0) mod pieceCount (pieces sorted by id)
 * and, in it, the 1 KiB leaf at keccak(challenge, k, 1) mod leafCount.
 * The answer carries leaf BYTES (the contract hashes them) with two proofs:
 * leaf → piece root and deal leaf → deal root (src/crypto/merkle.ts format).
 */
import { AbiCoder, hexlify, keccak256 } from "ethers";
import type { AbortOptions } from "../core/abort.js";
import { throwIfAborted } from "../core/abort.js";
import { assertArgument } from "../core/errors.js";
import { BYTES_PER_TB, SECONDS_PER_MONTH } from "../core/units.js";
import {
  buildMerkleTree,
  type DealPiece,
  dealProof,
  LEAF_SIZE_BYTES,
  leafCount,
  type MerkleTree,
  merkleProof,
  sortDealPieces,
} from "../crypto/merkle.js";

const coder = AbiCoder.defaultAbiCoder();
/** Parts per million: the unit of the challenge probability. */
export const PPM = 1_000_000n;

/** A challenge of one deal in one epoch. */
export interface Challenge {
  dealId: bigint;
  epoch: bigint;
  /** keccak256(abi.encode(seed, dealId, epoch)) as 0x-hex. */
  hash: string;
  /** Whether the deal must answer in this epoch. */
  challenged: boolean;
}

/** The challenge of `dealId` in `epoch` given the epoch's fixed seed. */
export function computeChallenge(
  seed: string,
  dealId: bigint,
  epoch: bigint,
  pieceCount: bigint,
  probabilityPpm: bigint,
  requested = false,
): Challenge {
  const hash = keccak256(coder.encode(["bytes32", "uint256", "uint256"], [seed, dealId, epoch]));
  const challenged = BigInt(seed) !== 0n && pieceCount > 0n && (requested || BigInt(hash) % PPM < probabilityPpm);
  return { dealId, epoch, hash, challenged };
}

/** Index (in the id-sorted piece list) of the piece sample `k` asks for. */
export function samplePieceIndex(challengeHash: string, k: number, pieceCount: number): number {
  assertArgument(pieceCount > 0, "a challenge needs at least one piece");
  return Number(BigInt(keccak256(coder.encode(["bytes32", "uint256", "uint256"], [challengeHash, k, 0]))) % BigInt(pieceCount));
}

/** Index of the leaf sample `k` asks for, in a piece with `leaves` leaves. */
export function sampleLeafIndex(challengeHash: string, k: number, leaves: number): number {
  assertArgument(leaves > 0, "a piece has at least one leaf");
  return Number(BigInt(keccak256(coder.encode(["bytes32", "uint256", "uint256"], [challengeHash, k, 1]))) % BigInt(leaves));
}

/** One sample of an answer, shaped like Market.Sample. */
export interface AnswerSample {
  pieceId: string;
  pieceRoot: string;
  pieceSize: bigint;
  dealProof: string[];
  leaf: string;
  leafProof: string[];
}

/** Where a farmer gets a leaf and its proof (from stored data or a cached tree). */
export interface LeafSource {
  /** The bytes of leaf `leafIndex` of `piece` and its proof to the piece root. */
  leafWithProof(piece: DealPiece, leafIndex: number, options?: AbortOptions): Promise<{ leaf: Uint8Array; proof: Uint8Array[] }>;
}

/** A {@link LeafSource} over whole piece contents held in memory (tests, small pieces). */
export function leafSourceFromData(getData: (pieceId: Uint8Array) => Uint8Array | undefined): LeafSource {
  const trees = new Map<string, { data: Uint8Array; tree: MerkleTree }>();
  return {
    async leafWithProof(piece, leafIndex) {
      const key = hexlify(piece.pieceId);
      let entry = trees.get(key);
      if (entry === undefined) {
        const data = getData(piece.pieceId);
        assertArgument(data !== undefined, `piece ${key} is not held here`);
        entry = { data, tree: buildMerkleTree(data) };
        trees.set(key, entry);
      }
      const start = leafIndex * LEAF_SIZE_BYTES;
      const leaf = entry.data.subarray(start, Math.min(entry.data.byteLength, start + LEAF_SIZE_BYTES));
      return { leaf, proof: merkleProof(entry.tree, leafIndex) };
    },
  };
}

/**
 * Builds the answer to `challenge` for a deal holding `pieces` (any order; they
 * are sorted by id as in the deal tree), asking `samples` leaves.
 */
export async function buildChallengeAnswer(
  challenge: Pick<Challenge, "hash">,
  pieces: readonly DealPiece[],
  samples: number,
  source: LeafSource,
  options: AbortOptions = {},
): Promise<AnswerSample[]> {
  const sorted = sortDealPieces(pieces);
  const out: AnswerSample[] = [];
  for (let k = 0; k < samples; k++) {
    throwIfAborted(options.signal);
    const pieceIndex = samplePieceIndex(challenge.hash, k, sorted.length);
    const piece = sorted[pieceIndex]!;
    const leafIndex = sampleLeafIndex(challenge.hash, k, leafCount(piece.size));
    const { leaf, proof } = await source.leafWithProof(piece, leafIndex, options);
    out.push({
      pieceId: hexlify(piece.pieceId),
      pieceRoot: hexlify(piece.pieceRoot),
      pieceSize: BigInt(piece.size),
      dealProof: dealProof(sorted, pieceIndex).map((h) => hexlify(h)),
      leaf: hexlify(leaf),
      leafProof: proof.map((h) => hexlify(h)),
    });
  }
  return out;
}

/** Token units for `byteSeconds` at `pricePerTBMonth` — the contract's cost function, rounded down. */
export function storageCost(pricePerTBMonth: bigint, byteSeconds: bigint): bigint {
  return (pricePerTBMonth * byteSeconds) / (BYTES_PER_TB * SECONDS_PER_MONTH);
}

/**
 * The message a farmer's libp2p (Ed25519) key signs to bind itself to the
 * farmer's wallet; renters verify that signature off-chain (docs/contracts.md).
 */
export function peerBindingMessage(chainId: bigint | number, registryAddress: string, wallet: string): Uint8Array {
  const text = `dstor/v1/peer-binding\nchain:${BigInt(chainId)}\nregistry:${registryAddress.toLowerCase()}\nwallet:${wallet.toLowerCase()}`;
  return new TextEncoder().encode(text);
}
