/**
 * Spawning long-running child processes (anvil, farmers) so that they never
 * outlive us. A normal exit is handled by `stop()`; a SIGKILL of this process
 * cannot be caught, so on Linux the child is started through util-linux's
 * `setpriv --pdeathsig TERM`, which asks the kernel to send it SIGTERM when
 * its parent dies, then execs the real program (same pid, nothing in between).
 *
 * Children also get their own process group (`detached`), so a Ctrl-C in the
 * terminal reaches only the supervising process, which then stops them in
 * order (the drive uploads what is staged while the farmers are still up).
 */
import { type ChildProcess, type SpawnOptions, spawn } from "node:child_process";
import { existsSync } from "node:fs";

const SETPRIV = "/usr/bin/setpriv";

/** Whether children can be tied to our lifetime on this system. */
export function canTieToParent(): boolean {
  return process.platform === "linux" && existsSync(SETPRIV);
}

/**
 * `spawn(command, args, options)`, with the child receiving SIGTERM if this
 * process dies for any reason (where {@link canTieToParent}).
 */
export function spawnTied(command: string, args: readonly string[], options: SpawnOptions): ChildProcess {
  const grouped = { ...options, detached: true };
  if (!canTieToParent()) return spawn(command, args, grouped);
  return spawn(SETPRIV, ["--pdeathsig", "TERM", "--", command, ...args], grouped);
}
