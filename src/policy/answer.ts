// One policy request answered end to end, as the policy daemon and qrexec-policy-exec do it:
// evaluate, settle an ask (assume_yes_for_ask, or the asker), log the decision with the rule
// (file:line) that made it, and produce the key=value text (§7.4, §11.1).

import { questionOf, type Asker } from "./ask.ts";
import {
  describeDecision,
  type AllowDecision,
  type Decision,
  type DenyDecision,
} from "./decision.ts";
import type { DomainFacts } from "./domains.ts";
import type { CompiledPolicy } from "./policy.ts";
import type { PolicyQuery } from "./request.ts";
import { untrusted } from "../io/log-text.ts";
import { answerAsk } from "./resolve.ts";
import {
  justEvaluateText,
  policyResponseText,
  settleWithoutAsking,
  type SocketOptions,
} from "./response.ts";

export interface Answered {
  /** The key=value response text (no trailing newline). */
  text: string;
  /** The final decision (an ask settled into allow or deny). */
  decision: AllowDecision | DenyDecision;
  /** The evaluation's decision, before any ask was answered. */
  evaluated: Decision;
}

export interface AnswerContext {
  policy: CompiledPolicy;
  facts: DomainFacts;
  asker: Asker;
  log: (message: string) => void;
  /** Where a request the policy denies outright is logged (a rate-limited log); default `log`. */
  logRefusal?: (message: string) => void;
}

export async function answerQuery(
  query: PolicyQuery,
  options: SocketOptions,
  context: AnswerContext,
): Promise<Answered> {
  const { policy, facts, asker, log } = context;
  const evaluated = policy.evaluate(query, facts);
  const logFirst = evaluated.kind === "deny" ? (context.logRefusal ?? log) : log;
  const asked = query.intendedTarget;
  if (asked !== "" && asked !== "@default" && evaluated.request.intendedTarget === "@default") {
    // Upstream's words: a typo in a VM name is otherwise invisible (the call may still go ahead).
    const target = untrusted(asked);
    logFirst(
      `${untrusted(query.source)} -> ${target}: target '${target}' does not exist, using @default`,
    );
  }
  logFirst(describeDecision(evaluated));
  let decision: AllowDecision | DenyDecision;
  if (evaluated.kind !== "ask") {
    decision = evaluated;
  } else {
    const settled = settleWithoutAsking(evaluated, options, facts);
    if (settled !== null) {
      decision = settled;
      log(`  assume_yes_for_ask: ${describeDecision(settled)}`);
    } else if (options.justEvaluate) {
      // just_evaluate never asks: an ask is a deny.
      return {
        text: justEvaluateText(evaluated),
        decision: {
          kind: "deny",
          rule: evaluated.rule,
          request: evaluated.request,
          reason: "ask under just_evaluate",
          notify: false,
        },
        evaluated,
      };
    } else {
      const answer = await asker.ask(questionOf(evaluated));
      decision =
        answer.target === null
          ? {
              kind: "deny",
              rule: evaluated.rule,
              request: evaluated.request,
              reason: answer.reason,
              notify: false,
            }
          : answerAsk(evaluated, answer.target, facts);
      log(
        `  ask answered: ` +
          `${describeDecision(decision)}${answer.target === null ? "" : ` (${answer.reason})`}`,
      );
    }
  }
  const text = options.justEvaluate ? justEvaluateText(decision) : policyResponseText(decision);
  return { text, decision, evaluated };
}
