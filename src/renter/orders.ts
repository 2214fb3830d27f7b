/**
 * Orders signed with the renter's wallet (see src/protocol/orders.ts for the
 * format and the farmer's checks).
 */
import { createOrder, type SignedOrder, signOrder, type TypedDataSigner } from "../protocol/orders.js";
import type { OrderAuthority } from "./types.js";

/** Seconds an order stays valid: long enough for a slow 8 MiB piece, short enough to keep the farmer's replay table small. */
export const ORDER_TTL_SECONDS = 15 * 60;

/** An {@link OrderAuthority} for `wallet` on `chainId`. */
export async function createOrderAuthority(wallet: TypedDataSigner, chainId: bigint): Promise<OrderAuthority> {
  const renter = (await wallet.getAddress()).toLowerCase();
  return {
    renter,
    sign: ({ farmer, dealId, pieceId, action, maxBytes }): Promise<SignedOrder> =>
      signOrder(wallet, chainId, createOrder({ chainId, dealId, renter, farmer, pieceId, action, maxBytes, ttlSeconds: ORDER_TTL_SECONDS })),
  };
}
