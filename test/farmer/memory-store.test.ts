import { createMemoryPieceStore } from "../../src/farmer/store/memory-store.js";
import { runPieceStoreCompliance } from "./store-compliance.js";

// The in-memory store must pass the same suite as the file-system store.
runPieceStoreCompliance("memory", {
  create: async ({ quotaBytes }) => createMemoryPieceStore({ quotaBytes }),
  cleanup: async () => {},
});
