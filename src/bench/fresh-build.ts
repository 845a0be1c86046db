// The latency rows time our programs' start-up, and that is the bundles' (scripts/bundle.ts).
// After an edit without `npm run setup`, the launchers run the sources instead (correct, never
// stale, but 5-10x slower to start), and the rows would time that fallback: 36-40 ms for a
// `--help` that takes 4. So a benchmark with latency rows rebuilds the stale bundles first
// (nothing to do when none is: the build checks each program before it acts).

import { join } from "node:path";
import { COMPILED, PROJECT_DIR } from "../install-paths.ts";

/** Rebuilds the stale bundles of the checkout at `root`; what the build said, if anything. */
export function refreshBundles(root = PROJECT_DIR): string {
  if (COMPILED) return ""; // one executable: nothing is bundled or transpiled at its start
  const script = join(root, "scripts", "bundle.ts");
  const result = Bun.spawnSync([process.execPath, script], { stdout: "ignore", stderr: "pipe" });
  const output = result.stderr.toString().trim();
  if (result.exitCode !== 0) throw new Error(`${script} failed (${result.exitCode}): ${output}`);
  return output;
}
