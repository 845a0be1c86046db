import { describe, expect, test } from "bun:test";
import {
  buildDom0ServiceCommand,
  buildVmServiceCommand,
  executableArguments,
  parseCommand,
  requestedTargetOf,
  substituteDefaultUser,
  type RpcCommand,
} from "../../src/protocol/cmdline.ts";
import { ProtocolError } from "../../src/protocol/codec.ts";

const vm = (cmdline: string) => parseCommand(cmdline, { stripUser: true });
const dom0 = (cmdline: string) => parseCommand(cmdline, { stripUser: false });

function rpc(cmdline: string, stripUser = true): RpcCommand {
  const parsed = parseCommand(cmdline, { stripUser });
  if (parsed.kind !== "rpc")
    throw new Error(`expected an rpc command, got ${JSON.stringify(parsed)}`);
  return parsed;
}

describe("parseCommand: service calls (§3.6)", () => {
  test("user, descriptor with argument, source", () => {
    expect(vm("user:QUBESRPC qubes.Svc+arg work")).toEqual({
      kind: "rpc",
      user: "user",
      nogui: false,
      socketDescriptor: "qubes.Svc+arg work",
      descriptor: "qubes.Svc+arg",
      serviceDescriptor: "qubes.Svc+arg",
      serviceName: "qubes.Svc",
      argument: "arg",
      source: "work",
    });
  });

  test("no '+': the internal descriptor gets one, the received one keeps none", () => {
    const command = rpc("user:QUBESRPC qubes.Svc work");
    expect(command.descriptor).toBe("qubes.Svc");
    expect(command.serviceDescriptor).toBe("qubes.Svc+");
    expect(command.argument).toBeNull();
    expect(command.socketDescriptor).toBe("qubes.Svc work");
  });

  test("an empty argument is still an argument", () => {
    const command = rpc("user:QUBESRPC qubes.Svc+ work");
    expect([command.descriptor, command.serviceDescriptor, command.argument]).toEqual([
      "qubes.Svc+",
      "qubes.Svc+",
      "",
    ]);
  });

  test("the name ends at the first '+'", () => {
    const command = rpc("root:QUBESRPC a+b+c src");
    expect([command.serviceName, command.argument]).toEqual(["a", "b+c"]);
  });

  test("the user ends at the first ':'", () => {
    expect(vm("us:er:QUBESRPC a b")).toEqual({
      kind: "legacy",
      user: "us",
      nogui: false,
      command: "er:QUBESRPC a b",
    });
    expect(rpc("user:QUBESRPC a+x:y b:c").source).toBe("b:c");
  });

  test("nogui: right after the user", () => {
    const command = rpc("user:nogui:QUBESRPC qubes.Svc src");
    expect(command.nogui).toBe(true);
    expect(command.serviceName).toBe("qubes.Svc");
  });

  test("dom0 form: no user, the source is the first token after the descriptor", () => {
    const command = rpc("QUBESRPC qubes.Svc+ src keyword adminvm", false);
    expect([command.user, command.source, command.socketDescriptor]).toEqual([
      null,
      "src",
      "qubes.Svc+ src keyword adminvm",
    ]);
    expect(rpc("nogui:QUBESRPC a b name dom0", false).nogui).toBe(true);
  });

  test("limits: name 1..255 bytes, descriptor at most 65000 bytes", () => {
    expect(rpc(`u:QUBESRPC ${"n".repeat(255)}+x s`).serviceName.length).toBe(255);
    expect(vm(`u:QUBESRPC ${"n".repeat(256)}+x s`)).toEqual({
      kind: "invalid",
      reason: expect.stringMatching(/256 bytes/),
    });
    // Multi-byte characters count as bytes: 128 two-byte characters are 256 bytes.
    expect(vm(`u:QUBESRPC ${"é".repeat(128)} s`).kind).toBe("invalid");
    const argumentMax = "a".repeat(65000 - 2);
    expect(rpc(`u:QUBESRPC n+${argumentMax} s`).descriptor.length).toBe(65000);
    expect(vm(`u:QUBESRPC n+${argumentMax}a s`)).toEqual({
      kind: "invalid",
      reason: expect.stringMatching(/65001 bytes/),
    });
  });

  const invalid: [string, string, RegExp][] = [
    ["no colon in a VM", "QUBESRPC a b", /user/],
    ["QUBESRPC glued to the descriptor", "u:QUBESRPCa b c", /no space after QUBESRPC/],
    ["QUBESRPC alone", "u:QUBESRPC", /no space after QUBESRPC/],
    ["a tab after QUBESRPC", "u:QUBESRPC\ta b", /no space after QUBESRPC/],
    ["no source", "u:QUBESRPC qubes.Svc", /no space after the service descriptor/],
    ["empty source", "u:QUBESRPC qubes.Svc ", /source domain is empty/],
    ["two spaces before the source", "u:QUBESRPC qubes.Svc  src", /source domain is empty/],
    ["empty descriptor", "u:QUBESRPC  src", /service name is empty/],
    ["descriptor '+arg'", "u:QUBESRPC +arg src", /service name is empty/],
  ];
  test.each(invalid)("invalid: %s", (_name, cmdline, reason) => {
    const parsed = vm(cmdline);
    expect(parsed.kind).toBe("invalid");
    expect(parsed.kind === "invalid" && parsed.reason).toMatch(reason);
  });
});

