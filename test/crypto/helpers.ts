/** Shared helpers for the crypto tests: vector loading and hex. */
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/** Repository root, found from dist/test/crypto or test/crypto. */
function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    try {
      readFileSync(join(dir, "test", "vectors", "dstor-crypto.json"));
      return dir;
    } catch {
      dir = dirname(dir);
    }
  }
  throw new Error("cannot find test/vectors from the test file");
}

/** Reads and parses test/vectors/<name>. */
export function loadVectors<T>(name: string): T {
  return JSON.parse(readFileSync(join(repoRoot(), "test", "vectors", name), "utf8")) as T;
}

/** Hex → bytes. */
export function hex(text: string): Uint8Array {
  return new Uint8Array(Buffer.from(text, "hex"));
}

/** Bytes → lowercase hex. */
export function toHexString(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("hex");
}

/** The fixed Merkle test pattern: byte i = i mod 251. */
export function pattern(size: number): Uint8Array {
  const out = new Uint8Array(size);
  for (let i = 0; i < size; i++) out[i] = i % 251;
  return out;
}

/** Shape of test/vectors/dstor-crypto.json. */
export interface DstorVectors {
  phrase: string;
  seed: string;
  walletPath: string;
  walletAddress: string;
  keys: { contentRootKey: string; metadataKey: string; pieceIdKey: string; libp2pIdentitySeed: string };
  segment: { fileKey: string; fileId: string; segmentIndex: number; salt: string; segmentId: string; segmentKey: string };
  pieceId: { pieceIdKey: string; segmentId: string; salt: string; pieceNumber: number; pieceId: string };
  aead: {
    key: string;
    segmentId: string;
    short: { plaintextAscii: string; sealed: string };
    empty: { sealed: string };
    twoBlocks: { plaintextLength: number; sealedLength: number; sealedSha256: string; block1Sealed: string };
  };
  merkle: {
    roots: Record<string, string>;
    proof: { size: number; leafCount: number; index: number; proof: string[] };
    multiproof: { size: number; leafCount: number; startLeaf: number; endLeaf: number; proof: string[] };
  };
  deal: {
    pieces: { pieceId: string; pieceRoot: string; size: number }[];
    sortedPieceIds: string[];
    leafHashes: string[];
    root: string;
    proofIndex: number;
    proof: string[];
    emptyRoot: string;
  };
}
