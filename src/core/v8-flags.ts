/**
 * V8 settings every dstor process runs with; imported first by each entry
 * point (the CLI, benches), before any bulk data is allocated.
 *
 * `--external-memory-accounted-in-global-limit`: dstor moves data through
 * many short-lived Buffers (socket reads, TLS records, yamux frames, pieces),
 * which live outside the JS heap. By default V8 starts a full mark-compact
 * whenever such external memory grows by a fixed soft limit since the last
 * GC, however small the heap — a farmer receiving 2 MiB pieces ran ~46 full
 * GCs per 256 MiB, a third of its CPU. With the flag, external memory counts
 * toward the global limit, which grows with the live heap like the heap's own
 * limit: `npm run bench:transfer -- --piece-mib 2` measured the farmer's CPU
 * per MB at 0.021 → 0.012 (put) and 0.020 → 0.007 (get), the renter's at
 * 0.009 → 0.005 and 0.014 → 0.007; the farmer's peak RSS went from 227 to 301 MB:
 * unreferenced buffers are still collected, only in fewer, larger GCs.
 */
import { setFlagsFromString } from "node:v8";

setFlagsFromString("--external-memory-accounted-in-global-limit");

/**
 * Node options for the command line of every dstor process: V8 reads these
 * only when it starts (set later with `setFlagsFromString`, they measurably
 * do nothing). `bin/dstor` passes them, and so does `spawnCliProcess` for the
 * farmers and drives dstor starts itself (a test holds the two lists equal).
 *
 * `--heap-growing-percent=100`: after a full GC the old generation may grow
 * to twice what survived before the next one. Left to itself V8 grew a
 * farmer's limit by only ~20 % (~42 MB survive, mostly module source and
 * code; limit ~51 MB), so a few MB of allocation started another full GC
 * that freed almost nothing: ten farmers ran 7–11 of them during one
 * 256 MiB `bench:network` upload, 235–462 ms of main-thread pauses plus
 * concurrent marking; with the flag, 1 (114 ms). The cost is at most one
 * more live heap's worth of garbage per process before it is collected.
 */
export const NODE_FLAGS: readonly string[] = ["--heap-growing-percent=100"];
