// The options every policy tool shares: where the policy and the domain facts come from.
import type { Command } from "commander";
import {
  DEFAULT_LEGACY_POLICY_DIR,
  DEFAULT_POLICY_DIRS,
  policyDirsFrom,
} from "../policy/defaults.ts";
import type { PolicySource } from "../policy/store.ts";

export interface PolicyOptionValues {
  policyDir?: string[];
  legacyDir: string;
  domains?: string;
  systemInfoSocket?: string;
  systemInfoFile?: string;
}

function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

/** Adds --policy-dir (repeatable, colon lists), --legacy-dir and --domains. */
export function addPolicySourceOptions(command: Command): Command {
  return command
    .option(
      "--policy-dir <dir>",
      `policy directory, repeatable or a colon list (default ` +
        `$QRX_POLICY_DIR, else ${DEFAULT_POLICY_DIRS.join(":")})`,
      collect,
    )
    .option(
      "--legacy-dir <dir>",
      "legacy per-service policy directory read by !compat-4.0",
      DEFAULT_LEGACY_POLICY_DIR,
    )
    .option(
      "--domains <file>",
      "domain facts, TOML or JSON (default $QRX_DOMAINS; none: only dom0 is known)",
    )
    .option(
      "--system-info-socket <path>",
      "ask domain facts from this qubesd socket (internal.GetSystemInfo) " +
        "per request, instead of --domains (default $QRX_SYSTEM_INFO_SOCKET)",
    )
    .option(
      "--system-info-file <path>",
      "domain facts from this GetSystemInfo JSON, checked at every request and read again " +
        "when it was replaced; its writer must rename each version into place (the lab's " +
        "admin keeps one); before --system-info-socket",
    );
}

export function policySourceFrom(options: PolicyOptionValues): PolicySource {
  const domainsFile = options.domains ?? process.env.QRX_DOMAINS ?? null;
  const dirs =
    options.policyDir ?? (process.env.QRX_POLICY_DIR ? [process.env.QRX_POLICY_DIR] : undefined);
  const systemInfoSocket = options.systemInfoSocket ?? (process.env.QRX_SYSTEM_INFO_SOCKET || null);
  return {
    dirs: policyDirsFrom(dirs),
    legacyDir: options.legacyDir,
    domainsFile: domainsFile === "" ? null : domainsFile,
    systemInfoSocket,
    systemInfoFile: options.systemInfoFile ?? null,
  };
}

/** --ask-program's default, so a program started without options (as --policy-program) gets one. */
export function askProgramFrom(value: string | undefined): string | undefined {
  return value ?? (process.env.QRX_ASK_PROGRAM || undefined);
}

export const DOMAINS_FILE_HELP = `
Domains file (TOML, or JSON when it ends in .json), like qubesd's GetSystemInfo:
  [domains.work]
  tags = ["trusted"]
  default_dispvm = "default-dvm"
  power_state = "Running"
  uuid = "11111111-2222-3333-4444-555555555555"
  [domains.default-dvm]
  template_for_dispvms = true
Keys: type, tags, default_dispvm, template_for_dispvms, uuid, power_state|running, internal,
relayvm, transport_rpc. dom0 is always there.

Environment (defaults for the options, e.g. when run as qrexec-daemon's --policy-program):
  QRX_POLICY_DIR   --policy-dir (colon list)
  QRX_DOMAINS      --domains
  QRX_SYSTEM_INFO_SOCKET  --system-info-socket (the lab sets it to its admin service)
  QRX_ASK_PROGRAM  --ask-program`;
