/**
 * The renter's egress accounting: it counts, per deal, the bytes it received
 * from a farmer AND verified against their Merkle root (the get path calls
 * {@link EgressAccountant.received}), and pays for them with cumulative
 * EIP-712 egress vouchers handed to the farmer on `/dstor/deal/egress/1`.
 *
 * Why the amount cannot be inflated by the farmer: the renter signs
 * `held + charge`, where `held` is the newest voucher the farmer holds —
 * which the farmer returns with the renter's own signature, checked here —
 * and `charge` is priced from the bytes counted here. The farmer only
 * redeems what the renter signed.
 *
 * Price: the farmer states its egress price in every answer; the renter pays
 * at most `maxEgressPricePerGb` per GB (its own ceiling): above it, the bytes
 * are paid at the ceiling and a warning is logged. Rounding is exact over a
 * process's life: charges are `floor((bytes × price + carry) / 10^9)` with
 * the remainder carried to the next flush of the deal.
 *
 * A flush per deal is two small exchanges: the voucher already signed (a
 * zero voucher the first time) to learn the price and the held voucher, then
 * the new cumulative one. Counts not yet paid stay pending when a farmer is
 * unreachable and go out with the next flush; what is pending when the
 * process ends unreachable is lost to the farmer (never over-paid).
 */
import type { TypedDataDomain } from "ethers";
import type { AbortOptions } from "../core/abort.js";
import { DstorError } from "../core/errors.js";
import { type Logger, silentLogger } from "../core/logging.js";
import { recoverVoucherSigner, signEgressVoucher } from "../chain/signing.js";
import type { EgressVoucherRequest, EgressVoucherResponse } from "../protocol/egress.js";
import type { FarmerRef } from "./types.js";

/** Bytes per GB, the unit of egress prices. */
export const BYTES_PER_GB = 1_000_000_000n;

/** Sends a voucher to a farmer and returns its answer (FarmerClient.egressVoucher fits). */
export type EgressVoucherSender = (farmer: FarmerRef, request: EgressVoucherRequest, options: AbortOptions) => Promise<Extract<EgressVoucherResponse, { ok: true }>>;

/** Options of {@link EgressAccountant}. */
export interface EgressAccountantInit {
  /** The renter's wallet (signs vouchers). */
  wallet: { signTypedData: import("ethers").Signer["signTypedData"]; address: string };
  /** EIP-712 domain of the market. */
  domain: TypedDataDomain;
  send: EgressVoucherSender;
  /** Highest egress price paid, token units per GB. */
  maxEgressPricePerGb: bigint;
  logger?: Logger;
}

interface DealAccount {
  farmer: FarmerRef;
  dealId: bigint;
  /** Verified bytes not yet paid. */
  pendingBytes: bigint;
  /** Remainder of earlier charges, in byte × token units per GB (< 10^9). */
  carry: bigint;
  /** Newest cumulative amount this process signed or saw held. */
  signed: bigint;
  /** Last voucher signature for `signed` (re-sent to learn the price). */
  signature: string | undefined;
  /** The farmer's price as last stated. */
  price: bigint | undefined;
}

/** What {@link EgressAccountant.flush} did. */
export interface EgressFlushResult {
  vouchers: number;
  amount: bigint;
  failed: number;
}

/** Counts verified egress and pays for it with vouchers; see the module comment. */
export class EgressAccountant {
  readonly #init: EgressAccountantInit;
  readonly #log: Logger;
  readonly #deals = new Map<string, DealAccount>();
  #flushing: Promise<EgressFlushResult> | undefined;

  constructor(init: EgressAccountantInit) {
    this.#init = init;
    this.#log = init.logger ?? silentLogger("dstor:renter:egress");
  }

  /** Records `bytes` received from `farmer` under `dealId` and verified. Deal 0 (no deal) is not paid. */
  received(farmer: FarmerRef, dealId: bigint, bytes: number): void {
    if (dealId === 0n || bytes <= 0) return;
    const key = dealId.toString();
    let account = this.#deals.get(key);
    if (account === undefined) {
      account = { farmer, dealId, pendingBytes: 0n, carry: 0n, signed: 0n, signature: undefined, price: undefined };
      this.#deals.set(key, account);
    }
    if (farmer.peerId !== "" && farmer.multiaddrs.length > 0) account.farmer = farmer;
    account.pendingBytes += BigInt(bytes);
  }

