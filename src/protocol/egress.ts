/**
 * `/dstor/deal/egress/1`: the renter hands a farmer a cumulative egress
 * voucher (EIP-712 `EgressVoucher(dealId, cumulativeAmount)`, the one
 * Market.redeemVoucher takes) for the reads it received and verified; the
 * farmer answers with the newest voucher it holds for the deal and with its
 * egress price.
 *
 * There is no egress price on chain: the farmer declares one
 * (`--egress-price-gb`) and states it in every answer of this protocol, so a
 * renter learns it by sending a voucher for the amount it already signed
 * (a zero voucher the first time). The answer also returns the voucher the
 * farmer holds — signed by the renter itself, so the renter checks that
 * signature and can continue from it without keeping its own durable count
 * (another device of the same wallet may have signed in between).
 *
 * Wire: one JSON request frame, one JSON answer frame, both tiny:
 * - → `{ v, dealId, cumulativeAmount, renterSignature }`
 * - ← `{ v, ok: true, accepted, egressPricePerGb, cumulativeAmount, renterSignature }`
 *   (`renterSignature` is `"0x"` while the farmer holds no voucher), or the
 *   usual `{ v, ok: false, code, message }`.
 */
import { DstorError } from "../core/errors.js";
import { PROTOCOL_VERSION } from "./messages.js";
import { expectKeys, expectPrefixedHex, expectUintString, field, jsonBytes, parseJsonObject, uintString } from "./validate.js";

/** Protocol id of egress vouchers. */
export const EGRESS_VOUCHER_PROTOCOL = "/dstor/deal/egress/1";

/** Largest request or answer frame, in bytes (both are a few hundred). */
export const MAX_EGRESS_MESSAGE_BYTES = 4096;

/** Whole-exchange deadline of an egress-voucher exchange, in ms. */
export const EGRESS_VOUCHER_TIMEOUT_MS = 30_000;

/** A voucher the renter hands over. */
export interface EgressVoucherRequest {
  v: 1;
  dealId: bigint;
  /** Token units owed for every read of the deal so far (cumulative, never decreasing). */
  cumulativeAmount: bigint;
  /** The renter's EIP-712 signature (`0x` + 130 hex). */
  renterSignature: string;
}

/** The farmer's answer. */
export type EgressVoucherResponse =
  | {
      v: 1;
      ok: true;
      /** Whether the request's voucher is now the newest one the farmer holds. */
      accepted: boolean;
      /** The farmer's egress price, token units per GB (10^9 bytes). */
      egressPricePerGb: bigint;
      /** The newest voucher the farmer holds for the deal (0 / `0x` when none). */
      cumulativeAmount: bigint;
      renterSignature: string;
    }
  | { v: 1; ok: false; code: string; message: string };

function checkVersion(o: Readonly<Record<string, unknown>>, what: string): void {
  const v = field(o, "v");
  if (v !== PROTOCOL_VERSION) {
    throw new DstorError(typeof v === "number" ? "UNSUPPORTED_VERSION" : "MESSAGE_MALFORMED", `${what} must have v = ${PROTOCOL_VERSION}`);
  }
}

/** Decodes an egress-voucher request; throws `MESSAGE_MALFORMED`/`MESSAGE_TOO_LARGE`/`UNSUPPORTED_VERSION`. */
export function decodeEgressVoucherRequest(bytes: Uint8Array): EgressVoucherRequest {
  const what = "egress-voucher request";
  const o = parseJsonObject(bytes, MAX_EGRESS_MESSAGE_BYTES, what);
  checkVersion(o, what);
  expectKeys(o, ["v", "dealId", "cumulativeAmount", "renterSignature"], what);
  return {
    v: PROTOCOL_VERSION,
    dealId: expectUintString(field(o, "dealId"), 256, `${what}.dealId`),
    cumulativeAmount: expectUintString(field(o, "cumulativeAmount"), 256, `${what}.cumulativeAmount`),
    renterSignature: expectPrefixedHex(field(o, "renterSignature"), 65, `${what}.renterSignature`),
  };
}

/** Encodes an egress-voucher request (checked by decoding it). */
export function encodeEgressVoucherRequest(m: EgressVoucherRequest): Uint8Array {
  const bytes = jsonBytes({ v: m.v, dealId: uintString(m.dealId), cumulativeAmount: uintString(m.cumulativeAmount), renterSignature: m.renterSignature });
  decodeEgressVoucherRequest(bytes);
  return bytes;
}

/** Decodes an egress-voucher answer. */
export function decodeEgressVoucherResponse(bytes: Uint8Array): EgressVoucherResponse {
  const what = "egress-voucher response";
  const o = parseJsonObject(bytes, MAX_EGRESS_MESSAGE_BYTES, what);
  checkVersion(o, what);
  if (field(o, "ok") === true) {
    expectKeys(o, ["v", "ok", "accepted", "egressPricePerGb", "cumulativeAmount", "renterSignature"], what);
    const accepted = field(o, "accepted");
    if (typeof accepted !== "boolean") throw new DstorError("MESSAGE_MALFORMED", `${what}.accepted must be a boolean`);
    const cumulativeAmount = expectUintString(field(o, "cumulativeAmount"), 256, `${what}.cumulativeAmount`);
    const sig = field(o, "renterSignature");
    return {
      v: PROTOCOL_VERSION,
      ok: true,
      accepted,
      egressPricePerGb: expectUintString(field(o, "egressPricePerGb"), 256, `${what}.egressPricePerGb`),
      cumulativeAmount,
      renterSignature: cumulativeAmount === 0n && sig === "0x" ? "0x" : expectPrefixedHex(sig, 65, `${what}.renterSignature`),
    };
  }
  expectKeys(o, ["v", "ok", "code", "message"], what);
  const code = field(o, "code");
  const message = field(o, "message");
  if (field(o, "ok") !== false || typeof code !== "string" || typeof message !== "string") {
    throw new DstorError("MESSAGE_MALFORMED", `${what} is neither a voucher answer nor an error`);
  }
  return { v: PROTOCOL_VERSION, ok: false, code, message };
}

/** Encodes an egress-voucher answer (checked by decoding it). */
export function encodeEgressVoucherResponse(m: EgressVoucherResponse): Uint8Array {
  const bytes = m.ok
    ? jsonBytes({
        v: m.v,
        ok: true,
        accepted: m.accepted,
        egressPricePerGb: uintString(m.egressPricePerGb),
        cumulativeAmount: uintString(m.cumulativeAmount),
        renterSignature: m.renterSignature,
      })
    : jsonBytes(m);
  decodeEgressVoucherResponse(bytes);
  return bytes;
}
