/**
 * Kernel registry and selection. `auto` prefers the best native kernel, then
 * WebAssembly SIMD (warning once per injected logger that the native addon is
 * unavailable, and why), then plain TypeScript. Every kernel gives identical
 * bytes, so the choice only affects speed.
 */
import { DstorError } from "../core/errors.js";
import type { Logger } from "../core/logging.js";
import type { GfKernel } from "./kernel.js";
import { nativeKernels, probeNative } from "./kernel-native.js";
import { createTsKernel } from "./kernel-ts.js";
import { createWasmKernel, wasmKernelUnavailableReason } from "./kernel-wasm.js";

/** What a caller may ask for: `auto`, a family (`native` = best native), or an exact kernel name. */
export type KernelChoice = "auto" | "ts" | "wasm" | "native" | `native-${string}`;

let tsKernel: GfKernel | undefined;
let wasmKernel: GfKernel | undefined;
const warnedLoggers = new WeakSet<Logger>();

function getTs(): GfKernel {
  tsKernel ??= createTsKernel();
  return tsKernel;
}

function getWasm(): GfKernel | undefined {
  if (wasmKernel === undefined && wasmKernelUnavailableReason() === undefined) wasmKernel = createWasmKernel();
  return wasmKernel;
}

function getNatives(): GfKernel[] {
  return nativeKernels();
}

/**
 * Every kernel implementation usable in this process (for tests and benches):
 * every native kernel the CPU supports (best first), then `wasm` if its module
 * is built, then `ts`. Instances are shared; kernels are synchronous and hold
 * no state between calls, so sharing is safe.
 */
export function availableKernels(): GfKernel[] {
  const list = [...getNatives()];
  const wasm = getWasm();
  if (wasm !== undefined) list.push(wasm);
  list.push(getTs());
  return list;
}

/**
 * Resolves a {@link KernelChoice}. Throws `NATIVE_UNAVAILABLE` when a native
 * kernel is requested but cannot run, `INTERNAL` when `wasm` is requested but
 * not built, and `INVALID_OPTION` for unknown names.
 */
export function selectKernel(choice: KernelChoice = "auto", logger?: Logger): GfKernel {
  if (choice === "ts") return getTs();
  if (choice === "wasm") {
    const wasm = getWasm();
    if (wasm === undefined) throw new DstorError("INTERNAL", `the wasm erasure kernel is unavailable: ${wasmKernelUnavailableReason()}`);
    return wasm;
  }
  if (choice === "native" || choice.startsWith("native-")) {
    const probe = probeNative();
    if (probe.bindings === undefined) {
      throw new DstorError("NATIVE_UNAVAILABLE", `native erasure kernel "${choice}" is unavailable: ${probe.reason}`, {
        details: { kernel: choice },
      });
    }
    const list = getNatives();
    const found = choice === "native" ? list[0] : list.find((k) => k.name === choice);
    if (found === undefined) {
      throw new DstorError(
        "NATIVE_UNAVAILABLE",
        `native erasure kernel "${choice}" is not supported by this CPU; available: ${list.map((k) => k.name).join(", ") || "none"}`,
        { details: { kernel: choice } },
      );
    }
    return found;
  }
  if (choice !== "auto") {
    throw new DstorError("INVALID_OPTION", `unknown erasure kernel "${String(choice)}"; use auto, ts, wasm, native or native-<cpu kernel>`);
  }
  const best = getNatives()[0];
  if (best !== undefined) return best;
  if (logger !== undefined && !warnedLoggers.has(logger)) {
    warnedLoggers.add(logger);
    const reason = probeNative().reason ?? "the addon lists no kernels";
    const wasmReason = getWasm() === undefined ? wasmKernelUnavailableReason() : undefined;
    logger.warn(
      `native erasure addon unavailable (${reason}); falling back to ${wasmReason === undefined ? "WebAssembly SIMD" : "plain TypeScript (slow)"}`,
      wasmReason === undefined ? { reason } : { reason, wasmReason },
    );
  }
  return getWasm() ?? getTs();
}
