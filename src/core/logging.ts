/**
 * Injected, namespaced loggers (`dstor:farmer:store`). Modules receive a
 * {@link Logger} through their components and never write to the console
 * themselves; the CLI decides where lines go.
 *
 * Levels are enabled with the `DSTOR_LOG` environment variable, a
 * comma-separated list of namespace prefixes, optionally with a level:
 * `DSTOR_LOG=dstor:farmer*,dstor:chain=debug`. Warnings and errors are on by default.
 */

/** Severity of a log line, lowest first. */
export type LogLevel = "trace" | "debug" | "info" | "warn" | "error";

const LEVEL_RANK: Record<LogLevel, number> = { trace: 0, debug: 1, info: 2, warn: 3, error: 4 };

/** A namespaced logger. */
export interface Logger {
  readonly namespace: string;
  trace(message: string, fields?: Record<string, unknown>): void;
  debug(message: string, fields?: Record<string, unknown>): void;
  info(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
  error(message: string, fields?: Record<string, unknown>): void;
  /** A child logger whose namespace is `${namespace}:${name}`. */
  child(name: string): Logger;
}

/** Where formatted log records go. */
export type LogSink = (record: LogRecord) => void;

/** One structured log record. */
export interface LogRecord {
  time: Date;
  level: LogLevel;
  namespace: string;
  message: string;
  fields?: Record<string, unknown> | undefined;
}

interface Rule {
  prefix: string;
  wildcard: boolean;
  level: LogLevel;
}

function parseRules(spec: string | undefined): Rule[] {
  if (spec === undefined || spec.trim() === "") return [];
  return spec
    .split(",")
    .map((part) => part.trim())
    .filter((part) => part.length > 0)
    .map((part) => {
      const [pattern, level] = part.split("=") as [string, string | undefined];
      const wildcard = pattern.endsWith("*");
      const lvl = (level ?? "debug") as LogLevel;
      return { prefix: wildcard ? pattern.slice(0, -1) : pattern, wildcard, level: lvl in LEVEL_RANK ? lvl : "debug" };
    });
}

/** Options for {@link createLogger}. */
export interface LoggerInit {
  /** Receives every enabled record. Defaults to one line of text on stderr. */
  sink?: LogSink;
  /** Enabled namespaces, as in `DSTOR_LOG`. Defaults to `process.env.DSTOR_LOG`. */
  enable?: string;
  /** Level for namespaces no rule names. Default `warn`. */
  defaultLevel?: LogLevel;
}

/** Formats a record as one line of text. */
export function formatLogRecord(record: LogRecord): string {
  const fields = record.fields === undefined ? "" : ` ${safeJson(record.fields)}`;
  return `${record.time.toISOString()} ${record.level.toUpperCase()} ${record.namespace} ${record.message}${fields}`;
}

function safeJson(value: unknown): string {
  try {
    return JSON.stringify(value, (_key, v: unknown) => {
      if (typeof v === "bigint") return v.toString();
      if (v instanceof Error) return { name: v.name, message: v.message, code: (v as { code?: unknown }).code };
      if (v instanceof Uint8Array) return `<${v.byteLength} bytes>`;
      return v;
    });
  } catch {
    return "<unserializable>";
  }
}

const stderrSink: LogSink = (record) => {
  process.stderr.write(`${formatLogRecord(record)}\n`);
};

/** Creates the root logger for `namespace` (usually `dstor`). */
export function createLogger(namespace: string, init: LoggerInit = {}): Logger {
  const rules = parseRules(init.enable ?? process.env.DSTOR_LOG);
  const sink = init.sink ?? stderrSink;
  const defaultRank = LEVEL_RANK[init.defaultLevel ?? "warn"];
  const threshold = (ns: string): number => {
    let rank = defaultRank;
    for (const rule of rules) {
      const match = rule.wildcard ? ns.startsWith(rule.prefix) : ns === rule.prefix || ns.startsWith(`${rule.prefix}:`);
      if (match) rank = Math.min(rank, LEVEL_RANK[rule.level]);
    }
    return rank;
  };
  const make = (ns: string): Logger => {
    const min = threshold(ns);
    const emit = (level: LogLevel, message: string, fields?: Record<string, unknown>): void => {
      if (LEVEL_RANK[level] < min) return;
      sink({ time: new Date(), level, namespace: ns, message, fields });
    };
    return {
      namespace: ns,
      trace: (m, f) => emit("trace", m, f),
      debug: (m, f) => emit("debug", m, f),
      info: (m, f) => emit("info", m, f),
      warn: (m, f) => emit("warn", m, f),
      error: (m, f) => emit("error", m, f),
      child: (name) => make(`${ns}:${name}`),
    };
  };
  return make(namespace);
}

/** A logger that drops everything; for tests and library defaults. */
export function silentLogger(namespace = "dstor"): Logger {
  return createLogger(namespace, { sink: () => {}, enable: "", defaultLevel: "error" });
}
