/**
 * Metadata snapshots: the whole metadata database as one encrypted blob that
 * is stored in the network like a file, so the phrase alone brings every file
 * back (ARCHITECTURE §5; the format is in docs/formats.md, "Metadata snapshots").
 *
 *   records (key order) ─► NDJSON (header line + one [key, value] per line)
 *                       ─► gzip (level 9)
 *                       ─► AES-256-GCM in 64 KiB blocks (aead.ts), under
 *                          HKDF(metadata key, "snapshot", sequence ‖ salt),
 *                          segment id = salt ‖ sequence: the pointer's
 *                          sequence number is bound into key and associated
 *                          data, so an old snapshot cannot pass as a newer one
 *   blob = "dstorSNP" ‖ version ‖ sequence ‖ salt ‖ sealed
 *
 * The content root written next to it on chain is HMAC-SHA256(content-root
 * key, blob): a reader checks the bytes it fetched against it before anything
 * else, and a chain observer cannot link it to pieces it sees.
 *
 * The *location* on chain is what a reader needs to fetch the blob with
 * nothing else: the stored segments (salts, sizes, piece roots, holders) and
 * the deal each holder serves them under. Piece ids are not in it — they
 * follow from the piece-id key — and the outer file key is derived from the
 * metadata key, so the location holds nothing secret.
 *
 * Everything here is pure and synchronous except {@link exportSnapshot} and
 * {@link importSnapshot}, which read or fill a {@link MetadataDb}.
 */
import { createHmac, randomBytes } from "node:crypto";
import { gunzipSync, gzipSync } from "node:zlib";
import { DstorError } from "../core/errors.js";
import { openSegment, sealSegment } from "../crypto/aead.js";
import { assertBytes, bytesEqual, concatBytes, fromHex, toHex, uint64be } from "../crypto/bytes.js";
import { hkdfLabel } from "../crypto/hkdf.js";
import { FILE_ID_BYTES, FILE_KEY_BYTES, KEY_BYTES, segmentId, SEGMENT_SALT_BYTES } from "../crypto/keys.js";
import { derivePieceId } from "../crypto/piece-id.js";
import type { MetadataDb } from "./db.js";
import type { FileContent, SegmentMeta, StoredFile } from "./types.js";

/** The first bytes of every snapshot blob. */
export const SNAPSHOT_MAGIC = new TextEncoder().encode("dstorSNP");
/** Version byte of the blob layout described in the module note. */
export const SNAPSHOT_VERSION = 1;
/** Bytes before the sealed payload: magic ‖ version ‖ sequence u64be ‖ salt. */
export const SNAPSHOT_HEADER_BYTES = SNAPSHOT_MAGIC.byteLength + 1 + 8 + SEGMENT_SALT_BYTES;
/** HKDF label of the key that seals a snapshot. */
export const SNAPSHOT_KEY_LABEL = "snapshot";
/** HKDF label of the file key the snapshot blob is stored under on farmers. */
export const SNAPSHOT_FILE_KEY_LABEL = "snapshot-file";
/** The `format` field of the plaintext's header line. */
export const SNAPSHOT_FORMAT = "dstor-metadata-snapshot";
/** Version of the location encoding. */
export const SNAPSHOT_LOCATION_VERSION = 1;

/** The first line of a snapshot's plaintext. */
interface SnapshotHeader {
  format: typeof SNAPSHOT_FORMAT;
  v: number;
  sequence: number;
  entries: number;
}

function checkSequence(sequence: number): void {
  if (!Number.isSafeInteger(sequence) || sequence < 1) throw new DstorError("INVALID_ARGUMENT", `a snapshot sequence number must be a positive integer, got ${sequence}`);
}

/**
 * The deterministic plaintext of a snapshot: a header line, then one
 * `[key, value]` JSON line per record in the order given (key order when it
 * comes from {@link MetadataDb.entries}).
 */
