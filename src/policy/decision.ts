// What evaluation returns. Every decision carries the rule that made it (null only when no rule
// did: no match, a broken policy, an invalid request), so it can be logged as file:line.

import { untrusted } from "../io/log-text.ts";
import { formatOrigin } from "./errors.ts";
import type { Rule } from "./rule.ts";

/** The call as evaluated, after normalization (and after a relay's source substitution). */
export interface DecisionRequest {
  service: string;
  /** "+ARG"; "+" for a call without argument. */
  argument: string;
  /** The domain the policy was evaluated for: the caller, or the RemoteVM it relays for. */
  source: string;
  /** The domain that made the call. */
  caller: string;
  /** Normalized: a domain name, "@default", "@adminvm", "@dispvm" or "@dispvm:TEMPLATE". */
  intendedTarget: string;
  /** The intended target exactly as the caller wrote it (assume_yes_for_ask compares this). */
  writtenTarget: string;
  /** The relayed RemoteVM (the response's policy_source), else null. */
  policySource: string | null;
}

export interface AllowDecision {
  kind: "allow";
  rule: Rule;
  request: DecisionRequest;
  /** "dom0", a domain name, or "@dispvm:TEMPLATE" (for a RemoteVM: its relay). */
  target: string;
  /** "uuid:<uuid>" or "@dispvm:uuid:<uuid>", when the facts know it. */
  targetUuid: string | null;
  /** null: the target's default user. */
  user: string | null;
  autostart: boolean;
  notify: boolean;
  /** The caller's intended target as written (empty: @default); a redirect does not change it. */
  requestedTarget: string;
  /**
   * RemoteVM targets: the service the relay runs instead ("<transport_rpc>+<remote>+<svc><arg>").
   */
  service: string | null;
}

export interface DenyDecision {
  kind: "deny";
  rule: Rule | null;
  request: DecisionRequest;
  reason: string;
  notify: boolean;
}

export interface AskDecision {
  kind: "ask";
  rule: Rule;
  request: DecisionRequest;
  /** The choices to offer, sorted; never empty. */
  targets: string[];
  /** One of `targets`, or null. */
  defaultTarget: string | null;
  user: string | null;
  autostart: boolean;
  notify: boolean;
}

export type Decision = AllowDecision | DenyDecision | AskDecision;

/** "file:line" of the deciding rule, or "no rule". */
export function decidedBy(decision: Decision): string {
  return decision.rule === null ? "no rule" : formatOrigin(decision.rule.origin);
}

/** One log line: what was asked, what was decided, and by which rule. */
export function describeDecision(decision: Decision): string {
  const { request } = decision;
  // Every field may come from a VM (up to 64 KB of service name): cut and escaped.
  const service = untrusted(`${request.service}${request.argument}`);
  const call = `${untrusted(request.source)} -> ${untrusted(request.intendedTarget)} ${service}`;
  const via = request.caller === request.source ? "" : ` (via ${untrusted(request.caller)})`;
  const by = decidedBy(decision);
  switch (decision.kind) {
    case "allow":
      return `${call}${via}: allow to ${decision.target} by ${by}`;
    case "deny":
      return `${call}${via}: deny (${untrusted(decision.reason, 512)}) by ${by}`;
    case "ask":
      return (
        `${call}${via}: ask [${decision.targets.join(", ")}] ` +
        `default ${decision.defaultTarget ?? "none"} by ${by}`
      );
  }
}
