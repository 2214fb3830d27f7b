/**
 * One error class for the whole project. Callers branch on `code`, never on
 * message text (the ethers v6 `isError(e, code)` model). Messages are written
 * for the person who will read them: they say what happened and what to do.
 */

/** Every error code dstor raises. Add new codes here, grouped by area. */
export type DstorErrorCode =
  // core / generic
  | "INVALID_ARGUMENT"
  | "INVALID_OPTION"
  | "ABORTED"
  | "TIMEOUT"
  | "NOT_IMPLEMENTED"
  | "INTERNAL"
  // crypto
  | "INVALID_MNEMONIC"
  | "DECRYPT_FAILED"
  | "MERKLE_PROOF_INVALID"
  | "INTEGRITY_MISMATCH"
  // erasure
  | "ERASURE_INVALID_PARAMS"
  | "ERASURE_TOO_FEW_PIECES"
  | "ERASURE_SIZE_MISMATCH"
  | "NATIVE_UNAVAILABLE"
  // protocol / orders
  | "MESSAGE_MALFORMED"
  | "MESSAGE_TOO_LARGE"
  | "UNSUPPORTED_VERSION"
  | "ORDER_EXPIRED"
  | "ORDER_REPLAYED"
  | "ORDER_BAD_SIGNATURE"
  | "ORDER_WRONG_FARMER"
  | "ORDER_WRONG_PIECE"
  | "ORDER_WRONG_CHAIN"
  | "ORDER_WRONG_ACTION"
  | "ORDER_NO_DEAL"
  // farmer / piece store
  | "PIECE_ID_INVALID"
  | "PIECE_NOT_FOUND"
  | "PIECE_EXISTS"
  | "QUOTA_EXCEEDED"
  | "DISK_FULL"
  | "STORE_CLOSED"
  | "STORE_CORRUPT"
  // chain
  | "CHAIN_UNAVAILABLE"
  | "CHAIN_CALL_FAILED"
  | "CHAIN_NOT_DEPLOYED"
  // renter / metadata
  | "FARMER_UNREACHABLE"
  | "NOT_ENOUGH_FARMERS"
  | "NO_SUCH_FILE"
  | "FILE_EXISTS"
  | "NOT_A_DIRECTORY"
  | "IS_A_DIRECTORY"
  | "DIRECTORY_NOT_EMPTY"
  | "HOME_IN_USE"
  | "SNAPSHOT_STALE"
  // drive
  | "READ_ONLY"
  | "MOUNT_FAILED"
  | "UPLOAD_PENDING"
  | "NOT_PERMITTED"
  | "NO_SUCH_ATTRIBUTE"
  | "NOT_SUPPORTED"
  | "TOO_LARGE";

/** Options accepted by {@link DstorError}. */
export interface DstorErrorOptions {
  /** The lower-level error that caused this one. */
  cause?: unknown;
  /** Structured facts for logs and `--json` output (never secrets). */
  details?: Record<string, unknown>;
}

/** The one error type of dstor; branch on {@link DstorError.code}. */
export class DstorError extends Error {
  /** Machine-readable reason; stable across releases. */
  readonly code: DstorErrorCode;
  /** Structured facts about the failure (never secrets). */
  readonly details: Record<string, unknown>;

  constructor(code: DstorErrorCode, message: string, options: DstorErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "DstorError";
    this.code = code;
    this.details = options.details ?? {};
  }
}

/** True when `error` is a {@link DstorError}, optionally of the given code(s). */
export function isDstorError(error: unknown, ...codes: DstorErrorCode[]): error is DstorError {
  if (!(error instanceof DstorError)) return false;
  return codes.length === 0 || codes.includes(error.code);
}

/** Throws `INVALID_ARGUMENT` unless `condition` holds. For boundary validation. */
export function assertArgument(condition: unknown, message: string, details?: Record<string, unknown>): asserts condition {
  if (!condition) throw new DstorError("INVALID_ARGUMENT", message, details === undefined ? {} : { details });
}
