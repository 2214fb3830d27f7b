/**
 * `npm run docs:options`: writes docs/options.md from the one options table
 * (src/core/options.ts). A test fails when the file is out of date.
 */
import { writeFile } from "node:fs/promises";
import { resolve } from "node:path";
import { optionsDocument } from "../src/core/options.js";

const path = resolve(import.meta.dirname, "../../docs/options.md");
await writeFile(path, optionsDocument());
process.stdout.write(`wrote ${path}\n`);
