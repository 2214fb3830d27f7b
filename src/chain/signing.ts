/**
 * EIP-712 messages both parties sign: deal states (renter and farmer) and
 * egress vouchers (renter). The domain binds chain id and market address; the
 * deal state binds deal id, term and version — so no signature replays across
 * chains, markets, deals, terms or versions.
 */
import { type Signer, type TypedDataDomain, TypedDataEncoder, hexlify } from "ethers";
import { recoverTypedDataAddress, signTypedData } from "../crypto/ecrecover.js";

/** EIP-712 types of a deal state (must match Market.DEAL_STATE_TYPEHASH). */
export const DEAL_STATE_TYPES = {
  DealState: [
    { name: "dealId", type: "uint256" },
    { name: "term", type: "uint64" },
    { name: "root", type: "bytes32" },
    { name: "pieceCount", type: "uint64" },
    { name: "totalBytes", type: "uint64" },
    { name: "version", type: "uint64" },
  ],
};

/** EIP-712 types of an egress voucher (must match Market.EGRESS_VOUCHER_TYPEHASH). */
export const EGRESS_VOUCHER_TYPES = {
  EgressVoucher: [
    { name: "dealId", type: "uint256" },
    { name: "cumulativeAmount", type: "uint256" },
  ],
};

/** The market's EIP-712 domain. */
export function marketDomain(chainId: number | bigint, marketAddress: string): TypedDataDomain {
  return { name: "dstor Market", version: "1", chainId, verifyingContract: marketAddress };
}

/** A deal state as signed. */
export interface DealStateMessage {
  dealId: bigint;
  term: bigint;
  /** Deal root, 32 bytes (hex or bytes); zero for an empty deal. */
  root: string | Uint8Array;
  pieceCount: bigint;
  totalBytes: bigint;
  version: bigint;
}

/** An egress voucher as signed. */
export interface EgressVoucherMessage {
  dealId: bigint;
  /** Total egress owed for this deal so far, in token units (cumulative, never decreasing). */
  cumulativeAmount: bigint;
}

function normalize(state: DealStateMessage): Record<string, unknown> {
  return { ...state, root: typeof state.root === "string" ? state.root : hexlify(state.root) };
}

/** Signs a deal state. */
export function signDealState(signer: Signer, domain: TypedDataDomain, state: DealStateMessage): Promise<string> {
  return signTypedData(signer, domain, DEAL_STATE_TYPES, normalize(state));
}

/** The address that signed `state`, for checking a counterparty's signature off-chain. */
export function recoverDealStateSigner(domain: TypedDataDomain, state: DealStateMessage, signature: string): string {
  return recoverTypedDataAddress(domain, DEAL_STATE_TYPES, normalize(state), signature);
}

/** The EIP-712 digest of a deal state (equals Market.dealStateDigest). */
export function dealStateDigest(domain: TypedDataDomain, state: DealStateMessage): string {
  return TypedDataEncoder.hash(domain, DEAL_STATE_TYPES, normalize(state));
}

/** Signs an egress voucher (renter). */
export function signEgressVoucher(signer: Signer, domain: TypedDataDomain, voucher: EgressVoucherMessage): Promise<string> {
  return signTypedData(signer, domain, EGRESS_VOUCHER_TYPES, { ...voucher });
}

/** The address that signed an egress voucher. */
export function recoverVoucherSigner(domain: TypedDataDomain, voucher: EgressVoucherMessage, signature: string): string {
  return recoverTypedDataAddress(domain, EGRESS_VOUCHER_TYPES, { ...voucher }, signature);
}