export function encodeSnapshotPlaintext(entries: ReadonlyArray<readonly [string, unknown]>, sequence: number): Uint8Array {
  checkSequence(sequence);
  const header: SnapshotHeader = { format: SNAPSHOT_FORMAT, v: SNAPSHOT_VERSION, sequence, entries: entries.length };
  const lines = [JSON.stringify(header)];
  for (const [key, value] of entries) lines.push(JSON.stringify([key, value]));
  return new Uint8Array(gzipSync(`${lines.join("\n")}\n`, { level: 9 }));
}

/** Parses what {@link encodeSnapshotPlaintext} made; `STORE_CORRUPT` on anything else. */
export function decodeSnapshotPlaintext(compressed: Uint8Array): { sequence: number; entries: Array<[string, unknown]> } {
  let text: string;
  try {
    text = gunzipSync(compressed).toString("utf8");
  } catch (cause) {
    throw new DstorError("STORE_CORRUPT", "the metadata snapshot does not decompress", { cause });
  }
  const lines = text.split("\n");
  if (lines.at(-1) === "") lines.pop();
  const corrupt = (why: string): DstorError => new DstorError("STORE_CORRUPT", `the metadata snapshot is malformed: ${why}`);
  let header: SnapshotHeader;
  try {
    header = JSON.parse(lines[0] ?? "") as SnapshotHeader;
  } catch {
    throw corrupt("no header line");
  }
  if (header.format !== SNAPSHOT_FORMAT) throw corrupt("wrong format name");
  if (header.v !== SNAPSHOT_VERSION) throw new DstorError("UNSUPPORTED_VERSION", `metadata snapshot version ${header.v} is not supported by this dstor (${SNAPSHOT_VERSION}); upgrade dstor`);
  if (lines.length - 1 !== header.entries) throw corrupt(`header says ${header.entries} records, found ${lines.length - 1}`);
  const entries: Array<[string, unknown]> = [];
  let previous = "";
  for (let i = 1; i < lines.length; i++) {
    let entry: unknown;
    try {
      entry = JSON.parse(lines[i]!);
    } catch {
      throw corrupt(`line ${i + 1} is not JSON`);
    }
    if (!Array.isArray(entry) || entry.length !== 2 || typeof entry[0] !== "string") throw corrupt(`line ${i + 1} is not a [key, value] pair`);
    if (i > 1 && entry[0] <= previous) throw corrupt(`line ${i + 1}: keys out of order`);
    previous = entry[0];
    entries.push([entry[0], entry[1]]);
  }
  return { sequence: header.sequence, entries };
}

/** The key that seals snapshot `sequence`: HKDF(metadataKey, "dstor/v1", label32("snapshot") ‖ sequence u64be ‖ salt). */
export function snapshotKey(metadataKey: Uint8Array, sequence: number, salt: Uint8Array): Uint8Array {
  assertBytes(metadataKey, KEY_BYTES, "metadata key");
  assertBytes(salt, SEGMENT_SALT_BYTES, "snapshot salt");
  return hkdfLabel(metadataKey, SNAPSHOT_KEY_LABEL, uint64be(sequence), salt);
}

/**
 * Seals a snapshot's plaintext as pointer sequence `sequence`. `salt` is
 * fresh random bytes unless given (tests and vectors).
 */
export function sealSnapshot(metadataKey: Uint8Array, sequence: number, plaintext: Uint8Array, salt: Uint8Array = new Uint8Array(randomBytes(SEGMENT_SALT_BYTES))): Uint8Array {
  checkSequence(sequence);
  const sealed = sealSegment(snapshotKey(metadataKey, sequence, salt), segmentId(salt, sequence), plaintext);
  return concatBytes(SNAPSHOT_MAGIC, Uint8Array.of(SNAPSHOT_VERSION), uint64be(sequence), salt, sealed);
}

/** The sequence number a blob's header claims (not yet authenticated). */
export function snapshotSequence(blob: Uint8Array): number {
  if (blob.byteLength < SNAPSHOT_HEADER_BYTES || !bytesEqual(blob.subarray(0, SNAPSHOT_MAGIC.byteLength), SNAPSHOT_MAGIC)) {
    throw new DstorError("STORE_CORRUPT", "this is not a dstor metadata snapshot (bad magic)");
  }
  const version = blob[SNAPSHOT_MAGIC.byteLength]!;
  if (version !== SNAPSHOT_VERSION) throw new DstorError("UNSUPPORTED_VERSION", `metadata snapshot version ${version} is not supported by this dstor (${SNAPSHOT_VERSION}); upgrade dstor`);
  return Number(new DataView(blob.buffer, blob.byteOffset + SNAPSHOT_MAGIC.byteLength + 1, 8).getBigUint64(0, false));
}

