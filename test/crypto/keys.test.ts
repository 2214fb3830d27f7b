import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { hkdf as nobleHkdf } from "@noble/hashes/hkdf.js";
import { sha256 as nobleSha256 } from "@noble/hashes/sha2.js";
import { Mnemonic } from "ethers";
import { isDstorError } from "../../src/core/errors.js";
import { HKDF_SALT, hkdfLabel, hkdfSha256, labelField } from "../../src/crypto/hkdf.js";
import {
  deriveKeys,
  deriveSeedKey,
  deriveSegmentKey,
  deriveWallet,
  generateFileId,
  generateFileKey,
  generateMnemonic,
  generateSegmentSalt,
  KEY_LABELS,
  mnemonicToSeed,
  parseMnemonic,
  segmentId,
} from "../../src/crypto/keys.js";
import { type DstorVectors, hex, loadVectors, toHexString } from "./helpers.js";

const V = loadVectors<DstorVectors>("dstor-crypto.json");

interface Bip39File {
  passphrase: string;
  vectors: { entropy: string; mnemonic: string; seed: string }[];
}
interface HkdfFile {
  cases: { case: number; ikm: string; salt: string; info: string; length: number; okm: string }[];
}

function assertCode(fn: () => unknown, code: string, messagePart?: RegExp): void {
  assert.throws(fn, (error: unknown) => {
    assert.ok(isDstorError(error), `expected a DstorError, got ${String(error)}`);
    assert.equal(error.code, code);
    if (messagePart !== undefined) assert.match(error.message, messagePart);
    return true;
  });
}

describe("BIP-39 (TREZOR reference vectors)", () => {
  const file = loadVectors<Bip39File>("bip39-trezor.json");
  it("has several 24-word vectors", () => {
    assert.ok(file.vectors.filter((v) => v.mnemonic.split(" ").length === 24).length >= 6);
  });
  for (const v of file.vectors) {
    it(`${v.mnemonic.split(" ").slice(0, 3).join(" ")}… (${v.mnemonic.split(" ").length} words)`, () => {
      assert.equal(Mnemonic.entropyToPhrase(hex(v.entropy)), v.mnemonic);
      const words = v.mnemonic.split(" ").length;
      assert.equal(toHexString(mnemonicToSeed(v.mnemonic, file.passphrase, words === 24 ? 24 : null)), v.seed);
    });
  }
});

describe("HKDF-SHA256 (RFC 5869 test cases 1-3)", () => {
  const file = loadVectors<HkdfFile>("rfc5869-hkdf-sha256.json");
  for (const c of file.cases) {
    it(`case ${c.case}: node:crypto and @noble/hashes`, () => {
      assert.equal(toHexString(hkdfSha256(hex(c.ikm), hex(c.salt), hex(c.info), c.length)), c.okm);
      assert.equal(toHexString(nobleHkdf(nobleSha256, hex(c.ikm), hex(c.salt), hex(c.info), c.length)), c.okm);
    });
  }
  it("labelField is the ASCII label zero-padded to 32 bytes", () => {
    const field = labelField("piece-id");
    assert.equal(field.length, 32);
    assert.equal(Buffer.from(field.subarray(0, 8)).toString("ascii"), "piece-id");
    assert.ok(field.subarray(8).every((b) => b === 0));
    assert.throws(() => labelField(""));
    assert.throws(() => labelField("x".repeat(33)));
    assert.throws(() => labelField("no spaces"));
  });
  it("hkdfLabel equals a plain HKDF with salt dstor/v1 and the fixed-width info", () => {
    const ikm = hex("11".repeat(32));
    const info = new Uint8Array([...labelField("segment"), 1, 2, 3]);
    assert.deepEqual(hkdfLabel(ikm, "segment", new Uint8Array([1, 2, 3])), nobleHkdf(nobleSha256, ikm, HKDF_SALT, info, 32));
  });
});

