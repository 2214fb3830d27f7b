/**
 * Units, defined once. Storage is sold in decimal units (1 TB = 10^12 bytes)
 * and months of 30 days, as on-chain; sizes in the data path are binary (KiB, MiB).
 */
import { DstorError } from "./errors.js";

/** Bytes in one terabyte as priced on-chain (decimal). */
export const BYTES_PER_TB = 1_000_000_000_000n;
/** Seconds in one billing month (30 days). */
export const SECONDS_PER_MONTH = 30n * 24n * 60n * 60n;
/** One kibibyte. */
export const KIB = 1024;
/** One mebibyte. */
export const MIB = 1024 * 1024;
/** One gibibyte. */
export const GIB = 1024 * 1024 * 1024;

const SIZE_UNITS: Record<string, number> = {
  "": 1,
  b: 1,
  k: 1e3,
  kb: 1e3,
  m: 1e6,
  mb: 1e6,
  g: 1e9,
  gb: 1e9,
  t: 1e12,
  tb: 1e12,
  kib: 2 ** 10,
  mib: 2 ** 20,
  gib: 2 ** 30,
  tib: 2 ** 40,
};

/**
 * Parses a human size such as `500GB`, `8MiB`, `1.5 TB` or `4096` into bytes.
 * Decimal units (KB, MB, GB, TB) are powers of 1000, binary ones (KiB …) of 1024.
 */
export function parseSize(input: string | number, what = "size"): number {
  if (typeof input === "number") {
    if (!Number.isSafeInteger(input) || input < 0) {
      throw new DstorError("INVALID_OPTION", `${what} must be a whole number of bytes, got ${input}`);
    }
    return input;
  }
  const match = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(input);
  const unit = match?.[2]?.toLowerCase() ?? "";
  const factor = SIZE_UNITS[unit];
  if (match === null || factor === undefined) {
    throw new DstorError("INVALID_OPTION", `${what} "${input}" is not a size; write it like 500GB, 8MiB or 4096`);
  }
  const bytes = Math.round(Number(match[1]) * factor);
  if (!Number.isSafeInteger(bytes)) throw new DstorError("INVALID_OPTION", `${what} "${input}" is too large`);
  return bytes;
}

/** Formats bytes for people: `8.0 MiB`, `1.2 GiB`. */
export function formatBytes(bytes: number): string {
  if (bytes < KIB) return `${bytes} B`;
  const units = ["KiB", "MiB", "GiB", "TiB", "PiB"];
  let value = bytes / KIB;
  let i = 0;
  while (value >= 1024 && i < units.length - 1) {
    value /= 1024;
    i++;
  }
  return `${value.toFixed(1)} ${units[i]}`;
}
