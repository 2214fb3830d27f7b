/**
 * Renter-signed orders (EIP-712). Every request to a farmer carries one: it
 * says who pays (renter), under which deal, for which farmer, piece and
 * action, how many bytes at most, until when, and a random serial that makes
 * it single-use.
 *
 * The chain id is both in the EIP-712 domain (so wallets show it and the
 * signature cannot be lifted to another chain) AND a field of the signed
 * struct. The field lets a farmer tell the two failure cases apart: the
 * signature is first checked under the order's own chain id — failure there
 * means tampering or a bad key (`ORDER_BAD_SIGNATURE`) — and only then is that
 * chain id compared with ours (`ORDER_WRONG_CHAIN`). Likewise the renter's
 * address is signed inside the order, so a tampered order is recognised as
 * such instead of "recovering" to a stranger who merely has no deal.
 *
 * Verification order (each step has its own code, cheapest and most
 * specific first; the deal lookup, which may hit the chain, comes last):
 * signature → chain → farmer → piece → action → bytes → expiry → replay →
 * deal. The serial is recorded only after every check has passed, with an
 * atomic claim, so two concurrent requests carrying one serial cannot both
 * pass and a refused order does not burn its serial.
 */
import { randomBytes } from "node:crypto";
import { getAddress, type TypedDataDomain, type TypedDataField } from "ethers";
import { keccak_256 } from "@noble/hashes/sha3.js";
import { privateKeyOf, recoverDigestAddress, signDigest } from "../crypto/ecrecover.js";
import type { AbortOptions } from "../core/abort.js";
import { DstorError } from "../core/errors.js";
import { MAX_ORDER_TTL_SECONDS } from "./limits.js";
import type { SerialStore } from "./serials.js";
import {
  expectAddress,
  expectHex,
  expectInteger,
  expectKeys,
  expectObject,
  expectPrefixedHex,
  expectUintString,
  field,
  uintString,
} from "./validate.js";

/** What an order allows (the `action` field; values are part of the signed format). */
export const OrderAction = {
  /** Upload a piece. */
  Put: 1,
  /** Download (a range of) a piece. */
  Get: 2,
  /** Prove one leaf of a piece. */
  Audit: 3,
  /** Delete a piece. */
  Delete: 4,
} as const;

/** One of the {@link OrderAction} values. */
export type OrderAction = (typeof OrderAction)[keyof typeof OrderAction];

/** Bytes in an order's random serial. */
export const ORDER_SERIAL_BYTES = 16;

/** Bytes in an order signature (r ‖ s ‖ v). */
export const ORDER_SIGNATURE_BYTES = 65;

/** An order, as signed. Addresses are `0x` + lowercase hex; hashes lowercase hex without `0x`. */
export interface Order {
  /** EVM chain id the order is valid on (also in the EIP-712 domain). */
  readonly chainId: bigint;
  /** On-chain deal id the work is paid under. */
  readonly dealId: bigint;
  /** The renter's wallet address — the signer. */
  readonly renter: string;
  /** The farmer's wallet address the order is for. */
  readonly farmer: string;
  /** Piece id: 64 lowercase hex characters. */
  readonly pieceId: string;
  /** What the order allows. */
  readonly action: OrderAction;
  /** Most bytes the request may move (uint64). */
  readonly maxBytes: bigint;
  /** Unix time in seconds after which the order is void (uint64). */
  readonly expiry: bigint;
  /** Random single-use serial: 32 lowercase hex characters (16 bytes). */
  readonly serial: string;
}

/** An order and the renter's EIP-712 signature over it (`0x` + 130 lowercase hex). */
export interface SignedOrder {
  readonly order: Order;
  readonly signature: string;
}

/** EIP-712 domain name of orders. */
export const ORDER_DOMAIN_NAME = "dstor-order";
/** EIP-712 domain version of orders. */
export const ORDER_DOMAIN_VERSION = "1";

