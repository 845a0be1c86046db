// Harness over the policy engine (src/policy/): random policies in the new format, random calls.
// The engine must never allow a call that a plain linear scan of the rules (written here, with
// its own token matching) denies; its indexed fast path and its explaining walk must agree; a
// policy with any error denies everything.

import fc from "fast-check";
import { TableDomainFacts, type DomainSpec } from "../../src/policy/domains.ts";
import { memoryFileSystem } from "../../src/policy/files.ts";
import { loadPolicy } from "../../src/policy/loader.ts";
import { jsonInput, type Harness } from "./harness.ts";

const DOMAINS: (DomainSpec & { type?: string; tags?: string[] })[] = [
  { name: "dom0", type: "AdminVM", running: true },
  { name: "work", type: "AppVM", tags: ["trusted"], running: true },
  { name: "vault", type: "AppVM", tags: ["secret"], running: true },
  { name: "personal", type: "AppVM", tags: ["trusted"], running: false },
  { name: "fedora", type: "TemplateVM", running: false },
];
const facts = new TableDomainFacts(DOMAINS as DomainSpec[]);

const NAMES = ["dom0", "work", "vault", "personal", "fedora"];
const SOURCE_TOKENS = [
  ...NAMES,
  "nosuch",
  "*",
  "@anyvm",
  "@adminvm",
  "@tag:trusted",
  "@tag:secret",
  "@type:AppVM",
  "@type:TemplateVM",
];
const TARGET_TOKENS = [...SOURCE_TOKENS, "@default", "@dispvm"];
const ACTIONS = [
  "allow",
  "deny",
  "ask",
  "allow target=vault",
  "ask default_target=vault",
  "deny notify=no",
];
const SERVICES = ["test.A", "test.B", "*"];
const ARGUMENTS = ["*", "+", "+x"];
const CALLS = ["test.A", "test.A+", "test.A+x", "test.B", "test.B+y"];
const TARGETS = [...NAMES, "@default", "@adminvm"];

interface Rule {
  service: string;
  argument: string;
  source: string;
  target: string;
  action: string;
}

interface Input {
  rules: Rule[];
  garbage: string | null;
  calls: { source: string; target: string; call: string }[];
}

type Tri = "yes" | "no" | "unknown";

function domain(name: string): (typeof DOMAINS)[number] | undefined {
  return DOMAINS.find((d) => d.name === name);
}

function tokenMatchesDomain(token: string, name: string): Tri {
  const d = domain(name)!;
  if (token === "*") return "yes";
  if (token === "@anyvm") return name === "dom0" ? "no" : "yes";
  if (token === "@adminvm") return name === "dom0" ? "yes" : "no";
  if (token.startsWith("@tag:")) return (d.tags ?? []).includes(token.slice(5)) ? "yes" : "no";
  if (token.startsWith("@type:")) return d.type === token.slice(6) ? "yes" : "no";
  if (token.startsWith("@")) return "no"; // @default, @dispvm name no domain
  return token === name ? "yes" : "no";
}

function targetMatches(token: string, target: string): Tri {
  if (target === "@adminvm")
    return token === "@adminvm" || token === "dom0" || token === "*"
      ? "yes"
      : tokenMatchesDomain(token, "dom0");
  if (target === "@default")
    return token === "@default" ? "yes" : token === "*" || token === "@anyvm" ? "unknown" : "no";
  return tokenMatchesDomain(token, target);
}

function both(...values: Tri[]): Tri {
  if (values.includes("no")) return "no";
  return values.includes("unknown") ? "unknown" : "yes";
}

/** "deny" when the first rule that can match is a deny rule, or when none can; else no claim. */
function reference(
  rules: Rule[],
  source: string,
  target: string,
  call: string,
): "deny" | "no claim" {
  const plus = call.indexOf("+");
  const service = plus === -1 ? call : call.slice(0, plus);
  const argument = plus === -1 ? "+" : call.slice(plus);
  for (const rule of rules) {
    const matched = both(
      rule.service === "*" || rule.service === service ? "yes" : "no",
      rule.argument === "*" || rule.argument === argument ? "yes" : "no",
      tokenMatchesDomain(rule.source, source),
      targetMatches(rule.target, target),
    );
    if (matched === "no") continue;
    if (matched === "unknown") return "no claim";
    return rule.action.startsWith("deny") ? "deny" : "no claim";
  }
  return "deny";
}

function assert(ok: boolean, message: string): asserts ok {
  if (!ok) throw new Error(`property violated: ${message}`);
}

/** How often the reference made a claim and the engine allowed (for checking the harness). */
export const tally = { denyClaims: 0, noClaims: 0, allowed: 0 };

function check({ rules, garbage, calls }: Input): void {
  const lines = rules.map((r) => `${r.service} ${r.argument} ${r.source} ${r.target} ${r.action}`);
  if (garbage !== null) lines.splice(garbage.length % (lines.length + 1), 0, garbage);
  const loaded = loadPolicy("/policy", {
    fs: memoryFileSystem({ "/policy/50-fuzz.policy": lines.join("\n") + "\n" }),
  });
  for (const { source, target, call } of calls) {
    const query = { source, intendedTarget: target, serviceAndArg: call, requestedSource: null };
    const decision = loaded.policy.evaluate(query, facts);
    const explained = loaded.policy.explain(query, facts).decision;
    const at = `${source} -> ${target} ${call}`;
    assert(
      explained.kind === decision.kind && explained.rule === decision.rule,
      `explain disagrees on ${at}`,
    );
    if (loaded.errors.length > 0)
      assert(decision.kind === "deny", `a broken policy decided ${decision.kind} for ${at}`);
    if (decision.kind === "allow") tally.allowed++;
    if (garbage !== null) continue;
    if (reference(rules, source, target, call) === "deny") {
      tally.denyClaims++;
      assert(decision.kind === "deny", `${decision.kind} for ${at}, which the rules deny`);
    } else {
      tally.noClaims++;
    }
  }
}

// A `*` service takes only a `*` argument (anything else is a load error, tried apart).
const rule = fc
  .record({
    service: fc.constantFrom(...SERVICES),
    argument: fc.constantFrom(...ARGUMENTS),
    source: fc.constantFrom(...SOURCE_TOKENS),
    target: fc.constantFrom(...TARGET_TOKENS),
    action: fc.constantFrom(...ACTIONS),
  })
  .map((r) => (r.service === "*" ? { ...r, argument: "*" } : r));

const garbage = fc.oneof(
  fc.string({ maxLength: 30 }),
  fc.constantFrom(
    "!include nosuch",
    "test.A * work",
    "test.A * work vault allow bogus=1",
    "* +x work vault deny",
  ),
);

export const policyHarness: Harness<Input> = {
  name: "ts-policy",
  arbitrary: fc.record({
    rules: fc.array(rule, { maxLength: 10 }),
    garbage: fc.oneof(
      { arbitrary: fc.constant(null), weight: 6 },
      { arbitrary: garbage, weight: 1 },
    ),
    calls: fc.array(
      fc.record({
        source: fc.constantFrom(...NAMES),
        target: fc.constantFrom(...TARGETS),
        call: fc.constantFrom(...CALLS),
      }),
      { minLength: 1, maxLength: 8 },
    ),
  }),
  property: check,
  ...jsonInput,
};
