import { describe, expect, test } from "bun:test";
import { describeDecision } from "../../src/policy/decision.ts";
import type { LoadedPolicy } from "../../src/policy/loader.ts";
import { facts, policyFrom, policyOf, query, ruleOf, summary, uuid } from "./fixtures.ts";

type Case = [source: string, target: string, serviceAndArg: string, expected: string, rule: string];

/** Runs a table: each row's decision summary and deciding rule (file:line). */
function table(name: string, loaded: LoadedPolicy, cases: Case[]): void {
  describe(name, () => {
    test("the policy loads", () => expect(loaded.errors).toEqual([]));
    for (const [source, target, serviceAndArg, expected, rule] of cases) {
      test(`${source} -> ${target || '""'} ${serviceAndArg}: ${expected} (${rule})`, () => {
        const decision = loaded.policy.evaluate(query(source, target, serviceAndArg), facts);
        expect([summary(decision), ruleOf(decision)]).toEqual([expected, rule]);
      });
    }
  });
}

const R = "50-test.policy";

table(
  "names, tags, types, wildcards",
  policyOf(
    [
      "test.A * @tag:trusted @tag:secret allow",
      "test.A * @type:TemplateVM @anyvm deny",
      "test.A * untrusted @anyvm deny notify=no",
      "test.A * @anyvm @type:StandaloneVM allow",
      "test.A * * dom0 allow",
      "test.A * @anyvm @anyvm ask",
    ].join("\n"),
  ),
  [
    ["work", "vault", "test.A", "allow vault", `${R}:1`],
    ["personal", "vault", "test.A", "allow vault", `${R}:1`],
    ["untrusted", "vault", "test.A", "deny: denied by /policy/50-test.policy:3", `${R}:3`],
    ["fedora", "vault", "test.A", "deny: denied by /policy/50-test.policy:2", `${R}:2`],
    ["work", "standalone", "test.A", "allow standalone", `${R}:4`],
    ["work", "dom0", "test.A", "allow dom0", `${R}:5`],
    ["work", "@adminvm", "test.A", "allow dom0", `${R}:5`],
    ["work", `uuid:${uuid("0")}`, "test.A", "allow dom0", `${R}:5`],
    // @anyvm never matches dom0 as a source.
    ["dom0", "vault", "test.A", "deny: no matching rule", "-"],
    // Choices: every target an allow/ask rule for this source names (dom0 through line 5), less
    // the source itself and internal VMs, sorted.
    [
      "work",
      "personal",
      "test.A",
      "ask @dispvm:default-dvm,@dispvm:untrusted-dvm,default-dvm,disp123,dom0,fedora,personal," +
        "relay,remote,standalone,untrusted,untrusted-dvm,vault default -",
      `${R}:6`,
    ],
    ["work", "vault", "other.Service", "deny: no matching rule", "-"],
  ],
);

table(
  "arguments",
  policyOf(
    [
      "test.Arg +exact work vault allow",
      "test.Arg + work vault allow target=personal",
      "test.Arg * work vault deny",
    ].join("\n"),
  ),
  [
    ["work", "vault", "test.Arg+exact", "allow vault", `${R}:1`],
    // A call without argument is matched as "+".
    ["work", "vault", "test.Arg", "allow personal", `${R}:2`],
    ["work", "vault", "test.Arg+", "allow personal", `${R}:2`],
    ["work", "vault", "test.Arg+other", "deny: denied by /policy/50-test.policy:3", `${R}:3`],
    // No prefix matching.
    ["work", "vault", "test.Arg+exactly", "deny: denied by /policy/50-test.policy:3", `${R}:3`],
    ["work", "vault", "test.Arg+exact+more", "deny: denied by /policy/50-test.policy:3", `${R}:3`],
  ],
);