describe("parseCommand: legacy commands", () => {
  test.each([
    ["user:echo hi", "user", false, "echo hi"],
    ["root:nogui:ls -l", "root", true, "ls -l"],
    ["user:qubesrpc a b", "user", false, "qubesrpc a b"],
    ["user: QUBESRPC a b", "user", false, " QUBESRPC a b"],
    ["user:", "user", false, ""],
  ])("%j", (cmdline, user, nogui, command) => {
    expect(vm(cmdline)).toEqual({ kind: "legacy", user, nogui, command });
  });

  test("dom0 legacy command keeps its colons", () => {
    expect(dom0("echo a:b")).toEqual({
      kind: "legacy",
      user: null,
      nogui: false,
      command: "echo a:b",
    });
  });
});

describe("executableArguments: 2 or 4 tokens", () => {
  test("VM form", () => {
    expect(executableArguments(rpc("u:QUBESRPC a+b src"))).toEqual({
      kind: "ok",
      requestedTarget: null,
    });
  });
  test("dom0 forms", () => {
    expect(executableArguments(rpc("QUBESRPC a+ src name dom0", false))).toEqual({
      kind: "ok",
      requestedTarget: { type: "name", target: "dom0" },
    });
    expect(executableArguments(rpc("QUBESRPC a+ src keyword adminvm", false))).toEqual({
      kind: "ok",
      requestedTarget: { type: "keyword", target: "adminvm" },
    });
  });
  test("a VM accepts the 4-token form too", () => {
    expect(executableArguments(rpc("u:QUBESRPC a src keyword adminvm")).kind).toBe("ok");
  });
  test("runs of spaces split like strtok", () => {
    expect(executableArguments(rpc("u:QUBESRPC a src   ")).kind).toBe("ok");
    expect(executableArguments(rpc("QUBESRPC a src  name   dom0", false)).kind).toBe("ok");
  });
  test.each([
    ["3 tokens", "u:QUBESRPC a src extra", /3 arguments/],
    ["5 tokens", "u:QUBESRPC a src name dom0 more", /5 arguments/],
    ["unknown target type", "u:QUBESRPC a src uuid x", /not name or keyword/],
  ])("%s fails", (_name, cmdline, reason) => {
    const result = executableArguments(rpc(cmdline));
    expect(result.kind === "invalid" && result.reason).toMatch(reason);
  });
});

describe("DEFAULT: user substitution (§7.2)", () => {
  test.each([
    ["DEFAULT:QUBESRPC test.Add+ S", "user:QUBESRPC test.Add+ S"],
    ["DEFAULT:nogui:ls", "user:nogui:ls"],
    ["root:QUBESRPC a b", "root:QUBESRPC a b"],
    ["DEFAULTX:QUBESRPC a b", "DEFAULTX:QUBESRPC a b"],
    ["xDEFAULT:a", "xDEFAULT:a"],
    ["DEFAULT", "DEFAULT"],
  ])("%j → %j", (command, expected) => {
    expect(substituteDefaultUser(command, "user")).toBe(expected);
  });
});

describe("command builders (§2.1, §2.2)", () => {
  test("VM command appends '+' only when absent", () => {
    expect(buildVmServiceCommand({ user: "DEFAULT", service: "test.Add", source: "S" })).toBe(
      "DEFAULT:QUBESRPC test.Add+ S",
    );
    expect(buildVmServiceCommand({ user: "root", service: "qubes.Svc+arg", source: "work" })).toBe(
      "root:QUBESRPC qubes.Svc+arg work",
    );
  });

  test("dom0 command: keyword when the requested target starts with '@'", () => {
    expect(
      buildDom0ServiceCommand({
        service: "qubes.Svc",
        source: "work",
        requestedTarget: "@adminvm",
      }),
    ).toBe("QUBESRPC qubes.Svc+ work keyword adminvm");
    expect(
      buildDom0ServiceCommand({ service: "qubes.Svc+a", source: "work", requestedTarget: "dom0" }),
    ).toBe("QUBESRPC qubes.Svc+a work name dom0");
    expect(requestedTargetOf("@adminvm")).toEqual({ type: "keyword", target: "adminvm" });
  });

  test("what the builders make, the parser reads back", () => {
    const vmCommand = rpc(
      substituteDefaultUser(
        buildVmServiceCommand({ user: "DEFAULT", service: "x.Y", source: "s" }),
        "u",
      ),
    );
    expect([vmCommand.user, vmCommand.serviceDescriptor, vmCommand.source]).toEqual([
      "u",
      "x.Y+",
      "s",
    ]);
    const dom0Command = rpc(
      buildDom0ServiceCommand({ service: "x.Y+z", source: "s", requestedTarget: "@adminvm" }),
      false,
    );
    expect(executableArguments(dom0Command)).toEqual({
      kind: "ok",
      requestedTarget: { type: "keyword", target: "adminvm" },
    });
  });

  test.each([
    ["a user with ':'", () => buildVmServiceCommand({ user: "a:b", service: "s", source: "w" })],
    ["an empty user", () => buildVmServiceCommand({ user: "", service: "s", source: "w" })],
    [
      "a service with a space",
      () => buildVmServiceCommand({ user: "u", service: "s x", source: "w" }),
    ],
    ["an empty source", () => buildVmServiceCommand({ user: "u", service: "s", source: "" })],
    [
      "an empty keyword",
      () => buildDom0ServiceCommand({ service: "s", source: "w", requestedTarget: "@" }),
    ],
    [
      "a target with a space",
      () => buildDom0ServiceCommand({ service: "s", source: "w", requestedTarget: "a b" }),
    ],
  ])("refuses %s", (_name, build) => {
    expect(build).toThrow(ProtocolError);
  });
});