/** EIP-712 types of an order (field order is part of the format). */
export const ORDER_TYPES: Readonly<Record<string, TypedDataField[]>> = {
  Order: [
    { name: "chainId", type: "uint256" },
    { name: "dealId", type: "uint256" },
    { name: "renter", type: "address" },
    { name: "farmer", type: "address" },
    { name: "pieceId", type: "bytes32" },
    { name: "action", type: "uint8" },
    { name: "maxBytes", type: "uint64" },
    { name: "expiry", type: "uint64" },
    { name: "serial", type: "bytes16" },
  ],
};

/** The EIP-712 domain of orders on `chainId`. */
export function orderDomain(chainId: bigint): TypedDataDomain {
  return { name: ORDER_DOMAIN_NAME, version: ORDER_DOMAIN_VERSION, chainId };
}

function typedValue(order: Order): Record<string, unknown> {
  return {
    chainId: order.chainId,
    dealId: order.dealId,
    renter: order.renter,
    farmer: order.farmer,
    pieceId: `0x${order.pieceId}`,
    action: order.action,
    maxBytes: order.maxBytes,
    expiry: order.expiry,
    serial: `0x${order.serial}`,
  };
}

/** The EIP-712 digest of `order` under its own chain id (what the renter signs), `0x` + hex. */
export function orderDigest(order: Order): string {
  return `0x${Buffer.from(orderDigestBytes(order)).toString("hex")}`;
}

/**
 * The EIP-712 type string of an order, derived from ORDER_TYPES (so the
 * two cannot drift apart).
 */
const ORDER_TYPE_STRING = `Order(${ORDER_TYPES.Order!.map((f) => `${f.type} ${f.name}`).join(",")})`;
const ORDER_TYPE_HASH = keccak_256(new TextEncoder().encode(ORDER_TYPE_STRING));
const DOMAIN_TYPE_HASH = keccak_256(new TextEncoder().encode("EIP712Domain(string name,string version,uint256 chainId)"));
const domainSeparators = new Map<bigint, Uint8Array>();

/** Writes `value` as a big-endian 32-byte word at `at`. */
function putWord(out: Uint8Array, at: number, value: bigint): void {
  let v = value;
  for (let i = 31; i >= 0 && v > 0n; i--) {
    out[at + i] = Number(v & 0xffn);
    v >>= 8n;
  }
}

function domainSeparator(chainId: bigint): Uint8Array {
  let separator = domainSeparators.get(chainId);
  if (separator === undefined) {
    const words = new Uint8Array(4 * 32);
    words.set(DOMAIN_TYPE_HASH, 0);
    words.set(keccak_256(new TextEncoder().encode(ORDER_DOMAIN_NAME)), 32);
    words.set(keccak_256(new TextEncoder().encode(ORDER_DOMAIN_VERSION)), 64);
    putWord(words, 96, chainId);
    separator = keccak_256(words);
    if (domainSeparators.size < 64) domainSeparators.set(chainId, separator);
  }
  return separator;
}

/**
 * The EIP-712 digest of a checked order, encoded directly (type hash and
 * domain separator precomputed): ethers' generic TypedDataEncoder took about
 * 0.7 ms per order, paid by the renter for every piece it moves and by the
 * farmer for every request. The property tests hold it equal to ethers'.
 */
export function orderDigestBytes(order: Order): Uint8Array {
  const words = new Uint8Array(10 * 32);
  words.set(ORDER_TYPE_HASH, 0);
  putWord(words, 32, order.chainId);
  putWord(words, 64, order.dealId);
  words.set(Buffer.from(order.renter.slice(2), "hex"), 96 + 12);
  words.set(Buffer.from(order.farmer.slice(2), "hex"), 128 + 12);
  words.set(Buffer.from(order.pieceId, "hex"), 160);
  putWord(words, 192, BigInt(order.action));
  putWord(words, 224, order.maxBytes);
  putWord(words, 256, order.expiry);
  // bytesN is left-aligned in its word.
  words.set(Buffer.from(order.serial, "hex"), 288);
  const message = new Uint8Array(2 + 32 + 32);
  message[0] = 0x19;
  message[1] = 0x01;
  message.set(domainSeparator(order.chainId), 2);
  message.set(keccak_256(words), 34);
  return keccak_256(message);
}

