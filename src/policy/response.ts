// The key=value text a policy daemon or program answers the qrexec daemon with (§7.4, §11.1
// "Allow response format"), and the two request options of the policy socket.

import type { AllowDecision, Decision, DenyDecision } from "./decision.ts";
import type { DomainFacts } from "./domains.ts";
import { answerAskWithIntendedTarget } from "./resolve.ts";

/** The response lines joined with "\n", no trailing newline (the daemon accepts either). */
export function policyResponseText(decision: AllowDecision | DenyDecision): string {
  if (decision.kind === "deny") return "result=deny";
  const lines = [`user=${decision.user ?? "DEFAULT"}`, "result=allow", `target=${decision.target}`];
  if (decision.targetUuid !== null) lines.push(`target_uuid=${decision.targetUuid}`);
  lines.push(
    `autostart=${decision.autostart ? "True" : "False"}`,
    `requested_target=${decision.requestedTarget}`,
  );
  if (decision.service !== null) lines.push(`service=${decision.service}`);
  if (decision.request.policySource !== null)
    lines.push(`policy_source=${decision.request.policySource}`);
  return lines.join("\n");
}

export interface SocketOptions {
  /** assume_yes_for_ask: an ask is answered with the caller's intended target. */
  assumeYesForAsk?: boolean;
  /** just_evaluate: only "result=allow" or "result=deny"; an unanswered ask is a deny. */
  justEvaluate?: boolean;
}

/**
 * Settles a decision without a human: applies assume_yes_for_ask, and turns a remaining ask into
 * null (the caller must ask someone, or deny). Used for policy.EvalSimple/EvalGUI (§11.3).
 */
export function settleWithoutAsking(
  decision: Decision,
  options: SocketOptions,
  facts: DomainFacts,
): AllowDecision | DenyDecision | null {
  if (decision.kind !== "ask") return decision;
  if (options.assumeYesForAsk) return answerAskWithIntendedTarget(decision, facts);
  return null;
}

/** The just_evaluate answer: a bare result line; an ask counts as deny. */
export function justEvaluateText(decision: Decision): string {
  return decision.kind === "allow" ? "result=allow" : "result=deny";
}
