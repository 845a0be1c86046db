import { describe, expect, test } from "bun:test";
import type { AllowDecision, DenyDecision } from "../../src/policy/decision.ts";
import { TableDomainFacts } from "../../src/policy/domains.ts";
import {
  justEvaluateText,
  policyResponseText,
  settleWithoutAsking,
} from "../../src/policy/response.ts";
import { parsePolicyResponse } from "../../src/protocol/policy-response.ts";
import { DOMAINS, facts, policyOf, query, uuid } from "./fixtures.ts";

const { policy } = policyOf(
  [
    "test.R * work vault allow",
    "test.R * work dom0 allow user=root autostart=no",
    "test.R * work @dispvm allow",
    "test.R * work @default allow target=personal user=alice",
    "test.R * work remote allow user=ignored",
    "test.R * remote vault allow",
    "test.R * work untrusted deny",
    "test.R * work @anyvm ask",
    "test.R * personal @anyvm ask target=vault",
  ].join("\n"),
);

function settled(
  source: string,
  target: string,
  requestedSource: string | null = null,
): AllowDecision | DenyDecision {
  const decision = policy.evaluate(query(source, target, "test.R+arg", requestedSource), facts);
  if (decision.kind === "ask") throw new Error("unexpected ask");
  return decision;
}

describe("response text (§11.1 allow response format)", () => {
  const exact: [string, AllowDecision | DenyDecision, string][] = [
    [
      "other VM: target_uuid after target",
      settled("work", "vault"),
      `user=DEFAULT\nresult=allow\ntarget=vault\ntarget_uuid=uuid:${uuid("4")}\n` +
        `autostart=True\nrequested_target=vault`,
    ],
    [
      "dom0: no target_uuid; requested_target as the caller wrote it (name dom0)",
      settled("work", "dom0"),
      "user=root\nresult=allow\ntarget=dom0\nautostart=False\nrequested_target=dom0",
    ],
    [
      "dom0 as @adminvm: requested_target keeps the keyword",
      settled("work", "@adminvm"),
      "user=root\nresult=allow\ntarget=dom0\nautostart=False\nrequested_target=@adminvm",
    ],
    [
      "DispVM: the template's uuid",
      settled("work", "@dispvm"),
      `user=DEFAULT\nresult=allow\ntarget=@dispvm:default-dvm\n` +
        `target_uuid=@dispvm:uuid:${uuid("5")}\nautostart=True\nrequested_target=@dispvm`,
    ],
    [
      "redirect: requested_target stays what the caller asked",
      settled("work", ""),
      `user=alice\nresult=allow\ntarget=personal\ntarget_uuid=uuid:${uuid("2")}\n` +
        `autostart=True\nrequested_target=@default`,
    ],
    [
      "RemoteVM: to the relay, default user, transport service",
      settled("work", "remote"),
      `user=DEFAULT\nresult=allow\ntarget=relay\ntarget_uuid=uuid:${uuid("b")}\n` +
        `autostart=True\nrequested_target=remote\nservice=qubesair.SSHProxy+remote+test.R+arg`,
    ],
    [
      "relayed source: policy_source last",
      settled("relay", "vault", "remote"),
      `user=DEFAULT\nresult=allow\ntarget=vault\ntarget_uuid=uuid:${uuid("4")}\n` +
        `autostart=True\nrequested_target=vault\npolicy_source=remote`,
    ],
    ["deny by rule", settled("work", "untrusted"), "result=deny"],
    ["deny without rule", settled("vault", "work"), "result=deny"],
  ];
  for (const [name, decision, text] of exact) {
    test(name, () => expect(policyResponseText(decision)).toBe(text));
  }

  test("a domain the facts know no uuid for gets no target_uuid", () => {
    const plain = new TableDomainFacts(DOMAINS.map((domain) => ({ ...domain, uuid: null })));
    const decision = policy.evaluate(query("work", "vault", "test.R"), plain);
    expect(decision.kind === "allow" && policyResponseText(decision)).toBe(
      "user=DEFAULT\nresult=allow\ntarget=vault\nautostart=True\nrequested_target=vault",
    );
  });
});

describe("round trip through the daemon's parser (src/protocol/policy-response.ts)", () => {
  for (const [source, target, requestedSource] of [
    ["work", "vault", null],
    ["work", "dom0", null],
    ["work", "@dispvm", null],
    ["work", "", null],
    ["work", "remote", null],
    ["relay", "vault", "remote"],
  ] as const) {
    const forWhom = requestedSource ? ` for ${requestedSource}` : "";
    test(`allow ${source} -> ${target || "@default"}${forWhom}`, () => {
      const decision = settled(source, target, requestedSource);
      if (decision.kind !== "allow") throw new Error(decision.reason);
      for (const text of [policyResponseText(decision), `${policyResponseText(decision)}\n`]) {
        expect(parsePolicyResponse(text)).toEqual({
          kind: "allow",
          user: decision.user || "DEFAULT",
          target: decision.target,
          targetUuid: decision.targetUuid,
          autostart: decision.autostart,
          requestedTarget: decision.requestedTarget,
          service: decision.service,
          policySource: decision.request.policySource,
          unknownKeys: [],
        });
      }
    });
  }

  test("deny", () => {
    expect(parsePolicyResponse(policyResponseText(settled("work", "untrusted")))).toEqual({
      kind: "deny",
      unknownKeys: [],
    });
  });
});

describe("socket options (§7.4, §11.3)", () => {
  test("just_evaluate: a bare result; an ask counts as deny", () => {
    expect(justEvaluateText(policy.evaluate(query("work", "vault", "test.R"), facts))).toBe(
      "result=allow",
    );
    expect(justEvaluateText(policy.evaluate(query("work", "personal", "test.R"), facts))).toBe(
      "result=deny",
    );
    expect(justEvaluateText(policy.evaluate(query("work", "untrusted", "test.R"), facts))).toBe(
      "result=deny",
    );
  });

  test("unattended: assume_yes_for_ask answers the intended target; else ask stays", () => {
    const ask = policy.evaluate(query("personal", "vault", "test.R"), facts);
    expect(ask.kind).toBe("ask");
    expect(settleWithoutAsking(ask, {}, facts)).toBeNull();
    expect(settleWithoutAsking(ask, { assumeYesForAsk: true }, facts)).toMatchObject({
      kind: "allow",
      target: "vault",
    });
    const allow = policy.evaluate(query("work", "vault", "test.R"), facts);
    expect(settleWithoutAsking(allow, {}, facts)).toBe(allow as AllowDecision);
  });
});
