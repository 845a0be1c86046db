// Shared fixtures for the policy tests: a small world of domains and policies held in memory.

import { TableDomainFacts, type DomainSpec } from "../../src/policy/domains.ts";
import { memoryFileSystem } from "../../src/policy/files.ts";
import { loadPolicy, readLegacyPolicy, type LoadedPolicy } from "../../src/policy/loader.ts";
import { CompiledPolicy } from "../../src/policy/policy.ts";
import type { Decision } from "../../src/policy/decision.ts";

export const POLICY_DIR = "/policy";
export const LEGACY_DIR = "/legacy";

export const uuid = (digit: string): string =>
  `${digit.repeat(8)}-${digit.repeat(4)}-${digit.repeat(4)}-${digit.repeat(4)}-${digit.repeat(12)}`;

export const DOMAINS: DomainSpec[] = [
  { name: "dom0", type: "AdminVM", running: true, uuid: uuid("0"), tags: ["admin-tag"] },
  { name: "work", tags: ["trusted"], defaultDispvm: "default-dvm", running: true, uuid: uuid("1") },
  {
    name: "personal",
    tags: ["trusted"],
    defaultDispvm: "default-dvm",
    running: false,
    uuid: uuid("2"),
  },
  {
    name: "untrusted",
    tags: ["untrusted"],
    defaultDispvm: "untrusted-dvm",
    running: true,
    uuid: uuid("3"),
  },
  { name: "vault", tags: ["secret"], defaultDispvm: null, running: true, uuid: uuid("4") },
  { name: "default-dvm", templateForDispvms: true, tags: ["dvm"], uuid: uuid("5") },
  { name: "untrusted-dvm", templateForDispvms: true, tags: ["dvm", "untrusted"], uuid: uuid("6") },
  { name: "fedora", type: "TemplateVM", uuid: uuid("7") },
  { name: "disp123", type: "DispVM", running: true, defaultDispvm: "default-dvm", uuid: uuid("8") },
  { name: "standalone", type: "StandaloneVM", running: true, uuid: uuid("9") },
  { name: "sys-hidden", internal: true, running: true, uuid: uuid("a") },
  { name: "relay", running: true, uuid: uuid("b") },
  {
    name: "remote",
    type: "RemoteVM",
    relayvm: "relay",
    transportRpc: "qubesair.SSHProxy",
    uuid: uuid("c"),
  },
];

export const facts = new TableDomainFacts(DOMAINS);

/** Loads `files` (names relative to /policy unless absolute) from memory. */
export function policyFrom(
  files: Record<string, string>,
  legacy: Record<string, string> = {},
): LoadedPolicy {
  const all: Record<string, string> = {};
  for (const [name, text] of Object.entries(files))
    all[name.startsWith("/") ? name : `${POLICY_DIR}/${name}`] = text;
  for (const [name, text] of Object.entries(legacy))
    all[name.startsWith("/") ? name : `${LEGACY_DIR}/${name}`] = text;
  return loadPolicy(POLICY_DIR, { fs: memoryFileSystem(all), legacyDir: LEGACY_DIR });
}

/** One policy file's text loaded as /policy/50-test.policy. */
export function policyOf(text: string): LoadedPolicy {
  return policyFrom({ "50-test.policy": text });
}

export function legacyPolicyFrom(legacy: Record<string, string>): LoadedPolicy {
  const all: Record<string, string> = {};
  for (const [name, text] of Object.entries(legacy)) all[`${LEGACY_DIR}/${name}`] = text;
  const policy = new CompiledPolicy(readLegacyPolicy(LEGACY_DIR, { fs: memoryFileSystem(all) }));
  return { policy, errors: policy.errors };
}

/**
 * A compact, comparable summary of a decision: "allow work", "deny: reason", "ask a,b default a".
 */
export function summary(decision: Decision): string {
  switch (decision.kind) {
    case "allow":
      return `allow ${decision.target}`;
    case "deny":
      return `deny: ${decision.reason}`;
    case "ask":
      return `ask ${decision.targets.join(",")} default ${decision.defaultTarget ?? "-"}`;
  }
}

/** "file:line" of the deciding rule with the /policy/ prefix dropped, or "-". */
export function ruleOf(decision: Decision): string {
  if (decision.rule === null) return "-";
  return `${decision.rule.origin.file.replace(`${POLICY_DIR}/`, "")}:${decision.rule.origin.line}`;
}

export function query(
  source: string,
  target: string,
  serviceAndArg: string,
  requestedSource: string | null = null,
) {
  return { source, intendedTarget: target, serviceAndArg, requestedSource };
}
