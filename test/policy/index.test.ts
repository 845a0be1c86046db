import { describe, expect, test } from "bun:test";
import type { Decision } from "../../src/policy/decision.ts";
import { ruleMismatch } from "../../src/policy/match.ts";
import type { CompiledPolicy } from "../../src/policy/policy.ts";
import { normalizeQuery, type PolicyQuery } from "../../src/policy/request.ts";
import { collectAskTargets } from "../../src/policy/resolve.ts";
import { expandTarget } from "../../src/policy/targets.ts";
import { DOMAINS, facts, policyFrom, policyOf, query, ruleOf, summary } from "./fixtures.ts";

describe("the index keeps first-match order", () => {
  const { policy, errors } = policyFrom({
    "10-a.policy": [
      "test.A * work vault allow",
      "* * @anyvm @anyvm deny",
      "test.A * work personal allow",
      "test.A +x work personal allow",
      "test.B * work @tag:trusted allow",
    ].join("\n"),
    "20-b.policy": "test.A * work untrusted allow\n",
  });

  const rows: [string, string, string, string][] = [
    ["vault", "test.A", "allow vault", "10-a.policy:1"],
    // The `*` rule sits between test.A's rules and shadows every later one, whatever the service.
    ["personal", "test.A", "deny: denied by /policy/10-a.policy:2", "10-a.policy:2"],
    ["personal", "test.A+x", "deny: denied by /policy/10-a.policy:2", "10-a.policy:2"],
    ["personal", "test.B", "deny: denied by /policy/10-a.policy:2", "10-a.policy:2"],
    ["untrusted", "test.A", "deny: denied by /policy/10-a.policy:2", "10-a.policy:2"],
    ["vault", "test.Unknown+z", "deny: denied by /policy/10-a.policy:2", "10-a.policy:2"],
  ];
  test("loads", () => expect(errors).toEqual([]));
  for (const [target, service, outcome, rule] of rows) {
    test(`work -> ${target} ${service}: ${rule}`, () => {
      const decision = policy.evaluate(query("work", target, service), facts);
      expect([summary(decision), ruleOf(decision)]).toEqual([outcome, rule]);
    });
  }

  test("a `*` service rule before a service's own rules wins for every argument", () => {
    const { policy } = policyOf(
      [
        "test.A +y work vault allow",
        "* * work vault deny",
        "test.A * work vault allow",
        "test.A +x work vault allow",
      ].join("\n"),
    );
    expect(ruleOf(policy.evaluate(query("work", "vault", "test.A+y"), facts))).toBe(
      "50-test.policy:1",
    );
    for (const service of ["test.A", "test.A+x", "test.A+z", "test.Other"]) {
      expect(ruleOf(policy.evaluate(query("work", "vault", service), facts))).toBe(
        "50-test.policy:2",
      );
    }
  });

  test("rules for one source name and rules for any source interleave in policy order", () => {
    const { policy } = policyOf(
      [
        "s * @anyvm vault deny",
        "s * work vault allow",
        "s * work personal allow",
        "s * @tag:trusted personal deny",
        "s * personal untrusted allow",
      ].join("\n"),
    );
    expect(ruleOf(policy.evaluate(query("work", "vault", "s"), facts))).toBe("50-test.policy:1");
    expect(ruleOf(policy.evaluate(query("work", "personal", "s"), facts))).toBe("50-test.policy:3");
    expect(ruleOf(policy.evaluate(query("personal", "personal", "s"), facts))).toBe(
      "50-test.policy:4",
    );
    expect(ruleOf(policy.evaluate(query("personal", "untrusted", "s"), facts))).toBe(
      "50-test.policy:5",
    );
  });

  test("a call only looks at its own service's rules and the `*` ones", () => {
    const lines = ["* * dom0 @anyvm allow"];
    for (let i = 0; i < 1000; i++)
      lines.push(`svc.S${i % 100} ${i % 2 === 0 ? "*" : `+a${i % 4}`} work vault allow`);
    const { policy } = policyOf(lines.join("\n"));
    expect(policy.index.bucketFor("svc.S1", "+a1").all).toHaveLength(11); // the `*` rule + 10
    // the `*` rule + 10 with argument *
    expect(policy.index.bucketFor("svc.S2", "+a1").all).toHaveLength(11);
    expect(policy.index.bucketFor("svc.S1", "+a3").all).toHaveLength(1); // only the `*` rule
    // Arguments no rule names share one bucket, so callers cannot grow the cache.
    expect(policy.index.bucketFor("svc.S1", "+a3")).toBe(
      policy.index.bucketFor("svc.S1", "+anything"),
    );
    expect(policy.index.bucketFor("svc.None", "+").all).toHaveLength(1);
    expect(policy.index.bucketFor("svc.S1", "+a1").bySource.get("work")).toHaveLength(10);
  });
});

