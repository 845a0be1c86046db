import { describe, expect, test } from "bun:test";
import { formatOrigin } from "../../src/policy/errors.ts";
import type { Explanation } from "../../src/policy/evaluate.ts";
import { facts, policyFrom, policyOf, query, summary } from "./fixtures.ts";

function lines(explanation: Explanation): string[] {
  return explanation.trace.map(
    (entry) =>
      `${formatOrigin(entry.rule.origin).replace("/policy/", "")} ${entry.verdict}: ${entry.why}`,
  );
}

describe("explain", () => {
  const { policy } = policyFrom({
    "10-a.policy": [
      "other.Svc * work vault allow",
      "test.E +x work vault allow",
      "test.E * personal vault allow",
      "test.E * work @tag:secret ask",
      "test.E * work vault deny",
    ].join("\n"),
    "20-b.policy": "* * @anyvm @anyvm deny\n",
  });

  test("every rule, why it matched or not, which one decided, and the rest not reached", () => {
    const explanation = policy.explain(query("work", "vault", "test.E+y"), facts);
    expect(lines(explanation)).toEqual([
      "10-a.policy:1 no match: service test.E is not other.Svc",
      "10-a.policy:2 no match: argument +y is not +x",
      "10-a.policy:3 no match: source work does not match personal",
      "10-a.policy:4 matched: service, argument, source work and target vault match: ask",
      "10-a.policy:5 not reached: /policy/10-a.policy:4 decided first",
      "20-b.policy:1 not reached: /policy/10-a.policy:4 decided first",
    ]);
    expect(summary(explanation.decision)).toBe("ask vault default -");
    expect(explanation.decision).toEqual(
      policy.evaluate(query("work", "vault", "test.E+y"), facts),
    );
  });

  test("target mismatches name the normalized intended target", () => {
    const explanation = policy.explain(query("work", "dom0", "test.E+y"), facts);
    expect(lines(explanation)[3]).toBe(
      "10-a.policy:4 no match: target @adminvm does not match @tag:secret",
    );
    expect(summary(explanation.decision)).toBe("deny: no matching rule");
  });

  test("a broken policy explains itself with its errors and no trace", () => {
    const broken = policyOf("test.E * work vault allow\nnonsense\n").policy;
    const explanation = broken.explain(query("work", "vault", "test.E"), facts);
    expect(explanation.trace).toEqual([]);
    expect(explanation.errors).toHaveLength(1);
    expect(explanation.decision.kind).toBe("deny");
  });

  test("an invalid request never reaches the rules", () => {
    const explanation = policy.explain(query("ghost", "vault", "test.E"), facts);
    expect([explanation.trace, summary(explanation.decision)]).toEqual([
      [],
      "deny: unknown source 'ghost'",
    ]);
  });
});
