// What `qrx policy lint|explain|graph` print, as functions of a loaded snapshot (the commander
// wiring is in src/cli/policy-commands.ts). eval is answerQuery plus a line about the rule.

import { decidedBy, describeDecision, type Decision } from "./decision.ts";
import { formatOrigin, formatPolicyError } from "./errors.ts";
import type { PolicyQuery } from "./request.ts";
import { policyResponseText } from "./response.ts";
import type { PolicySnapshot } from "./store.ts";

export interface LintReport {
  ok: boolean;
  /** One line per problem, "file:line: what is wrong", or a one-line summary when there is none. */
  lines: string[];
}

/** Errors (exit 1), then warnings ("file:line: warning: ..."), which alone keep exit 0. */
export function lintReport(snapshot: PolicySnapshot): LintReport {
  const warnings = snapshot.policy.warnings.map((warning) =>
    formatPolicyError({ ...warning, message: `warning: ${warning.message}` }),
  );
  if (snapshot.errors.length > 0) {
    return { ok: false, lines: [...snapshot.errors.map(formatPolicyError), ...warnings] };
  }
  const files = new Set(snapshot.policy.rules.map((rule) => rule.origin.file));
  const plural = warnings.length === 1 ? "" : "s";
  const count = warnings.length === 0 ? "" : `, ${warnings.length} warning${plural}`;
  const rules = snapshot.policy.rules.length;
  const summary = `ok: ${rules} rules from ${files.size} files, no errors${count}`;
  return { ok: true, lines: [...warnings, summary] };
}

/** Every rule with its verdict and why, the winner, and the response text the daemon would get. */
export function explainText(snapshot: PolicySnapshot, query: PolicyQuery): string {
  const { decision, trace, errors } = snapshot.policy.explain(query, snapshot.facts);
  const lines = [
    `request: source=${query.source} intended_target=${query.intendedTarget} ` +
      `service_and_arg=${query.serviceAndArg}`,
  ];
  for (const error of errors) lines.push(`policy error: ${formatPolicyError(error)}`);
  if (trace.length === 0 && errors.length === 0)
    lines.push("no rule was considered: the request was refused before matching");
  const width = Math.min(
    60,
    Math.max(0, ...trace.map((entry) => formatOrigin(entry.rule.origin).length)),
  );
  for (const entry of trace) {
    const mark = entry.verdict === "matched" ? "=>" : entry.verdict === "no match" ? "  " : " .";
    lines.push(`${mark} ${formatOrigin(entry.rule.origin).padEnd(width)}  ${entry.rule.text}`);
    lines.push(`   ${"".padEnd(width)}  ${entry.verdict}: ${entry.why}`);
  }
  lines.push(`decision: ${describeDecision(decision)}`);
  lines.push(`decided by: ${decidedBy(decision)}`);
  if (decision.kind === "ask") {
    lines.push(
      `question: choose one of ${decision.targets.join(", ")}; ` +
        `default ${decision.defaultTarget ?? "none"}`,
    );
  } else {
    lines.push(
      "response:",
      ...policyResponseText(decision)
        .split("\n")
        .map((line) => `  ${line}`),
    );
  }
  return lines.join("\n");
}

export interface GraphEdge {
  service: string;
  source: string;
  target: string;
  /** allow, or ask (the target is one of the choices offered for that intended target). */
  kind: "allow" | "ask";
  /** The rule sent the call elsewhere than the intended target (target=, @default, @dispvm). */
  redirected: boolean;
  rule: string;
}

/** A service name no rule names, to see what `*` rules do for every other service. */
const OTHER_SERVICE = "qrx.AnyOtherService";

/** Upstream qrexec-policy-graph's limits; an empty or absent list limits nothing. */
export interface GraphFilter {
  /** Keep ask edges (upstream leaves them out unless --include-ask). */
  includeAsk?: boolean;
  sources?: readonly string[];
  targets?: readonly string[];
  /** Service names, with or without +ARG. */
  services?: readonly string[];
}

function keeps(list: readonly string[] | undefined, ...values: string[]): boolean {
  return list === undefined || list.length === 0 || values.some((value) => list.includes(value));
}

