import { describe, expect, test } from "bun:test";
import type { Decision } from "../../src/policy/decision.ts";
import { formatPolicyError } from "../../src/policy/errors.ts";
import { translateLegacyLine } from "../../src/policy/legacy.ts";
import type { CompiledPolicy } from "../../src/policy/policy.ts";
import { DOMAINS, facts, legacyPolicyFrom, policyFrom, query, summary } from "./fixtures.ts";

/** One service in the legacy format, R2 bare keywords and R3/R4.0 `$` keywords mixed. */
const LEGACY = {
  "test.Legacy+arg": "work personal allow\n",
  "test.Legacy": [
    "## comments and blank lines are skipped",
    "",
    "work vault allow",
    "untrusted anyvm deny",
    "$tag:trusted $dispvm allow,user=root",
    "$anyvm $dispvm:untrusted-dvm allow",
    "personal $default allow,target=vault",
    "vault dom0 allow,user=root",
    "$type:StandaloneVM $anyvm ask,default_target=vault",
    "fedora $anyvm allow,target=dispvm",
    "anyvm dispvm allow",
    "$anyvm $adminvm ask",
    "$anyvm $anyvm deny",
  ].join("\n"),
};

/** The same policy written by hand in the current format (what !compat-4.0 must amount to). */
const CURRENT = [
  "test.Legacy +arg work personal allow",
  "test.Legacy +arg @anyvm @anyvm deny",
  "test.Legacy +arg @anyvm @adminvm deny",
  "test.Legacy * work vault allow",
  "test.Legacy * untrusted @anyvm deny",
  "test.Legacy * @tag:trusted @dispvm allow user=root",
  "test.Legacy * @anyvm @dispvm:untrusted-dvm allow",
  "test.Legacy * personal @default allow target=vault",
  "test.Legacy * vault dom0 allow user=root",
  "test.Legacy * @type:StandaloneVM @anyvm ask default_target=vault",
  "test.Legacy * fedora @anyvm allow target=@dispvm",
  "test.Legacy * @anyvm @dispvm allow",
  "test.Legacy * @anyvm @adminvm ask",
  "test.Legacy * @anyvm @anyvm deny",
].join("\n");

/** A decision without where it came from, so the two formats can be compared. */
function comparable(decision: Decision): unknown {
  const { rule, ...rest } = decision;
  const action = rule?.action ?? null;
  if (rest.kind === "deny")
    return { ...rest, reason: rest.reason.replace(/ by \/.*$/, " by a rule"), rule: action };
  return { ...rest, rule: action };
}

const SOURCES = DOMAINS.map((domain) => domain.name).filter((name) => name !== "remote");
const TARGETS = [
  "",
  "@default",
  "dom0",
  "@adminvm",
  "@dispvm",
  "@dispvm:untrusted-dvm",
  "@dispvm:default-dvm",
  "vault",
  "work",
  "personal",
  "ghost",
];
const SERVICES = ["test.Legacy", "test.Legacy+arg", "test.Legacy+other"];

function decisions(policy: CompiledPolicy): Map<string, unknown> {
  const all = new Map<string, unknown>();
  for (const source of SOURCES) {
    for (const target of TARGETS) {
      for (const service of SERVICES)
        all.set(
          `${source} -> ${target} ${service}`,
          comparable(policy.evaluate(query(source, target, service), facts)),
        );
    }
  }
  return all;
}

describe("legacy format: the same decisions as its current-format translation", () => {
  const legacy = legacyPolicyFrom(LEGACY);
  const current = policyFrom({ "50-test.policy": CURRENT });
  const viaCompat = policyFrom({ "35-compat.policy": "!compat-4.0\n" }, LEGACY);
  const viaIncludeService = policyFrom(
    {
      "50-test.policy":
        "!include-service test.Legacy +arg /legacy/test.Legacy+arg\n" +
        "test.Legacy +arg @anyvm @anyvm deny\ntest.Legacy +arg @anyvm @adminvm deny\n" +
        "!include-service test.Legacy * /legacy/test.Legacy\n",
    },
    LEGACY,
  );

  test("all four load", () => {
    for (const loaded of [legacy, current, viaCompat, viaIncludeService])
      expect(loaded.errors.map(formatPolicyError)).toEqual([]);
  });

  const expected = decisions(current.policy);
  test(`over ${expected.size} requests: legacy dir, compat, include agree with translation`, () => {
    for (const loaded of [legacy, viaCompat, viaIncludeService])
      expect(decisions(loaded.policy)).toEqual(expected);
  });

  // The equivalence alone would pass if both sides were wrong the same way; pin some rows.
  const pinned: [string, string, string, string][] = [
    ["work", "vault", "test.Legacy", "allow vault"],
    ["work", "personal", "test.Legacy+arg", "allow personal"],
    [
      "work",
      "vault",
      "test.Legacy+arg",
      "deny: denied by /legacy:0 (implicit deny after /legacy/test.Legacy+arg)",
    ],
    [
      "work",
      "dom0",
      "test.Legacy+arg",
      "deny: denied by /legacy:0 (implicit deny after /legacy/test.Legacy+arg)",
    ],
    // test.Legacy+other has no file of its own: the generic file decides.
    ["work", "vault", "test.Legacy+other", "allow vault"],
    // R2 `anyvm` is the keyword, not a qube called "anyvm".
    ["untrusted", "personal", "test.Legacy", "deny: denied by /legacy/test.Legacy:4"],
    ["work", "@dispvm", "test.Legacy", "allow @dispvm:default-dvm"],
    ["untrusted", "@dispvm:untrusted-dvm", "test.Legacy", "deny: denied by /legacy/test.Legacy:4"],
    ["standalone", "@dispvm:untrusted-dvm", "test.Legacy", "allow @dispvm:untrusted-dvm"],
    ["personal", "", "test.Legacy", "allow vault"],
    ["vault", "dom0", "test.Legacy", "allow dom0"],
    // R2 `target=dispvm` is the keyword too.
    ["fedora", "work", "test.Legacy", "deny: fedora has no default DisposableVM template"],
    // R2 `dispvm` as a target: the source's default template.
    ["disp123", "@dispvm", "test.Legacy", "allow @dispvm:default-dvm"],
    // The ask offers what lines 6, 11 and 12 allow; line 13's deny comes later, so it removes
    // nothing.
    [
      "disp123",
      "dom0",
      "test.Legacy",
      "ask @dispvm:default-dvm,@dispvm:untrusted-dvm,dom0 default -",
    ],
    ["disp123", "vault", "test.Legacy", "deny: denied by /legacy/test.Legacy:13"],
  ];
  for (const [source, target, service, outcome] of pinned) {
    test(`${source} -> ${target || '""'} ${service}: ${outcome}`, () => {
      expect(summary(legacy.policy.evaluate(query(source, target, service), facts))).toBe(outcome);
    });
  }
});

