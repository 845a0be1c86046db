import { describe, expect, test } from "bun:test";
import type { AskDecision, Decision } from "../../src/policy/decision.ts";
import { answerAsk, answerAskWithIntendedTarget } from "../../src/policy/resolve.ts";
import { facts, policyOf, query, ruleOf, summary, uuid } from "./fixtures.ts";

const { policy, errors } = policyOf(
  [
    "test.Ask * @anyvm vault deny",
    "test.Ask * work @default ask default_target=personal user=alice",
    "test.Ask * work @tag:trusted allow",
    "test.Ask * work @dispvm allow",
    "test.Ask * work sys-hidden allow",
    "test.Ask * work @anyvm deny",
    "test.Ask * @anyvm untrusted allow",
    "test.Any * work untrusted deny",
    "test.Default * work @default ask default_target=vault",
    "test.Default * work personal allow",
    "test.Redirect * work @anyvm ask target=vault default_target=vault",
    "test.Redirect * personal @anyvm ask target=@dispvm default_target=@dispvm",
    "test.Redirect * untrusted @anyvm ask target=untrusted",
    "test.Redirect * vault @anyvm ask target=ghost",
    "test.Running * work @default ask autostart=no",
    "test.Running * work personal allow",
    "test.Running * work vault allow",
    "test.Running * work @dispvm allow",
    "test.Admin * work @default ask default_target=dom0",
    "test.Admin * work dom0 allow",
    "test.Admin * work vault allow",
    "test.Any * work @anyvm ask default_target=vault",
    "test.Pick * work @anyvm ask target=vault",
    "test.Pick * work @adminvm ask target=@adminvm",
  ].join("\n"),
);

function ask(decision: Decision): AskDecision {
  if (decision.kind !== "ask") throw new Error(`expected ask, got ${summary(decision)}`);
  return decision;
}

describe("ask: the question", () => {
  test("the policy loads", () => expect(errors).toEqual([]));

  test("choices from this source's rules, later first so earlier denies remove", () => {
    // Walked in reverse: untrusted (line 7) is removed again by line 6's deny; sys-hidden is
    // internal, work is the source; @dispvm becomes work's default template.
    const decision = ask(policy.evaluate(query("work", "", "test.Ask"), facts));
    expect(decision.targets).toEqual(["@dispvm:default-dvm", "personal"]);
    expect(decision.defaultTarget).toBe("personal");
    expect(decision.user).toBe("alice");
    expect(ruleOf(decision)).toBe("50-test.policy:2");
  });

  test("the same targets whatever the intended one, while this rule matches", () => {
    const all = [
      "@dispvm:default-dvm",
      "@dispvm:untrusted-dvm",
      "default-dvm",
      "disp123",
      "fedora",
      "personal",
      "relay",
      "remote",
      "standalone",
      "untrusted-dvm",
      "vault",
    ];
    for (const target of ["personal", "@default", "vault", "@dispvm"]) {
      expect(ask(policy.evaluate(query("work", target, "test.Any"), facts))).toMatchObject({
        targets: all,
        defaultTarget: "vault",
      });
    }
  });

  test("a default target that is not among the choices is dropped", () => {
    const decision = ask(policy.evaluate(query("work", "", "test.Default"), facts));
    expect([decision.targets, decision.defaultTarget]).toEqual([["personal"], null]);
  });

  test("target= is the only choice; @dispvm there and in default_target= is a template", () => {
    expect(ask(policy.evaluate(query("work", "", "test.Redirect"), facts))).toMatchObject({
      targets: ["vault"],
      defaultTarget: "vault",
    });
    expect(ask(policy.evaluate(query("personal", "", "test.Redirect"), facts))).toMatchObject({
      targets: ["@dispvm:default-dvm"],
      defaultTarget: "@dispvm:default-dvm",
    });
  });

  test("no choice left means deny", () => {
    expect(summary(policy.evaluate(query("untrusted", "", "test.Redirect"), facts))).toBe(
      "deny: ask at /policy/50-test.policy:13 but no target is available to choose from",
    );
    expect(summary(policy.evaluate(query("vault", "", "test.Redirect"), facts))).toBe(
      "deny: ask at /policy/50-test.policy:14 but no target is available to choose from",
    );
  });

  test("autostart=no keeps only running targets (a new DispVM never runs)", () => {
    expect(ask(policy.evaluate(query("work", "", "test.Running"), facts)).targets).toEqual([
      "vault",
    ]);
  });

  test("@adminvm and dom0 are offered as dom0", () => {
    expect(ask(policy.evaluate(query("work", "", "test.Admin"), facts))).toMatchObject({
      targets: ["dom0", "vault"],
      defaultTarget: "dom0",
    });
  });
});

describe("ask: the answer", () => {
  const question = () => ask(policy.evaluate(query("work", "", "test.Ask"), facts));

  test("a choice becomes an allow by the ask rule, keeping the requested target", () => {
    const decision = answerAsk(question(), "personal", facts);
    expect(decision).toMatchObject({
      kind: "allow",
      target: "personal",
      user: "alice",
      requestedTarget: "@default",
      autostart: true,
    });
    expect(ruleOf(decision)).toBe("50-test.policy:2");
    expect(answerAsk(question(), "@dispvm:default-dvm", facts)).toMatchObject({
      kind: "allow",
      target: "@dispvm:default-dvm",
    });
  });

  test("an answer that is not a choice is a deny", () => {
    expect(summary(answerAsk(question(), "vault", facts))).toBe(
      "deny: answer 'vault' is not one of the choices",
    );
  });

  test("the user saying no is a deny (not notified: the user knows)", () => {
    expect(answerAsk(question(), null, facts)).toMatchObject({
      kind: "deny",
      reason: "denied by the user",
      notify: false,
    });
  });

  const assumeYes = (target: string, service: string) =>
    summary(
      answerAskWithIntendedTarget(
        ask(policy.evaluate(query("work", target, service), facts)),
        facts,
      ),
    );

  test("assume_yes_for_ask answers with the intended target when it is literally a choice", () => {
    expect(assumeYes("personal", "test.Any")).toBe("allow personal");
    expect(assumeYes("@dispvm:default-dvm", "test.Any")).toBe("allow @dispvm:default-dvm");
    expect(assumeYes("dom0", "test.Pick")).toBe("allow dom0");
  });

  test("assume_yes_for_ask denies an intended target that is not a choice, or @default", () => {
    expect(assumeYes("personal", "test.Pick")).toBe(
      "deny: intended target personal is not one of the choices",
    );
    expect(summary(answerAskWithIntendedTarget(question(), facts))).toBe(
      'deny: intended target "" is not one of the choices',
    );
    expect(assumeYes("@default", "test.Any")).toBe(
      "deny: intended target @default is not one of the choices",
    );
  });

  test("assume_yes_for_ask compares spellings literally: keywords and uuids do not match", () => {
    // The choices hold dom0, @dispvm:default-dvm and personal; other spellings of them do not
    // count.
    expect(assumeYes("@adminvm", "test.Pick")).toBe(
      "deny: intended target @adminvm is not one of the choices",
    );
    expect(assumeYes(`uuid:${uuid("0")}`, "test.Pick")).toBe(
      `deny: intended target uuid:${uuid("0")} is not one of the choices`,
    );
    expect(assumeYes("@dispvm", "test.Any")).toBe(
      "deny: intended target @dispvm is not one of the choices",
    );
    expect(assumeYes(`uuid:${uuid("2")}`, "test.Any")).toBe(
      `deny: intended target uuid:${uuid("2")} is not one of the choices`,
    );
  });
});
