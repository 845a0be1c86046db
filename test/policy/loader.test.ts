import { afterAll, describe, expect, test } from "bun:test";
import { mkdirSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { formatOrigin, formatPolicyError } from "../../src/policy/errors.ts";
import { memoryFileSystem } from "../../src/policy/files.ts";
import { loadPolicy } from "../../src/policy/loader.ts";
import type { CompiledPolicy } from "../../src/policy/policy.ts";
import { tempDir } from "../helpers/paths.ts";
import { policyFrom } from "./fixtures.ts";

/** Each rule as "file:line" (with the /policy/ and /legacy/ prefixes dropped). */
function order(policy: CompiledPolicy): string[] {
  return policy.rules.map((rule) =>
    formatOrigin(rule.origin).replaceAll("/policy/", "").replaceAll("/legacy/", "legacy/"),
  );
}

describe("which files, in which order", () => {
  test("bytewise order of basename ('-' < '.' < digits < '_' < letters), not locale order", () => {
    const { policy, errors } = policyFrom({
      "a_x.policy": "s * work vault allow\n",
      "a.policy": "s * work vault allow\n",
      "a-x.policy": "s * work vault allow\n",
      "10-b.policy": "s * work vault allow\n",
      "9-c.policy": "s * work vault allow\n",
    });
    expect(errors).toEqual([]);
    expect(order(policy)).toEqual([
      "10-b.policy:1",
      "9-c.policy:1",
      "a-x.policy:1",
      "a.policy:1",
      "a_x.policy:1",
    ]);
  });

  test("only *.policy regular files not starting with '.'", () => {
    const { policy, errors } = policyFrom({
      "10-real.policy": "s * work vault allow\n",
      ".hidden.policy": "garbage\n",
      "notes.txt": "garbage\n",
      "30-old.policy.bak": "garbage\n",
      "40-dir.policy/inside.policy": "garbage\n",
    });
    expect(errors).toEqual([]);
    expect(order(policy)).toEqual(["10-real.policy:1"]);
  });

  test("a basename in an earlier directory hides it in a later one; the rest interleave", () => {
    const fs = memoryFileSystem({
      "/run/policy.d/20-b.policy": "s * work vault allow\n",
      "/run/policy.d/30-same.policy": "s * work vault deny\n",
      "/etc/policy.d/10-a.policy": "s * work vault allow\n",
      "/etc/policy.d/30-same.policy": "s * work vault allow\n",
      "/etc/policy.d/40-c.policy": "s * work vault allow\n",
    });
    const { policy, errors } = loadPolicy(["/run/policy.d", "/etc/policy.d"], { fs });
    expect(errors).toEqual([]);
    expect(order(policy)).toEqual([
      "/etc/policy.d/10-a.policy:1",
      "/run/policy.d/20-b.policy:1",
      "/run/policy.d/30-same.policy:1",
      "/etc/policy.d/40-c.policy:1",
    ]);
  });

  test("a missing earlier directory is fine (/run is often empty)", () => {
    const fs = memoryFileSystem({ "/etc/policy.d/10-a.policy": "s * work vault allow\n" });
    expect(loadPolicy(["/run/policy.d", "/etc/policy.d"], { fs }).errors).toEqual([]);
  });
});

describe("includes", () => {
  test("rules of an included file stand where the !include is", () => {
    const { policy, errors } = policyFrom({
      "10-a.policy": "s * work vault allow\n!include inc/x.policy\ns * work vault deny\n",
      "inc/x.policy": "s * work vault ask\ns * work personal ask\n",
    });
    expect(errors).toEqual([]);
    expect(order(policy)).toEqual([
      "10-a.policy:1",
      "inc/x.policy:1",
      "inc/x.policy:2",
      "10-a.policy:3",
    ]);
  });

  test("relative paths resolve against the top-level file's directory, even nested", () => {
    const { policy, errors } = policyFrom({
      "10-a.policy": "!include inc/one.policy\n",
      // Relative to /policy, not to /policy/inc where this file is.
      "inc/one.policy": "!include inc/two.policy\n",
      "inc/two.policy": "s * work vault allow\n",
    });
    expect(errors).toEqual([]);
    expect(order(policy)).toEqual(["inc/two.policy:1"]);
  });

  test("relative includes from another policy directory resolve against that one", () => {
    const fs = memoryFileSystem({
      "/run/p/10-a.policy": "!include inc.policy\n",
      "/run/p/inc.policy.part": "",
      "/run/p/inc.policy": "s * work vault allow\n",
      "/etc/p/20-b.policy": "!include inc.policy\n",
      "/etc/p/inc.policy": "s * work vault deny\n",
    });
    const { policy, errors } = loadPolicy(["/run/p", "/etc/p"], { fs });
    expect(errors).toEqual([]);
    // /run/p/inc.policy is itself a top-level file too (it ends in .policy): read after 20-b.
    expect(order(policy)).toEqual([
      "/run/p/inc.policy:1",
      "/etc/p/inc.policy:1",
      "/run/p/inc.policy:1",
    ]);
  });

  test("absolute include paths are used as they are", () => {
    const { policy, errors } = policyFrom({
      "10-a.policy": "!include /shared/x\n",
      "/shared/x": "s * work vault allow\n",
    });
    expect(errors).toEqual([]);
    expect(order(policy)).toEqual(["/shared/x:1"]);
  });

  test("!include-dir reads the directory's *.policy files in name order", () => {
    const { policy, errors } = policyFrom({
      "10-a.policy": "!include-dir extra\ns * work vault deny\n",
      "extra/b.policy": "s * work vault allow\n",
      "extra/a.policy": "s * work vault allow\n",
      "extra/.c.policy": "garbage\n",
      "extra/d.txt": "garbage\n",
    });
    expect(errors).toEqual([]);
    expect(order(policy)).toEqual(["extra/a.policy:1", "extra/b.policy:1", "10-a.policy:2"]);
  });

  test("an include loop is an error at the include that closes it", () => {
    const { errors } = policyFrom({
      "10-a.policy": "!include inc/x.policy\n",
      "inc/x.policy": "!include inc/y.policy\n",
      "inc/y.policy": "!include inc/x.policy\n",
    });
    expect(errors.map(formatPolicyError)).toEqual([
      "/policy/inc/y.policy:1: include loop: /policy/10-a.policy -> " +
        "/policy/inc/x.policy -> /policy/inc/y.policy -> /policy/inc/x.policy",
    ]);
  });

  test("including the same file twice (not a loop) is allowed", () => {
    const { policy, errors } = policyFrom({
      "10-a.policy": "!include x.inc\n!include x.inc\n",
      "x.inc": "s * work vault allow\n",
    });
    expect(errors).toEqual([]);
    expect(order(policy)).toEqual(["x.inc:1", "x.inc:1"]);
  });

  test("!include-service reads a legacy file for the given service and argument", () => {
    const { policy, errors } = policyFrom({
      "10-a.policy": "!include-service qubes.Svc +arg legacy/svc\n",
      "legacy/svc":
        "# legacy comment\n$anyvm $dispvm allow,user=root\n" +
        "work $default allow,target=vault\n$include:legacy/more\n",
      "legacy/more": "$tag:trusted $anyvm ask,default_target=vault\n",
    });
    expect(errors).toEqual([]);
    expect(order(policy)).toEqual(["legacy/svc:2", "legacy/svc:3", "legacy/more:1"]);
    expect(
      policy.rules.map((rule) => [
        rule.service,
        rule.argument,
        rule.source.text,
        rule.target.text,
        rule.action,
      ]),
    ).toEqual([
      ["qubes.Svc", "+arg", "@anyvm", "@dispvm", "allow"],
      ["qubes.Svc", "+arg", "work", "@default", "allow"],
      ["qubes.Svc", "+arg", "@tag:trusted", "@anyvm", "ask"],
    ]);
    expect(policy.rules[0]).toMatchObject({ user: "root", text: "$anyvm $dispvm allow,user=root" });
  });

  test("errors in legacy files carry the legacy file's line", () => {
    const { errors } = policyFrom({
      "10-a.policy": "!include-service s * legacy/svc\n",
      "legacy/svc": "\n$anyvm\n$anyvm $anyvm allow,frob=1\n",
    });
    expect(errors.map(formatPolicyError)).toEqual([
      "/policy/legacy/svc:2: wrong number of fields: " +
        "expected SOURCE TARGET ACTION[,PARAM=VALUE...], got 1",
      "/policy/legacy/svc:3: parameter 'frob' is not valid for allow",
    ]);
  });
});

describe("!compat-4.0", () => {
  const legacy = {
    "b.Svc": "$anyvm $anyvm allow\n",
    "b.Svc+z": "work vault allow\n",
    "b.Svc+a": "work vault deny\n",
    "a.Svc": "$anyvm dom0 allow\n",
    ".hidden": "garbage\n",
    "a.Svc.rpmnew": "garbage\n",
    "a.Svc.rpmsave": "garbage\n",
    "a.Svc.swp": "garbage\n",
    "bad name": "garbage\n",
    "include/shared": "garbage (a directory entry, not a service file)\n",
  };

  test("services sorted; each +ARG file then two implicit denies; the generic file last", () => {
    const { policy, errors } = policyFrom(
      { "35-compat.policy": "s * work vault allow\n!compat-4.0\n" },
      legacy,
    );
    expect(errors).toEqual([]);
    expect(order(policy)).toEqual([
      "35-compat.policy:1",
      "legacy/a.Svc:1",
      "legacy/b.Svc+a:1",
      "35-compat.policy:2 (implicit deny after legacy/b.Svc+a)",
      "35-compat.policy:2 (implicit deny after legacy/b.Svc+a)",
      "legacy/b.Svc+z:1",
      "35-compat.policy:2 (implicit deny after legacy/b.Svc+z)",
      "35-compat.policy:2 (implicit deny after legacy/b.Svc+z)",
      "legacy/b.Svc:1",
    ]);
    const implicit = policy.rules.filter((rule) => rule.origin.note !== undefined);
    expect(implicit.map((rule) => rule.text)).toEqual([
      "b.Svc +a @anyvm @anyvm deny",
      "b.Svc +a @anyvm @adminvm deny",
      "b.Svc +z @anyvm @anyvm deny",
      "b.Svc +z @anyvm @adminvm deny",
    ]);
    expect(policy.rules.find((rule) => rule.origin.file === "/legacy/b.Svc")).toMatchObject({
      service: "b.Svc",
      argument: null,
    });
  });

  test("a missing legacy directory imports nothing", () => {
    const { policy, errors } = policyFrom({ "35-compat.policy": "!compat-4.0\n" });
    expect(errors).toEqual([]);
    expect(policy.rules).toEqual([]);
  });
});

describe("on disk", () => {
  const dir = tempDir("qrx-policy-");
  afterAll(() => dir.remove());

  test("symlinks to files followed, dangling ones and directories ignored; paths lists", () => {
    const policyDir = join(dir.path, "policy.d");
    mkdirSync(join(policyDir, "sub.policy"), { recursive: true });
    writeFileSync(join(dir.path, "target"), "s * work vault allow\n");
    writeFileSync(join(policyDir, "20-plain.policy"), "!include-dir inc\n");
    mkdirSync(join(policyDir, "inc"));
    writeFileSync(join(policyDir, "inc", "x.policy"), "s * work vault deny\n");
    symlinkSync(join(dir.path, "target"), join(policyDir, "10-link.policy"));
    symlinkSync(join(dir.path, "nowhere"), join(policyDir, "30-dangling.policy"));
    const { policy, errors } = loadPolicy(policyDir);
    expect(errors.map(formatPolicyError)).toEqual([]);
    expect(policy.rules.map((rule) => rule.origin.file)).toEqual([
      join(policyDir, "10-link.policy"),
      join(policyDir, "inc", "x.policy"),
    ]);
    expect([...policy.paths].sort()).toEqual(
      [
        policyDir,
        join(policyDir, "10-link.policy"),
        join(policyDir, "20-plain.policy"),
        join(policyDir, "inc"),
        join(policyDir, "inc", "x.policy"),
      ].sort(),
    );
  });
});
