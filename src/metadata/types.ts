/**
 * Records of the renter's metadata database. Everything binary is stored as
 * lowercase hex (keys, ids, roots) or base64 (inline data) so that a record is
 * plain JSON: easy to snapshot, diff and inspect with standard tools.
 */

/** Number of the root directory's inode. */
export const ROOT_INODE = 1;

/** The `inode` of piece references that hold a metadata snapshot rather than a file (see snapshot.ts). */
export const SNAPSHOT_INODE = 0;

/** Largest file stored inline in metadata instead of on farmers, in bytes. */
export const INLINE_MAX_BYTES = 4 * 1024;

/** What kind of node an inode is. */
export type InodeType = "dir" | "file" | "symlink";

/** Longest symlink target, in bytes (Linux PATH_MAX). */
export const SYMLINK_TARGET_MAX_BYTES = 4096;

/** A directory, file or symbolic link. */
export interface InodeRecord {
  /** Inode number (never reused). */
  inode: number;
  type: InodeType;
  /** POSIX permission bits, e.g. 0o644. */
  mode: number;
  /** Modification time, ms since the epoch. */
  mtimeMs: number;
  /** File size in bytes (0 for directories; the target's length in bytes for symlinks, as POSIX lstat reports). */
  size: number;
  /** Present on files. */
  file?: FileContent | undefined;
  /** Present on symlinks: the link's target, stored verbatim (never resolved by dstor). */
  target?: string | undefined;
  /** Extended attributes (`user.` namespace only): full name → value, base64. Absent when there are none. */
  xattrs?: Record<string, string> | undefined;
}

/** Longest extended attribute name, in bytes (Linux XATTR_NAME_MAX). */
export const XATTR_NAME_MAX_BYTES = 255;
/** Largest extended attribute value, in bytes (Linux XATTR_SIZE_MAX). */
export const XATTR_VALUE_MAX_BYTES = 64 * 1024;
/** Most bytes of names and values one node may hold (keeps inode records small). */
export const XATTR_TOTAL_MAX_BYTES = 64 * 1024;

/** How a file's bytes are stored. */
export interface FileContent {
  /** The file's random 32-byte key, hex (secret: never logged). */
  fileKey: string;
  /** The file's random 16-byte id, hex. */
  fileId: string;
  /** Plaintext bytes per segment (the last may be shorter). */
  segmentSize: number;
  /** Redundancy strategy as `k/repair/optimal/total`. */
  redundancy: string;
  /** Number of segments stored on farmers (0 for inline files). */
  segmentCount: number;
  /** Files ≤ {@link INLINE_MAX_BYTES}: the sealed bytes, base64, and the salt they were sealed under, hex. */
  inline?: { salt: string; sealed: string } | undefined;
}

/** One stored segment: what a reader needs plus where each piece lives. */
export interface SegmentMeta {
  index: number;
  /** Fresh random salt of this write, hex. */
  salt: string;
  plaintextLength: number;
  pieceSize: number;
  /** Piece ids by piece number, hex. */
  pieceIds: string[];
  /** Piece Merkle roots by piece number, hex. */
  pieceRoots: string[];
  /** Farmer wallet (lowercase `0x` address) holding each piece number that was stored. */
  holders: Record<number, string>;
}

/** A farmer as the renter knows it: how to reach it, its deal, and the renter's own record of it. */
export interface FarmerRecord {
  /** Wallet address, lowercase `0x` hex. */
  address: string;
  peerId: string;
  multiaddrs: string[];
  /** The current deal, as a decimal string, if one was opened. */
  dealId?: string | undefined;
  /** Term number of that deal. */
  term?: number | undefined;
  /** Unix seconds at which the deal ends. */
  dealEnd?: number | undefined;
  /** Version of the last deal state the renter proposed to the farmer (kept before the farmer co-signs it, whether or not it reached the chain). */
  stateVersion?: number | undefined;
  /** Successful transfers (puts and verified gets). */
  successes: number;
  /** Failed, refused or corrupt transfers. */
  failures: number;
  /** When the last failure happened (ms since the epoch); absent in records written before it existed. */
  lastFailureAt?: number | undefined;
  /** Pieces that failed verification (a subset of failures, weighted heavily). */
  corrupt: number;
  /** Bytes moved successfully and the time it took, for a speed estimate. */
  bytes: number;
  ms: number;
  /** Set when the renter stopped trusting this farmer. */
  disqualified?: boolean | undefined;
}

/** One piece a farmer holds for us (kept per farmer so deal states and deletes are cheap to build). */
export interface PieceRef {
  /** Piece id, hex. */
  pieceId: string;
  /** Merkle root, hex. */
  root: string;
  size: number;
  inode: number;
  segment: number;
  number: number;
  /** For snapshot pieces ({@link SNAPSHOT_INODE}): the pointer sequence number of the snapshot they hold. */
  snapshot?: number | undefined;
}

/** A directory entry as returned by readdir. */
export interface DirEntry {
  name: string;
  record: InodeRecord;
}

/** A file's segments, ready to be committed with the file. */
export interface StoredFile {
  content: FileContent;
  size: number;
  segments: SegmentMeta[];
  mode?: number;
  mtimeMs?: number;
}