/** label -> service_and_arg to evaluate, for every service (+argument) the rules name. */
function graphServices(snapshot: PolicySnapshot, filter: GraphFilter): [string, string][] {
  const services = new Map<string, string>();
  for (const rule of snapshot.policy.rules) {
    const service = rule.service ?? OTHER_SERVICE;
    const argument = rule.argument === null || rule.argument === "+" ? "" : rule.argument;
    const label = `${rule.service ?? "*"}${argument}`;
    if (!keeps(filter.services, label, rule.service ?? "*")) continue;
    services.set(label, `${service}${argument}`);
  }
  return [...services].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

/** Where a decision lets the call go: an allow's target, or a choice of an ask; else null. */
function edgeTarget(decision: Decision, intended: string, includeAsk: boolean): string | null {
  if (decision.kind === "allow") return decision.target;
  if (decision.kind === "ask" && includeAsk && decision.targets.includes(intended)) return intended;
  return null;
}

/**
 * Edges source -> target per service over the known domains: every service (+argument) the rules
 * name, plus "*" for every other service; every domain as source; every domain, @default and
 * @dispvm as intended target. Denied pairs are not edges.
 */
export function policyGraph(
  snapshot: PolicySnapshot,
  filter: GraphFilter = { includeAsk: true },
): GraphEdge[] {
  const { policy, facts } = snapshot;
  const domains = [...facts.all()].map((domain) => domain.name).sort();
  const targets = [...domains, "@default", "@dispvm"];
  const edges: GraphEdge[] = [];
  const seen = new Set<string>();
  for (const [label, serviceAndArg] of graphServices(snapshot, filter)) {
    for (const source of domains.filter((name) => keeps(filter.sources, name))) {
      for (const intended of targets) {
        const decision = policy.evaluate(
          { source, intendedTarget: intended, serviceAndArg },
          facts,
        );
        const target = edgeTarget(decision, intended, filter.includeAsk ?? false);
        if (target === null || decision.kind === "deny" || !keeps(filter.targets, target)) continue;
        const key = `${label}\0${source}\0${target}\0${decision.kind}`;
        if (seen.has(key)) continue;
        seen.add(key);
        edges.push({
          service: label,
          source,
          target,
          kind: decision.kind,
          redirected: target !== intended,
          rule: decidedBy(decision),
        });
      }
    }
  }
  return edges;
}

/** Text; `skipLabels` drops the per-service headings and lists each source -> target once. */
export function graphText(edges: GraphEdge[], skipLabels = false): string {
  const lines: string[] = [];
  let service: string | null = null;
  if (skipLabels) {
    for (const edge of unlabelled(edges).values()) {
      lines.push(`${edge.source} -> ${edge.target} ${edge.kind}`);
    }
    return lines.length === 0 ? "no call is allowed" : lines.join("\n");
  }
  for (const edge of edges) {
    if (edge.service !== service) {
      service = edge.service;
      lines.push(`${service}:`);
    }
    const via = edge.redirected ? " (redirected)" : "";
    lines.push(`  ${edge.source} -> ${edge.target} ${edge.kind}${via}  [${edge.rule}]`);
  }
  return lines.length === 0 ? "no call is allowed" : lines.join("\n");
}

function dotId(text: string): string {
  return `"${text.replace(/\\/g, "\\\\").replace(/"/g, '\\"')}"`;
}

/** Each source -> target pair once, "allow" when any service allows it outright. */
type Pair = { source: string; target: string; kind: GraphEdge["kind"] };

function unlabelled(edges: GraphEdge[]): Map<string, Pair> {
  const pairs = new Map<string, Pair>();
  for (const { source, target, kind } of edges) {
    const key = `${source}\0${target}`;
    const seen = pairs.get(key);
    if (seen === undefined) pairs.set(key, { source, target, kind });
    else if (kind === "allow") seen.kind = kind;
  }
  return pairs;
}

/** DOT; `skipLabels` drops the service names and draws each source -> target pair once. */
export function graphDot(edges: GraphEdge[], skipLabels = false): string {
  const lines = ["digraph policy {", "  rankdir=LR;", "  node [shape=box];"];
  if (skipLabels) {
    for (const edge of unlabelled(edges).values()) {
      const style = edge.kind === "ask" ? " [style=dashed]" : "";
      lines.push(`  ${dotId(edge.source)} -> ${dotId(edge.target)}${style};`);
    }
  }
  for (const edge of skipLabels ? [] : edges) {
    const style = edge.kind === "ask" ? ", style=dashed" : "";
    lines.push(
      `  ${dotId(edge.source)} -> ${dotId(edge.target)} [label=${dotId(edge.service)}${style}];`,
    );
  }
  lines.push("}");
  return lines.join("\n");
}
