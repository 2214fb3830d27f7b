/**
 * `dstor stat PATH`: a file's size, segments, pieces, the farmers holding
 * them and its health — from metadata alone, or with `--verify` by fetching
 * every piece and checking it against its Merkle root.
 */
import type { CommandModule } from "yargs";
import { addOptions } from "../../core/options.js";
import { addRenterOptions, openRenterFromArgs, type RenterArgs } from "../renter-common.js";

interface StatArgs extends RenterArgs {
  path: string;
  verify: boolean;
}

/** `dstor stat PATH`. */
export const statCommand: CommandModule<object, StatArgs> = {
  command: "stat <path>",
  describe: "Show a file's segments, pieces, farmers and health",
  // Renter options (chain, farmers) matter only with --verify; without it stat reads metadata alone.
  builder: (yargs) => addOptions(addRenterOptions(yargs), ["verify"]).positional("path", { type: "string", describe: "File or directory in the drive" }) as never,
  handler: async (args) => {
    const node = await openRenterFromArgs(args, !args.verify);
    try {
      const st = await node.renter.stat(args.path, { verify: args.verify });
      if (args.json) {
        const { file: _secret, ...record } = st.record;
        process.stdout.write(`${JSON.stringify({ ...st, record })}\n`);
        return;
      }
      const lines = [
        `${st.path}: ${st.record.type}${st.record.type === "symlink" ? ` -> ${st.record.target}` : ""}, ${st.record.size} bytes, mode ${st.record.mode.toString(8)}, modified ${new Date(st.record.mtimeMs).toISOString()}`,
      ];
      if (st.redundancy !== undefined) lines.push(`  redundancy ${st.redundancy}, health ${st.health}, ${st.segments.length} segment(s)`);
      for (const s of st.segments) {
        lines.push(`  segment ${s.index}: ${s.plaintextLength} bytes, pieces of ${s.pieceSize} bytes, ${s.healthy} healthy`);
        for (const p of s.pieces) lines.push(`    piece ${p.number} ${p.pieceId.slice(0, 16)}… ${p.farmer ?? "(not stored)"}${p.verified === undefined ? "" : ` ${p.verified}`}`);
      }
      process.stdout.write(`${lines.join("\n")}\n`);
    } finally {
      await node.stop();
    }
  },
};
