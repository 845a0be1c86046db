// Loading a policy from disk (or any PolicyFileSystem) into a CompiledPolicy.

import { readLegacyPolicy, readPolicy, type ReadOptions } from "./loader.ts";
import type { PolicyError } from "./errors.ts";
import { CompiledPolicy } from "./policy.ts";

export interface LoadedPolicy {
  /** Always usable: with errors it denies every call. */
  policy: CompiledPolicy;
  errors: readonly PolicyError[];
}

/**
 * Loads `dirs` (one directory, or several where an earlier one hides same-named files in later
 * ones). Never throws for a bad policy: problems are in `errors` and the policy denies everything.
 */
export function loadPolicy(dirs: string | string[], options: ReadOptions = {}): LoadedPolicy {
  const policy = new CompiledPolicy(readPolicy(typeof dirs === "string" ? [dirs] : dirs, options));
  return { policy, errors: policy.errors };
}

/** Loads a legacy per-service directory alone, with `!compat-4.0` semantics. */
export function loadLegacyPolicy(
  legacyDir: string,
  options: Omit<ReadOptions, "legacyDir"> = {},
): LoadedPolicy {
  const policy = new CompiledPolicy(readLegacyPolicy(legacyDir, options));
  return { policy, errors: policy.errors };
}
