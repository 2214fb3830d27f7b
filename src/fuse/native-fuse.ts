/**
 * Loads fuse-native (2.2.6, N-API) with dstor's rebuilt copy of its addon.
 *
 * Upstream's `utimens` hands JavaScript the access time twice and never the
 * modification time, so `touch -d`, `cp -a`, `rsync -a` and `tar x` could not
 * set mtimes through the mount. `native-bindings/fuse/` holds upstream's
 * `fuse-native.c` with that fixed (and the other fixes its README lists:
 * mtime-only SETATTR, xattr buffers), built by `make` into
 * {@link PATCHED_ADDON_RELATIVE_PATH}. fuse-native's JavaScript loads its addon
 * with `require('node-gyp-build')(__dirname)`; while that file is required,
 * the module cache answers `node-gyp-build` with a loader that returns the
 * rebuilt addon, and the real entry is put back right after. When the rebuilt
 * addon is missing (no compiler on the machine), the stock prebuild is used
 * and {@link LoadedFuse.mtimeFixed} is false: the drive then keeps the time of
 * the last write instead of the time a tool asked for.
 */
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { findPackageRoot } from "../core/native.js";

/** The rebuilt addon, relative to the package root. */
export const PATCHED_ADDON_RELATIVE_PATH = "native-bindings/fuse/build/Release/fuse_native_dstor.node";

/** What the mount adapter needs of the native binding directly. */
export interface FuseBinding {
  fuse_native_unmount(mnt: string, thread: Buffer): void;
}

/** fuse-native's class and the addon it runs on. */
export interface LoadedFuse {
  Fuse: unknown;
  binding: FuseBinding;
  /** Whether the rebuilt addon (with the utimens fix) is in use. */
  mtimeFixed: boolean;
}

let loaded: LoadedFuse | undefined;

/** Loads fuse-native once per process (see the module note); throws what `require` throws. */
export function loadFuseNative(): LoadedFuse {
  if (loaded !== undefined) return loaded;
  const requireHere = createRequire(import.meta.url);
  const fuseDir = dirname(requireHere.resolve("fuse-native/package.json"));
  const requireFuse = createRequire(join(fuseDir, "index.js"));
  const root = findPackageRoot(dirname(fileURLToPath(import.meta.url)));
  const patched = root === undefined ? undefined : join(root, PATCHED_ADDON_RELATIVE_PATH);
  if (patched === undefined || !existsSync(patched)) {
    const binding = requireFuse("node-gyp-build")(fuseDir) as FuseBinding;
    loaded = { Fuse: requireFuse("./index.js"), binding, mtimeFixed: false };
    return loaded;
  }
  const binding = requireHere(patched) as FuseBinding;
  const loaderPath = requireFuse.resolve("node-gyp-build");
  const cache = requireFuse.cache;
  const real = cache[loaderPath];
  cache[loaderPath] = { id: loaderPath, filename: loaderPath, loaded: true, exports: () => binding, children: [], paths: [] } as unknown as NodeJS.Module;
  try {
    loaded = { Fuse: requireFuse("./index.js"), binding, mtimeFixed: true };
  } finally {
    if (real === undefined) delete cache[loaderPath];
    else cache[loaderPath] = real;
  }
  return loaded;
}
