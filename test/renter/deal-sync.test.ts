/**
 * ChainDeals' deal-state sync against a real chain and a real co-signing
 * farmer (DealStateSigner over a memory store): a state the farmer co-signed
 * whose submission then failed must not block every later sync — the farmer
 * refuses a version it signed as a replay — and neither must metadata that
 * is behind the farmer (restored from an older snapshot).
 */
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { hexlify } from "ethers";
import { marketDomain } from "../../src/chain/signing.js";
import { DstorError } from "../../src/core/errors.js";
import { DealStateSigner } from "../../src/farmer/deal-sign.js";
import { createMemoryPieceStore } from "../../src/farmer/store/memory-store.js";
import { openMetadataDb } from "../../src/metadata/db.js";
import { ChainDeals } from "../../src/renter/deals.js";
import type { DealStatePiece } from "../../src/renter/types.js";
import { joinFarmer, makePieces, startFixture } from "../chain/fixture.js";

test("a co-signed deal state whose submission failed, and metadata behind the farmer, do not block later syncs", async (t) => {
  const f = await startFixture(t);
  const farmer = await f.party();
  const renter = await f.party();
  await joinFarmer(f, farmer);
  const root = await mkdtemp(join(tmpdir(), "dstor-deal-sync-"));
  const metadata = await openMetadataDb({ dir: join(root, "meta") });
  const store = createMemoryPieceStore({ quotaBytes: 1 << 20 });
  await store.start();
  t.after(async () => {
    await metadata.close();
    await store.stop();
    await rm(root, { recursive: true, force: true });
  });
  const domain = marketDomain(f.deployment.chainId, f.deployment.market);
  const signer = new DealStateSigner({ market: f.c.market, wallet: farmer.wallet, farmer: farmer.address, domain, store });
  const renterKey = renter.address.toLowerCase();

  // Pieces the farmer holds for the renter (uploaded under the deal below).
  const { pieces, data } = makePieces(4, 3000);
  const listed: DealStatePiece[] = pieces.map((p) => ({ pieceId: hexlify(p.pieceId).slice(2), root: hexlify(p.pieceRoot).slice(2), size: Number(p.size) }));

  let failSubmissions = 0;
  const market = {
    openDeal: renter.c.market.openDeal.bind(renter.c.market),
    latestDeal: renter.c.market.latestDeal.bind(renter.c.market),
    deal: renter.c.market.deal.bind(renter.c.market),
    updateState: (...args: Parameters<typeof renter.c.market.updateState>) => {
      // The chain step fails after the farmer co-signed (a dropped connection, a transaction never mined).
      if (failSubmissions > 0) {
        failSubmissions--;
        return Promise.reject(new DstorError("TIMEOUT", "submitting the state: transaction was not mined within 120 s"));
      }
      return renter.c.market.updateState(...args);
    },
  };
  const deals = new ChainDeals({
    market: market as never,
    token: renter.c.token as never,
    marketAddress: f.deployment.market,
    renter: renter.address,
    metadata,
    priceOf: async () => 1_500_000n,
    termSeconds: 3000,
    escrowBytes: 10n ** 9n,
    wallet: renter.wallet,
    chainId: BigInt(f.deployment.chainId),
    coSign: (_farmer, proposal) => signer.sign({ v: 1, ...proposal }),
  });
  const ref = { address: farmer.address.toLowerCase(), peerId: "", multiaddrs: [] };
  const dealId = await deals.ensureDeal(ref);
  for (const [i, p] of pieces.entries()) {
    const w = await store.reserve(renterKey, listed[i]!.pieceId, Number(p.size), { root: p.pieceRoot, dealId, expiresAt: Date.now() + 600_000 });
    await w.write(data.get(hexlify(p.pieceId))!);
    await w.commit();
  }
  const onChain = async (): Promise<{ version: bigint; pieceCount: bigint }> => {
    const d = await f.c.market.deal(dealId);
    return { version: d.version, pieceCount: d.pieceCount };
  };

  await deals.syncState(ref, listed.slice(0, 1));
  assert.deepEqual(await onChain(), { version: 1n, pieceCount: 1n });

  // Co-signed, not submitted: the next sync proposes a newer version and lands.
  failSubmissions = 1;
  await assert.rejects(deals.syncState(ref, listed.slice(0, 2)), /not mined/);
  assert.equal(signer.latestSignedVersion(dealId), 2n, "the farmer co-signed version 2");
  assert.deepEqual(await onChain(), { version: 1n, pieceCount: 1n });
  await deals.syncState(ref, listed.slice(0, 3));
  assert.deepEqual(await onChain(), { version: 3n, pieceCount: 3n });

  // Metadata behind the farmer (as after restoring an older snapshot): the
  // farmer refuses the versions it already signed; the sync skips past them.
  failSubmissions = 3;
  for (const n of [1, 2, 3]) await assert.rejects(deals.syncState(ref, listed.slice(0, n)), /not mined/);
  assert.equal(signer.latestSignedVersion(dealId), 6n);
  await metadata.updateFarmer(ref.address, (r) => ({ ...r, stateVersion: 1 }));
  await deals.syncState(ref, listed);
  const after = await onChain();
  assert.equal(after.pieceCount, 4n);
  assert.ok(after.version > 6n, `version ${after.version} is past every version the farmer signed`);
  assert.equal(signer.latestSignedVersion(dealId), after.version);
});
