/**
 * The chain module: typed contract bindings, deployment, the embedded dev
 * chain, nonce-safe signers, EIP-712 signing, and audit challenge/proof helpers.
 */
export * from "./contracts.js";
export * from "./devchain.js";
export * from "./proofs.js";
export * from "./signer.js";
export * from "./signing.js";
