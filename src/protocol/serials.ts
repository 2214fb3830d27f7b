/**
 * Replay protection for orders: every order carries a random 16-byte serial,
 * and a farmer accepts each (renter, serial) once. A serial is remembered
 * until its order expires — after that the expiry check refuses the order
 * anyway — so the store stays bounded by the order TTL times the request rate.
 *
 * {@link LevelSerialStore} survives restarts: a farmer that crashes and comes
 * back must not accept an unexpired order it already served.
 *
 * Atomicity: `claim()` is a check-and-set. LevelDB has no compare-and-swap,
 * so a claim first reserves the key in an in-memory pending set —
 * synchronously, in the same tick as the check against that set — then
 * reads the db and writes. A concurrent claim of the same key sees the
 * pending entry and loses without touching the db; once the write lands the
 * db itself answers. One process owns the database (LevelDB's own lock
 * enforces it), so in-process atomicity is whole atomicity.
 *
 * Layout (one level database, UTF-8 keys):
 *   `s!<renter>!<serial>`            → expiry (decimal unix seconds)
 *   `e!<expiry, 20 digits>!<renter>!<serial>` → ""   (expiry index for prune)
 * Both keys are written and deleted in one batch.
 */
import { Level } from "level";
import { type AbortOptions, throwIfAborted } from "../core/abort.js";
import { DstorError } from "../core/errors.js";
import { type Logger, silentLogger } from "../core/logging.js";

/** Remembers used order serials per renter until their orders expire. */
export interface SerialStore {
  /** True when (renter, serial) is recorded. Read-only; {@link SerialStore.claim} is authoritative. */
  has(renter: string, serial: string, options?: AbortOptions): Promise<boolean>;
  /**
   * Records (renter, serial) until `expirySeconds` if it was not recorded;
   * true when this call recorded it, false when it was already there (or is
   * being recorded by a concurrent call). Atomic within the process.
   */
  claim(renter: string, serial: string, expirySeconds: number | bigint, options?: AbortOptions): Promise<boolean>;
  /** Forgets serials whose order expired at or before `nowSeconds`; resolves with how many were removed. */
  prune(nowSeconds: number | bigint, options?: AbortOptions): Promise<number>;
  /** Releases the store; idempotent. Later calls fail with `STORE_CLOSED`. */
  close(): Promise<void>;
}

const RENTER = /^0x[0-9a-f]{40}$/;
const SERIAL = /^[0-9a-f]{32}$/;
const UINT64_MAX = (1n << 64n) - 1n;
/** Decimal digits of the largest uint64, so padded expiries sort numerically. */
const EXPIRY_DIGITS = 20;

function checkKey(renter: string, serial: string): string {
  if (typeof renter !== "string" || !RENTER.test(renter)) {
    throw new DstorError("INVALID_ARGUMENT", "renter must be 0x followed by 40 lowercase hex characters");
  }
  if (typeof serial !== "string" || !SERIAL.test(serial)) {
    throw new DstorError("INVALID_ARGUMENT", "serial must be 32 lowercase hex characters");
  }
  return `${renter}!${serial}`;
}

function checkSeconds(value: number | bigint, what: string): bigint {
  const n = typeof value === "bigint" ? value : Number.isSafeInteger(value) ? BigInt(value) : -1n;
  if (n < 0n || n > UINT64_MAX) throw new DstorError("INVALID_ARGUMENT", `${what} must be a uint64 number of seconds, got ${String(value)}`);
  return n;
}

function padExpiry(expiry: bigint): string {
  return expiry.toString(10).padStart(EXPIRY_DIGITS, "0");
}

/** Options of {@link openLevelSerialStore}. */
export interface LevelSerialStoreInit {
  /** Directory of the level database (created if missing). */
  path: string;
  /** Logger (namespace `dstor:protocol:serials` is a good choice). */
  logger?: Logger;
}

/** A {@link SerialStore} kept in a level database; survives restarts. */
export class LevelSerialStore implements SerialStore {
  readonly #db: Level<string, string>;
  readonly #log: Logger;
  /** Keys being claimed right now (see the module comment: the check-and-set lock). */
  readonly #pending = new Set<string>();
  #closed = false;
  #closing: Promise<void> | undefined;

  /** Use {@link openLevelSerialStore}. */
  constructor(db: Level<string, string>, logger: Logger) {
    this.#db = db;
    this.#log = logger;
  }

  #assertOpen(): void {
    if (this.#closed) throw new DstorError("STORE_CLOSED", "the serial store is closed");
  }

