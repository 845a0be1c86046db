// What the matching rule's action makes of a request (§11.1 "Evaluation"): allow (target
// resolution and its refusals), deny, or ask (the choices and the default), and how an answer to
// the question becomes allow or deny.

import type {
  AllowDecision,
  AskDecision,
  Decision,
  DecisionRequest,
  DenyDecision,
} from "./decision.ts";
import { ADMIN_VM_NAME, type DomainFacts } from "./domains.ts";
import { formatOrigin } from "./errors.ts";
import { sourceMatchesInOrder, type Bucket } from "./rule-index.ts";
import type { MatchContext } from "./request.ts";
import type { Rule } from "./rule.ts";
import { expandTarget, redirectTarget } from "./targets.ts";
import { DISPVM_PREFIX } from "./tokens.ts";

export function denied(
  rule: Rule | null,
  request: DecisionRequest,
  reason: string,
  notify = true,
): DenyDecision {
  return { kind: "deny", rule, request, reason, notify };
}

/** @default, @dispvm and @adminvm made concrete for an allow (steps 2-4), or why that fails. */
function concreteTarget(
  target: string,
  request: DecisionRequest,
  facts: DomainFacts,
): { target: string } | { reason: string } {
  if (target === "@default")
    return { reason: "no target: the caller asked for @default and the rule has no target=" };
  if (target === "@dispvm") {
    const template = facts.get(request.source)?.defaultDispvm ?? null;
    if (template === null)
      return { reason: `${request.source} has no default DisposableVM template` };
    return { target: DISPVM_PREFIX + template };
  }
  if (target === "@adminvm") return { target: ADMIN_VM_NAME };
  return { target };
}

interface Grant {
  user: string | null;
  autostart: boolean;
  notify: boolean;
}

/** An allow to a concrete target (steps 5-6, plus existence), with what the response needs. */
export function allowTo(
  target: string,
  rule: Rule,
  request: DecisionRequest,
  grant: Grant,
  facts: DomainFacts,
): AllowDecision | DenyDecision {
  const refuse = (reason: string) => denied(rule, request, reason);
  let running: boolean;
  let targetUuid: string | null = null;
  let responseTarget = target;
  let user = grant.user;
  let service: string | null = null;
  if (target === ADMIN_VM_NAME) {
    running = true; // dom0 always counts as running
  } else if (target.startsWith(DISPVM_PREFIX)) {
    const template = facts.get(target.slice(DISPVM_PREFIX.length));
    if (template === undefined || !template.templateForDispvms) {
      return refuse(`${target.slice(DISPVM_PREFIX.length)} is not a DisposableVM template`);
    }
    running = false; // a new DispVM never is
    if (template.uuid !== null) targetUuid = `${DISPVM_PREFIX}uuid:${template.uuid}`;
  } else {
    const domain = facts.get(target);
    if (domain === undefined) return refuse(`target ${target} does not exist`);
    running = domain.running;
    if (domain.type === "RemoteVM") {
      if (domain.relayvm === null || domain.transportRpc === null)
        return refuse(`RemoteVM ${target} has no relay`);
      const relay = facts.get(domain.relayvm);
      responseTarget = domain.relayvm;
      targetUuid = relay?.uuid ? `uuid:${relay.uuid}` : null;
      user = null; // the relay's service runs as its default user; any user= is ignored
      service = `${domain.transportRpc}+${domain.name}+${request.service}${request.argument}`;
    } else if (domain.uuid !== null) {
      targetUuid = `uuid:${domain.uuid}`;
    }
  }
  if (!grant.autostart && !running)
    return refuse(`target ${target} is not running and the rule has autostart=no`);
  if (target === request.source) return refuse("loopback qrexec connection not supported");
  return {
    kind: "allow",
    rule,
    request,
    target: responseTarget,
    targetUuid,
    user,
    autostart: grant.autostart,
    notify: grant.notify,
    // What the caller wrote (an empty one is @default): a dom0 service sees "name dom0" or
    // "keyword adminvm" as it was asked for (§2.2 step 1).
    requestedTarget: request.writtenTarget === "" ? "@default" : request.writtenTarget,
    service,
  };
}

function allow(rule: Rule, context: MatchContext): AllowDecision | DenyDecision {
  const { request, facts } = context;
  let target = context.target;
  if (rule.redirect !== null) {
    const redirect = redirectTarget(rule.redirect, facts);
    if (redirect === null)
      return denied(rule, request, `target=${rule.redirect.text} names no domain`);
    target = redirect;
  }
  const concrete = concreteTarget(target, request, facts);
  if ("reason" in concrete) return denied(rule, request, concrete.reason);
  return allowTo(concrete.target, rule, request, rule, facts);
}

