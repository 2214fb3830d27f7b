/**
 * The dstor wire protocol: protocol ids, limits, framing, messages, signed
 * orders and replay protection. Used by the farmer (to serve) and the renter
 * (to ask); the libp2p node that carries the streams is composed in src/node/.
 */
export * from "./codec.js";
export * from "./limits.js";
export * from "./messages.js";
export * from "./orders.js";
export * from "./protocols.js";
export * from "./serials.js";