table(
  "disposable VMs",
  policyOf(
    [
      "test.D * work @dispvm allow",
      "test.D * untrusted @dispvm:untrusted-dvm allow",
      "test.D * personal @dispvm:default-dvm deny",
      "test.D * vault @dispvm allow",
      "test.D * @anyvm @dispvm:@tag:dvm allow",
    ].join("\n"),
  ),
  [
    ["work", "@dispvm", "test.D", "allow @dispvm:default-dvm", `${R}:1`],
    // @dispvm:NAME as TARGET matches an intended @dispvm whose source's default template is NAME.
    ["untrusted", "@dispvm", "test.D", "allow @dispvm:untrusted-dvm", `${R}:2`],
    ["untrusted", "@dispvm:untrusted-dvm", "test.D", "allow @dispvm:untrusted-dvm", `${R}:2`],
    ["untrusted", "@dispvm:default-dvm", "test.D", "allow @dispvm:default-dvm", `${R}:5`],
    ["personal", "@dispvm", "test.D", "deny: denied by /policy/50-test.policy:3", `${R}:3`],
    ["personal", "@dispvm:untrusted-dvm", "test.D", "allow @dispvm:untrusted-dvm", `${R}:5`],
    ["vault", "@dispvm", "test.D", "deny: vault has no default DisposableVM template", `${R}:4`],
    // NAME must be a template_for_dispvms, or the call is denied before any rule.
    ["work", "@dispvm:fedora", "test.D", "deny: fedora is not a DisposableVM template", "-"],
    ["work", "@dispvm:ghost", "test.D", "deny: ghost is not a DisposableVM template", "-"],
    ["standalone", "@dispvm", "test.D", "deny: no matching rule", "-"],
    ["work", `@dispvm:uuid:${uuid("5")}`, "test.D", "allow @dispvm:default-dvm", `${R}:5`],
  ],
);

table(
  "@default and redirects",
  policyOf(
    [
      "test.R * work @default allow target=vault",
      "test.R * personal @default allow target=@dispvm",
      "test.R * personal vault allow target=dom0",
      "test.R * untrusted @anyvm allow",
      "test.R * vault @anyvm allow target=ghost",
      "test.R * standalone @anyvm allow target=@dispvm:fedora",
      `test.R * disp123 @anyvm allow target=uuid:${uuid("2")}`,
    ].join("\n"),
  ),
  [
    ["work", "", "test.R", "allow vault", `${R}:1`],
    ["work", "@default", "test.R", "allow vault", `${R}:1`],
    // An unknown name is an intended @default.
    ["work", "ghost", "test.R", "allow vault", `${R}:1`],
    ["personal", "@default", "test.R", "allow @dispvm:default-dvm", `${R}:2`],
    ["personal", "vault", "test.R", "allow dom0", `${R}:3`],
    [
      "untrusted",
      "@default",
      "test.R",
      "deny: no target: the caller asked for @default and the rule has no target=",
      `${R}:4`,
    ],
    [
      "untrusted",
      "untrusted",
      "test.R",
      "deny: loopback qrexec connection not supported",
      `${R}:4`,
    ],
    ["vault", "work", "test.R", "deny: target ghost does not exist", `${R}:5`],
    ["standalone", "work", "test.R", "deny: fedora is not a DisposableVM template", `${R}:6`],
    ["disp123", "work", "test.R", "allow personal", `${R}:7`],
  ],
);

table(
  "autostart=no",
  policyOf(
    ["test.S * work dom0 allow autostart=no", "test.S * work @anyvm allow autostart=no"].join("\n"),
  ),
  [
    ["work", "vault", "test.S", "allow vault", `${R}:2`],
    [
      "work",
      "personal",
      "test.S",
      "deny: target personal is not running and the rule has autostart=no",
      `${R}:2`,
    ],
    [
      "work",
      "@dispvm",
      "test.S",
      "deny: target @dispvm:default-dvm is not running and the rule has autostart=no",
      `${R}:2`,
    ],
    ["work", "dom0", "test.S", "allow dom0", `${R}:1`],
  ],
);