/** Deterministic pseudo-random numbers (mulberry32), so a failure can be replayed. */
function random(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function pick<T>(next: () => number, items: readonly T[]): T {
  return items[Math.floor(next() * items.length)]!;
}

/**
 * Upstream's collect_targets_for_ask, literally: every rule, last first, deny removes, others add.
 */
function referenceAskTargets(policy: CompiledPolicy, call: PolicyQuery): Set<string> | null {
  const normalized = normalizeQuery(call, facts);
  if (!normalized.ok) return null;
  const targets = new Set<string>();
  for (const rule of [...policy.rules].reverse()) {
    const mismatch = ruleMismatch(rule, normalized.context);
    if (mismatch !== null && mismatch !== "target") continue;
    const token = rule.redirect ?? rule.target;
    expandTarget(token, facts, (target) =>
      rule.action === "deny" ? targets.delete(target) : targets.add(target),
    );
  }
  return targets;
}

function askTargets(policy: CompiledPolicy, call: PolicyQuery): Set<string> | null {
  const normalized = normalizeQuery(call, facts);
  if (!normalized.ok) return null;
  return collectAskTargets(
    policy.index.bucketFor(normalized.context.service, normalized.context.argument),
    normalized.context,
  );
}

function comparable(decision: Decision): unknown {
  return { ...decision, rule: decision.rule?.order ?? null };
}

describe("indexed evaluation equals a plain scan of every rule", () => {
  const names = DOMAINS.map((domain) => domain.name);
  const sources = [
    "*",
    "@anyvm",
    "dom0",
    "@adminvm",
    "@tag:trusted",
    "@tag:dvm",
    "@type:AppVM",
    "@type:DispVM",
    "@dispvm:default-dvm",
    ...names,
  ];
  const targets = [...sources, "@default", "@dispvm", "@dispvm:untrusted-dvm", "@dispvm:@tag:dvm"];
  const services = ["s.A", "s.B", "s.C"];
  const arguments_ = ["*", "+", "+x", "+y"];
  const intended = ["", "@default", "dom0", "@dispvm", "@dispvm:default-dvm", ...names];

  for (const seed of [1, 2, 3, 4, 5]) {
    test(`random policy ${seed}`, () => {
      const next = random(seed);
      const lines: string[] = [];
      for (let i = 0; i < 300; i++) {
        const service = next() < 0.05 ? "*" : pick(next, services);
        const argument = service === "*" ? "*" : pick(next, arguments_);
        const target = pick(next, targets);
        const action = pick(next, ["allow", "deny", "ask"]);
        const redirect =
          action !== "deny" && (target === "@default" || next() < 0.1)
            ? ` target=${pick(next, ["vault", "work", "@dispvm", "dom0"])}`
            : "";
        lines.push(`${service} ${argument} ${pick(next, sources)} ${target} ${action}${redirect}`);
      }
      const { policy, errors } = policyOf(lines.join("\n"));
      expect(errors).toEqual([]);
      let compared = 0;
      for (let i = 0; i < 400; i++) {
        const call = query(
          pick(next, names),
          pick(next, intended),
          `${pick(next, [...services, "s.D"])}${pick(next, ["", "+x", "+y", "+z"])}`,
        );
        const fast = policy.evaluate(call, facts);
        const slow = policy.explain(call, facts).decision;
        expect(comparable(fast)).toEqual(comparable(slow));
        expect(askTargets(policy, call)).toEqual(referenceAskTargets(policy, call));
        compared += fast.rule === null ? 0 : 1;
      }
      // most calls were decided by some rule, not all "no match"
      expect(compared).toBeGreaterThan(100);
    });
  }
});

describe("scale (the benchmark's shape: 10,000 rules over 500 domains)", () => {
  const domains = Array.from({ length: 500 }, (_, i) => ({
    name: `vm${i}`,
    tags: [`t${i % 20}`],
    running: true,
  }));
  const lines: string[] = [];
  for (let i = 0; i < 10_000; i++) {
    const source = i % 7 === 0 ? `@tag:t${i % 20}` : `vm${(i * 7) % 500}`;
    const target = i % 5 === 0 ? "@anyvm" : `vm${(i * 13) % 500}`;
    lines.push(
      `svc.S${i % 200} ${i % 3 === 0 ? "*" : `+a${i % 4}`} ` +
        `${source} ${target} ${i % 2 === 0 ? "allow" : "deny"}`,
    );
  }

  test("loads in under a second and decides in microseconds (loose bounds)", async () => {
    const { TableDomainFacts } = await import("../../src/policy/domains.ts");
    const many = new TableDomainFacts(domains);
    const started = performance.now();
    const { policy, errors } = policyOf(lines.join("\n"));
    const loadMs = performance.now() - started;
    expect(errors).toEqual([]);
    const times: number[] = [];
    for (let i = 0; i < 5000; i++) {
      const call = query(`vm${(i * 31) % 500}`, `vm${(i * 17) % 500}`, `svc.S${i % 200}+a${i % 4}`);
      const t0 = performance.now();
      policy.evaluate(call, many);
      times.push(performance.now() - t0);
    }
    times.sort((a, b) => a - b);
    const medianUs = times[times.length >> 1]! * 1000;
    console.log(
      `10,000 rules: load ${loadMs.toFixed(1)} ms, median decision ${medianUs.toFixed(2)} µs`,
    );
    expect(loadMs).toBeLessThan(1000);
    expect(medianUs).toBeLessThan(200);
  });
});
