/**
 * `dstor up`: the whole network on one machine — the embedded chain and
 * `--farmer-count` farmer processes on 127.0.N.1 — with a live status screen
 * on a terminal (one JSON status line per interval otherwise, or with
 * `--json`). Writes HOME/up.json when ready. Ctrl-C / SIGTERM stops
 * everything in order and leaves nothing running; running it again brings
 * back the same network with all its state.
 */
import { mkdir } from "node:fs/promises";
import { resolve } from "node:path";
import type { CommandModule } from "yargs";
import { createLogger } from "../../core/logging.js";
import { addOptions } from "../../core/options.js";
import { type CliProcess, cliMain, type DevNetStatus, spawnCliProcess, startDevNet, stopChild, writeUpFile } from "../../node/devnet.js";
import { type DriveStatus, fileHealth, readDriveStatus } from "../../node/drive-status.js";
import { initHome } from "../../node/home.js";
import { formatBytes } from "../../core/units.js";

interface UpArgs {
  home: string;
  "farmer-count": number;
  "farmer-port": number;
  port: number;
  "block-time": number;
  "epoch-seconds": number;
  "chain-rpc"?: string;
  quota: number;
  "price-tb-month": number;
  renter: boolean;
  mount: string;
  json: boolean;
  "snapshot-delay": number;
}

/** The drive's part of a status line: uploads in flight, files with their health given which farmers are up, the backup. */
interface DriveView {
  uploads: DriveStatus["uploads"];
  files: Array<{ path: string; size: number; health: string; livePieces: number }>;
  moreFiles: number;
  snapshot: DriveStatus["snapshot"];
  /** Seconds since the drive last wrote its status (a stale one means the drive is stuck or gone). */
  ageSeconds: number;
}

function driveView(drive: DriveStatus | undefined, status: DevNetStatus): DriveView | undefined {
  if (drive === undefined) return undefined;
  const up = new Set(status.farmers.filter((f) => f.up && f.wallet !== undefined).map((f) => f.wallet!.toLowerCase()));
  return {
    uploads: drive.uploads,
    files: drive.files.map((f) => {
      const { health, live } = fileHealth(f, (wallet) => up.has(wallet.toLowerCase()));
      return { path: f.path, size: f.size, health, livePieces: live };
    }),
    moreFiles: drive.moreFiles,
    snapshot: drive.snapshot,
    ageSeconds: Math.max(0, Math.round((Date.now() - Date.parse(drive.time)) / 1000)),
  };
}

/** Most files listed on the terminal screen. */
const SCREEN_FILES = 12;

function renderDrive(view: DriveView): string[] {
  const lines: string[] = [];
  if (view.uploads.length === 0) lines.push("uploads: none in flight");
  else {
    lines.push(`uploads in flight: ${view.uploads.length}`);
    for (const u of view.uploads) {
      const pct = u.bytes === undefined || u.bytes === 0 ? "" : ` ${Math.floor((100 * u.bytesDone) / u.bytes)
        .toString()
        .padStart(3)}%`;
      lines.push(`  ${u.path}  ${formatBytes(u.bytesDone)}${u.bytes === undefined ? "" : ` of ${formatBytes(u.bytes)}`}${pct}`);
    }
  }
  const total = view.files.length + view.moreFiles;
  const unhealthy = view.files.filter((f) => f.health !== "healthy" && f.health !== "inline").length;
  lines.push(`files: ${total}${unhealthy > 0 ? `, ${unhealthy} not fully healthy` : ", all healthy"}`);
  // Worst first, so a problem is never scrolled off the screen.
  const rank: Record<string, number> = { lost: 0, repair: 1, degraded: 2, healthy: 3, inline: 4 };
  const shown = [...view.files].sort((a, b) => (rank[a.health] ?? 9) - (rank[b.health] ?? 9) || a.path.localeCompare(b.path)).slice(0, SCREEN_FILES);
  for (const f of shown) {
    const pieces = f.health === "inline" ? "in metadata" : `${f.livePieces} live pieces/segment`;
    lines.push(`  ${f.health.padEnd(8)}  ${formatBytes(f.size).padStart(10)}  ${pieces.padEnd(22)}  ${f.path}`);
  }
  if (total > shown.length) lines.push(`  … and ${total - shown.length} more`);
  const s = view.snapshot;
  const stored =
    s.sequence !== undefined ? `#${s.sequence} at ${s.at}` : s.onChain !== undefined && s.onChain > 0 ? `#${s.onChain} (from an earlier run)` : "none stored yet";
  const state = s.storing === true ? " (storing a new snapshot now)" : s.dirty ? " (changes pending)" : "";
  lines.push(`metadata backup: ${stored}${state}${s.error === undefined ? "" : ` — last attempt failed: ${s.error}`}`);
  return lines;
}

/** Seconds between status refreshes. */
const STATUS_INTERVAL_MS = 2000;
/** Longest wait for the drive to mount. */
const MOUNT_START_TIMEOUT_MS = 120_000;
/** Longest wait for the drive to upload what is staged and unmount at stop. */
const MOUNT_STOP_TIMEOUT_MS = 10 * 60_000;

