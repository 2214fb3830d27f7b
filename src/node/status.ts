/**
 * What `dstor status` shows, gathered in one place: per-file health (pieces
 * on healthy farmers per segment, against the file's strategy), the farmers
 * holding our pieces with their on-chain reputation and our own audit record
 * (spot checks and transfers), our deals with their money, our balances, and
 * the last repair. Reads metadata and the chain only; nothing is sent.
 *
 * While the drive is mounted its process holds the metadata database, so
 * files and farmers come from the drive's status file instead
 * (HOME/renter/drive-status.json, rewritten every second, files and farmers
 * every 5 s); the status says which source it used.
 */
import { readFile } from "node:fs/promises";
import { connectContracts, type Deployment } from "../chain/contracts.js";
import { createProvider } from "../chain/signer.js";
import { parseRedundancyStrategy } from "../erasure/strategy.js";
import type { MetadataDb } from "../metadata/db.js";
import type { DriveStatus } from "./drive-status.js";
import { walkFiles } from "../workers/repair.js";
import type { RepairSummary } from "../workers/repair.js";
import { lastRepairPath } from "./renter-node.js";

/** One file's health. */
export interface FileHealth {
  path: string;
  redundancy: string;
  /** healthy / total pieces per segment. */
  segments: Array<{ index: number; healthy: number; total: number }>;
  /** The worst segment's state: healthy (≥ optimal), degraded (> repair), repair (≥ k), lost. */
  health: "healthy" | "degraded" | "repair" | "lost";
}

/** One farmer holding our pieces. */
export interface FarmerStatus {
  address: string;
  pieces: number;
  chain: { successes: string; failures: string; disqualified: boolean } | undefined;
  audits: { successes: number; failures: number; corrupt: number };
  deal?: { id: string; end: number; closed: boolean; deposited: string; paid: string; refunded: string; escrowLeft: string } | undefined;
}

/** Where the files and farmers of a status came from. */
export type StatusSource =
  | { kind: "metadata" }
  /** The mounted drive holds the metadata database; its status file (written every second) was read instead. */
  | { kind: "drive"; pid: number; mountpoint: string; time: string; moreFiles: number };

/** The whole status. */
export interface RenterStatus {
  address: string;
  source: StatusSource;
  files: FileHealth[];
  farmers: FarmerStatus[];
  balances?: { tokens: string; withdrawable: string } | undefined;
  lastRepair?: RepairSummary | undefined;
}

/** What the status is computed from: the metadata database, or the mounted drive's status file. */
export interface StatusView {
  source: StatusSource;
  farmers: Array<{ address: string; pieces: number; successes: number; failures: number; corrupt: number; disqualified: boolean }>;
  /** Files stored in pieces (inline files have no health), with the wallets holding each segment's pieces. */
  files: Array<{ path: string; redundancy: string; segments: Array<{ index: number; holders: string[] }> }>;
}

/** The view of the metadata database (which this process holds). */
export async function metadataView(metadata: MetadataDb): Promise<StatusView> {
  const farmers: StatusView["farmers"] = [];
  for (const r of await metadata.farmers()) {
    farmers.push({
      address: r.address,
      pieces: (await metadata.piecesOn(r.address)).length,
      successes: r.successes,
      failures: r.failures,
      corrupt: r.corrupt,
      disqualified: r.disqualified === true,
    });
  }
  const files: StatusView["files"] = [];
  for (const f of await walkFiles(metadata)) {
    const segments = (await metadata.segments(f.inode)).map((x) => ({ index: x.index, holders: Object.values(x.holders) }));
    files.push({ path: f.path, redundancy: f.redundancy, segments });
  }
  return { source: { kind: "metadata" }, farmers, files };
}

/** The view of a mounted drive's status file (see drive-status.ts). */
export function driveView(drive: DriveStatus): StatusView {
  return {
    source: { kind: "drive", pid: drive.pid, mountpoint: drive.mountpoint, time: drive.time, moreFiles: drive.moreFiles },
    farmers: drive.farmers ?? [],
    files: drive.files.filter((f) => !f.inline).map((f) => ({ path: f.path, redundancy: f.redundancy, segments: f.holders.map((holders, index) => ({ index, holders })) })),
  };
}