describe("keys from the phrase (dstor vectors)", () => {
  it("derives every key, the seed and the wallet address", () => {
    const keys = deriveKeys(V.phrase);
    assert.equal(keys.phrase, V.phrase);
    assert.equal(toHexString(mnemonicToSeed(V.phrase)), V.seed);
    assert.equal(toHexString(keys.contentRootKey), V.keys.contentRootKey);
    assert.equal(toHexString(keys.metadataKey), V.keys.metadataKey);
    assert.equal(toHexString(keys.pieceIdKey), V.keys.pieceIdKey);
    assert.equal(toHexString(keys.libp2pIdentitySeed), V.keys.libp2pIdentitySeed);
    assert.equal(keys.wallet.address, V.walletAddress);
    assert.equal(keys.wallet.path, V.walletPath);
    assert.equal(deriveWallet(V.phrase).address, V.walletAddress);
  });
  it("deriveSeedKey matches deriveKeys for every label", () => {
    const seed = mnemonicToSeed(V.phrase);
    const keys = deriveKeys(V.phrase);
    assert.deepEqual(deriveSeedKey(seed, KEY_LABELS.metadata), keys.metadataKey);
    assert.deepEqual(deriveSeedKey(seed, KEY_LABELS.libp2pIdentity), keys.libp2pIdentitySeed);
  });
  it("tolerates extra whitespace and capitals", () => {
    const messy = `  ${V.phrase.toUpperCase().split(" ").join("   \n")}  `;
    assert.equal(toHexString(deriveKeys(messy).metadataKey), V.keys.metadataKey);
  });
  it("segment id and segment key", () => {
    const s = V.segment;
    const id = segmentId(hex(s.fileId), s.segmentIndex);
    assert.equal(toHexString(id), s.segmentId);
    assert.equal(toHexString(segmentId(hex(s.fileId), BigInt(s.segmentIndex))), s.segmentId);
    assert.equal(toHexString(deriveSegmentKey(hex(s.fileKey), s.segmentIndex, hex(s.salt))), s.segmentKey);
  });
  it("segment keys differ by index and by salt", () => {
    const fileKey = generateFileKey();
    const salt = generateSegmentSalt();
    const a = deriveSegmentKey(fileKey, 0, salt);
    assert.notDeepEqual(a, deriveSegmentKey(fileKey, 1, salt));
    assert.notDeepEqual(a, deriveSegmentKey(fileKey, 0, generateSegmentSalt()));
  });
  it("validates sizes of file keys, ids and salts", () => {
    assertCode(() => segmentId(new Uint8Array(15), 0), "INVALID_ARGUMENT");
    assertCode(() => segmentId(new Uint8Array(16), -1), "INVALID_ARGUMENT");
    assertCode(() => deriveSegmentKey(new Uint8Array(31), 0, new Uint8Array(16)), "INVALID_ARGUMENT");
    assertCode(() => deriveSegmentKey(new Uint8Array(32), 0, new Uint8Array(15)), "INVALID_ARGUMENT");
  });
  it("generators give the right sizes and fresh values", () => {
    assert.equal(generateFileKey().length, 32);
    assert.equal(generateFileId().length, 16);
    assert.equal(generateSegmentSalt().length, 16);
    assert.notDeepEqual(generateFileKey(), generateFileKey());
  });
});

describe("phrase generation and validation", () => {
  it("generates valid, distinct 24-word phrases", () => {
    const a = generateMnemonic();
    const b = generateMnemonic();
    assert.equal(a.split(" ").length, 24);
    assert.notEqual(a, b);
    assert.equal(parseMnemonic(a).phrase, a);
    assert.equal(Mnemonic.phraseToEntropy(a).length, 2 + 64);
  });
  it("rejects a wrong word count", () => {
    assertCode(() => deriveKeys("abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about"), "INVALID_MNEMONIC", /12 words but must have 24/);
    assertCode(() => deriveKeys(""), "INVALID_MNEMONIC", /0 words/);
  });
  it("names an unknown word and its position, with a suggestion", () => {
    const words = V.phrase.split(" ");
    words[4] = "wavy";
    assertCode(() => deriveKeys(words.join(" ")), "INVALID_MNEMONIC", /word 5 .*"wavy".*did you mean "wave"/);
    words[4] = "qqqq";
    assertCode(() => deriveKeys(words.join(" ")), "INVALID_MNEMONIC", /word 5 .*check its spelling/);
  });
  it("rejects a bad checksum (swapped words)", () => {
    const words = V.phrase.split(" ");
    [words[0], words[1]] = [words[1]!, words[0]!];
    assertCode(() => deriveKeys(words.join(" ")), "INVALID_MNEMONIC", /checksum/);
  });
  it("rejects non-text input", () => {
    assertCode(() => deriveKeys(42 as unknown as string), "INVALID_MNEMONIC");
  });
});
