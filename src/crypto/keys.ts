/**
 * Keys, from the one thing a user keeps: a 24-word BIP-39 phrase.
 *
 * phrase ─► BIP-39 seed (64 bytes, empty passphrase)
 *        ├─► wallet  m/44'/60'/0'/0/0 (ethers HD)
 *        └─► HKDF-SHA256(seed, "dstor/v1", label32) for each of
 *            content-root, metadata, piece-id, libp2p-identity
 *
 * Per file: a random 32-byte file key and a random 16-byte file id. Per write
 * of a segment: a fresh random 16-byte salt, and the segment key
 * HKDF(fileKey, "dstor/v1", label32("segment") ‖ index u64be ‖ salt). There is
 * deliberately no counter anywhere: a counter can be rolled back by a crash, a
 * stale snapshot or a second device, and a rolled-back counter reuses a
 * key/nonce pair. 128 random bits per write make reuse negligible instead.
 */
import { randomBytes } from "node:crypto";
import { HDNodeWallet, LangEn, Mnemonic } from "ethers";
import { DstorError } from "../core/errors.js";
import { assertBytes, toUint64, uint64be } from "./bytes.js";
import { hkdfLabel } from "./hkdf.js";

/** Words in a dstor phrase (256 bits of entropy + 8 checksum bits). */
export const MNEMONIC_WORD_COUNT = 24;
/** Entropy behind a dstor phrase. */
export const MNEMONIC_ENTROPY_BYTES = 32;
/** The wallet's HD derivation path (first Ethereum account). */
export const WALLET_PATH = "m/44'/60'/0'/0/0";
/** Bytes of a file key. */
export const FILE_KEY_BYTES = 32;
/** Bytes of a file id. */
export const FILE_ID_BYTES = 16;
/** Bytes of the per-write segment salt. */
export const SEGMENT_SALT_BYTES = 16;
/** Bytes of a segment id: file id ‖ segment index (u64be). */
export const SEGMENT_ID_BYTES = FILE_ID_BYTES + 8;
/** Bytes of every key derived by HKDF. */
export const KEY_BYTES = 32;

/** The HKDF labels of the keys derived from the phrase's seed. */
export const KEY_LABELS = {
  contentRoot: "content-root",
  metadata: "metadata",
  pieceId: "piece-id",
  libp2pIdentity: "libp2p-identity",
} as const;

/** The HKDF label of segment keys. */
export const SEGMENT_KEY_LABEL = "segment";

/** Everything the phrase yields. Holds secrets: never log it. */
export interface DstorKeys {
  /** The normalized phrase (single spaces, lowercase). */
  readonly phrase: string;
  /** The wallet at {@link WALLET_PATH}; pays (renter) or is paid (farmer). */
  readonly wallet: HDNodeWallet;
  /** Root of the content tree (encrypts the metadata pointer's content root). */
  readonly contentRootKey: Uint8Array;
  /** Encrypts metadata snapshots. */
  readonly metadataKey: Uint8Array;
  /** Derives piece ids; see piece-id.ts. */
  readonly pieceIdKey: Uint8Array;
  /** Ed25519 private-key seed of the libp2p identity (stable PeerId). */
  readonly libp2pIdentitySeed: Uint8Array;
}

/** A new random 24-word phrase (32 bytes of entropy from node:crypto). */
export function generateMnemonic(): string {
  return Mnemonic.fromEntropy(randomBytes(MNEMONIC_ENTROPY_BYTES)).phrase;
}

/**
 * Validates a phrase and returns it as an ethers `Mnemonic`. Tolerates extra
 * whitespace and capital letters; rejects anything else with
 * `INVALID_MNEMONIC` and a message that names the problem (word count, the
 * first unknown word and its position, or a failed checksum).
 *
 * @param wordCount - the required number of words; `null` accepts any
 *   BIP-39 length (12, 15, 18, 21, 24) — used only by the standard vectors.
 */
export function parseMnemonic(phrase: string, wordCount: number | null = MNEMONIC_WORD_COUNT): Mnemonic {
  if (typeof phrase !== "string") throw new DstorError("INVALID_MNEMONIC", "the recovery phrase must be text");
  const words = phrase.normalize("NFKD").trim().toLowerCase().split(/\s+/).filter((w) => w.length > 0);
  const allowed = wordCount === null ? [12, 15, 18, 21, 24] : [wordCount];
  if (!allowed.includes(words.length)) {
    throw new DstorError(
      "INVALID_MNEMONIC",
      `the recovery phrase has ${words.length} words but must have ${allowed.join(", ")}; check that you copied all of it`,
      { details: { wordCount: words.length } },
    );
  }
  const wordlist = LangEn.wordlist();
  for (let i = 0; i < words.length; i++) {
    if (wordlist.getWordIndex(words[i]!) < 0) {
      const near = suggestWords(words[i]!);
      throw new DstorError(
        "INVALID_MNEMONIC",
        `word ${i + 1} of the recovery phrase ("${words[i]}") is not in the BIP-39 English word list` +
          (near.length > 0 ? `; did you mean ${near.map((w) => `"${w}"`).join(" or ")}?` : "; check its spelling"),
        { details: { position: i + 1 } },
      );
    }
  }
  const normalized = words.join(" ");
  if (!Mnemonic.isValidMnemonic(normalized)) {
    throw new DstorError(
      "INVALID_MNEMONIC",
      "every word of the recovery phrase is valid but its checksum does not match: a word is wrong or two words are swapped; compare it with your written copy",
    );
  }
  return Mnemonic.fromPhrase(normalized);
}

