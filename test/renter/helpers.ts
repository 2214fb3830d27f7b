/**
 * In-memory farmers for renter tests: a PieceTransport, a FarmerDirectory, a
 * DealProvider and an OrderAuthority, with per-farmer misbehaviour switches
 * (down, failing puts, corrupt gets, stalls that only end on abort).
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TestContext } from "node:test";
import { Wallet } from "ethers";
import type { AbortOptions } from "../../src/core/abort.js";
import { abortReason } from "../../src/core/abort.js";
import { DstorError } from "../../src/core/errors.js";
import { buildMerkleTree, LEAF_SIZE_BYTES, merkleMultiproof } from "../../src/crypto/merkle.js";
import { parseRedundancyStrategy } from "../../src/erasure/strategy.js";
import { type MetadataDb, openMetadataDb } from "../../src/metadata/db.js";
import { OrderAction } from "../../src/protocol/orders.js";
import { createOrderAuthority } from "../../src/renter/orders.js";
import { Renter, type RenterInit } from "../../src/renter/renter.js";
import type {
  DealProvider,
  DealStatePiece,
  DeletePieceRequest,
  FarmerCandidate,
  FarmerDirectory,
  FarmerRef,
  GetPieceRequest,
  GetPieceResult,
  PieceTransport,
  PutPieceRequest,
} from "../../src/renter/types.js";

/** How one fake farmer behaves. */
export interface FakeBehaviour {
  down?: boolean;
  failPuts?: boolean;
  corruptGets?: boolean;
  /** Gets are refused (puts still work): a farmer that keeps data but will not serve it. */
  refuseGets?: boolean;
  /** Puts never finish unless aborted. */
  stallPuts?: boolean;
  /** Puts take this many bytes of a piece, then never finish unless aborted. */
  stallPutsAfterBytes?: number;
  /** Gets never finish unless aborted. */
  stallGets?: boolean;
}

/** One fake farmer. */
export interface FakeFarmer extends FarmerCandidate {
  pieces: Map<string, Uint8Array>;
  behaviour: FakeBehaviour;
  puts: number;
  gets: number;
  aborted: number;
  /** Bytes of pieces this farmer was handed, whole or not. */
  received: number;
}

/** Never resolves; rejects when `signal` aborts, counting the abort on `f`. */
async function stall(f: FakeFarmer, signal: AbortSignal | undefined): Promise<never> {
  try {
    return await waitForAbort(signal);
  } catch (error) {
    f.aborted++;
    throw error;
  }
}

function waitForAbort(signal: AbortSignal | undefined): Promise<never> {
  return new Promise((_, reject) => {
    if (signal === undefined) return;
    if (signal.aborted) reject(abortReason(signal));
    signal.addEventListener("abort", () => reject(abortReason(signal)), { once: true });
  });
}

/** A network of fake farmers on distinct /24 subnets (10.0.N.1). */
export class FakeNetwork implements PieceTransport, FarmerDirectory, DealProvider {
  readonly farmers: FakeFarmer[] = [];
  readonly orders: Array<{ action: number; farmer: string; dealId: bigint }> = [];
  deals = 0;
  /** The last deal state each farmer co-signed. */
  readonly states = new Map<string, DealStatePiece[]>();

  constructor(count: number, options: { subnet?: (i: number) => string; price?: bigint } = {}) {
    for (let i = 0; i < count; i++) {
      const address = Wallet.createRandom().address.toLowerCase();
      this.farmers.push({
        address,
        peerId: `peer-${i}`,
        multiaddrs: [`/ip4/${options.subnet?.(i) ?? `10.0.${i}.1`}/tcp/4001`],
        priceTbMonth: options.price ?? 1_500_000n,
        freeBytes: 10n ** 12n,
        chainSuccesses: 0,
        chainFailures: 0,
        disqualified: false,
        pieces: new Map(),
        behaviour: {},
        puts: 0,
        gets: 0,
        aborted: 0,
        received: 0,
      });
    }
  }

