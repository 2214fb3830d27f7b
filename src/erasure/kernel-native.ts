/**
 * Native kernels (`native-gfni`, `native-avx2`, `native-ssse3`,
 * `native-scalar`) from the N-API addon in native-bindings/, reached through
 * the loader in src/core/native.ts. The addon lists what the CPU supports
 * (best first) and we wrap each as a {@link GfKernel}.
 */
import { DstorError } from "../core/errors.js";
import { type GfKernelName, loadNative, type NativeBindings, nativeLoadError } from "../core/native.js";
import { checkMatMulArgs, type GfKernel } from "./kernel.js";

/** Result of probing the native addon: the bindings, or why there are none. */
export type NativeProbe = { bindings: NativeBindings; reason?: undefined } | { bindings?: undefined; reason: string };

/**
 * Asks the loader for the addon. Not cached here: the loader already loads
 * once per process, and re-asking lets `DSTOR_NO_NATIVE=1` take effect at any time.
 */
export function probeNative(): NativeProbe {
  try {
    const bindings = loadNative();
    if (bindings !== undefined) return { bindings };
    return { reason: nativeLoadError() ?? "the native addon is unavailable" };
  } catch (error) {
    return { reason: `loading the native addon failed: ${error instanceof Error ? error.message : String(error)}` };
  }
}

/** Wraps one native kernel of `bindings` as a {@link GfKernel} named `native-<cpuKernel>`. */
export function createNativeKernel(bindings: NativeBindings, cpuKernel: GfKernelName): GfKernel {
  return {
    name: `native-${cpuKernel}`,
    matMul(matrix, rows, cols, inputs, outputs, offset, length) {
      // Validate here too: a bad shape must never reach C code, and our coded errors beat its RangeErrors.
      checkMatMulArgs(matrix, rows, cols, inputs, outputs, offset, length);
      if (rows === 0 || length === 0) return;
      if (cols === 0) {
        for (const out of outputs) out.fill(0, offset, offset + length);
        return;
      }
      try {
        bindings.gfMatMul(cpuKernel, matrix, rows, cols, inputs, outputs, offset, length);
      } catch (error) {
        // Only reachable through a bug (shapes were checked above) or aliasing buffers.
        throw new DstorError("INTERNAL", `native GF kernel ${cpuKernel} failed: ${error instanceof Error ? error.message : String(error)}`, {
          cause: error,
          details: { kernel: cpuKernel, rows, cols, offset, length },
        });
      }
    },
  };
}

let cached: { bindings: NativeBindings; kernels: GfKernel[] } | undefined;

/** All native kernels this CPU supports, best first; empty when the addon is unavailable. */
export function nativeKernels(): GfKernel[] {
  const { bindings } = probeNative();
  if (bindings === undefined) return [];
  if (cached?.bindings !== bindings) {
    cached = { bindings, kernels: bindings.cpuKernels().map((name) => createNativeKernel(bindings, name)) };
  }
  return cached.kernels;
}
