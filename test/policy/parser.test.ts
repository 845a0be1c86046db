import { describe, expect, test } from "bun:test";
import { formatPolicyError } from "../../src/policy/errors.ts";
import { facts, policyFrom, policyOf, query } from "./fixtures.ts";

const FILE = "/policy/50-test.policy";

/** Errors of a file whose line 2 is `line` (line 1 is a comment, so numbering is visible). */
function errorsOf(line: string): string[] {
  return policyOf(`# header\n${line}\n`).errors.map(formatPolicyError);
}

describe("current format: accepted lines", () => {
  const accepted: [string, Record<string, unknown>][] = [
    [
      "qubes.Filecopy * @anyvm @anyvm ask",
      { service: "qubes.Filecopy", argument: null, action: "ask", notify: false, autostart: true },
    ],
    [
      "qubes.Filecopy +arg work vault allow target=vault user=root notify=yes autostart=no",
      { argument: "+arg", user: "root", notify: true, autostart: false },
    ],
    ["* * @anyvm @anyvm deny", { service: null, argument: null, notify: true }],
    ["* * @anyvm @anyvm deny notify=no", { notify: false }],
    ["svc + dom0 @adminvm allow", { argument: "+" }],
    ["svc +a+b.c-d_e work @default allow target=vault", { argument: "+a+b.c-d_e" }],
    ["svc * @tag:x @type:AppVM allow", {}],
    ["svc * @dispvm:default-dvm @dispvm:@tag:t allow", {}],
    [
      `svc * uuid:11111111-1111-1111-1111-111111111111 ` +
        `uuid:00000000-0000-0000-0000-000000000000 allow`,
      {},
    ],
    ["svc * work @default ask target=@dispvm:default-dvm default_target=@dispvm", {}],
    ["svc * work @dispvm allow target=dom0", {}],
    ["svc * work @dispvm allow target=@adminvm", {}],
    ["svc * * * allow", {}],
    ["svc * work @default ask", {}],
    // An empty user= is the default user, as upstream's `user or "DEFAULT"`.
    ["svc * work vault allow user=", { user: null }],
    ["  svc\t*  work   vault   allow  ", {}],
  ];
  for (const [line, fields] of accepted) {
    test(line, () => {
      const { policy, errors } = policyOf(`# header\n${line}\n`);
      expect(errors).toEqual([]);
      expect(policy.rules).toHaveLength(1);
      expect(policy.rules[0]).toMatchObject({ ...fields, origin: { file: FILE, line: 2 } });
    });
  }

  test("aliases are folded: dom0, @adminvm and the zero uuid are one token kind", () => {
    const { policy } = policyOf(
      "s * dom0 @adminvm allow\ns * @adminvm uuid:00000000-0000-0000-0000-000000000000 allow\n",
    );
    expect(policy.rules.flatMap((rule) => [rule.source.kind, rule.target.kind])).toEqual([
      "adminvm",
      "adminvm",
      "adminvm",
      "adminvm",
    ]);
  });

  test("comments and blank lines are skipped; line numbers still count them", () => {
    const { policy, errors } = policyOf(
      "\n# a comment\n   # indented comment\n\n\ts * work vault allow\n",
    );
    expect(errors).toEqual([]);
    expect(policy.rules.map((rule) => rule.origin.line)).toEqual([5]);
  });
});

