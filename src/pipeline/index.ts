/**
 * The segment pipeline, composed from src/erasure and src/crypto.
 */
import type { Logger } from "../core/logging.js";
import { merkleRootAsync, merkleRoots } from "../crypto/merkle.js";
import { createErasureCoder, type KernelChoice } from "../erasure/index.js";
import type { RedundancyStrategy } from "../erasure/strategy.js";
import type { SegmentPipelineComponents } from "./segment.js";

export * from "./segment.js";
export * from "./stream.js";

/** Options of {@link createSegmentPipeline}. */
export interface SegmentPipelineInit {
  strategy: RedundancyStrategy;
  /** Erasure kernel; default `auto`. */
  kernel?: KernelChoice;
  logger?: Logger;
}

/** The real pipeline components: Reed–Solomon coder + Merkle hasher. */
export function createSegmentPipeline(init: SegmentPipelineInit): SegmentPipelineComponents {
  const coder = createErasureCoder(init.strategy, {
    kernel: init.kernel ?? "auto",
    ...(init.logger === undefined ? {} : { logger: init.logger }),
  });
  return {
    coder,
    hasher: {
      roots: (pieces) => merkleRoots(pieces),
      // One job per piece on libuv's thread pool (several run at once).
      rootsAsync: (pieces) => Promise.all(pieces.map((piece) => merkleRootAsync(piece))),
    },
  };
}
