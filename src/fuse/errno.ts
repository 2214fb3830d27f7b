/**
 * The one place where errors become errno values. Everything below the FUSE
 * edge throws {@link DstorError}s (or Node's own `ENOSPC`-style errors from the
 * local staging disk); the mount adapter passes every failure through
 * {@link toErrno} and nothing else picks errno numbers.
 */
import { constants } from "node:os";
import type { DstorErrorCode } from "../core/errors.js";
import { DstorError } from "../core/errors.js";

const E = constants.errno;

/** DstorError code → positive errno. Codes not listed answer EIO. */
const CODE_TO_ERRNO: Partial<Record<DstorErrorCode, number>> = {
  NO_SUCH_FILE: E.ENOENT,
  FILE_EXISTS: E.EEXIST,
  NOT_A_DIRECTORY: E.ENOTDIR,
  IS_A_DIRECTORY: E.EISDIR,
  DIRECTORY_NOT_EMPTY: E.ENOTEMPTY,
  INVALID_ARGUMENT: E.EINVAL,
  TIMEOUT: E.ETIMEDOUT,
  ABORTED: E.EINTR,
  NOT_IMPLEMENTED: E.ENOSYS,
  NOT_PERMITTED: E.EPERM,
  NO_SUCH_ATTRIBUTE: E.ENODATA,
  NOT_SUPPORTED: E.ENOTSUP,
  TOO_LARGE: E.E2BIG,
  READ_ONLY: E.EROFS,
  QUOTA_EXCEEDED: E.ENOSPC,
  DISK_FULL: E.ENOSPC,
};

/**
 * The errno (as fuse-native wants it: a NEGATIVE number) for `error`.
 * Unknown failures answer EIO: the kernel always gets an answer.
 */
export function toErrno(error: unknown): number {
  if (error instanceof DstorError) return -(CODE_TO_ERRNO[error.code] ?? E.EIO);
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code === "string" && code in E) return -(E as Record<string, number>)[code]!;
  return -E.EIO;
}
