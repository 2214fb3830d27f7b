/**
 * A farmer's side of a deal for the workers' tests: a file-system piece
 * store holding `count` pieces of the deal, confirmed into it, with the
 * co-signed deal state on chain. The store is stopped and removed after the
 * test.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TestContext } from "node:test";
import { hexlify } from "ethers";
import { createFsPieceStore, type FsPieceStore } from "../../src/farmer/store/fs-store.js";
import { type ChainFixture, type ChainParty, coSign, makePieces } from "../chain/fixture.js";

/** See the module comment. `owner` is the renter's address as the store keys it. */
export async function storedDeal(
  t: TestContext,
  f: ChainFixture,
  renter: ChainParty,
  farmer: ChainParty,
  dealId: bigint,
  count: number,
): Promise<{ store: FsPieceStore; owner: string } & ReturnType<typeof makePieces>> {
  const dir = await mkdtemp(join(tmpdir(), "dstor-worker-store-"));
  const store = createFsPieceStore({ dir, quotaBytes: 10 * 1024 * 1024 });
  await store.start();
  t.after(async () => {
    await store.stop();
    await rm(dir, { recursive: true, force: true });
  });
  const { pieces, data } = makePieces(count, 5000);
  const owner = renter.address.toLowerCase();
  for (const p of pieces) {
    const id = hexlify(p.pieceId).slice(2);
    const w = await store.reserve(owner, id, Number(p.size), { root: p.pieceRoot, dealId, expiresAt: Date.now() + 3_600_000 });
    await w.write(data.get(hexlify(p.pieceId))!);
    await w.commit();
    await store.confirm(owner, [id], dealId);
  }
  const s = await coSign(f, dealId, renter, farmer, pieces, 1n);
  await (await renter.c.market.updateState(dealId, s.state, s.renterSig, s.farmerSig)).wait();
  return { store, owner, pieces, data };
}
