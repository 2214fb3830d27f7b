/**
 * The one options table. Each option has one name and one meaning everywhere:
 * yargs reads it, config files are checked against it, and docs/options.md is
 * generated from it (`npm run docs:options`). Add an option here, then name it
 * in the commands that take it.
 */
import { DstorError } from "./errors.js";
import { parseSize } from "./units.js";

/** The value types an option can have. */
export type OptionType = "string" | "number" | "boolean" | "size" | "list";

/** One row of the options table. */
export interface OptionSpec {
  /** Long flag name, kebab-case, without dashes. */
  name: string;
  type: OptionType;
  /** Default value, already in its parsed form (sizes in bytes). */
  default?: string | number | boolean | string[];
  /** One sentence for `--help` and the docs. */
  help: string;
  /** Single-letter alias, if any. */
  alias?: string;
  /** Allowed values, if the option is an enumeration. */
  choices?: readonly string[];
}

/** Every option dstor understands. Keep sorted by name. */
export const OPTIONS = [
  { name: "allow-other", type: "boolean", default: false, help: "Let other users see the mounted drive (FUSE allow_other; needs user_allow_other in /etc/fuse.conf)." },
  { name: "block-time", type: "number", default: 1, help: "Seconds between blocks of the embedded dev chain (`dstor chain`)." },
  { name: "bootstrap", type: "list", help: "Peers to join the DHT through, as comma-separated libp2p multiaddrs ending in /p2p/<peer id> (registered farmers are used too)." },
  { name: "bulk-port", type: "number", default: 0, help: "TCP port of the farmer's direct-transfer listener (TLS 1.3 with per-renter keys handed out over libp2p; piece bytes skip the libp2p stack), on the host of the first --listen address; 0 picks a free port, -1 turns direct transfers off." },
  { name: "cache-dir", type: "string", help: "Directory for the write-back staging journal of the mounted drive (default: HOME/renter/cache)." },
  { name: "cache-size", type: "size", default: 1024 * 1024 * 1024, help: "Largest size of the in-memory decrypted segment cache, e.g. 1GiB." },
  { name: "chain-rpc", type: "string", help: "JSON-RPC URL of an EVM chain to use instead of the embedded local chain." },
  { name: "confirmations", type: "number", help: "Blocks on top of a worker's transaction (its own included) before the farmer's audit worker and the renter's keeper treat it as final; a transaction reorged out or dropped before that is sent again (default: 0 on dev chains, 2 on real networks)." },
  { name: "daemon", type: "boolean", default: false, help: "Run `dstor mount` in the background: it returns once the drive is mounted; the log goes to HOME/renter/mount.log; `dstor unmount` stops it." },
  { name: "deal-term", type: "number", help: "Term of new storage deals, in seconds (default: a 30-day month, at most 500 epochs)." },
  { name: "deployment", type: "string", help: "Contract deployment file to use with --chain-rpc (default: HOME/chain/deployment.json)." },
  { name: "dev-refuse-reads", type: "boolean", default: false, help: "Test hook, dev chains only: the farmer keeps its pieces and passes audits but refuses every read (what renters' spot checks catch)." },
  { name: "dht", type: "boolean", default: true, help: "Discover farmers on the DHT and look up farmers that moved (`--no-dht`: the registry and --farmers only)." },
  { name: "egress-price-gb", type: "number", default: 0.01, help: "Farmer's egress price in tokens per GB (10^9 bytes) read; renters pay it with egress vouchers the farmer redeems on chain." },
  { name: "epoch-seconds", type: "number", default: 10, help: "Epoch length in seconds (one audit chance and one pay period) when `dstor chain` or `dstor up` deploys the contracts; fixed at deployment (real networks: 86400)." },
  { name: "farmer-count", type: "number", default: 10, help: "How many local farmer processes `dstor up` starts." },
  { name: "farmer-port", type: "number", default: 7001, help: "TCP port of the local farmers `dstor up` starts, each on its own address 127.0.N.1." },
  { name: "farmers", type: "list", help: "Farmers to use, as a comma-separated list of libp2p multiaddrs (in addition to those found on-chain)." },
  { name: "home", type: "string", default: "./.dstor-local", help: "Directory holding this node's keys, databases and state." },
  { name: "json", type: "boolean", default: false, help: "Print machine-readable JSON instead of text." },
  { name: "listen", type: "list", default: ["/ip4/127.0.0.1/tcp/0"], help: "libp2p listen multiaddrs, comma-separated." },
  { name: "max-egress-price-gb", type: "number", default: 0.1, help: "Highest egress price a renter pays, in tokens per GB read (a farmer asking more is paid this)." },
  { name: "max-price-tb-month", type: "number", help: "Highest farmer price a renter accepts, in tokens per TB-month (default: any)." },
  { name: "mount", type: "string", default: "./drive", help: "Where to mount the drive: `dstor up` mounts it there (default ./drive) unless --no-renter; `dstor recover` mounts it there after recovering, if given." },
  { name: "phrase-file", type: "string", help: "Read the 24-word phrase from this file ('-' for standard input) instead of making a new one (`init`) or asking for it (`recover`)." },
  { name: "port", type: "number", default: 8545, help: "TCP port of the embedded dev chain's JSON-RPC endpoint on 127.0.0.1." },
  { name: "price-tb-month", type: "number", default: 1.5, help: "Farmer's price in tokens per TB (10^12 bytes) per 30-day month." },
  { name: "quota", type: "size", default: 10 * 1000 ** 3, help: "Disk space a farmer offers, e.g. 500GB." },
  { name: "read-only", type: "boolean", default: false, help: "Mount the drive read-only." },
  { name: "redundancy", type: "string", default: "4/6/8/10", help: "Erasure-coding strategy k/repair/optimal/total, e.g. 10/14/20/30." },
  { name: "renter", type: "boolean", default: true, help: "Whether `dstor up` runs the renter (`--no-renter`: only the chain and the farmers)." },
  { name: "same-subnet-ok", type: "boolean", default: false, help: "Allow several pieces of one segment on farmers in the same /24 subnet (local test networks only)." },
  { name: "segment-size", type: "size", default: 8 * 1024 * 1024, help: "Plaintext bytes per segment, e.g. 8MiB." },
  { name: "snapshot-delay", type: "number", default: 10, help: "Seconds of quiet after the last change to the mounted drive's tree before it stores a metadata snapshot in the network (it also stores one when unmounted; one-shot commands such as put only note the change for the drive)." },
  { name: "storage", type: "string", help: "Directory where a farmer keeps pieces." },
  { name: "unconfirmed-ttl", type: "number", default: 3600, help: "Seconds a farmer keeps a piece not yet confirmed into a co-signed deal state." },
  { name: "verify", type: "boolean", default: false, help: "`dstor stat`: fetch every stored piece and check it against its Merkle root, reporting corrupt, missing and unreachable pieces (reads the whole file's pieces)." },
] as const satisfies readonly OptionSpec[];