describe("legacy line translation", () => {
  const rows: [string, string][] = [
    ["anyvm dispvm allow", "@anyvm @dispvm allow"],
    [
      "$anyvm $dispvm:$tag:dvm allow,user=root,target=$dispvm",
      "@anyvm @dispvm:@tag:dvm allow user=root target=@dispvm",
    ],
    ["dom0 anyvm ask,default_target=dispvm", "dom0 @anyvm ask default_target=@dispvm"],
    ["$tag:a $type:AppVM deny", "@tag:a @type:AppVM deny"],
    ["* * allow", "* * allow"],
    // Names that merely contain a keyword are names.
    ["anyvm2 mydispvm allow,target=dispvm-x", "anyvm2 mydispvm allow target=dispvm-x"],
  ];
  for (const [line, translated] of rows) {
    test(`${line} -> ${translated}`, () => {
      const result = translateLegacyLine(line, "s", "*");
      if (result.kind !== "rule") throw new Error(result.kind);
      const { source, target, action, params } = result.fields;
      expect([source, target, action, ...params].join(" ")).toBe(translated);
    });
  }

  test("$include: becomes an include; other directives are errors", () => {
    expect(translateLegacyLine("$include:/etc/qubes-rpc/policy/include/x", "s", "*")).toEqual({
      kind: "include",
      path: "/etc/qubes-rpc/policy/include/x",
    });
    expect(translateLegacyLine("!compat-4.0", "s", "*")).toEqual({
      kind: "error",
      message: "invalid directive '!compat-4.0' in a legacy policy file",
    });
    expect(translateLegacyLine("   # comment", "s", "*")).toEqual({ kind: "skip" });
  });

  test("$include: in a legacy directory resolves relative paths against that directory", () => {
    const { policy, errors } = legacyPolicyFrom({
      "test.Inc": "$include:include/shared\n",
      "include/shared": "work vault allow\n",
    });
    expect(errors).toEqual([]);
    expect(
      policy.rules.map((rule) => `${rule.origin.file}:${rule.origin.line} ${rule.service}`),
    ).toEqual(["/legacy/include/shared:1 test.Inc"]);
  });
});

describe("bare R2 keywords: kept as keywords, with a warning (as upstream's compat)", () => {
  const warningOf = (line: string) => {
    const result = translateLegacyLine(line, "s", "*");
    if (result.kind !== "rule") throw new Error(result.kind);
    return result.warning;
  };

  test("each bare word is named once, with its $-form", () => {
    expect(warningOf("anyvm dispvm allow")).toBe(
      "bare 'anyvm' (write '$anyvm') and 'dispvm' (write '$dispvm') read as the keyword here; " +
        "upstream's 4.x compat parser reads it as a qube name",
    );
    expect(warningOf("anyvm anyvm deny")).toBe(
      "bare 'anyvm' (write '$anyvm') read as the keyword here; " +
        "upstream's 4.x compat parser reads it as a qube name",
    );
    expect(warningOf("work $anyvm allow,target=dispvm")).toContain("'dispvm' (write '$dispvm')");
    expect(warningOf("work $anyvm ask,default_target=dispvm")).toContain(
      "'dispvm' (write '$dispvm')",
    );
  });

  test("the $-forms, names containing a keyword and other params give no warning", () => {
    for (const line of [
      "$anyvm $dispvm allow",
      "anyvm2 mydispvm allow,target=dispvm-x",
      "work vault allow,user=anyvm",
    ]) {
      expect(warningOf(line)).toBeNull();
    }
  });

  test("the loader keeps them as file:line warnings, which never make the policy fail", () => {
    const loaded = legacyPolicyFrom(LEGACY);
    expect(loaded.errors).toEqual([]);
    expect(loaded.policy.warnings.map((warning) => `${warning.file}:${warning.line}`)).toEqual([
      "/legacy/test.Legacy:4",
      "/legacy/test.Legacy:10",
      "/legacy/test.Legacy:11",
    ]);
    const viaInclude = policyFrom(
      { "50-test.policy": "!include-service test.Legacy * /legacy/test.Legacy\n" },
      LEGACY,
    );
    expect(viaInclude.policy.warnings.length).toBe(3);
  });
});