/** The wire (JSON) form of an order. */
export interface OrderJson {
  chainId: string;
  dealId: string;
  renter: string;
  farmer: string;
  pieceId: string;
  action: number;
  maxBytes: string;
  expiry: string;
  serial: string;
}

const ORDER_KEYS = ["chainId", "dealId", "renter", "farmer", "pieceId", "action", "maxBytes", "expiry", "serial"] as const;

/** The wire form of `order`. */
export function orderToJson(order: Order): OrderJson {
  return {
    chainId: uintString(order.chainId),
    dealId: uintString(order.dealId),
    renter: order.renter,
    farmer: order.farmer,
    pieceId: order.pieceId,
    action: order.action,
    maxBytes: uintString(order.maxBytes),
    expiry: uintString(order.expiry),
    serial: order.serial,
  };
}

/** Parses and validates the wire form of an order; throws `MESSAGE_MALFORMED` naming the bad field. */
export function orderFromJson(value: unknown, what = "order"): Order {
  const o = expectObject(value, what);
  expectKeys(o, ORDER_KEYS, what);
  return {
    chainId: expectUintString(field(o, "chainId"), 256, `${what}.chainId`),
    dealId: expectUintString(field(o, "dealId"), 256, `${what}.dealId`),
    renter: expectAddress(field(o, "renter"), `${what}.renter`),
    farmer: expectAddress(field(o, "farmer"), `${what}.farmer`),
    pieceId: expectHex(field(o, "pieceId"), 32, `${what}.pieceId`),
    action: expectInteger(field(o, "action"), 1, 4, `${what}.action`) as OrderAction,
    maxBytes: expectUintString(field(o, "maxBytes"), 64, `${what}.maxBytes`),
    expiry: expectUintString(field(o, "expiry"), 64, `${what}.expiry`),
    serial: expectHex(field(o, "serial"), ORDER_SERIAL_BYTES, `${what}.serial`),
  };
}

/**
 * Validates a signature's wire form: `0x` + 130 lowercase hex, v byte 27 or
 * 28. Only the canonical spelling is accepted, so one signature has one form.
 */
export function parseOrderSignature(value: unknown, what = "signature"): string {
  const sig = expectPrefixedHex(value, ORDER_SIGNATURE_BYTES, what);
  const v = sig.slice(-2);
  if (v !== "1b" && v !== "1c") throw new DstorError("MESSAGE_MALFORMED", `${what} must end in a v byte of 27 or 28`);
  return sig;
}

/** Fields for {@link createOrder}; the serial is drawn at random and addresses normalized. */
export interface CreateOrderInit {
  chainId: bigint;
  dealId: bigint;
  renter: string;
  farmer: string;
  pieceId: string;
  action: OrderAction;
  maxBytes: bigint | number;
  /** Seconds the order stays valid (default 10 minutes, at most {@link MAX_ORDER_TTL_SECONDS}). */
  ttlSeconds?: number;
  /** The current unix time in seconds (default: the system clock). */
  nowSeconds?: number;
}

