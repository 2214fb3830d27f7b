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
