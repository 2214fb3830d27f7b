/**
 * The farmer's side of egress vouchers (`/dstor/deal/egress/1`, see
 * src/protocol/egress.ts): keeps, durably, the newest renter-signed voucher
 * per deal, which the audit/payment worker redeems on chain.
 *
 * A voucher is kept only when the deal exists on chain, is ours and open,
 * the signature recovers (native ecrecover) to the deal's renter under the
 * market's EIP-712 domain, and its amount is higher than the one held. The
 * farmer never invents an amount: what it can redeem is exactly what the
 * renter signed for the bytes it counted as received and verified.
 *
 * Durability: the whole book is one small JSON file rewritten through a
 * temporary file, fsync and rename on every change, under one lock, so a crash
 * leaves the previous or the new book, never a torn one. Per deal it holds
 * one voucher; vouchers of closed deals are dropped by {@link EgressVoucherBook.forget}.
 */
import { open, readFile, rename } from "node:fs/promises";
import type { TypedDataDomain } from "ethers";
import type { AbortOptions } from "../core/abort.js";
import { DstorError } from "../core/errors.js";
import { type Logger, silentLogger } from "../core/logging.js";
import { recoverVoucherSigner } from "../chain/signing.js";
import type { EgressVoucherRequest, EgressVoucherResponse } from "../protocol/egress.js";
import { PROTOCOL_VERSION } from "../protocol/messages.js";

/** Default egress price, token units per GB (10^9 bytes): 0.01 token with 6 decimals. */
export const DEFAULT_EGRESS_PRICE_PER_GB = 10_000n;

/** One held voucher. */
export interface HeldVoucher {
  cumulativeAmount: bigint;
  /** The renter's signature, `0x` + 130 hex. */
  renterSignature: string;
}

/** The deal facts the book reads from the Market. */
export interface EgressDealReader {
  deal(dealId: bigint): Promise<{ renter: string; farmer: string; closed: boolean }>;
}

/** Options of {@link EgressVoucherBook}. */
export interface EgressVoucherBookInit {
  /** The JSON file holding the book. */
  path: string;
  market: EgressDealReader;
  /** Our wallet address. */
  farmer: string;
  /** EIP-712 domain of the market. */
  domain: TypedDataDomain;
  /** Our egress price, token units per GB. */
  egressPricePerGb: bigint;
  logger?: Logger;
}

interface BookFile {
  v: 1;
  vouchers: Record<string, { cumulativeAmount: string; renterSignature: string }>;
}

/** Durable store of the newest voucher per deal; see the module comment. */
export class EgressVoucherBook {
  readonly #init: EgressVoucherBookInit;
  readonly #log: Logger;
  readonly #vouchers = new Map<string, HeldVoucher>();
  /** Serialises accepts and writes (one small file). */
  #tail: Promise<unknown> = Promise.resolve();

  private constructor(init: EgressVoucherBookInit) {
    this.#init = init;
    this.#log = init.logger ?? silentLogger("dstor:farmer:egress");
  }

  /** Opens the book at `init.path` (empty when the file does not exist yet). */
  static async open(init: EgressVoucherBookInit): Promise<EgressVoucherBook> {
    const book = new EgressVoucherBook(init);
    let text: string | undefined;
    try {
      text = await readFile(init.path, "utf8");
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
    }
    if (text !== undefined) {
      const parsed = JSON.parse(text) as BookFile;
      for (const [id, v] of Object.entries(parsed.vouchers ?? {})) {
        book.#vouchers.set(id, { cumulativeAmount: BigInt(v.cumulativeAmount), renterSignature: v.renterSignature });
      }
    }
    return book;
  }

  /** Our egress price, token units per GB. */
  get egressPricePerGb(): bigint {
    return this.#init.egressPricePerGb;
  }

  /** The newest voucher held for `dealId`, if any. */
  latest(dealId: bigint): HeldVoucher | undefined {
    return this.#vouchers.get(dealId.toString());
  }

  /** Checks `request` and keeps it when it is newer; answers with the voucher now held. */
  accept(request: EgressVoucherRequest, _options: AbortOptions = {}): Promise<EgressVoucherResponse> {
    const run = this.#tail.then(
      () => this.#accept(request),
      () => this.#accept(request),
    );
    this.#tail = run.catch(() => {});
    return run;
  }

  /** Drops the voucher of a closed deal (nothing more can be redeemed). */
  forget(dealId: bigint): Promise<void> {
    const run = this.#tail.then(async () => {
      if (this.#vouchers.delete(dealId.toString())) await this.#write();
    });
    this.#tail = run.catch(() => {});
    return run;
  }

  async #accept(request: EgressVoucherRequest): Promise<EgressVoucherResponse> {
    let deal: Awaited<ReturnType<EgressDealReader["deal"]>>;
    try {
      deal = await this.#init.market.deal(request.dealId);
    } catch (cause) {
      throw new DstorError("CHAIN_UNAVAILABLE", "the farmer cannot reach its chain to check the deal; retry later", { cause });
    }
    if (deal.farmer.toLowerCase() !== this.#init.farmer.toLowerCase() || deal.closed) {
      throw new DstorError("ORDER_NO_DEAL", `deal ${request.dealId} is not an open deal with this farmer`);
    }
    let signer: string;
    try {
      signer = recoverVoucherSigner(this.#init.domain, { dealId: request.dealId, cumulativeAmount: request.cumulativeAmount }, request.renterSignature);
    } catch (cause) {
      throw new DstorError("ORDER_BAD_SIGNATURE", "the egress voucher's signature is malformed", { cause });
    }
    if (signer.toLowerCase() !== deal.renter.toLowerCase()) {
      throw new DstorError("ORDER_BAD_SIGNATURE", "the egress voucher was not signed by the deal's renter");
    }
    const key = request.dealId.toString();
    const held = this.#vouchers.get(key);
    const accepted = held === undefined ? request.cumulativeAmount > 0n : request.cumulativeAmount > held.cumulativeAmount;
    if (accepted) {
      const previous = held;
      this.#vouchers.set(key, { cumulativeAmount: request.cumulativeAmount, renterSignature: request.renterSignature });
      try {
        await this.#write();
      } catch (error) {
        if (previous === undefined) this.#vouchers.delete(key);
        else this.#vouchers.set(key, previous);
        throw error;
      }
      this.#log.debug("egress voucher kept", { dealId: key, cumulativeAmount: request.cumulativeAmount.toString() });
    }
    const now = this.#vouchers.get(key);
    return {
      v: PROTOCOL_VERSION,
      ok: true,
      accepted,
      egressPricePerGb: this.#init.egressPricePerGb,
      cumulativeAmount: now?.cumulativeAmount ?? 0n,
      renterSignature: now?.renterSignature ?? "0x",
    };
  }

  async #write(): Promise<void> {
    const file: BookFile = { v: 1, vouchers: {} };
    for (const [id, v] of this.#vouchers) file.vouchers[id] = { cumulativeAmount: v.cumulativeAmount.toString(), renterSignature: v.renterSignature };
    const tmp = `${this.#init.path}.tmp`;
    const handle = await open(tmp, "w");
    try {
      await handle.writeFile(`${JSON.stringify(file)}\n`);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(tmp, this.#init.path);
  }
}
