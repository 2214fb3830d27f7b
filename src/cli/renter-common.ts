/**
 * What the renter commands (put, get, ls, rm, stat) share: their options,
 * opening the renter node from them, and a progress bar with rate and ETA
 * (drawn on stderr only when it is a terminal and --json is off).
 */
import { createLogger } from "../core/logging.js";
import { addOptions, type OptionName, type OptionSink } from "../core/options.js";
import { formatBytes } from "../core/units.js";
import { priceToUnits } from "../node/farmer-node.js";
import { openRenterNode, type RenterNode, type RenterNodeInit } from "../node/renter-node.js";

/** Options of every renter command that moves data. */
export const RENTER_OPTIONS: readonly OptionName[] = [
  "home",
  "json",
  "chain-rpc",
  "deployment",
  "port",
  "farmers",
  "bootstrap",
  "dht",
  "redundancy",
  "segment-size",
  "same-subnet-ok",
  "max-price-tb-month",
  "max-egress-price-gb",
  "confirmations",
  "snapshot-delay",
  "deal-term",
];

/** Parsed renter options. */
export interface RenterArgs {
  home: string;
  json: boolean;
  "chain-rpc"?: string;
  deployment?: string;
  port: number;
  farmers?: string[];
  bootstrap?: string[];
  dht: boolean;
  redundancy: string;
  "segment-size": number;
  "same-subnet-ok": boolean;
  "max-price-tb-month"?: number;
  "max-egress-price-gb"?: number;
  confirmations?: number;
  "snapshot-delay": number;
  "deal-term"?: number;
}

/** Adds the renter options to a yargs builder. */
export function addRenterOptions<T extends OptionSink>(yargs: T, offline = false): T {
  return addOptions(yargs, offline ? ["home", "json"] : RENTER_OPTIONS);
}

/**
 * Opens the renter node for a command. `overrides` replace what the options
 * give (e.g. `snapshots: "auto"` for the drive).
 */
export function openRenterFromArgs(args: RenterArgs, offline = false, overrides: Partial<RenterNodeInit> = {}): Promise<RenterNode> {
  const logger = createLogger("dstor:renter");
  if (offline) return openRenterNode({ home: args.home, offline: true, logger });
  return openRenterNode({
    home: args.home,
    chainRpc: args["chain-rpc"],
    deployment: args.deployment,
    port: args.port,
    farmers: args.farmers ?? [],
    bootstrap: args.bootstrap ?? [],
    dht: args.dht,
    redundancy: args.redundancy,
    segmentSize: args["segment-size"],
    dealTermSeconds: args["deal-term"],
    confirmations: args.confirmations,
    policy: {
      sameSubnetOk: args["same-subnet-ok"],
      ...(args["max-price-tb-month"] === undefined ? {} : { maxPriceTbMonth: BigInt(Math.round(args["max-price-tb-month"] * 1_000_000)) }),
    },
    ...(args["max-egress-price-gb"] === undefined ? {} : { maxEgressPricePerGb: priceToUnits(args["max-egress-price-gb"], "--max-egress-price-gb") }),
    snapshotDelayMs: Math.max(0, args["snapshot-delay"] ?? 10) * 1000,
    logger,
    ...overrides,
  });
}

/** A progress bar on stderr; a no-op unless stderr is a terminal. */
export interface Progress {
  update(done: number): void;
  finish(): void;
}

function clock(seconds: number): string {
  if (!Number.isFinite(seconds)) return "--:--";
  const s = Math.round(seconds);
  return `${String(Math.floor(s / 60)).padStart(2, "0")}:${String(s % 60).padStart(2, "0")}`;
}

/** Starts a progress bar for `total` bytes labelled `label`. */
export function progressBar(label: string, total: number | undefined, enabled: boolean): Progress {
  const stream = process.stderr;
  if (!enabled || !stream.isTTY) return { update() {}, finish() {} };
  const started = performance.now();
  let last = 0;
  const draw = (done: number): void => {
    const seconds = (performance.now() - started) / 1000;
    const rate = seconds > 0 ? done / seconds : 0;
    const width = 24;
    const fraction = total === undefined || total === 0 ? 1 : Math.min(1, done / total);
    const bar = "#".repeat(Math.round(fraction * width)).padEnd(width, ".");
    const eta = total === undefined || rate === 0 ? Number.NaN : (total - done) / rate;
    stream.write(`\r${label} [${bar}] ${(fraction * 100).toFixed(0).padStart(3)}% ${formatBytes(done)} ${formatBytes(rate)}/s ETA ${clock(eta)}   `);
  };
  return {
    update(done) {
      const now = performance.now();
      if (now - last < 100 && done !== total) return;
      last = now;
      draw(done);
    },
    finish() {
      stream.write("\n");
    },
  };
}