/**
 * Opens a snapshot blob that the pointer says is sequence `expectedSequence`.
 * `SNAPSHOT_STALE` when the blob is an older snapshot (a replay, or a farmer
 * serving what it kept), `INTEGRITY_MISMATCH` when it claims another
 * sequence, `DECRYPT_FAILED` when it was altered or its header lies about
 * its sequence (the sequence is bound into key and associated data).
 */
export function openSnapshot(metadataKey: Uint8Array, blob: Uint8Array, expectedSequence: number): Uint8Array {
  const sequence = snapshotSequence(blob);
  if (sequence < expectedSequence) {
    throw new DstorError("SNAPSHOT_STALE", `the metadata snapshot found is number ${sequence}, older than number ${expectedSequence} the chain points to; refusing to roll the metadata back`, {
      details: { sequence, expectedSequence },
    });
  }
  if (sequence !== expectedSequence) {
    throw new DstorError("INTEGRITY_MISMATCH", `the metadata snapshot found claims number ${sequence}, but the chain points to number ${expectedSequence}`, { details: { sequence, expectedSequence } });
  }
  const salt = blob.subarray(SNAPSHOT_MAGIC.byteLength + 9, SNAPSHOT_HEADER_BYTES);
  return openSegment(snapshotKey(metadataKey, sequence, salt), segmentId(salt, sequence), blob.subarray(SNAPSHOT_HEADER_BYTES));
}

/** The content root recorded on chain for `blob`: HMAC-SHA256(content-root key, blob). */
export function snapshotContentRoot(contentRootKey: Uint8Array, blob: Uint8Array): Uint8Array {
  assertBytes(contentRootKey, KEY_BYTES, "content-root key");
  return new Uint8Array(createHmac("sha256", contentRootKey).update(blob).digest());
}

/**
 * The file key a snapshot blob is stored under on farmers: HKDF(metadataKey,
 * "snapshot-file", fileId), the file id being random per snapshot. Not tied
 * to the sequence on purpose: a location replayed under a newer sequence
 * still opens to its blob, whose own sealed sequence then names the rollback.
 */
export function snapshotFileKey(metadataKey: Uint8Array, fileId: Uint8Array): Uint8Array {
  assertBytes(metadataKey, KEY_BYTES, "metadata key");
  assertBytes(fileId, FILE_ID_BYTES, "file id");
  const key = hkdfLabel(metadataKey, SNAPSHOT_FILE_KEY_LABEL, fileId);
  return key.subarray(0, FILE_KEY_BYTES);
}

/** Where a snapshot lives: enough to fetch it with the phrase and the chain alone. */
export interface SnapshotLocation {
  /** The stored blob (file key derived with {@link snapshotFileKey}; piece ids filled in). */
  stored: StoredFile;
  /** The deal (decimal) under which each holder serves the pieces. */
  deals: Record<string, string>;
}

interface LocationJson {
  v: number;
  fileId: string;
  size: number;
  segmentSize: number;
  redundancy: string;
  segments: Array<{ index: number; salt: string; plaintextLength: number; pieceSize: number; pieceRoots: string[]; holders: Record<number, string> }>;
  deals: Record<string, string>;
}

/** The on-chain bytes of a location: gzip of its JSON (piece ids and the file key left out; see the module note). */
export function encodeSnapshotLocation(location: SnapshotLocation): Uint8Array {
  const { stored, deals } = location;
  const json: LocationJson = {
    v: SNAPSHOT_LOCATION_VERSION,
    fileId: stored.content.fileId,
    size: stored.size,
    segmentSize: stored.content.segmentSize,
    redundancy: stored.content.redundancy,
    segments: stored.segments.map((s) => ({ index: s.index, salt: s.salt, plaintextLength: s.plaintextLength, pieceSize: s.pieceSize, pieceRoots: s.pieceRoots, holders: s.holders })),
    deals,
  };
  return new Uint8Array(gzipSync(JSON.stringify(json), { level: 9 }));
}

