/**
 * EIP-712 signer recovery with the native secp256k1 `ecrecover`
 * (native-bindings/ecrecover.c) when the addon is loaded, else ethers'
 * JavaScript one. Both paths parse the signature with ethers'
 * `Signature.from` (same accepted forms, same normalisation, same errors)
 * and hash the typed data with ethers' `TypedDataEncoder`; only the curve
 * arithmetic differs — 10-20× cheaper natively, which matters to a farmer
 * that recovers the renter of every order it serves.
 */
import { computeAddress, getBytes, recoverAddress, SigningKey, hexlify, Signature, type SignatureLike, type TypedDataDomain, TypedDataEncoder, type TypedDataField, verifyTypedData } from "ethers";
import { loadNative } from "../core/native.js";

/**
 * The address (EIP-55 checksummed, like ethers) that signed `value` under
 * `domain` and `types`; throws on a malformed signature or one from which no
 * key can be recovered.
 */
export function recoverTypedDataAddress(
  domain: TypedDataDomain,
  types: Record<string, TypedDataField[]>,
  value: Record<string, unknown>,
  signature: SignatureLike,
): string {
  const native = loadNative();
  if (native === undefined) return verifyTypedData(domain, types, value, signature);
  return recoverDigestAddress(getBytes(TypedDataEncoder.hash(domain, types, value)), signature);
}

/**
 * Signs the 32-byte `digest` with a secp256k1 private key (`0x` + 64 hex),
 * natively when the addon is loaded, else with ethers; returns the 65-byte
 * signature r ‖ s ‖ v (v = 27 + recovery bit) as `0x` + 130 hex, the same
 * bytes either way (RFC 6979, low s).
 */
export function signDigest(privateKey: string, digest: Uint8Array): string {
  const native = loadNative();
  if (native === undefined) return new SigningKey(privateKey).sign(digest).serialized;
  const sig = native.secp256k1Sign(digest, getBytes(privateKey));
  return `0x${Buffer.from(sig.subarray(0, 64)).toString("hex")}${(27 + sig[64]!).toString(16)}`;
}

/** A signer of EIP-712 typed data; one holding its key (ethers' Wallet) is signed for natively. */
export interface TypedDataSigner {
  signTypedData(domain: TypedDataDomain, types: Record<string, TypedDataField[]>, value: Record<string, unknown>): Promise<string>;
}

/**
 * The private key (`0x` + 64 hex) of a signer that holds it in memory
 * (ethers' Wallet and HDNodeWallet), so it can be signed for from a digest;
 * `undefined` for any other signer.
 */
export function privateKeyOf(signer: unknown): string | undefined {
  const key = (signer as { signingKey?: { privateKey?: unknown } } | null)?.signingKey?.privateKey;
  return typeof key === "string" ? key : undefined;
}

/**
 * `signer.signTypedData(domain, types, value)`, with the same bytes, but
 * signed natively from the digest when the signer holds its private key
 * (ethers' Wallet and HDNodeWallet; names in the domain are not resolved,
 * as dstor's domains have none).
 */
export async function signTypedData(
  signer: TypedDataSigner,
  domain: TypedDataDomain,
  types: Record<string, TypedDataField[]>,
  value: Record<string, unknown>,
): Promise<string> {
  const key = privateKeyOf(signer);
  if (key === undefined) return signer.signTypedData(domain, types, value);
  return signDigest(key, getBytes(TypedDataEncoder.hash(domain, types, value)));
}

/**
 * The address (EIP-55 checksummed) that signed the 32-byte `digest`, natively
 * when the addon is loaded (else with ethers); throws like
 * {@link recoverTypedDataAddress}.
 */
export function recoverDigestAddress(digest: Uint8Array, signature: SignatureLike): string {
  const native = loadNative();
  if (native === undefined) return recoverAddress(digest, signature);
  const sig = Signature.from(signature);
  const key = native.ecrecover(digest, getBytes(sig.r), getBytes(sig.s), sig.yParity);
  if (key === null) throw new Error("invalid signature for digest: no public key recovers from it");
  return computeAddress(hexlify(new Uint8Array([0x04, ...key])));
}