/** Names of all options in the table. */
export type OptionName = (typeof OPTIONS)[number]["name"];

const BY_NAME = new Map<string, OptionSpec>(OPTIONS.map((o) => [o.name, o]));

/** The table row for `name`; throws `INVALID_ARGUMENT` for an unknown name. */
export function optionSpec(name: OptionName): OptionSpec {
  const spec = BY_NAME.get(name);
  if (spec === undefined) throw new DstorError("INVALID_ARGUMENT", `unknown option --${name}`);
  return spec;
}

/**
 * Parses a raw value (from the command line or a config file) by the table's
 * type for `name`. Throws `INVALID_OPTION` with a message naming the option.
 */
export function parseOptionValue(name: OptionName, raw: unknown): string | number | boolean | string[] {
  const spec = optionSpec(name);
  const bad = (expected: string): never => {
    throw new DstorError("INVALID_OPTION", `--${name} expects ${expected}, got ${JSON.stringify(raw)}`);
  };
  switch (spec.type) {
    case "string":
      if (typeof raw !== "string") bad("text");
      if (spec.choices !== undefined && !spec.choices.includes(raw as string)) bad(`one of ${spec.choices.join(", ")}`);
      return raw as string;
    case "number": {
      const n = typeof raw === "number" ? raw : typeof raw === "string" && raw.trim() !== "" ? Number(raw) : Number.NaN;
      if (!Number.isFinite(n)) bad("a number");
      return n;
    }
    case "boolean":
      if (typeof raw === "boolean") return raw;
      if (raw === "true" || raw === "1") return true;
      if (raw === "false" || raw === "0") return false;
      return bad("true or false");
    case "size":
      if (typeof raw !== "string" && typeof raw !== "number") bad("a size such as 500GB");
      return parseSize(raw as string | number, `--${name}`);
    case "list": {
      const items = Array.isArray(raw) ? raw : typeof raw === "string" ? [raw] : bad("a comma-separated list");
      return (items as unknown[]).flatMap((item) =>
        String(item)
          .split(",")
          .map((s) => s.trim())
          .filter((s) => s.length > 0),
      );
    }
  }
}

/** Minimal view of the yargs builder that {@link addOptions} needs. */
export interface OptionSink {
  option(name: string, config: Record<string, unknown>): unknown;
}

/**
 * Registers the named options on a yargs builder, with their help, defaults,
 * aliases and a coercion through {@link parseOptionValue}.
 */
export function addOptions<T extends OptionSink>(yargs: T, names: readonly OptionName[]): T {
  for (const name of names) {
    const spec = optionSpec(name);
    const config: Record<string, unknown> = {
      describe: spec.help,
      type: spec.type === "boolean" ? "boolean" : spec.type === "number" ? "number" : "string",
      coerce: (raw: unknown) => (raw === undefined ? raw : parseOptionValue(name, raw)),
    };
    if (spec.default !== undefined) config.default = spec.default;
    if (spec.alias !== undefined) config.alias = spec.alias;
    if (spec.choices !== undefined) config.choices = spec.choices;
    if (spec.type === "list") config.array = false;
    yargs.option(name, config);
  }
  return yargs;
}

/** The whole of docs/options.md, generated from the table. */
export function optionsDocument(): string {
  return [
    "# dstor options",
    "",
    "Generated from `src/core/options.ts` by `npm run docs:options`; do not edit by hand.",
    "Every option has one name and one meaning in every command that takes it",
    "(`dstor <command> --help` lists which apply).",
    "",
    optionsMarkdown(),
  ].join("\n");
}

/** Renders the options table as Markdown, for docs/options.md. */
export function optionsMarkdown(): string {
  const rows = OPTIONS.map((o: OptionSpec) => {
    const def = o.default === undefined ? "" : `\`${Array.isArray(o.default) ? o.default.join(",") : String(o.default)}\``;
    return `| \`--${o.name}\` | ${o.type} | ${def} | ${o.help} |`;
  });
  return ["| option | type | default | meaning |", "| --- | --- | --- | --- |", ...rows, ""].join("\n");
}
