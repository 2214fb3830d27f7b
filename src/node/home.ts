/**
 * A node's home directory: where its phrase, databases and state live.
 *
 * Layout (every path is relative to the home):
 *   phrase            the 24-word phrase, mode 0600 (dev networks; see below)
 *   identity.json     public facts derived from the phrase (wallet address)
 *   chain/            embedded chain state and deployment file
 *   farmer/           a farmer's piece store
 *   renter/           a renter's metadata database, cache and staging
 *
 * Keeping the phrase in the home is what every desktop wallet does with its
 * keystore and is what the local dev network needs; the phrase is shown once
 * at creation so the user can also keep it offline, and `dstor recover`
 * rebuilds everything else from it.
 */
import { chmod, mkdir, readFile, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { DstorError } from "../core/errors.js";
import { deriveKeys, generateMnemonic, parseMnemonic } from "../crypto/keys.js";

/** Resolved paths inside a home directory. */
export interface HomePaths {
  root: string;
  phrase: string;
  identity: string;
  chain: string;
  farmer: string;
  renter: string;
}

/** The paths of the home at `dir` (nothing is created). */
export function homePaths(dir: string): HomePaths {
  const root = resolve(dir);
  return {
    root,
    phrase: join(root, "phrase"),
    identity: join(root, "identity.json"),
    chain: join(root, "chain"),
    farmer: join(root, "farmer"),
    renter: join(root, "renter"),
  };
}

/** What {@link initHome} found or made. */
export interface HomeIdentity {
  /** The phrase (secret). */
  phrase: string;
  /** The wallet address derived from it. */
  address: string;
  /** True when the phrase was created by this call. */
  created: boolean;
}

/**
 * Loads the home's phrase, or creates the home with `phrase` (validated) or a
 * new random phrase when there is none. Refuses to replace an existing,
 * different phrase: that would orphan everything stored under it.
 */
export async function initHome(dir: string, phrase?: string): Promise<HomeIdentity> {
  const paths = homePaths(dir);
  const existing = await readPhrase(paths);
  if (existing !== undefined) {
    if (phrase !== undefined && parseMnemonic(phrase).phrase !== existing) {
      throw new DstorError("INVALID_ARGUMENT", `${paths.root} already holds a different phrase; use another --home`);
    }
    return { phrase: existing, address: deriveKeys(existing).wallet.address, created: false };
  }
  const chosen = phrase === undefined ? generateMnemonic() : parseMnemonic(phrase).phrase;
  const keys = deriveKeys(chosen);
  await mkdir(paths.root, { recursive: true, mode: 0o700 });
  await writeFile(paths.phrase, `${chosen}\n`, { mode: 0o600, flag: "wx" });
  await chmod(paths.phrase, 0o600);
  await writeFile(paths.identity, `${JSON.stringify({ address: keys.wallet.address }, null, 2)}\n`);
  return { phrase: chosen, address: keys.wallet.address, created: true };
}

/** Reads the phrase of an existing home; `NO_SUCH_FILE` if there is none. */
export async function loadPhrase(dir: string): Promise<string> {
  const paths = homePaths(dir);
  const phrase = await readPhrase(paths);
  if (phrase === undefined) {
    throw new DstorError("NO_SUCH_FILE", `${paths.root} has no phrase yet; run \`dstor init --home ${dir}\` first`);
  }
  return phrase;
}

async function readPhrase(paths: HomePaths): Promise<string | undefined> {
  let text: string;
  try {
    text = await readFile(paths.phrase, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw error;
  }
  return parseMnemonic(text).phrase;
}
