import { describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  BUILTIN_SERVICES_DIR,
  builtinServiceNames,
  LabConfigError,
  loadLabConfig,
  parseLabConfig,
} from "../../src/lab/config.ts";
import { tempDir } from "../helpers/paths.ts";

const FILE = "/labs/my-lab.toml";

function problem(text: string): string {
  try {
    parseLabConfig(text, FILE);
  } catch (error) {
    expect(error).toBeInstanceOf(LabConfigError);
    return (error as Error).message;
  }
  throw new Error("the configuration was accepted");
}

describe("lab definition", () => {
  test("the built-in default lab: dom0, work, vault, personal, default-dvm", () => {
    const config = loadLabConfig();
    expect(config.domains.map((domain) => domain.name)).toEqual([
      "work",
      "vault",
      "personal",
      "default-dvm",
    ]);
    const dvm = config.domains.find((domain) => domain.name === "default-dvm")!;
    expect(dvm).toMatchObject({ klass: "AppVM", templateForDispvms: true, start: false });
    expect(config.domains.find((domain) => domain.name === "personal")!.start).toBe(false);
    expect(config.domains.find((domain) => domain.name === "work")).toMatchObject({
      tags: ["work"],
      defaultDispvm: "default-dvm",
      defaultUser: "user",
      start: true,
    });
    expect(config.defaultDispvm).toBe("default-dvm");
    expect(config.policy).toContain("test.Add");
    expect(config.transport).toBe("shm");
    expect(config.dom0Services.map((service) => service.name).sort()).toEqual([
      "test.Add",
      "test.Echo",
      "test.Whoami",
    ]);
    // Without a services list a domain gets every built-in service.
    expect(config.domains[0]!.services.map((service) => service.name)).toEqual(
      builtinServiceNames(),
    );
  });

  test("types, tags, users, services by name and by path relative to the file", () => {
    const dir = tempDir();
    try {
      const script = join(dir.path, "my.Service");
      writeFileSync(script, "#!/bin/sh\necho hi\n");
      const file = join(dir.path, "lab.toml");
      writeFileSync(
        file,
        `transport = "socket"
[[domain]]
name = "tpl"
type = "TemplateVM"
[[domain]]
name = "box"
type = "StandaloneVM"
tags = ["a-b", "c_d"]
default_user = "alice"
services = ["test.Echo", "./my.Service"]
`,
      );
      const config = loadLabConfig(file);
      expect(config.transport).toBe("socket");
      expect(config.domains[0]).toMatchObject({
        klass: "TemplateVM",
        templateForDispvms: false,
        defaultDispvm: null,
      });
      expect(config.domains[1]).toMatchObject({
        klass: "StandaloneVM",
        tags: ["a-b", "c_d"],
        defaultUser: "alice",
      });
      expect(config.domains[1]!.services).toEqual([
        { name: "test.Echo", path: join(BUILTIN_SERVICES_DIR, "test.Echo") },
        { name: "my.Service", path: script },
      ]);
      expect(config.policy).toBeNull();
    } finally {
      dir.remove();
    }
  });

  test("every mistake is named with the file", () => {
    expect(problem("[[domain]\nname=")).toStartWith(`${FILE}:1: not valid TOML`);
    expect(problem("colour = 1")).toBe(
      `${FILE}:1: unknown key 'colour' (known: default_dispvm, ` +
        `policy, transport, ask, isolation, dom0, domain)`,
    );
    expect(problem('[[domain]]\nname = "work"\nram = 4')).toContain("domain #1: unknown key 'ram'");
    expect(problem('[[domain]]\ntype = "AppVM"')).toContain("domain #1: name must be a string");
    expect(problem('[[domain]]\nname = "9lives"')).toContain(
      "domain '9lives': a name starts with a letter",
    );
    expect(problem('[[domain]]\nname = "a-name-that-is-much-too-long-for-qubes"')).toContain(
      "a name starts with a letter",
    );
    expect(problem('[[domain]]\nname = "dom0"')).toContain(
      "dom0 is always there; configure it in [dom0]",
    );
    expect(problem('[[domain]]\nname = "x"\n[[domain]]\nname = "x"')).toContain(
      "domain 'x' is defined twice",
    );
    expect(problem('[[domain]]\nname = "x"\ntype = "HVM"')).toContain(
      'type must be one of AppVM, TemplateVM, DispVMTemplate, StandaloneVM, not "HVM"',
    );
    expect(problem('[[domain]]\nname = "x"\ntags = ["no spaces"]')).toContain(
      "'no spaces' is not a valid tag",
    );
    expect(problem('[[domain]]\nname = "x"\ntags = "work"')).toContain(
      "tags must be a list of strings",
    );
    expect(problem('[[domain]]\nname = "x"\ndefault_user = "Root!"')).toContain(
      "'Root!' is not a valid user name",
    );
    expect(problem('[[domain]]\nname = "x"\nservices = ["test.Nope"]')).toContain(
      "no built-in service 'test.Nope'",
    );
    expect(problem('[[domain]]\nname = "x"\nservices = ["./missing.Svc"]')).toContain(
      "/labs/missing.Svc does not exist",
    );
    expect(problem('[[domain]]\nname = "x"\nservices = ["test.Add", "test.Add"]')).toContain(
      "'test.Add' listed twice",
    );
    expect(problem('[[domain]]\nname = "x"\nstart = "yes"')).toContain(
      "start must be true or false",
    );
    expect(problem('[[domain]]\nname = "x"\ndefault_dispvm = "ghost"')).toContain(
      "default_dispvm 'ghost' is not a domain of this lab",
    );
    expect(
      problem('[[domain]]\nname = "x"\n[[domain]]\nname = "y"\ndefault_dispvm = "x"'),
    ).toContain("default_dispvm 'x' is not a DisposableVM template");
    expect(problem('default_dispvm = "none"')).toContain(
      "default_dispvm 'none' is not a DisposableVM template of this lab",
    );
    expect(problem('transport = "tcp"')).toContain(
      'transport must be "shm" or "socket", not "tcp"',
    );
    expect(problem("[dom0]\nname = 1")).toContain("[dom0]: unknown key 'name'");
    expect(problem("domain = 3")).toContain("domains are [[domain]] tables");
  });

  test("every mistake is reported at once, each with its line; TOML syntax errors too", () => {
    const text = [
      'transport = "tcp"', // 1
      'policy = """', // 2
      "name = 1", // 3: inside the policy string, not a key
      '"""', // 4
      "[dom0]", // 5
      'services = ["test.Nope"]', // 6
      "[[domain]]", // 7
      'name = "work"', // 8
      'type = "HVM"', // 9
      "[[domain]]", // 10
      'name = "9x"', // 11
      "[[domain]]", // 12
      'name = "vault"', // 13
      'default_dispvm = "work"', // 14
      'ask = "maybe"', // 15: a domain key, so unknown here
    ].join("\n");
    expect(problem(text).split("\n")).toEqual([
      `${FILE}:1: transport must be "shm" or "socket", not "tcp"`,
      expect.stringContaining(`${FILE}:6: dom0.services: no built-in service 'test.Nope'`),
      expect.stringContaining(`${FILE}:9: domain 'work': type must be one of`),
      expect.stringContaining(`${FILE}:11: domain '9x': a name starts with a letter`),
      expect.stringContaining(`${FILE}:15: domain #3: unknown key 'ask'`),
      `${FILE}:14: domain 'vault': default_dispvm 'work' is ` +
        `not a DisposableVM template (type = "DispVMTemplate")`,
    ]);
    expect(problem('a = 1\n[[domain]\nname = "x"')).toStartWith(
      `${FILE}:2: not valid TOML: Expected ']]'`,
    );
    expect(problem('policy = """\nx\ny\n"""\na = "unterminated\nb = 1')).toStartWith(
      `${FILE}:5: not valid TOML`,
    );
    expect(problem('ask = "maybe"')).toBe(
      `${FILE}:1: ask must be tty (the terminal of qrx run, or qrx lab ` +
        `answer), program:CMD (sh -c CMD answers), or deny; not "maybe"`,
    );
    expect(parseLabConfig('ask = "program:jq -r .default_target"', FILE).ask).toBe(
      "program:jq -r .default_target",
    );
    expect(parseLabConfig("", FILE).ask).toBe("tty");
  });

  test("isolation: namespaces unless the file says none; anything else is named", () => {
    expect(loadLabConfig().isolation).toBe("namespaces");
    expect(parseLabConfig('isolation = "none"\n', FILE).isolation).toBe("none");
    expect(problem('isolation = "vm"\n')).toBe(
      `${FILE}:1: isolation must be "namespaces" or "none", not "vm"`,
    );
    expect(problem("isolation = true\n")).toBe(`${FILE}:1: isolation must be a string`);
  });

  test("a missing file is reported, not thrown raw", () => {
    expect(() => loadLabConfig("/nonexistent/lab.toml")).toThrow(
      "/nonexistent/lab.toml: no such file",
    );
  });
});
