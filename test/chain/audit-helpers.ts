/** Helpers that build and send challenge answers in chain tests. */
import type { ContractTransactionReceipt } from "ethers";
import { buildChallengeAnswer, computeChallenge, leafSourceFromData, type AnswerSample } from "../../src/chain/proofs.js";
import type { DealPiece } from "../../src/crypto/merkle.js";
import type { ChainFixture, Party } from "./fixture.js";
import { hexlify } from "ethers";

/** Builds the honest answer of `dealId` in `epoch` (the seed must be fixed). */
export async function honestAnswer(
  f: ChainFixture,
  dealId: bigint,
  epoch: bigint,
  pieces: DealPiece[],
  data: Map<string, Uint8Array>,
): Promise<AnswerSample[]> {
  const seed = await f.c.randomness.seedOf(epoch);
  const deal = await f.c.market.deal(dealId);
  const requested = await f.c.market.requestedChallenges(dealId, epoch);
  const ch = computeChallenge(seed, dealId, epoch, deal.pieceCount, BigInt(f.params.challengeProbabilityPpm), requested);
  const [onChainChallenged, onChainHash] = await f.c.market.challengeOf(dealId, epoch);
  if (ch.hash !== onChainHash || ch.challenged !== onChainChallenged) throw new Error("challenge mismatch between TS and Solidity");
  return buildChallengeAnswer(ch, pieces, f.params.samplesPerChallenge, leafSourceFromData((id) => data.get(hexlify(id))));
}

/** Sends an answer and returns the receipt. */
export async function sendAnswer(farmer: Party, dealId: bigint, epoch: bigint, samples: AnswerSample[]): Promise<ContractTransactionReceipt> {
  const tx = await farmer.c.market.answerChallenge(dealId, epoch, samples);
  return (await tx.wait())!;
}

/** Names of the Market events in a receipt. */
export function eventNames(f: ChainFixture, receipt: ContractTransactionReceipt): string[] {
  const names: string[] = [];
  for (const log of receipt.logs) {
    const parsed = f.c.market.interface.parseLog(log);
    if (parsed !== null) names.push(parsed.name);
  }
  return names;
}

/** The FailReason of a ChallengeFailed event in a receipt, or undefined. */
export function failReason(f: ChainFixture, receipt: ContractTransactionReceipt): number | undefined {
  for (const log of receipt.logs) {
    const parsed = f.c.market.interface.parseLog(log);
    if (parsed?.name === "ChallengeFailed") return Number(parsed.args[3]);
  }
  return undefined;
}
