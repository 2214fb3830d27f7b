/**
 * Running `dstor up` from a test: spawn it with `--json`, collect its JSON
 * lines and wait for one matching a predicate, stop it with SIGTERM, and the
 * process and mount checks the up tests share.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { readFile } from "node:fs/promises";
import { resolve } from "node:path";

/** The built CLI entry point. */
export const MAIN = resolve(import.meta.dirname, "../../src/cli/main.js");

/** The drive's part of a status line (see src/cli/commands/up.ts). */
export interface DriveLine {
  uploads: Array<{ path: string; bytesDone: number; bytes?: number }>;
  files: Array<{ path: string; size: number; health: string; livePieces: number }>;
  moreFiles: number;
  snapshot: { sequence?: number; at?: string; dirty: boolean; error?: string };
}

/** One JSON line of `dstor up --json`. */
export interface StatusLine {
  event: string;
  block?: number;
  farmers?: Array<{ index: number; up: boolean; capacityBytes?: string; wallet?: string }>;
  drive?: DriveLine;
  phrase?: string;
}

/** Whether process `pid` exists. */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** A running `dstor up --json`. */
export interface UpProcess {
  child: ChildProcess;
  lines: StatusLine[];
  /** The first line (seen so far or to come) matching `pred`; rejects if `dstor up` exits first. */
  next: (pred: (l: StatusLine) => boolean) => Promise<StatusLine>;
  /** The last lines of its stderr. */
  stderr: () => string;
}

/** Starts `dstor up --json` and collects its JSON lines. */
export function startUp(home: string, port: number, extra: readonly string[] = ["--farmer-count", "3", "--no-renter"]): UpProcess {
  // The farmers' port follows the chain's, so several `dstor up` tests (in parallel files) never collide on :7001.
  const child = spawn(process.execPath, [MAIN, "up", "--home", home, "--port", String(port), "--farmer-port", String(port + 1), "--json", ...extra], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  const lines: StatusLine[] = [];
  const waiters: Array<{ pred: (l: StatusLine) => boolean; resolve: (l: StatusLine) => void }> = [];
  let buffered = "";
  let stderr = "";
  child.stderr!.on("data", (chunk: Buffer) => {
    stderr = (stderr + chunk.toString()).slice(-4000);
  });
  child.stdout!.on("data", (chunk: Buffer) => {
    buffered += chunk.toString();
    for (let nl = buffered.indexOf("\n"); nl >= 0; nl = buffered.indexOf("\n")) {
      const line = JSON.parse(buffered.slice(0, nl)) as StatusLine;
      buffered = buffered.slice(nl + 1);
      lines.push(line);
      for (const w of [...waiters]) {
        if (w.pred(line)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(line);
        }
      }
    }
  });
  const next = (pred: (l: StatusLine) => boolean): Promise<StatusLine> =>
    new Promise((resolveLine, reject) => {
      const found = lines.find(pred);
      if (found !== undefined) return resolveLine(found);
      waiters.push({ pred, resolve: resolveLine });
      child.once("exit", (code) => reject(new Error(`dstor up exited with ${code}: ${stderr}`)));
    });
  return { child, lines, next, stderr: () => stderr };
}

/** SIGTERM to `dstor up`; resolves with its exit code. */
export async function stopUp(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
  const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
  child.kill("SIGTERM");
  return exited;
}

/** Whether `dir` is a mount point now (from /proc/self/mountinfo). */
export async function mounted(dir: string): Promise<boolean> {
  const info = await readFile("/proc/self/mountinfo", "utf8");
  return info.split("\n").some((line) => line.split(" ")[4] === dir);
}