/** Builds a fresh order with a random serial; throws `INVALID_ARGUMENT` on malformed fields. */
export function createOrder(init: CreateOrderInit): Order {
  const now = init.nowSeconds ?? Math.floor(Date.now() / 1000);
  const ttl = init.ttlSeconds ?? 600;
  if (!Number.isSafeInteger(ttl) || ttl < 1 || ttl > MAX_ORDER_TTL_SECONDS) {
    throw new DstorError("INVALID_ARGUMENT", `ttlSeconds must be an integer in [1, ${MAX_ORDER_TTL_SECONDS}], got ${ttl}`);
  }
  let renter: string;
  let farmer: string;
  try {
    renter = getAddress(init.renter).toLowerCase();
    farmer = getAddress(init.farmer).toLowerCase();
  } catch (error) {
    throw new DstorError("INVALID_ARGUMENT", "renter and farmer must be Ethereum addresses", { cause: error });
  }
  const order: Order = {
    chainId: init.chainId,
    dealId: init.dealId,
    renter,
    farmer,
    pieceId: init.pieceId,
    action: init.action,
    maxBytes: BigInt(init.maxBytes),
    expiry: BigInt(now + ttl),
    serial: randomBytes(ORDER_SERIAL_BYTES).toString("hex"),
  };
  checkOrder(order);
  return order;
}

/** Throws `INVALID_ARGUMENT` unless `order` would survive the wire unchanged. */
function checkOrder(order: Order): void {
  try {
    orderFromJson(orderToJson(order));
  } catch (error) {
    throw new DstorError("INVALID_ARGUMENT", `invalid order: ${(error as Error).message}`, { cause: error });
  }
}

/** What {@link signOrder} needs from a wallet (ethers `Wallet` and `HDNodeWallet` fit). */
export interface TypedDataSigner {
  getAddress(): Promise<string>;
  signTypedData(domain: TypedDataDomain, types: Record<string, TypedDataField[]>, value: Record<string, unknown>): Promise<string>;
}

/**
 * Signs `order` for `chainId` with the renter's wallet. The wallet must be the
 * order's renter and `chainId` its chain id (`INVALID_ARGUMENT` otherwise —
 * an order signed by anyone else would only be refused by the farmer).
 */
export async function signOrder(wallet: TypedDataSigner, chainId: bigint, order: Order): Promise<SignedOrder> {
  checkOrder(order);
  if (order.chainId !== chainId) {
    throw new DstorError("INVALID_ARGUMENT", `the order is for chain ${order.chainId}, not ${chainId}`);
  }
  const signer = (await wallet.getAddress()).toLowerCase();
  if (signer !== order.renter) {
    throw new DstorError("INVALID_ARGUMENT", `the wallet ${signer} is not the order's renter ${order.renter}`);
  }
  // A wallet holding its key (ethers' Wallet, HDNodeWallet) is signed for from the digest directly.
  const key = privateKeyOf(wallet);
  const raw = key !== undefined
    ? signDigest(key, orderDigestBytes(order))
    : await wallet.signTypedData(orderDomain(chainId), { Order: [...ORDER_TYPES.Order!] }, typedValue(order));
  return { order, signature: parseOrderSignature(raw.toLowerCase()) };
}

/**
 * Whether a renter's deal with a farmer is funded. Implemented against the
 * chain elsewhere; tests use an in-memory one.
 */
export interface DealChecker {
  /** True when `dealId` is a live, funded deal between `renter` and `farmer` (lowercase addresses). */
  isFunded(renter: string, dealId: bigint, farmer: string, options?: AbortOptions): Promise<boolean>;
}

/** What the farmer knows when it checks an order. */
export interface VerifyOrderContext extends AbortOptions {
  /** Our chain id. */
  chainId: bigint;
  /** Our wallet address (any case). */
  farmerAddress: string;
  /** The current unix time, in seconds. */
  nowSeconds: number | bigint;
  /** The action of the protocol the order arrived on. */
  expectedAction: OrderAction;
  /** The piece id named by the request. */
  expectedPieceId: string;
  /** Bytes the request moves (compared with the order's maxBytes). */
  bytesRequested: number | bigint;
  /** Replay protection. */
  serials: SerialStore;
  /** Deal funding lookup. */
  deals: DealChecker;
}

/** A verified order and its signer. */
export interface VerifiedOrder {
  /** The recovered renter address (`0x` + lowercase hex). */
  readonly renter: string;
  readonly order: Order;
}