table(
  "dom0 and @adminvm",
  policyOf(
    [
      "test.Z * dom0 vault allow",
      "test.Z * @adminvm work allow",
      "test.Z * @type:AdminVM personal allow",
      "test.Z * @tag:admin-tag untrusted allow",
      "test.Z * work dom0 allow",
      "test.Z * personal @adminvm allow",
      `test.Z * untrusted uuid:${uuid("0")} allow`,
      // dom0's type and tags match an intended dom0, as upstream does for the name dom0.
      "test.Z * vault @type:AdminVM allow",
      "test.Z * standalone @tag:admin-tag allow",
    ].join("\n"),
  ),
  [
    ["dom0", "vault", "test.Z", "allow vault", `${R}:1`],
    ["@adminvm", "work", "test.Z", "allow work", `${R}:2`],
    ["dom0", "personal", "test.Z", "allow personal", `${R}:3`],
    ["dom0", "untrusted", "test.Z", "allow untrusted", `${R}:4`],
    ["work", "dom0", "test.Z", "allow dom0", `${R}:5`],
    ["personal", "@adminvm", "test.Z", "allow dom0", `${R}:6`],
    ["untrusted", "dom0", "test.Z", "allow dom0", `${R}:7`],
    ["vault", "dom0", "test.Z", "allow dom0", `${R}:8`],
    ["vault", "@adminvm", "test.Z", "allow dom0", `${R}:8`],
    ["standalone", "dom0", "test.Z", "allow dom0", `${R}:9`],
    ["standalone", `uuid:${uuid("0")}`, "test.Z", "allow dom0", `${R}:9`],
    ["personal", "vault", "test.Z", "deny: no matching rule", "-"],
  ],
);

// A deny (or ask) written for dom0 by type, tag or wildcard stops every spelling of dom0; upstream
// misses @adminvm (spec §11.1 note), which would let a caller walk past the deny to a later allow.
const DOM0_SPELLINGS = ["dom0", "@adminvm", `uuid:${uuid("0")}`];
table(
  "a rule for dom0 by type, tag or * stops every spelling of dom0",
  policyOf(
    [
      "test.T * @anyvm @type:AdminVM deny",
      "test.G * @anyvm @tag:admin-tag deny notify=no",
      "test.W * @anyvm * deny",
      "test.K * work @type:AdminVM ask",
      "test.T * @anyvm * allow",
      "test.G * @anyvm * allow",
      "test.W * @anyvm * allow",
    ].join("\n"),
  ),
  DOM0_SPELLINGS.flatMap((target): Case[] => [
    ["work", target, "test.T", `deny: denied by /policy/${R}:1`, `${R}:1`],
    ["work", target, "test.G", `deny: denied by /policy/${R}:2`, `${R}:2`],
    ["work", target, "test.W", `deny: denied by /policy/${R}:3`, `${R}:3`],
    ["work", target, "test.K", "ask dom0 default -", `${R}:4`],
    // The type rule is about dom0 only: another target goes on to the allow.
    ["work", "vault", "test.T", "allow vault", `${R}:5`],
  ]),
);

table(
  "uuid tokens",
  policyOf(
    [`test.U * uuid:${uuid("1")} uuid:${uuid("4")} allow`, "test.U * work vault deny"].join("\n"),
  ),
  [
    ["work", "vault", "test.U", "allow vault", `${R}:1`],
    ["work", `uuid:${uuid("4")}`, "test.U", "allow vault", `${R}:1`],
    ["work", `uuid:${uuid("f")}`, "test.U", "deny: no matching rule", "-"],
  ],
);

table("requests that never reach the rules", policyOf("* * * * allow"), [
  ["ghost", "vault", "test.X", "deny: unknown source 'ghost'", "-"],
  ["work", "vault", "bad$name", "deny: invalid service 'bad$name'", "-"],
  ["work", "vault", "+arg", "deny: invalid service '+arg'", "-"],
  ["work", "@anyvm", "test.X", "deny: invalid intended target '@anyvm'", "-"],
  ["work", "@tag:x", "test.X", "deny: invalid intended target '@tag:x'", "-"],
  ["work", "*", "test.X", "deny: invalid intended target '*'", "-"],
]);