  /** Verified bytes not yet paid, over all deals. */
  pendingBytes(): bigint {
    let n = 0n;
    for (const a of this.#deals.values()) n += a.pendingBytes;
    return n;
  }

  /** Pays every deal with pending bytes; one flush at a time (a second call joins the running one). */
  flush(options: AbortOptions = {}): Promise<EgressFlushResult> {
    this.#flushing ??= this.#flush(options).finally(() => {
      this.#flushing = undefined;
    });
    return this.#flushing;
  }

  async #flush(options: AbortOptions): Promise<EgressFlushResult> {
    const result: EgressFlushResult = { vouchers: 0, amount: 0n, failed: 0 };
    await Promise.all(
      [...this.#deals.values()]
        .filter((a) => a.pendingBytes > 0n)
        .map(async (account) => {
          try {
            const paid = await this.#pay(account, options);
            if (paid > 0n) {
              result.vouchers++;
              result.amount += paid;
            }
          } catch (error) {
            result.failed++;
            this.#log.warn("egress voucher not delivered; retried with the next flush", {
              farmer: account.farmer.address,
              dealId: account.dealId.toString(),
              error: String(error),
            });
          }
        }),
    );
    return result;
  }

  async #voucher(dealId: bigint, cumulativeAmount: bigint): Promise<string> {
    return (await signEgressVoucher(this.#init.wallet as never, this.#init.domain, { dealId, cumulativeAmount })).toLowerCase();
  }

  /** Adopts the voucher the farmer says it holds, after checking it is ours. */
  #adopt(account: DealAccount, answer: Extract<EgressVoucherResponse, { ok: true }>): void {
    account.price = answer.egressPricePerGb;
    if (answer.cumulativeAmount <= account.signed) return;
    let signer: string;
    try {
      signer = recoverVoucherSigner(this.#init.domain, { dealId: account.dealId, cumulativeAmount: answer.cumulativeAmount }, answer.renterSignature);
    } catch (cause) {
      throw new DstorError("ORDER_BAD_SIGNATURE", "the farmer returned a malformed egress voucher", { cause });
    }
    if (signer.toLowerCase() !== this.#init.wallet.address.toLowerCase()) {
      throw new DstorError("ORDER_BAD_SIGNATURE", "the farmer claims to hold an egress voucher this wallet never signed");
    }
    account.signed = answer.cumulativeAmount;
    account.signature = answer.renterSignature;
  }

  async #pay(account: DealAccount, options: AbortOptions): Promise<bigint> {
    const { send } = this.#init;
    const dealId = account.dealId;
    if (account.price === undefined) {
      // Learn the price and the voucher held: re-send what we signed last (a zero voucher at first).
      const signature = account.signature ?? (await this.#voucher(dealId, account.signed));
      this.#adopt(account, await send(account.farmer, { v: 1, dealId, cumulativeAmount: account.signed, renterSignature: signature }, options));
    }
    for (let attempt = 0; attempt < 2; attempt++) {
      const stated = account.price ?? 0n;
      const price = stated > this.#init.maxEgressPricePerGb ? this.#init.maxEgressPricePerGb : stated;
      if (stated > price) this.#log.warn("farmer's egress price is above --max-egress-price-gb; paying the ceiling", { farmer: account.farmer.address, price: stated.toString() });
      const bytes = account.pendingBytes;
      const total = bytes * price + account.carry;
      const charge = total / BYTES_PER_GB;
      if (charge === 0n) {
        // Too little to sign for yet: keep the bytes as carry.
        account.carry = total;
        account.pendingBytes = 0n;
        return 0n;
      }
      const cumulativeAmount = account.signed + charge;
      const renterSignature = await this.#voucher(dealId, cumulativeAmount);
      const answer = await send(account.farmer, { v: 1, dealId, cumulativeAmount, renterSignature }, options);
      if (answer.accepted && answer.cumulativeAmount === cumulativeAmount) {
        account.price = answer.egressPricePerGb;
        account.signed = cumulativeAmount;
        account.signature = renterSignature;
        account.carry = total % BYTES_PER_GB;
        // Bytes that came in while the exchange ran stay pending.
        account.pendingBytes -= bytes;
        this.#log.debug("egress voucher delivered", { farmer: account.farmer.address, dealId: dealId.toString(), bytes: bytes.toString(), cumulativeAmount: cumulativeAmount.toString() });
        return charge;
      }
      // Another process of this wallet signed a newer voucher meanwhile: continue from it.
      this.#adopt(account, answer);
    }
    throw new DstorError("ORDER_REPLAYED", `deal ${dealId}: the farmer kept a newer egress voucher twice in a row`);
  }
}

