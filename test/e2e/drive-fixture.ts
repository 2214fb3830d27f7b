/**
 * `dstor mount` as a child process for the drive's e2e tests and the FUSE
 * benchmark. The mount must live in another process than the one doing file
 * operations on it (a process blocking on its own mount deadlocks), so the
 * test or bench talks to it only through the kernel.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { CLI } from "../renter/network-fixture.js";

/** A running `dstor mount` process. */
export interface DriveMount {
  child: ChildProcess;
  /** The last 20 kB of its stderr (for assertion messages). */
  stderr(): string;
  /** SIGTERM (uploads what is staged, unmounts) and wait for the exit; SIGKILL after 120 s. Returns the exit code. */
  stop(): Promise<number | null>;
  /** SIGKILL, as a crash would. */
  kill(): Promise<void>;
}

/** Resolves when `child` has exited. */
export function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once("exit", () => resolve()));
}

/**
 * Spawns `dstor mount MOUNTPOINT --json ARGS…` and waits for its `mounted`
 * line (60 s). The mount is pushed onto `registry` as soon as it is spawned,
 * so the caller's cleanup stops it even when it never gets ready. Set
 * DRIVE_TEST_LOG=1 to see its log.
 */
export async function spawnMount(mountpoint: string, args: string[], registry: DriveMount[]): Promise<DriveMount> {
  const child = spawn(process.execPath, [CLI, "mount", mountpoint, "--json", ...args], { stdio: ["ignore", "pipe", "pipe"] });
  let err = "";
  child.stderr?.on("data", (d: Buffer) => {
    err = (err + d.toString()).slice(-20_000);
  });
  const m: DriveMount = {
    child,
    stderr: () => err,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill("SIGTERM");
        const timer = setTimeout(() => child.kill("SIGKILL"), 120_000);
        await exited(child);
        clearTimeout(timer);
      }
      return child.exitCode;
    },
    async kill() {
      child.kill("SIGKILL");
      await exited(child);
    },
  };
  registry.push(m);
  await new Promise<void>((resolve, reject) => {
    let out = "";
    if (process.env.DRIVE_TEST_LOG) child.stderr?.pipe(process.stderr);
    const timer = setTimeout(() => reject(new Error(`mount not ready in 60 s; stderr:\n${err}`)), 60_000);
    child.stdout?.on("data", (d: Buffer) => {
      out += d.toString();
      if (out.split("\n").some((line) => line.includes('"event":"mounted"'))) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`mount exited with ${code} before ready; stderr:\n${err}`));
    });
  });
  return m;
}
