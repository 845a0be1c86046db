// Evaluation of one call (§11.1): the fast path through the index, and the explaining path that
// walks every rule and says why each did or did not match. Both hand the winning rule to the same
// `decide`, so an explanation always ends in the decision the daemon would get.

import type { Decision } from "./decision.ts";
import type { DomainFacts } from "./domains.ts";
import { formatPolicyError, type PolicyError } from "./errors.ts";
import { ruleMismatch, type Mismatch } from "./match.ts";
import { normalizeQuery, type MatchContext, type PolicyQuery } from "./request.ts";
import { denied, decide } from "./resolve.ts";
import { firstMatch, type RuleIndex } from "./rule-index.ts";
import type { Rule } from "./rule.ts";

export interface EvaluablePolicy {
  readonly rules: readonly Rule[];
  readonly errors: readonly PolicyError[];
  readonly index: RuleIndex;
}

export const NO_MATCHING_RULE = "no matching rule";

function brokenPolicyReason(errors: readonly PolicyError[]): string {
  const count = errors.length === 1 ? "an error" : `${errors.length} errors`;
  const [first] = errors;
  const what = first === undefined ? "" : `; first: ${formatPolicyError(first)}`;
  return `the policy has ${count}, so every call is denied${what}`;
}

function failureReason(error: unknown): string {
  return `policy evaluation failed: ${error instanceof Error ? error.message : String(error)}`;
}

/** Denies for a broken policy or an invalid request; otherwise hands over the match context. */
function prepare(
  policy: EvaluablePolicy,
  query: PolicyQuery,
  facts: DomainFacts,
): MatchContext | Decision {
  const normalized = normalizeQuery(query, facts);
  if (!normalized.ok) {
    if (policy.errors.length > 0)
      return denied(null, normalized.request, brokenPolicyReason(policy.errors));
    return denied(null, normalized.request, normalized.reason);
  }
  if (policy.errors.length > 0)
    return denied(null, normalized.context.request, brokenPolicyReason(policy.errors));
  return normalized.context;
}

function isDecision(value: MatchContext | Decision): value is Decision {
  return "kind" in value;
}

function unexpectedFailure(query: PolicyQuery, error: unknown): Decision {
  const request = {
    service: query.serviceAndArg,
    argument: "",
    source: query.source,
    caller: query.source,
    intendedTarget: query.intendedTarget,
    writtenTarget: query.intendedTarget,
    policySource: null,
  };
  return denied(null, request, failureReason(error));
}

export function evaluate(
  policy: EvaluablePolicy,
  query: PolicyQuery,
  facts: DomainFacts,
): Decision {
  try {
    const prepared = prepare(policy, query, facts);
    if (isDecision(prepared)) return prepared;
    const bucket = policy.index.bucketFor(prepared.service, prepared.argument);
    const rule = firstMatch(bucket, prepared);
    if (rule === null) return denied(null, prepared.request, NO_MATCHING_RULE);
    return decide(rule, prepared, bucket);
  } catch (error) {
    // A facts source that fails (the lab's state unreadable) must not allow anything.
    return unexpectedFailure(query, error);
  }
}

export type Verdict = "matched" | "no match" | "not reached";

export interface TraceEntry {
  rule: Rule;
  verdict: Verdict;
  /** Why it did or did not match, in words. */
  why: string;
}

export interface Explanation {
  decision: Decision;
  /** Every rule of the policy in order (empty when the request never reached the rules). */
  trace: TraceEntry[];
  /** The policy's load errors; any of them means deny. */
  errors: readonly PolicyError[];
}

function why(mismatch: Mismatch, rule: Rule, context: MatchContext): string {
  switch (mismatch) {
    case "service":
      return `service ${context.service} is not ${rule.service}`;
    case "argument":
      return `argument ${context.argument} is not ${rule.argument}`;
    case "source":
      return `source ${context.source} does not match ${rule.source.text}`;
    case "target":
      return `target ${context.target} does not match ${rule.target.text}`;
    case null:
      return (
        `service, argument, source ${context.source} and ` +
        `target ${context.target} match: ${rule.action}`
      );
  }
}

/**
 * The decision with every rule's verdict. Slow on purpose (no index); for tools, not the daemon.
 */
export function explain(
  policy: EvaluablePolicy,
  query: PolicyQuery,
  facts: DomainFacts,
): Explanation {
  const trace: TraceEntry[] = [];
  let decision: Decision;
  try {
    const prepared = prepare(policy, query, facts);
    if (isDecision(prepared)) return { decision: prepared, trace, errors: policy.errors };
    let winner: Rule | null = null;
    for (const rule of policy.rules) {
      if (winner !== null) {
        trace.push({
          rule,
          verdict: "not reached",
          why: `${winner.origin.file}:${winner.origin.line} decided first`,
        });
        continue;
      }
      const mismatch = ruleMismatch(rule, prepared);
      trace.push({
        rule,
        verdict: mismatch === null ? "matched" : "no match",
        why: why(mismatch, rule, prepared),
      });
      if (mismatch === null) winner = rule;
    }
    decision =
      winner === null
        ? denied(null, prepared.request, NO_MATCHING_RULE)
        : decide(winner, prepared, policy.index.bucketFor(prepared.service, prepared.argument));
  } catch (error) {
    decision = unexpectedFailure(query, error);
  }
  return { decision, trace, errors: policy.errors };
}