  #find(ref: FarmerRef): FakeFarmer {
    const f = this.farmers.find((x) => x.address === ref.address);
    if (f === undefined || f.behaviour.down) throw new DstorError("TIMEOUT", `farmer ${ref.address} does not answer`);
    return f;
  }

  async list(): Promise<FarmerCandidate[]> {
    return this.farmers.map((f) => ({ ...f }));
  }

  async ensureDeal(farmer: FarmerRef): Promise<bigint> {
    this.deals++;
    return BigInt(this.farmers.findIndex((f) => f.address === farmer.address) + 1);
  }

  async syncState(farmer: FarmerRef, pieces: readonly DealStatePiece[]): Promise<void> {
    const f = this.#find(farmer);
    for (const p of pieces) if (!f.pieces.has(p.pieceId)) throw new DstorError("PIECE_NOT_FOUND", "a listed piece is not stored");
    this.states.set(f.address, [...pieces]);
  }

  async put(farmer: FarmerRef, request: PutPieceRequest, options: AbortOptions = {}): Promise<void> {
    const f = this.#find(farmer);
    this.orders.push({ action: request.order.order.action, farmer: f.address, dealId: request.order.order.dealId });
    if (request.order.order.action !== OrderAction.Put || request.order.order.pieceId !== request.pieceId) throw new DstorError("ORDER_WRONG_ACTION", "bad order");
    f.puts++;
    if (f.behaviour.failPuts) throw new DstorError("QUOTA_EXCEEDED", "full");
    if (f.behaviour.stallPuts) await stall(f, options.signal);
    // Take the bytes as a network would: chunk by chunk, a turn of the event loop each.
    const parts: Uint8Array[] = [];
    let taken = 0;
    for await (const chunk of request.chunks ?? [request.data]) {
      if (taken >= (f.behaviour.stallPutsAfterBytes ?? Number.POSITIVE_INFINITY)) await stall(f, options.signal);
      parts.push(chunk.slice());
      taken += chunk.byteLength;
      f.received += chunk.byteLength;
      await new Promise((r) => setImmediate(r));
      if (options.signal?.aborted) {
        f.aborted++;
        throw abortReason(options.signal);
      }
    }
    const piece = new Uint8Array(Buffer.concat(parts));
    if (Buffer.compare(piece, request.data) !== 0) throw new DstorError("INTEGRITY_MISMATCH", "the bytes sent are not the piece");
    f.pieces.set(request.pieceId, piece);
  }

  async get(farmer: FarmerRef, request: GetPieceRequest, options: AbortOptions = {}): Promise<GetPieceResult> {
    const f = this.#find(farmer);
    f.gets++;
    if (f.behaviour.refuseGets) throw new DstorError("TIMEOUT", `farmer ${f.address} does not serve reads`);
    if (f.behaviour.stallGets) await stall(f, options.signal);
    const piece = f.pieces.get(request.pieceId);
    if (piece === undefined) throw new DstorError("PIECE_NOT_FOUND", "no such piece");
    const offset = request.offset ?? 0;
    const end = request.length === undefined ? piece.byteLength : offset + request.length;
    const data = piece.slice(offset, end);
    if (f.behaviour.corruptGets && data.byteLength > 0) data[0]! ^= 0xff;
    const tree = buildMerkleTree(piece);
    const proof = merkleMultiproof(tree, offset / LEAF_SIZE_BYTES, Math.max(offset / LEAF_SIZE_BYTES + 1, Math.ceil(end / LEAF_SIZE_BYTES)));
    return { data, proof };
  }

  async delete(farmer: FarmerRef, request: DeletePieceRequest): Promise<void> {
    const f = this.#find(farmer);
    if (request.order.order.action !== OrderAction.Delete) throw new DstorError("ORDER_WRONG_ACTION", "bad order");
    // Like the real farmer: a piece in the latest co-signed state is not deleted.
    if (this.states.get(f.address)?.some((p) => p.pieceId === request.pieceId)) {
      throw new DstorError("INVALID_ARGUMENT", "the piece is in the latest co-signed deal state");
    }
    if (!f.pieces.delete(request.pieceId)) throw new DstorError("PIECE_NOT_FOUND", "no such piece");
  }

  /** Pieces stored across all farmers. */
  storedPieces(): number {
    return this.farmers.reduce((n, f) => n + f.pieces.size, 0);
  }
}

/** A renter over a fake network with a temp metadata database (closed and removed after the test). */
export async function fakeRenter(
  t: TestContext,
  net: FakeNetwork,
  init: Partial<RenterInit> & { redundancy?: string } = {},
): Promise<{ renter: Renter; metadata: MetadataDb; dir: string }> {
  const dir = await mkdtemp(join(tmpdir(), "dstor-renter-"));
  const metadata = await openMetadataDb({ dir: join(dir, "renter", "meta") });
  t.after(async () => {
    await metadata.close();
    await rm(dir, { recursive: true, force: true });
  });
  const wallet = Wallet.createRandom();
  const orders = await createOrderAuthority(wallet, 31337n);
  const renter = new Renter(
    { metadata, transport: net, directory: net, deals: net, orders },
    {
      strategy: parseRedundancyStrategy(init.redundancy ?? "4/6/8/10"),
      segmentSize: init.segmentSize ?? 64 * 1024,
      pieceIdKey: new Uint8Array(32).fill(7),
      kernel: "ts",
      ...init,
    },
  );
  return { renter, metadata, dir };
}

/** Collects an async iterable of chunks. */
export async function collect(source: AsyncIterable<Uint8Array>): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  let total = 0;
  for await (const c of source) {
    parts.push(c);
    total += c.byteLength;
  }
  return new Uint8Array(Buffer.concat(parts, total));
}

/** Yields `data` in chunks of `size` bytes (like a file stream). */
/**
 * `data` in chunks of `size` bytes, each written into the same buffer once
 * the previous one is done with: the harshest transient source (see
 * readFileChunks), for checking that consumers copy before asking for more.
 */
export async function* reusedChunks(data: Uint8Array, size: number): AsyncGenerator<Uint8Array> {
  const buffer = new Uint8Array(size);
  for (let i = 0; i < data.byteLength; i += size) {
    const chunk = data.subarray(i, i + size);
    buffer.set(chunk);
    yield buffer.subarray(0, chunk.byteLength);
    buffer.fill(0xee);
  }
}

export function* chunked(data: Uint8Array, size = 16 * 1024): Generator<Uint8Array> {
  for (let i = 0; i < data.byteLength; i += size) yield data.subarray(i, i + size);
}