/**
 * Up to three BIP-39 words sharing the first four letters with `word` (BIP-39
 * words are unique in their first four), else the first three: enough to
 * catch the usual typo in the ending.
 */
function suggestWords(word: string): string[] {
  const wordlist = LangEn.wordlist();
  for (const length of [4, 3]) {
    if (word.length < length) continue;
    const prefix = word.slice(0, length);
    const out: string[] = [];
    for (let i = 0; i < 2048 && out.length < 3; i++) {
      const w = wordlist.getWord(i);
      if (w.startsWith(prefix)) out.push(w);
    }
    if (out.length > 0) return out;
  }
  return [];
}

/**
 * The BIP-39 seed (64 bytes) of a phrase; `passphrase` is empty in dstor.
 * `wordCount` as in {@link parseMnemonic}.
 */
export function mnemonicToSeed(phrase: string, passphrase = "", wordCount: number | null = MNEMONIC_WORD_COUNT): Uint8Array {
  const m = parseMnemonic(phrase, wordCount);
  const withPass = passphrase === "" ? m : Mnemonic.fromPhrase(m.phrase, passphrase);
  return Buffer.from(withPass.computeSeed().slice(2), "hex");
}

/** Derives one 32-byte key: HKDF-SHA256(seed, "dstor/v1", label32(label)). */
export function deriveSeedKey(seed: Uint8Array, label: string): Uint8Array {
  assertBytes(seed, 64, "BIP-39 seed");
  return hkdfLabel(seed, label);
}

/** The wallet of a phrase at {@link WALLET_PATH}. */
export function deriveWallet(phrase: string): HDNodeWallet {
  return HDNodeWallet.fromMnemonic(parseMnemonic(phrase), WALLET_PATH);
}

/** Validates `phrase` and derives every key dstor needs from it. */
export function deriveKeys(phrase: string): DstorKeys {
  const mnemonic = parseMnemonic(phrase);
  const seed = Buffer.from(mnemonic.computeSeed().slice(2), "hex");
  return {
    phrase: mnemonic.phrase,
    wallet: HDNodeWallet.fromMnemonic(mnemonic, WALLET_PATH),
    contentRootKey: deriveSeedKey(seed, KEY_LABELS.contentRoot),
    metadataKey: deriveSeedKey(seed, KEY_LABELS.metadata),
    pieceIdKey: deriveSeedKey(seed, KEY_LABELS.pieceId),
    libp2pIdentitySeed: deriveSeedKey(seed, KEY_LABELS.libp2pIdentity),
  };
}

/** A new random 32-byte file key. */
export function generateFileKey(): Uint8Array {
  return new Uint8Array(randomBytes(FILE_KEY_BYTES));
}

/** A new random 16-byte file id. */
export function generateFileId(): Uint8Array {
  return new Uint8Array(randomBytes(FILE_ID_BYTES));
}

/** A new random 16-byte salt; call once for every write of a segment. */
export function generateSegmentSalt(): Uint8Array {
  return new Uint8Array(randomBytes(SEGMENT_SALT_BYTES));
}

/** The 24-byte segment id: fileId (16) ‖ segmentIndex (u64be). */
export function segmentId(fileId: Uint8Array, segmentIndex: number | bigint): Uint8Array {
  assertBytes(fileId, FILE_ID_BYTES, "file id");
  const out = new Uint8Array(SEGMENT_ID_BYTES);
  out.set(fileId, 0);
  out.set(uint64be(toUint64(segmentIndex, "segment index")), FILE_ID_BYTES);
  return out;
}

/**
 * The key of one write of one segment: HKDF-SHA256(fileKey, "dstor/v1",
 * label32("segment") ‖ segmentIndex u64be ‖ salt (16)).
 */
export function deriveSegmentKey(fileKey: Uint8Array, segmentIndex: number | bigint, salt: Uint8Array): Uint8Array {
  assertBytes(fileKey, FILE_KEY_BYTES, "file key");
  assertBytes(salt, SEGMENT_SALT_BYTES, "segment salt");
  return hkdfLabel(fileKey, SEGMENT_KEY_LABEL, uint64be(toUint64(segmentIndex, "segment index")), salt);
}
