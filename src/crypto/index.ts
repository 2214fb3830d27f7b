/**
 * dstor's cryptography: keys from the phrase, segment AEAD, piece ids and
 * Merkle trees. Formats are specified, with vectors, in docs/formats.md.
 */
export * from "./aead.js";
export * from "./bytes.js";
export * from "./hkdf.js";
export * from "./keys.js";
export * from "./merkle.js";
export * from "./piece-id.js";
