/**
 * Buffers for direct I/O (O_DIRECT): the farmer writes whole, aligned
 * batches of a piece straight to the disk instead of through the page cache,
 * and reads the chunks it serves straight into its send buffers.
 *
 * Why: a farmer writes twice the user data it is sent, and the copy into
 * page-cache pages was the largest single cost of an upload in slow phases
 * of this virtual machine (`copy_folio_from_iter_atomic` in the farmers'
 * libuv threads, 16.5 % of all CPU samples of a `bench:network` upload, with
 * the kernel keeping the page cache small so nearly every page is fresh).
 * Written pieces are rarely read soon (gets and audits come later), so the
 * page cache buys a farmer little.
 *
 * O_DIRECT needs the memory, the file offset and the length aligned (to the
 * device's logical block, at most 4096 bytes): buffers come from the native
 * addon's `alignedBytes` and are remembered here, so the store can tell a
 * batch it may write directly from any other bytes. Without the addon,
 * buffers are ordinary and every write goes through the page cache.
 */
import { loadNative } from "../../core/native.js";
import { uninitializedBytes } from "../../crypto/bytes.js";

/** Alignment of memory, offsets and lengths of direct writes. */
export const DIRECT_IO_ALIGNMENT = 4096;

/** ArrayBuffers whose memory starts on a {@link DIRECT_IO_ALIGNMENT} boundary. */
const aligned = new WeakSet<ArrayBufferLike>();

/**
 * A buffer of `size` bytes (uninitialised) for piece data: aligned for
 * direct I/O when the native addon is there, else ordinary.
 */
export function directIoBytes(size: number): Uint8Array {
  const native = loadNative();
  if (native === undefined) return uninitializedBytes(size);
  const bytes = native.alignedBytes(size);
  aligned.add(bytes.buffer);
  return bytes;
}

/** Whether `bytes` starts in memory that {@link directIoBytes} made, on a {@link DIRECT_IO_ALIGNMENT} boundary. */
export function isDirectIoMemory(bytes: Uint8Array): boolean {
  return bytes.byteOffset % DIRECT_IO_ALIGNMENT === 0 && aligned.has(bytes.buffer);
}

/** Whether `bytes` may be written with direct I/O at file offset `offset`. */
export function directWritable(bytes: Uint8Array, offset: number): boolean {
  return bytes.byteLength > 0 && bytes.byteLength % DIRECT_IO_ALIGNMENT === 0 && offset % DIRECT_IO_ALIGNMENT === 0 && isDirectIoMemory(bytes);
}
