import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { test } from "node:test";
import { hexlify } from "ethers";
import fc from "fast-check";
import { computeChallenge, samplePieceIndex, sampleLeafIndex, storageCost } from "../../src/chain/proofs.js";
import { startFixture } from "./fixture.js";

test("challenge sampling in TypeScript equals the contract's", async (t) => {
  const f = await startFixture(t);
  await fc.assert(
    fc.asyncProperty(fc.uint8Array({ minLength: 32, maxLength: 32 }), fc.nat(63), fc.integer({ min: 1, max: 1_000_000 }), async (h, k, n) => {
      const hash = hexlify(h);
      assert.equal(await f.c.market.samplePieceIndex(hash, k, n), BigInt(samplePieceIndex(hash, k, n)));
      assert.equal(await f.c.market.sampleLeafIndex(hash, k, n), BigInt(sampleLeafIndex(hash, k, n)));
    }),
    { numRuns: 30 },
  );
});

test("a deal is challenged with the configured probability (about 1 in 7 by default)", () => {
  const seed = hexlify(randomBytes(32));
  let challenged = 0;
  const deals = 7000;
  for (let d = 1; d <= deals; d++) if (computeChallenge(seed, BigInt(d), 5n, 10n, 142_857n).challenged) challenged++;
  // Binomial(7000, 1/7): mean 1000, sd ≈ 29; ±200 is ~7 sd.
  assert.ok(challenged > 800 && challenged < 1200, `challenged ${challenged} of ${deals}`);
  assert.equal(computeChallenge(seed, 1n, 5n, 0n, 1_000_000n).challenged, false, "an empty deal is never challenged");
  assert.equal(computeChallenge(hexlify(new Uint8Array(32)), 1n, 5n, 3n, 1_000_000n).challenged, false, "no seed, no challenge");
});

test("cumulative pay never loses value: epoch shares telescope to the whole term's cost", () => {
  fc.assert(
    fc.property(
      fc.bigInt({ min: 1n, max: 10n ** 9n }),
      fc.bigInt({ min: 1n, max: 10n ** 13n }),
      fc.array(fc.integer({ min: 1, max: 100_000 }), { minLength: 1, maxLength: 40 }),
      (price, bytes, epochs) => {
        let t = 0n;
        let sum = 0n;
        for (const len of epochs) {
          const next = t + BigInt(len);
          sum += storageCost(price, bytes * next) - storageCost(price, bytes * t);
          t = next;
        }
        assert.equal(sum, (price * bytes * t) / (10n ** 12n * 2_592_000n));
      },
    ),
  );
});

test("EIP-712 digests built in TypeScript equal the contract's", async (t) => {
  const f = await startFixture(t);
  const { dealStateDigest, marketDomain } = await import("../../src/chain/signing.js");
  const domain = marketDomain(f.deployment.chainId, f.deployment.market);
  const state = { root: hexlify(randomBytes(32)), pieceCount: 7n, totalBytes: 123_456n, version: 9n };
  const ts = dealStateDigest(domain, { dealId: 42n, term: 3n, ...state });
  assert.equal(await f.c.market.dealStateDigest(42n, 3n, state), ts);
  const { resolveChainEndpoint } = await import("../../src/chain/devchain.js");
  const resolved = await resolveChainEndpoint({ home: f.home, chainRpc: f.chain.rpcUrl });
  assert.deepEqual(resolved.deployment, f.deployment);
});