/** Gathers the status from `view` and the chain; `chain` may be undefined (no chain reads). */
export async function collectStatus(
  home: string,
  address: string,
  view: StatusView,
  chain: { rpcUrl: string; deployment: Deployment } | undefined,
): Promise<RenterStatus> {
  const provider = chain === undefined ? undefined : createProvider(chain.rpcUrl);
  try {
    const c = chain === undefined || provider === undefined ? undefined : connectContracts(chain.deployment, provider);
    const records = new Map(view.farmers.map((r) => [r.address, r]));
    const dq = new Map<string, boolean>();
    const farmers: FarmerStatus[] = [];
    for (const r of records.values()) {
      const pieces = r.pieces;
      const row: FarmerStatus = { address: r.address, pieces, chain: undefined, audits: { successes: r.successes, failures: r.failures, corrupt: r.corrupt } };
      if (c !== undefined) {
        const [successes, failures, , disqualified] = await c.registry.reputation(r.address);
        row.chain = { successes: successes.toString(), failures: failures.toString(), disqualified };
        dq.set(r.address, disqualified);
        const id = await c.market.latestDeal(address, r.address);
        if (id !== 0n) {
          const d = await c.market.deal(id);
          row.deal = {
            id: id.toString(),
            end: Number(d.end),
            closed: d.closed,
            deposited: d.deposited.toString(),
            paid: (d.storagePaid + d.egressPaid).toString(),
            refunded: d.storageRefunded.toString(),
            escrowLeft: (await c.market.escrowRemaining(id)).toString(),
          };
        }
      }
      if (pieces > 0 || row.deal !== undefined) farmers.push(row);
    }
    const healthyHolder = (a: string): boolean => records.get(a)?.disqualified !== true && dq.get(a) !== true;
    const files: FileHealth[] = [];
    for (const f of view.files) {
      const strategy = parseRedundancyStrategy(f.redundancy);
      const segments = f.segments.map((x) => ({ index: x.index, healthy: x.holders.filter(healthyHolder).length, total: strategy.total }));
      const min = segments.reduce((m, x) => Math.min(m, x.healthy), Number.POSITIVE_INFINITY);
      const health = min >= strategy.optimal ? "healthy" : min > strategy.repair ? "degraded" : min >= strategy.k ? "repair" : "lost";
      files.push({ path: f.path, redundancy: f.redundancy, segments, health });
    }
    const status: RenterStatus = { address, source: view.source, files, farmers };
    if (c !== undefined) {
      const [tokens, withdrawable] = await Promise.all([c.token.balanceOf(address), c.market.withdrawable(address)]);
      status.balances = { tokens: tokens.toString(), withdrawable: withdrawable.toString() };
    }
    try {
      status.lastRepair = JSON.parse(await readFile(lastRepairPath(home), "utf8")) as RepairSummary;
    } catch {
      // never repaired
    }
    return status;
  } finally {
    provider?.destroy();
  }
}

/** The status as text. */
export function renderStatus(s: RenterStatus): string {
  const lines = [`renter ${s.address}`];
  lines.push(
    s.source.kind === "metadata"
      ? "  source: metadata database and chain"
      : `  source: the mounted drive at ${s.source.mountpoint} (pid ${s.source.pid}; its status file of ${s.source.time}${s.source.moreFiles > 0 ? `, ${s.source.moreFiles} more files not listed` : ""}) and chain`,
  );
  if (s.balances !== undefined) lines.push(`  tokens ${s.balances.tokens}, withdrawable ${s.balances.withdrawable} (token units)`);
  lines.push(
    s.lastRepair === undefined
      ? "  last repair: never"
      : `  last repair: ${s.lastRepair.at}, ${s.lastRepair.segments} segments, ${s.lastRepair.pieces} pieces, ${s.lastRepair.bytes} bytes in ${s.lastRepair.ms} ms`,
  );
  lines.push("files:");
  for (const f of s.files) {
    const worst = f.segments.reduce((m, x) => Math.min(m, x.healthy), Number.POSITIVE_INFINITY);
    lines.push(`  ${f.path}  ${f.health}  (${f.redundancy}; ${f.segments.length} segments, worst ${worst}/${f.segments[0]?.total ?? 0} pieces healthy)`);
  }
  lines.push("farmers:");
  for (const f of s.farmers) {
    const chain = f.chain === undefined ? "" : ` chain ${f.chain.successes}✓ ${f.chain.failures}✗${f.chain.disqualified ? " DISQUALIFIED" : ""};`;
    const deal = f.deal === undefined ? "" : ` deal ${f.deal.id}${f.deal.closed ? " closed" : ""}: paid ${f.deal.paid}, refunded ${f.deal.refunded}, escrow left ${f.deal.escrowLeft}`;
    lines.push(`  ${f.address}  ${f.pieces} pieces;${chain} our audits ${f.audits.successes}✓ ${f.audits.failures}✗ ${f.audits.corrupt} corrupt;${deal}`);
  }
  return lines.join("\n");
}
