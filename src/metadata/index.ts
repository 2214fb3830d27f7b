/**
 * The renter's metadata: a level-backed tree of directories and files with
 * their segments, pieces, farmers and deals.
 */
export * from "./db.js";
export * from "./types.js";
export * from "./snapshot.js";