/** A choice as offered: @dispvm as the source's template, @adminvm as dom0; null if unusable. */
function offeredTarget(target: string, context: MatchContext): string | null {
  let name = target;
  if (target.charCodeAt(0) === 64 /* '@' */) {
    // Keywords only; plain names (nearly all choices) skip this.
    const concrete = concreteTarget(target, context.request, context.facts);
    if ("reason" in concrete) return null;
    name = concrete.target;
  }
  if (name === context.request.source) return null; // loopback is never a choice
  if (name === ADMIN_VM_NAME) return name;
  if (name.startsWith(DISPVM_PREFIX)) {
    return context.facts.get(name.slice(DISPVM_PREFIX.length))?.templateForDispvms ? name : null;
  }
  const domain = context.facts.get(name);
  return domain === undefined || domain.internal ? null : name;
}

function isRunning(target: string, facts: DomainFacts): boolean {
  if (target === ADMIN_VM_NAME) return true;
  if (target.startsWith(DISPVM_PREFIX)) return false;
  return facts.get(target)?.running ?? false;
}

/**
 * collect_targets_for_ask. Upstream walks the rules last first, adding what allow/ask rules name
 * and removing what deny rules name, so the earliest rule naming a target has the last word.
 * Walking first to last and letting only the first rule that names a target decide is the same,
 * and can stop early: after a `*` every target is decided, after an @anyvm all but @adminvm.
 */
export function collectAskTargets(bucket: Bucket, context: MatchContext): Set<string> {
  const decided = new Map<string, boolean>();
  let anyvmSeen = false;
  for (const rule of sourceMatchesInOrder(bucket, context)) {
    const token = rule.redirect ?? rule.target;
    if (token.kind === "anyvm" && anyvmSeen) continue;
    const offer = rule.action !== "deny";
    expandTarget(token, context.facts, (target) => {
      if (!decided.has(target)) decided.set(target, offer);
    });
    if (token.kind === "wildcard") break;
    if (token.kind === "anyvm") anyvmSeen = true;
  }
  const targets = new Set<string>();
  for (const [target, offered] of decided) if (offered) targets.add(target);
  return targets;
}

function ask(rule: Rule, context: MatchContext, bucket: Bucket): AskDecision | DenyDecision {
  const { request, facts } = context;
  let candidates: Iterable<string>;
  if (rule.redirect !== null) {
    const redirect = redirectTarget(rule.redirect, facts);
    candidates = redirect === null ? [] : [redirect];
  } else {
    candidates = collectAskTargets(bucket, context);
  }
  const choices = new Set<string>();
  for (const candidate of candidates) {
    const offered = offeredTarget(candidate, context);
    if (offered !== null && (rule.autostart || isRunning(offered, facts))) choices.add(offered);
  }
  if (choices.size === 0) {
    return denied(
      rule,
      request,
      `ask at ${formatOrigin(rule.origin)} but no target is available to choose from`,
    );
  }
  // The default sort compares UTF-16 code units: the same order as Python's for these names.
  const targets = [...choices].sort();
  const requestedDefault =
    rule.defaultTarget === null ? null : redirectTarget(rule.defaultTarget, facts);
  const offeredDefault =
    requestedDefault === null ? null : offeredTarget(requestedDefault, context);
  return {
    kind: "ask",
    rule,
    request,
    targets,
    defaultTarget: offeredDefault !== null && choices.has(offeredDefault) ? offeredDefault : null,
    user: rule.user,
    autostart: rule.autostart,
    notify: rule.notify,
  };
}

/** The decision of `rule`, which matched; `bucket` holds the rules ask collects targets from. */
export function decide(rule: Rule, context: MatchContext, bucket: Bucket): Decision {
  switch (rule.action) {
    case "deny":
      return denied(rule, context.request, `denied by ${formatOrigin(rule.origin)}`, rule.notify);
    case "allow":
      return allow(rule, context);
    case "ask":
      return ask(rule, context, bucket);
  }
}

/** The user's answer to an ask: a target (which must be one of the choices) or null for deny. */
export function answerAsk(
  decision: AskDecision,
  answer: string | null,
  facts: DomainFacts,
): AllowDecision | DenyDecision {
  const { rule, request } = decision;
  if (answer === null) return denied(rule, request, "denied by the user", false);
  if (!decision.targets.includes(answer))
    return denied(rule, request, `answer '${answer}' is not one of the choices`);
  return allowTo(answer, rule, request, decision, facts);
}

/**
 * assume_yes_for_ask: allow with the caller's intended target, compared literally with the
 * choices as upstream does, so "@adminvm", "@dispvm" or a uuid that is not itself a choice is
 * denied (spec §11.1 note): a GUI VM asking policy.EvalSimple gets upstream's answer.
 */
export function answerAskWithIntendedTarget(
  decision: AskDecision,
  facts: DomainFacts,
): AllowDecision | DenyDecision {
  const written = decision.request.writtenTarget;
  if (!decision.targets.includes(written)) {
    const shown = written === "" ? '""' : written;
    const reason = `intended target ${shown} is not one of the choices`;
    return denied(decision.rule, decision.request, reason);
  }
  return answerAsk(decision, written, facts);
}
