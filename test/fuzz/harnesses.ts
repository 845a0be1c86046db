// Every TypeScript fuzz harness, for the replay test and for `npm run fuzz` (scripts/fuzz-ts.ts).

import { codecHarness, helloHarness } from "./codec.harness.ts";
import { configHarness } from "./config.harness.ts";
import type { Harness } from "./harness.ts";
import { policyHarness } from "./policy.harness.ts";

export const harnesses: Harness<never>[] = [
  codecHarness,
  helloHarness,
  configHarness,
  policyHarness,
] as Harness<never>[];
