/**
 * `dstor recover`: everything back from the phrase and the chain alone. Reads
 * the renter's metadata pointer on chain, fetches the snapshot it names from
 * the farmers, verifies it (content root, sequence, AEAD), rebuilds the
 * metadata database in a fresh home, and with `--mount DIR` serves the drive
 * there. Works for the local network's layout too (the renter home is the
 * network's home: `dstor recover --home ./.dstor-local` after its renter
 * files were lost).
 */
import { copyFile, mkdir, readFile, stat } from "node:fs/promises";
import { dirname } from "node:path";
import type { Argv, CommandModule } from "yargs";
import { devChainPaths } from "../../chain/devchain.js";
import { DstorError } from "../../core/errors.js";
import { addOptions } from "../../core/options.js";
import { initHome } from "../../node/home.js";
import { recoverMetadata } from "../../renter/snapshots.js";
import { addRenterOptions, openRenterFromArgs, type RenterArgs } from "../renter-common.js";
import { serveDrive } from "./mount.js";

interface RecoverArgs extends RenterArgs {
  "phrase-file"?: string;
  mount?: string;
  "read-only": boolean;
  "allow-other": boolean;
  "cache-size": number;
  "cache-dir"?: string;
}

async function readPhraseInput(file: string | undefined): Promise<string> {
  if (file === undefined || file === "-") {
    if (process.stdin.isTTY) process.stderr.write("Type or paste your 24-word phrase, then press Enter and Ctrl-D:\n");
    const chunks: Buffer[] = [];
    for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
    return Buffer.concat(chunks).toString("utf8");
  }
  return readFile(file, "utf8");
}

const exists = (path: string): Promise<boolean> =>
  stat(path).then(
    () => true,
    () => false,
  );

/** `dstor recover [--phrase-file FILE] [--chain-rpc URL --deployment FILE] [--mount DIR]`. */
export const recoverCommand: CommandModule<object, RecoverArgs> = {
  command: "recover",
  describe: "Rebuild the drive's metadata from the phrase and the chain (into a fresh --home), then optionally mount it",
  builder: (yargs) =>
    (addOptions(addRenterOptions(yargs), ["phrase-file", "mount", "read-only", "allow-other", "cache-size", "cache-dir"]) as unknown as Argv).default("mount", undefined) as never,
  handler: async (args) => {
    const phrase = await readPhraseInput(args["phrase-file"]);
    const identity = await initHome(args.home, phrase);
    // A fresh home has no deployment file: keep the one given, so later
    // commands with this --home find the contracts without --deployment.
    const homeDeployment = devChainPaths(args.home).deployment;
    if (args.deployment !== undefined && !(await exists(homeDeployment))) {
      await mkdir(dirname(homeDeployment), { recursive: true });
      await copyFile(args.deployment, homeDeployment);
    }
    // No backup while recovering: the database starts empty and must never be published.
    const node = await openRenterFromArgs(args, false, { snapshots: "off" });
    let result: Awaited<ReturnType<typeof recoverMetadata>>;
    try {
      if (node.pointer === undefined) throw new DstorError("INTERNAL", "the renter has no chain connection");
      result = await recoverMetadata({ renter: node.renter, metadata: node.metadata, pointer: node.pointer }, node.snapshotKeys);
    } finally {
      await node.stop();
    }
    if (args.json) process.stdout.write(`${JSON.stringify({ event: "recovered", home: args.home, address: identity.address, ...result })}\n`);
    else process.stdout.write(`recovered metadata snapshot #${result.sequence} (${result.entries} records, ${result.bytes} bytes) for wallet ${identity.address} into ${args.home}\n`);
    if (args.mount !== undefined) await serveDrive({ ...args, mountpoint: args.mount });
  },
};