  /** {@inheritDoc SerialStore.has} */
  async has(renter: string, serial: string, options: AbortOptions = {}): Promise<boolean> {
    const key = checkKey(renter, serial);
    this.#assertOpen();
    throwIfAborted(options.signal);
    if (this.#pending.has(key)) return true;
    return (await this.#get(`s!${key}`)) !== undefined;
  }

  /** {@inheritDoc SerialStore.claim} */
  async claim(renter: string, serial: string, expirySeconds: number | bigint, options: AbortOptions = {}): Promise<boolean> {
    const key = checkKey(renter, serial);
    const expiry = checkSeconds(expirySeconds, "expirySeconds");
    this.#assertOpen();
    throwIfAborted(options.signal);
    // Check-and-reserve in one synchronous step: no await between has() and add().
    if (this.#pending.has(key)) return false;
    this.#pending.add(key);
    try {
      if ((await this.#get(`s!${key}`)) !== undefined) return false;
      this.#assertOpen();
      await this.#db.batch([
        { type: "put", key: `s!${key}`, value: expiry.toString(10) },
        { type: "put", key: `e!${padExpiry(expiry)}!${key}`, value: "" },
      ]);
      return true;
    } finally {
      this.#pending.delete(key);
    }
  }

  /** {@inheritDoc SerialStore.prune} */
  async prune(nowSeconds: number | bigint, options: AbortOptions = {}): Promise<number> {
    const now = checkSeconds(nowSeconds, "nowSeconds");
    this.#assertOpen();
    // Index keys sort by padded expiry, so "expiry ≤ now" is one key range.
    const upper = now >= UINT64_MAX ? "e!~" : `e!${padExpiry(now + 1n)}`;
    let removed = 0;
    let batch: { type: "del"; key: string }[] = [];
    const flush = async (): Promise<void> => {
      if (batch.length > 0) await this.#db.batch(batch);
      batch = [];
    };
    for await (const indexKey of this.#db.keys({ gte: "e!", lt: upper })) {
      throwIfAborted(options.signal);
      // e!<20 digits>!<renter>!<serial>
      const key = indexKey.slice(2 + EXPIRY_DIGITS + 1);
      batch.push({ type: "del", key: indexKey }, { type: "del", key: `s!${key}` });
      removed++;
      if (batch.length >= 1000) await flush();
    }
    await flush();
    if (removed > 0) this.#log.debug("pruned expired order serials", { removed });
    return removed;
  }

  /** {@inheritDoc SerialStore.close} */
  close(): Promise<void> {
    this.#closed = true;
    this.#closing ??= this.#db.close();
    return this.#closing;
  }

  async #get(key: string): Promise<string | undefined> {
    // level 10 resolves missing keys with undefined (no NotFound error).
    return (await this.#db.get(key)) as string | undefined;
  }
}

/** True when a level open error (or its cause) is LevelDB's lock being held by another process. */
function isLockError(error: unknown): boolean {
  for (let e: unknown = error, depth = 0; e instanceof Error && depth < 4; e = e.cause, depth++) {
    if ((e as { code?: unknown }).code === "LEVEL_LOCKED") return true;
  }
  return false;
}

/**
 * Opens (creating if needed) a level-backed serial store at `init.path`.
 * `HOME_IN_USE` when another process holds the database, `STORE_CORRUPT` when it cannot be opened.
 */
export async function openLevelSerialStore(init: LevelSerialStoreInit): Promise<LevelSerialStore> {
  const db = new Level<string, string>(init.path, { keyEncoding: "utf8", valueEncoding: "utf8" });
  try {
    await db.open();
  } catch (error) {
    if (isLockError(error)) {
      throw new DstorError("HOME_IN_USE", `the order serial database at ${init.path} is in use by another process; stop the other farmer first`, {
        cause: error,
      });
    }
    throw new DstorError("STORE_CORRUPT", `cannot open the order serial database at ${init.path}`, { cause: error });
  }
  return new LevelSerialStore(db, init.logger ?? silentLogger("dstor:protocol:serials"));
}

/**
 * An in-memory {@link SerialStore}: for renters' tests and single-run tools.
 * A farmer must use {@link LevelSerialStore}, or a restart re-opens every
 * unexpired order to replay.
 */
export class MemorySerialStore implements SerialStore {
  readonly #serials = new Map<string, bigint>();
  #closed = false;

  #assertOpen(): void {
    if (this.#closed) throw new DstorError("STORE_CLOSED", "the serial store is closed");
  }

  /** {@inheritDoc SerialStore.has} */
  async has(renter: string, serial: string, options: AbortOptions = {}): Promise<boolean> {
    const key = checkKey(renter, serial);
    this.#assertOpen();
    throwIfAborted(options.signal);
    return this.#serials.has(key);
  }

  /** {@inheritDoc SerialStore.claim} */
  async claim(renter: string, serial: string, expirySeconds: number | bigint, options: AbortOptions = {}): Promise<boolean> {
    const key = checkKey(renter, serial);
    const expiry = checkSeconds(expirySeconds, "expirySeconds");
    this.#assertOpen();
    throwIfAborted(options.signal);
    if (this.#serials.has(key)) return false;
    this.#serials.set(key, expiry);
    return true;
  }

  /** {@inheritDoc SerialStore.prune} */
  async prune(nowSeconds: number | bigint, options: AbortOptions = {}): Promise<number> {
    const now = checkSeconds(nowSeconds, "nowSeconds");
    this.#assertOpen();
    throwIfAborted(options.signal);
    let removed = 0;
    for (const [key, expiry] of this.#serials) {
      if (expiry <= now) {
        this.#serials.delete(key);
        removed++;
      }
    }
    return removed;
  }

  /** {@inheritDoc SerialStore.close} */
  async close(): Promise<void> {
    this.#closed = true;
  }
}
