// Where the policy lives by default: a module of its own so that a CLI's option definitions and
// --help can name the defaults without loading the policy engine (docs/architecture.md,
// "Start-up").

/** Upstream's directories, in precedence order (§11.1). */
export const DEFAULT_POLICY_DIRS = ["/run/qubes/policy.d", "/etc/qubes/policy.d"];
/** Where R4.0 kept per-service files, read by `!compat-4.0` unless the loader is told otherwise. */
export const DEFAULT_LEGACY_POLICY_DIR = "/etc/qubes-rpc/policy";

/** Splits --policy-dir values: repeatable, each maybe a colon list. Empty: upstream's default. */
export function policyDirsFrom(values: readonly string[] | undefined): string[] {
  const dirs = (values ?? []).flatMap((value) => value.split(":")).filter((dir) => dir !== "");
  return dirs.length > 0 ? dirs : [...DEFAULT_POLICY_DIRS];
}