describe("current format: rejected lines, with file:line messages", () => {
  const at = (message: string) => `${FILE}:2: ${message}`;
  const rejected: [string, string[]][] = [
    [
      "svc * work",
      [
        "wrong number of fields: expected SERVICE ARGUMENT " +
          "SOURCE TARGET ACTION [PARAM=VALUE...], got 3",
      ],
    ],
    ["svc* * work vault allow", ["invalid service name 'svc*'"]],
    ["svc+x * work vault allow", ["invalid service name 'svc+x'"]],
    ["svc arg work vault allow", ["invalid argument 'arg' (expected * or +ARG)"]],
    ["svc +a/b work vault allow", ["invalid argument '+a/b' (expected * or +ARG)"]],
    ["* +arg work vault allow", ["only * argument allowed for * service"]],
    ["svc * @default vault allow", ["'@default' is not allowed as source"]],
    ["svc * @dispvm vault allow", ["'@dispvm' is not allowed as source"]],
    ["svc * work @anyvmx allow", ["invalid token '@anyvmx'"]],
    ["svc * @tag: vault allow", ["invalid token '@tag:': empty value after '@tag:'"]],
    ["svc * work @type: allow", ["invalid token '@type:': empty value after '@type:'"]],
    ["svc * work @dispvm: allow", ["invalid token '@dispvm:': empty value after '@dispvm:'"]],
    [
      "svc * work @dispvm:@tag: allow",
      ["invalid token '@dispvm:@tag:': empty value after '@dispvm:@tag:'"],
    ],
    ["svc * work @dispvm:@foo allow", ["invalid token '@dispvm:@foo'"]],
    ["svc * work uuid:xyz allow", ["invalid uuid in 'uuid:xyz'"]],
    ["svc * work @dispvm:uuid:xyz allow", ["invalid uuid in '@dispvm:uuid:xyz'"]],
    ["svc * work vault permit", ["invalid action 'permit' (expected allow, deny or ask)"]],
    ["svc * work vault deny target=vault", ["parameter 'target' is not valid for deny"]],
    ["svc * work vault deny user=root", ["parameter 'user' is not valid for deny"]],
    ["svc * work vault deny autostart=no", ["parameter 'autostart' is not valid for deny"]],
    [
      "svc * work vault allow default_target=vault",
      ["parameter 'default_target' is not valid for allow"],
    ],
    ["svc * work vault allow foo=bar", ["parameter 'foo' is not valid for allow"]],
    ["svc * work vault allow user", ["invalid parameter 'user' (expected key=value)"]],
    ["svc * work vault allow =x", ["invalid parameter '=x' (expected key=value)"]],
    ["svc * work vault allow user=a user=b", ["parameter 'user' given twice"]],
    ["svc * work vault allow notify=maybe", ["'notify' is 'maybe', but can only be 'yes' or 'no'"]],
    [
      "svc * work vault ask autostart=True",
      ["'autostart' is 'True', but can only be 'yes' or 'no'"],
    ],
    ["svc * work @default allow", ["allow with target @default must have target="]],
    ["svc * work vault allow target=@anyvm", ["'@anyvm' is not allowed as target="]],
    ["svc * work vault allow target=*", ["'*' is not allowed as target="]],
    // Upstream's parser refuses an empty redirect; an empty user= is the default user.
    ["svc * work vault allow target=", ["target= is empty: it must name a domain or a keyword"]],
    [
      "svc * work @default ask default_target=",
      ["default_target= is empty: it must name a domain or a keyword"],
    ],
    ["svc * work vault allow target=@default", ["'@default' is not allowed as target="]],
    ["svc * work vault allow target=@tag:x", ["'@tag:x' is not allowed as target="]],
    ["svc * work vault allow target=@type:AppVM", ["'@type:AppVM' is not allowed as target="]],
    ["svc * work vault ask target=@dispvm:@tag:x", ["'@dispvm:@tag:x' is not allowed as target="]],
    [
      "svc * work vault ask default_target=@default",
      ["'@default' is not allowed as default_target="],
    ],
    ["svc * work vault ask default_target=@anyvm", ["'@anyvm' is not allowed as default_target="]],
    // No inline comments: '#' and what follows are parameters.
    [
      "svc * work vault allow # why",
      [
        "invalid parameter '#' (expected key=value)",
        "invalid parameter 'why' (expected key=value)",
      ],
    ],
    // Every problem on a line is reported, not only the first.
    [
      "svc* arg @default vault permit",
      [
        "invalid service name 'svc*'",
        "invalid argument 'arg' (expected * or +ARG)",
        "'@default' is not allowed as source",
        "invalid action 'permit' (expected allow, deny or ask)",
      ],
    ],
    ["!include", ["!include takes 1 parameter, got 0"]],
    ["!include a b", ["!include takes 1 parameter, got 2"]],
    ["!include-dir", ["!include-dir takes 1 parameter, got 0"]],
    ["!include-service svc *", ["!include-service takes 3 parameters, got 2"]],
    ["!include-service svc* * x", ["invalid service name 'svc*'"]],
    ["!include-service * +a x", ["only * argument allowed for * service"]],
    ["!compat-4.0 now", ["!compat-4.0 takes 0 parameters, got 1"]],
    ["!frobnicate", ["invalid directive '!frobnicate'"]],
    [
      "!include missing.policy",
      ["cannot read included file /policy/missing.policy: no such file or directory"],
    ],
    [
      "!include-dir nowhere",
      ["cannot read included directory /policy/nowhere: no such file or directory"],
    ],
    [
      "!include-service svc * nothing",
      ["cannot read legacy policy file /policy/nothing: no such file or directory"],
    ],
  ];
  for (const [line, messages] of rejected) {
    test(line, () => {
      expect(errorsOf(line)).toEqual(messages.map(at));
    });
  }
});

