/**
 * `dstor stat PATH`: a file's size, segments, pieces, the farmers holding
 * them and its health (metadata only).
 */
import type { CommandModule } from "yargs";
import { addRenterOptions, openRenterFromArgs, type RenterArgs } from "../renter-common.js";

interface StatArgs extends RenterArgs {
  path: string;
}

/** `dstor stat PATH`. */
export const statCommand: CommandModule<object, StatArgs> = {
  command: "stat <path>",
  describe: "Show a file's segments, pieces, farmers and health",
  builder: (yargs) => addRenterOptions(yargs, true).positional("path", { type: "string", describe: "File or directory in the drive" }) as never,
  handler: async (args) => {
    const node = await openRenterFromArgs(args, true);
    try {
      const st = await node.renter.stat(args.path);
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
        for (const p of s.pieces) lines.push(`    piece ${p.number} ${p.pieceId.slice(0, 16)}… ${p.farmer ?? "(not stored)"}`);
      }
      process.stdout.write(`${lines.join("\n")}\n`);
    } finally {
      await node.stop();
    }
  },
};
