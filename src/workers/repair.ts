/**
 * The repair worker. Each round it asks which holders are unhealthy —
 * disqualified on-chain, shunned by our own record (spot checks and
 * transfers: corrupt data, too many failures) or unreachable now — then
 * walks every file and counts, per segment, the pieces on healthy farmers.
 * A file with a segment at or below the strategy's `repair` threshold is
 * repaired (Renter.repairFile: download k, rebuild, place on new farmers,
 * one metadata batch, deal states re-signed), which brings those segments
 * back to `optimal`. Files are repaired one at a time so a repair never
 * competes with itself for bandwidth.
 *
 * One log line per round (files, segments at risk, repaired, pieces and
 * bytes placed, time); `onRepaired` receives the summary of a round that
 * repaired something (the renter node keeps it for `dstor status`).
 */
import { throwIfAborted } from "../core/abort.js";
import type { Logger } from "../core/logging.js";
import { parseRedundancyStrategy } from "../erasure/strategy.js";
import type { DirEntry, SegmentMeta } from "../metadata/types.js";
import { PeriodicWorker, type Worker } from "./worker.js";

/** What a round that repaired something did. */
export interface RepairSummary {
  /** ISO time the round ended. */
  at: string;
  files: number;
  segments: number;
  pieces: number;
  bytes: number;
  ms: number;
}

/** What the worker needs from the renter (Renter + MetadataDb fit). */
export interface RepairTarget {
  readdir(path: string): Promise<DirEntry[]>;
  segments(inode: number): Promise<SegmentMeta[]>;
  repairFile(path: string, unhealthy: ReadonlySet<string>, options: { signal?: AbortSignal | undefined }): Promise<{ segments: number; pieces: number; bytes: number }>;
}

/** Options of {@link createRepairWorker}. */
export interface RepairInit {
  target: RepairTarget;
  /** The unhealthy ones among `holders` (see the module comment). */
  unhealthy(holders: readonly string[], options: { signal: AbortSignal }): Promise<Set<string>>;
  intervalMs: number;
  onRepaired?: (summary: RepairSummary) => Promise<void> | void;
  logger: Logger;
  signal?: AbortSignal | undefined;
}

/** Every file below `/`, with its inode and redundancy. */
export async function walkFiles(target: Pick<RepairTarget, "readdir">, path = "/"): Promise<Array<{ path: string; inode: number; redundancy: string }>> {
  const out: Array<{ path: string; inode: number; redundancy: string }> = [];
  for (const entry of await target.readdir(path)) {
    const child = `${path === "/" ? "" : path}/${entry.name}`;
    if (entry.record.type === "dir") out.push(...(await walkFiles(target, child)));
    else if (entry.record.file !== undefined && entry.record.file.inline === undefined) {
      out.push({ path: child, inode: entry.record.inode, redundancy: entry.record.file.redundancy });
    }
  }
  return out;
}

/** The repair worker; see the module comment. */
export function createRepairWorker(init: RepairInit): Worker {
  const log = init.logger;
  let round = 0;
  const tick = async (signal: AbortSignal): Promise<void> => {
    round++;
    const began = performance.now();
    const files = await walkFiles(init.target);
    const segmentsOf = new Map<string, SegmentMeta[]>();
    const holders = new Set<string>();
    for (const f of files) {
      const segments = await init.target.segments(f.inode);
      segmentsOf.set(f.path, segments);
      for (const s of segments) for (const a of Object.values(s.holders)) holders.add(a);
    }
    if (holders.size === 0) return;
    const unhealthy = await init.unhealthy([...holders], { signal });
    let atRisk = 0;
    const done = { files: 0, segments: 0, pieces: 0, bytes: 0 };
    for (const f of files) {
      throwIfAborted(signal);
      const { repair } = parseRedundancyStrategy(f.redundancy);
      const risky = (segmentsOf.get(f.path) ?? []).filter((s) => Object.values(s.holders).filter((a) => !unhealthy.has(a)).length <= repair).length;
      if (risky === 0) continue;
      atRisk += risky;
      try {
        const r = await init.target.repairFile(f.path, unhealthy, { signal });
        if (r.segments > 0) done.files++;
        done.segments += r.segments;
        done.pieces += r.pieces;
        done.bytes += r.bytes;
      } catch (error) {
        throwIfAborted(signal);
        log.warn("repair of a file failed; retrying next round", { path: f.path, error: String(error) });
      }
    }
    const ms = Math.round(performance.now() - began);
    log.info(
      `repair round ${round}: ${files.length} files, ${unhealthy.size} unhealthy farmers, ${atRisk} segments at or below repair, ` +
        `${done.segments} repaired (${done.pieces} pieces, ${done.bytes} bytes) in ${ms} ms`,
      { round, files: files.length, unhealthy: [...unhealthy], atRisk, filesRepaired: done.files, segments: done.segments, pieces: done.pieces, bytes: done.bytes, ms },
    );
    if (done.segments > 0) await init.onRepaired?.({ at: new Date().toISOString(), ...done, ms });
  };
  return new PeriodicWorker({ name: "repair", intervalMs: init.intervalMs, tick, logger: log, signal: init.signal });
}