table(
  "first match wins across files and includes",
  policyFrom({
    "10-a.policy": "!include inc/x.policy\ntest.I * work vault deny\n",
    "inc/x.policy": "test.I * work vault allow\n",
    "20-b.policy": "* * @anyvm @anyvm deny\n",
    "30-c.policy": "test.I * @anyvm @anyvm allow\n",
  }),
  [
    ["work", "vault", "test.I", "allow vault", "inc/x.policy:1"],
    // The earlier `* *` deny shadows the later, more specific allow.
    ["personal", "vault", "test.I", "deny: denied by /policy/20-b.policy:1", "20-b.policy:1"],
  ],
);

describe("relays (requested_source)", () => {
  const { policy } = policyOf(
    [
      "test.Relay * remote vault allow",
      "test.Relay * relay vault deny",
      "test.Relay * work remote allow user=bob",
    ].join("\n"),
  );

  test("a RemoteVM relayed by the caller is the source, named as policy_source", () => {
    const decision = policy.evaluate(query("relay", "vault", "test.Relay", "remote"), facts);
    expect(decision).toMatchObject({
      kind: "allow",
      target: "vault",
      request: { source: "remote", caller: "relay", policySource: "remote" },
    });
  });

  test("an empty requested source is no relay", () => {
    expect(summary(policy.evaluate(query("relay", "vault", "test.Relay", ""), facts))).toBe(
      "deny: denied by /policy/50-test.policy:2",
    );
  });

  test("a requested source that is not a RemoteVM relayed by the caller is refused", () => {
    expect(summary(policy.evaluate(query("work", "vault", "test.Relay", "remote"), facts))).toBe(
      "deny: requested source 'remote' is not a RemoteVM relayed by work",
    );
    expect(summary(policy.evaluate(query("relay", "vault", "test.Relay", "vault"), facts))).toBe(
      "deny: requested source 'vault' is not a RemoteVM relayed by relay",
    );
  });

  test("a RemoteVM target goes to its relay, with the transport service, default user", () => {
    const decision = policy.evaluate(query("work", "remote", "test.Relay+x"), facts);
    expect(decision).toMatchObject({
      kind: "allow",
      target: "relay",
      targetUuid: `uuid:${uuid("b")}`,
      user: null,
      service: "qubesair.SSHProxy+remote+test.Relay+x",
      requestedTarget: "remote",
    });
  });
});

describe("what a decision carries", () => {
  const { policy } = policyOf(
    [
      "test.C * work vault allow user=alice notify=yes autostart=no",
      "test.C * work @default allow target=vault",
      "test.C * work personal deny notify=no",
    ].join("\n"),
  );

  test("allow: target, uuid, user, autostart, notify, rule, requested target as given", () => {
    const decision = policy.evaluate(query("work", "vault", "test.C+arg"), facts);
    expect(decision).toMatchObject({
      kind: "allow",
      target: "vault",
      targetUuid: `uuid:${uuid("4")}`,
      user: "alice",
      autostart: false,
      notify: true,
      requestedTarget: "vault",
      service: null,
      request: {
        service: "test.C",
        argument: "+arg",
        source: "work",
        caller: "work",
        intendedTarget: "vault",
        policySource: null,
      },
    });
    expect(ruleOf(decision)).toBe(`${R}:1`);
    expect(describeDecision(decision)).toBe(
      "work -> vault test.C+arg: allow to vault by /policy/50-test.policy:1",
    );
  });

  test("a redirect changes the target, never requested_target", () => {
    expect(policy.evaluate(query("work", "", "test.C"), facts)).toMatchObject({
      kind: "allow",
      target: "vault",
      requestedTarget: "@default",
    });
  });

  test("deny: notify defaults to yes, notify=no is kept", () => {
    expect(policy.evaluate(query("work", "personal", "test.C"), facts)).toMatchObject({
      kind: "deny",
      notify: false,
    });
    expect(policy.evaluate(query("work", "untrusted", "test.C"), facts)).toMatchObject({
      kind: "deny",
      notify: true,
      rule: null,
    });
  });

  test("a facts source that throws means deny, never allow", () => {
    const broken = {
      get: () => {
        throw new Error("lab unreachable");
      },
      getByUuid: () => undefined,
      all: () => [],
    };
    const decision = policy.evaluate(query("work", "vault", "test.C"), broken);
    expect(summary(decision)).toBe("deny: policy evaluation failed: lab unreachable");
  });
});
