import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { abortReason, raceSignal, sleep, throwIfAborted, withDeadline } from "../../src/core/abort.js";
import { assertArgument, DstorError, isDstorError } from "../../src/core/errors.js";
import { createLogger, type LogRecord } from "../../src/core/logging.js";
import { readFile } from "node:fs/promises";
import { resolve } from "node:path";
import { addOptions, OPTIONS, optionsDocument, optionsMarkdown, parseOptionValue } from "../../src/core/options.js";
import { formatBytes, parseSize } from "../../src/core/units.js";

describe("errors", () => {
  test("DstorError carries a code and details; isDstorError branches on codes", () => {
    const error = new DstorError("QUOTA_EXCEEDED", "full", { details: { free: 3 } });
    assert.equal(error.code, "QUOTA_EXCEEDED");
    assert.deepEqual(error.details, { free: 3 });
    assert.ok(isDstorError(error));
    assert.ok(isDstorError(error, "DISK_FULL", "QUOTA_EXCEEDED"));
    assert.ok(!isDstorError(error, "DISK_FULL"));
    assert.ok(!isDstorError(new Error("x")));
    assert.throws(() => assertArgument(false, "bad"), (e: unknown) => isDstorError(e, "INVALID_ARGUMENT"));
  });
});

describe("units", () => {
  test("parseSize understands decimal and binary units", () => {
    assert.equal(parseSize("500GB"), 500e9);
    assert.equal(parseSize("8MiB"), 8 * 2 ** 20);
    assert.equal(parseSize("1.5 TB"), 1.5e12);
    assert.equal(parseSize("4096"), 4096);
    assert.equal(parseSize(7), 7);
    for (const bad of ["", "abc", "5 parsecs", "-1", "1e3"]) {
      assert.throws(() => parseSize(bad), (e: unknown) => isDstorError(e, "INVALID_OPTION"), bad);
    }
    assert.throws(() => parseSize(-5), (e: unknown) => isDstorError(e, "INVALID_OPTION"));
  });
  test("formatBytes", () => {
    assert.equal(formatBytes(10), "10 B");
    assert.equal(formatBytes(8 * 2 ** 20), "8.0 MiB");
  });
});

describe("options table", () => {
  test("names are unique, kebab-case and sorted", () => {
    const names = OPTIONS.map((o) => o.name);
    assert.deepEqual([...names].sort(), names);
    assert.equal(new Set(names).size, names.length);
    for (const name of names) assert.match(name, /^[a-z][a-z0-9-]*$/);
  });
  test("values are parsed by type with clear errors", () => {
    assert.equal(parseOptionValue("quota", "500GB"), 500e9);
    assert.equal(parseOptionValue("farmer-count", "12"), 12);
    assert.deepEqual(parseOptionValue("farmers", "/ip4/127.0.0.1/tcp/1, /ip4/127.0.0.2/tcp/2"), [
      "/ip4/127.0.0.1/tcp/1",
      "/ip4/127.0.0.2/tcp/2",
    ]);
    assert.equal(parseOptionValue("json", "true"), true);
    assert.throws(
      () => parseOptionValue("farmer-count", "many"),
      (e: unknown) => isDstorError(e, "INVALID_OPTION") && e.message.includes("--farmer-count"),
    );
  });
  test("addOptions registers help, defaults and coercion", () => {
    const seen = new Map<string, Record<string, unknown>>();
    addOptions({ option: (name: string, config: Record<string, unknown>) => seen.set(name, config) }, ["quota", "home"]);
    assert.equal(seen.get("home")?.default, "./.dstor-local");
    const coerce = seen.get("quota")?.coerce as (raw: unknown) => unknown;
    assert.equal(coerce("2GB"), 2e9);
    assert.match(optionsMarkdown(), /\| `--quota` \| size \|/);
  });
});

test("docs/options.md is generated from the table and up to date (npm run docs:options)", async () => {
  const onDisk = await readFile(resolve(import.meta.dirname, "../../../docs/options.md"), "utf8");
  assert.equal(onDisk, optionsDocument());
});

describe("logging", () => {
  test("namespaces, levels and the enable spec", () => {
    const records: LogRecord[] = [];
    const root = createLogger("dstor", { sink: (r) => records.push(r), enable: "dstor:farmer*=debug" });
    const store = root.child("farmer").child("store");
    store.debug("kept", { n: 1 });
    store.trace("dropped");
    root.child("renter").info("dropped, default is warn");
    root.child("renter").warn("kept");
    assert.deepEqual(
      records.map((r) => [r.namespace, r.message]),
      [
        ["dstor:farmer:store", "kept"],
        ["dstor:renter", "kept"],
      ],
    );
  });
});

describe("abort helpers", () => {
  test("withDeadline times out with a TIMEOUT error", async () => {
    const signal = withDeadline(undefined, 10, "the test wait");
    await assert.rejects(sleep(10_000, { signal }), (e: unknown) => isDstorError(e, "TIMEOUT") && e.message.includes("the test wait"));
  });
  test("a caller's abort becomes ABORTED", async () => {
    const controller = new AbortController();
    const signal = withDeadline(controller.signal, 10_000, "x");
    const pending = raceSignal(new Promise(() => {}), signal);
    controller.abort();
    await assert.rejects(pending, (e: unknown) => isDstorError(e, "ABORTED"));
    assert.throws(() => throwIfAborted(signal), (e: unknown) => isDstorError(e, "ABORTED"));
    assert.equal(abortReason(signal).code, "ABORTED");
  });
  test("raceSignal passes results through", async () => {
    assert.equal(await raceSignal(Promise.resolve(5), new AbortController().signal), 5);
  });
});
