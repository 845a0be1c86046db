// Every TypeScript fuzz harness, for the replay test and for `npm run fuzz` (scripts/fuzz-ts.ts).

import { codecHarness, helloHarness } from "./codec.harness.ts";
import { configHarness } from "./config.harness.ts";
import type { Harness } from "./harness.ts";
import { policyHarness } from "./policy.harness.ts";
import { traceHarness } from "./trace.harness.ts";

// Each harness only ever gets back inputs of its own, so their input types can be forgotten here.
export const harnesses = [
  codecHarness,
  helloHarness,
  configHarness,
  policyHarness,
  traceHarness,
] as unknown as Harness<never>[];
