// The TypeScript fuzz harnesses inside `bun test`: every kept input of each harness's corpus is
// replayed, then a brief property run with a fixed seed (QRX_FUZZ_RUNS inputs, default 300).
// `npm run fuzz` runs the same harnesses for minutes and keeps what fails.

import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { corpusOf } from "./corpus.ts";
import { harnesses } from "./harnesses.ts";
import { tally } from "./policy.harness.ts";

const runs = Number(process.env.QRX_FUZZ_RUNS ?? 300);

for (const harness of harnesses) {
  describe(`fuzz ${harness.name}`, () => {
    test("replays its corpus", () => {
      for (const { file, input } of corpusOf(harness)) {
        try {
          harness.property(input);
        } catch (error) {
          throw new Error(
            `${harness.name}/${file}: ${error instanceof Error ? error.message : error}`,
          );
        }
      }
    });

    test(`holds for ${runs} generated inputs`, () => {
      const result = fc.check(
        fc.property(harness.arbitrary, (input) => harness.property(input)),
        { numRuns: runs, seed: 0x71727866 },
      );
      expect(result.failed ? fc.defaultReportMessage(result) : null).toBeNull();
    });
  });
}

// A harness whose reference never says "deny", or whose engine never allows, would prove nothing.
test("fuzz ts-policy: the reference scan denied and the engine allowed some calls", () => {
  expect(tally.denyClaims).toBeGreaterThan(0);
  expect(tally.allowed).toBeGreaterThan(0);
});