describe("errors are collected over the whole file set", () => {
  test("every bad line of every file, in reading order, each with its file:line", () => {
    const { errors } = policyFrom({
      "10-a.policy": "s * work vault allow\ns * work\n# fine\ns * work vault nope\n",
      "20-b.policy": "!include inc/more.policy\ns * @default vault deny\n",
      "inc/more.policy": "\n\nbad\n",
    });
    expect(errors.map(formatPolicyError)).toEqual([
      "/policy/10-a.policy:2: wrong number of fields: expected " +
        "SERVICE ARGUMENT SOURCE TARGET ACTION [PARAM=VALUE...], got 3",
      "/policy/10-a.policy:4: invalid action 'nope' (expected allow, deny or ask)",
      "/policy/inc/more.policy:3: wrong number of fields: expected " +
        "SERVICE ARGUMENT SOURCE TARGET ACTION [PARAM=VALUE...], got 1",
      "/policy/20-b.policy:2: '@default' is not allowed as source",
    ]);
  });

  test("a file name outside [0-9a-z_.-] is an error (and makes every call be denied)", () => {
    const { policy, errors } = policyFrom({
      "10-OK.policy": "s * work vault allow\n",
      "20-fine.policy": "",
    });
    expect(errors.map(formatPolicyError)).toEqual([
      "/policy/10-OK.policy:0: file name has characters outside [0-9a-z_.-]",
    ]);
    expect(policy.evaluate(query("work", "vault", "s"), facts)).toMatchObject({
      kind: "deny",
      rule: null,
    });
  });

  test("a policy with any error denies everything, naming the first error", () => {
    const { policy } = policyFrom({
      "10-a.policy": "s * work vault allow\n",
      "20-b.policy": "s * work\n",
    });
    const decision = policy.evaluate(query("work", "vault", "s"), facts);
    expect(decision).toMatchObject({ kind: "deny", rule: null });
    expect(decision.kind === "deny" && decision.reason).toBe(
      "the policy has an error, so every call is denied; first: " +
        "/policy/20-b.policy:1: wrong number of fields: expected " +
        "SERVICE ARGUMENT SOURCE TARGET ACTION [PARAM=VALUE...], got 3",
    );
    expect(policy.ok).toBe(false);
  });

  test("a missing policy directory is an error, not an empty (deny-all) policy in silence", () => {
    const { errors } = policyFrom({ "/elsewhere/x.policy": "" });
    expect(errors.map(formatPolicyError)).toEqual(["/policy:0: no policy directory exists"]);
  });
});
