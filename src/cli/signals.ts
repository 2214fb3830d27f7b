/**
 * Foreground commands (`chain`, `farm`, `up`, `mount`) run until the user
 * presses Ctrl-C or a supervisor sends SIGTERM.
 */

/** Resolves on the first SIGINT or SIGTERM, then stops listening for them. */
export function waitForStopSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const onSignal = (signal: NodeJS.Signals): void => {
      process.removeListener("SIGINT", onSignal);
      process.removeListener("SIGTERM", onSignal);
      resolve(signal);
    };
    process.once("SIGINT", onSignal);
    process.once("SIGTERM", onSignal);
  });
}