function fail(code: "ORDER_BAD_SIGNATURE" | "ORDER_WRONG_CHAIN" | "ORDER_WRONG_FARMER" | "ORDER_WRONG_PIECE" | "ORDER_WRONG_ACTION" | "MESSAGE_TOO_LARGE" | "ORDER_EXPIRED" | "ORDER_REPLAYED" | "ORDER_NO_DEAL", message: string, details: Record<string, unknown> = {}): DstorError {
  return new DstorError(code, message, { details });
}

/**
 * Checks a signed order against the request it came with; resolves with the
 * renter on success (and records the serial), otherwise throws the code of
 * the first failed check (see the module comment for the order).
 */
export async function verifyOrder(input: SignedOrder, ctx: VerifyOrderContext): Promise<VerifiedOrder> {
  const { order } = input;
  // 1. Signature, under the order's own chain id.
  let recovered: string;
  try {
    checkOrder(order);
    parseOrderSignature(input.signature);
    recovered = recoverDigestAddress(orderDigestBytes(order), input.signature).toLowerCase();
  } catch (error) {
    throw new DstorError("ORDER_BAD_SIGNATURE", "the order's signature is malformed; the renter must sign the order again", { cause: error });
  }
  if (recovered !== order.renter) {
    throw fail("ORDER_BAD_SIGNATURE", "the order was not signed by its renter (tampered or signed with another key)", { recovered });
  }
  // 2. Chain.
  if (order.chainId !== ctx.chainId) {
    throw fail("ORDER_WRONG_CHAIN", `the order is for chain ${order.chainId}; this farmer serves chain ${ctx.chainId}`);
  }
  // 3. Farmer.
  if (order.farmer !== ctx.farmerAddress.toLowerCase()) {
    throw fail("ORDER_WRONG_FARMER", `the order is for farmer ${order.farmer}, not this one`);
  }
  // 4. Piece.
  if (order.pieceId !== ctx.expectedPieceId) {
    throw fail("ORDER_WRONG_PIECE", "the order names a different piece than the request");
  }
  // 5. Action.
  if (order.action !== ctx.expectedAction) {
    throw fail("ORDER_WRONG_ACTION", `the order allows action ${order.action}, but this request needs ${ctx.expectedAction}`);
  }
  // 6. Bytes.
  const requested = BigInt(ctx.bytesRequested);
  if (requested > order.maxBytes) {
    throw fail("MESSAGE_TOO_LARGE", `the request moves ${requested} bytes but the order allows ${order.maxBytes}`, {
      requested: requested.toString(),
      maxBytes: order.maxBytes.toString(),
    });
  }
  // 7. Expiry: not past, and not so far ahead that we would keep its serial forever.
  const now = BigInt(ctx.nowSeconds);
  if (order.expiry <= now) throw fail("ORDER_EXPIRED", "the order has expired; sign a new one");
  if (order.expiry > now + BigInt(MAX_ORDER_TTL_SECONDS)) {
    throw fail("ORDER_EXPIRED", `the order expires more than ${MAX_ORDER_TTL_SECONDS} s from now; sign one with a shorter expiry`);
  }
  // 8. Replay (a read-only pre-check; the atomic claim below is authoritative).
  const signal = ctx.signal;
  if (await ctx.serials.has(recovered, order.serial, { signal })) {
    throw fail("ORDER_REPLAYED", "this order was already used; sign a new one");
  }
  // 9. Deal.
  if (!(await ctx.deals.isFunded(recovered, order.dealId, order.farmer, { signal }))) {
    throw fail("ORDER_NO_DEAL", `deal ${order.dealId} is not a funded deal between this renter and farmer`);
  }
  // All checks passed: record the serial atomically; a concurrent twin loses here.
  if (!(await ctx.serials.claim(recovered, order.serial, order.expiry, { signal }))) {
    throw fail("ORDER_REPLAYED", "this order was already used; sign a new one");
  }
  return { renter: recovered, order };
}