function renderStatus(status: DevNetStatus, home: string, notes: string[], drive: DriveView | undefined): string {
  const lines = [
    `dstor local network — home ${home}`,
    `chain: block ${status.block}, epoch ${status.epoch}`,
    "",
    " #  state  listen                     price/TB-mo  capacity    audits ok/failed  earned      peer id",
  ];
  for (const f of status.farmers) {
    const price = f.pricePerTBMonth === undefined ? "-" : (Number(f.pricePerTBMonth) / 1e6).toFixed(4);
    // Capacity is sold in decimal units (as on-chain), so it is shown in GB.
    const capacity = f.capacityBytes === undefined ? "-" : `${(Number(f.capacityBytes) / 1e9).toFixed(1)} GB`;
    const audits = f.successes === undefined ? "-" : `${f.successes}/${f.failures}`;
    const earned = f.earned === undefined ? "-" : (Number(f.earned) / 1e6).toFixed(6);
    lines.push(
      `${String(f.index).padStart(2)}  ${(f.up ? "up" : "DOWN").padEnd(5)}  ${f.listen.padEnd(25)}  ${price.padStart(11)}  ${capacity.padStart(10)}  ${audits.padStart(16)}  ${earned.padStart(10)}  ${f.peerId ?? ""}`,
    );
  }
  lines.push("");
  if (status.renter !== undefined) {
    const tokens = (Number(status.renter.tokens) / 1e6).toFixed(6);
    lines.push(`renter ${status.renter.address}: ${tokens} tokens in the wallet`);
  }
  if (drive !== undefined) lines.push(...renderDrive(drive), "");
  lines.push(...notes, "Press Ctrl-C to stop everything.");
  return lines.join("\n");
}

/** `dstor up [--farmer-count N] [--no-renter] [--chain-rpc URL]`. */
export const upCommand: CommandModule<object, UpArgs> = {
  command: "up",
  describe: "Run everything locally: the chain, farmers on 127.0.N.1, and the renter; with a live status screen",
  builder: (yargs) =>
    addOptions(yargs, ["home", "farmer-count", "farmer-port", "port", "block-time", "epoch-seconds", "chain-rpc", "quota", "price-tb-month", "renter", "mount", "json", "snapshot-delay"]) as never,
  handler: async (args) => {
    const logger = createLogger("dstor:up");
    const notes: string[] = [];
    let renterAddress: string | undefined;
    if (args.renter) {
      // The renter lives in the network's home itself (phrase in HOME/phrase,
      // metadata in HOME/renter/), next to HOME/chain: so `dstor put`, `get`,
      // `ls` … with the same --home find the chain and the deployment.
      const identity = await initHome(args.home);
      if (identity.created) {
        const warning = "A new renter phrase was made for this local network. Write it down: it is the only way to recover the files if this directory is lost (`dstor recover`).";
        if (args.json) process.stdout.write(`${JSON.stringify({ event: "phrase-created", warning, phrase: identity.phrase })}\n`);
        else process.stdout.write(`${warning}\n\n    ${identity.phrase}\n\n`);
      }
      renterAddress = identity.address;
    }
    const stopController = new AbortController();
    const onSignal = (): void => stopController.abort();
    process.once("SIGINT", onSignal);
    process.once("SIGTERM", onSignal);
    const interactive = process.stdout.isTTY === true && !args.json;
    if (interactive) process.stdout.write(`starting the chain and ${args["farmer-count"]} farmers…\n`);
    const net = await startDevNet({
      home: args.home,
      farmerCount: args["farmer-count"],
      chainPort: args.port,
      blockTimeSeconds: args["block-time"],
      epochSeconds: args["epoch-seconds"],
      chainRpc: args["chain-rpc"],
      farmerQuotaBytes: args.quota,
      farmerPort: args["farmer-port"],
      priceTbMonth: args["price-tb-month"],
      logger,
      signal: stopController.signal,
    });
    let drive: CliProcess | undefined;
    try {
      let mountpoint: string | null = null;
      if (args.renter) {
        // The drive is its own process: a process must never block on its
        // own FUSE mount, and a crash of the drive is not a crash of the network.
        mountpoint = resolve(args.mount);
        await mkdir(mountpoint, { recursive: true });
        const driveArgs = [cliMain(), "mount", mountpoint, "--home", args.home, "--chain-rpc", net.rpcUrl, "--snapshot-delay", String(args["snapshot-delay"]), "--json"];
        drive = spawnCliProcess(driveArgs, "mounted", {
          name: "the drive",
          timeoutMs: MOUNT_START_TIMEOUT_MS,
          signal: stopController.signal,
          onExit: (reason) => {
            if (!stopController.signal.aborted) logger.warn(`the drive ${reason}`);
          },
        });
        await drive.ready;
        notes.unshift(`drive mounted at ${mountpoint}: use it like any folder`);
      }
      const upFile = await writeUpFile(args.home, net, { mount: mountpoint, renter: args.renter });
      if (interactive) process.stdout.write(`ready: ${upFile}\n`);
      else process.stdout.write(`${JSON.stringify({ event: "ready", upFile })}\n`);
      while (!stopController.signal.aborted) {
        try {
          const status = await net.status({ renter: renterAddress });
          const view = args.renter ? driveView(await readDriveStatus(args.home), status) : undefined;
          if (interactive) process.stdout.write(`\x1b[2J\x1b[H${renderStatus(status, args.home, notes, view)}\n`);
          else process.stdout.write(`${JSON.stringify({ event: "status", time: new Date().toISOString(), ...status, ...(view === undefined ? {} : { drive: view }) })}\n`);
        } catch (error) {
          logger.warn("could not read the status", { error });
        }
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, STATUS_INTERVAL_MS);
          stopController.signal.addEventListener("abort", () => {
            clearTimeout(timer);
            resolve();
          });
        });
      }
    } finally {
      if (interactive) process.stdout.write("\nuploading staged writes, unmounting, stopping farmers and the chain…\n");
      if (drive !== undefined) await stopChild(drive.child, MOUNT_STOP_TIMEOUT_MS);
      await net.stop();
      if (interactive) process.stdout.write("stopped.\n");
      else process.stdout.write(`${JSON.stringify({ event: "stopped" })}\n`);
    }
  },
};