/**
 * Decodes a location, deriving the file key and the piece ids from the
 * phrase's keys. `STORE_CORRUPT` on bytes that are not a location.
 */
export function decodeSnapshotLocation(bytes: Uint8Array, keys: { metadataKey: Uint8Array; pieceIdKey: Uint8Array }): SnapshotLocation {
  let json: LocationJson;
  try {
    json = JSON.parse(gunzipSync(bytes).toString("utf8")) as LocationJson;
  } catch (cause) {
    throw new DstorError("STORE_CORRUPT", "the metadata pointer's location is not readable", { cause });
  }
  if (json.v !== SNAPSHOT_LOCATION_VERSION) throw new DstorError("UNSUPPORTED_VERSION", `metadata pointer location version ${json.v} is not supported; upgrade dstor`);
  if (!Array.isArray(json.segments) || typeof json.fileId !== "string") throw new DstorError("STORE_CORRUPT", "the metadata pointer's location is malformed");
  const fileId = fromHex(json.fileId);
  const content: FileContent = {
    fileKey: toHex(snapshotFileKey(keys.metadataKey, fileId)),
    fileId: json.fileId,
    segmentSize: json.segmentSize,
    redundancy: json.redundancy,
    segmentCount: json.segments.length,
  };
  const segments: SegmentMeta[] = json.segments.map((s) => {
    const id = segmentId(fileId, s.index);
    const salt = fromHex(s.salt);
    return { ...s, pieceIds: s.pieceRoots.map((_, n) => toHex(derivePieceId(keys.pieceIdKey, id, salt, n))) };
  });
  return { stored: { content, size: json.size, segments }, deals: json.deals ?? {} };
}

/** A snapshot ready to store: the blob and its content root. */
export interface SnapshotBlob {
  sequence: number;
  blob: Uint8Array;
  contentRoot: Uint8Array;
  /** Records in it. */
  entries: number;
}

/** Reads every record of `db` and seals it as snapshot `sequence`. */
export async function exportSnapshot(db: MetadataDb, sequence: number, keys: { metadataKey: Uint8Array; contentRootKey: Uint8Array }): Promise<SnapshotBlob> {
  const entries: Array<[string, unknown]> = [];
  for await (const entry of db.entries()) entries.push(entry);
  const blob = sealSnapshot(keys.metadataKey, sequence, encodeSnapshotPlaintext(entries, sequence));
  return { sequence, blob, contentRoot: snapshotContentRoot(keys.contentRootKey, blob), entries: entries.length };
}

/**
 * Verifies `blob` against the pointer (content root, then sequence and
 * authenticity) and fills the fresh database `db` with its records. Returns
 * how many records were imported.
 */
export async function importSnapshot(
  db: MetadataDb,
  blob: Uint8Array,
  pointer: { sequence: number; contentRoot: Uint8Array },
  keys: { metadataKey: Uint8Array; contentRootKey: Uint8Array },
): Promise<number> {
  // The (not yet authenticated) header first, only to name a rollback as
  // such; the content root and the AEAD then decide.
  const claimed = snapshotSequence(blob);
  if (claimed < pointer.sequence) openSnapshot(keys.metadataKey, blob, pointer.sequence); // throws SNAPSHOT_STALE
  if (!bytesEqual(snapshotContentRoot(keys.contentRootKey, blob), pointer.contentRoot)) {
    throw new DstorError("INTEGRITY_MISMATCH", "the metadata snapshot fetched does not match the content root on chain; it was altered or is not the one the pointer names");
  }
  const { sequence, entries } = decodeSnapshotPlaintext(openSnapshot(keys.metadataKey, blob, pointer.sequence));
  if (sequence !== pointer.sequence) throw new DstorError("INTEGRITY_MISMATCH", `the metadata snapshot's records say number ${sequence}, the chain says ${pointer.sequence}`);
  await db.importEntries(entries);
  return entries.length;
}
