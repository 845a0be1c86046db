import { afterAll, describe, expect, test } from "bun:test";
import { chmodSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { executableArguments, parseCommand, type RpcCommand } from "../../src/protocol/cmdline.ts";
import { buildServiceEnvironment, serviceArgv } from "../../src/services/environment.ts";
import { findService } from "../../src/services/lookup.ts";
import { tempDir } from "../helpers/paths.ts";

function rpc(cmdline: string, stripUser = true): RpcCommand {
  const parsed = parseCommand(cmdline, { stripUser });
  if (parsed.kind !== "rpc") throw new Error(`not an rpc command: ${cmdline}`);
  return parsed;
}

const BASE = {
  PATH: "/usr/bin:/bin",
  HOME: "/home/user",
  QREXEC_SERVICE_PATH: "/etc/qubes-rpc",
  QREXEC_AGENT_PID: "1",
  QREXEC_REMOTE_DOMAIN: "stale",
  QREXEC_SERVICE_ARGUMENT: "stale",
  QREXEC_REQUESTED_TARGET: "stale",
  QREXECX: "stale",
  QREXEC: "stale",
  qrexec_lowercase: "kept",
  UNSET: undefined,
};

describe("service environment (§5.5)", () => {
  test("a VM call with an argument", () => {
    const command = rpc("user:QUBESRPC qubes.Svc+arg work");
    expect(
      buildServiceEnvironment(BASE, { command, requestedTarget: null, agentPid: 4242 }),
    ).toEqual({
      PATH: "/usr/bin:/bin",
      HOME: "/home/user",
      QREXEC_SERVICE_PATH: "/etc/qubes-rpc",
      qrexec_lowercase: "kept",
      QREXEC_SERVICE_FULL_NAME: "qubes.Svc+arg",
      QREXEC_REMOTE_DOMAIN: "work",
      QREXEC_SERVICE_ARGUMENT: "arg",
      QREXEC_REQUESTED_TARGET_TYPE: "",
      QREXEC_AGENT_PID: "4242",
    });
  });

  test("no '+': no QREXEC_SERVICE_ARGUMENT, and the full name has no '+' added", () => {
    const env = buildServiceEnvironment(BASE, {
      command: rpc("user:QUBESRPC qubes.Svc work"),
      requestedTarget: null,
    });
    expect(env.QREXEC_SERVICE_FULL_NAME).toBe("qubes.Svc");
    expect("QREXEC_SERVICE_ARGUMENT" in env).toBe(false);
  });

  test("a trailing '+': QREXEC_SERVICE_ARGUMENT is set and empty", () => {
    const env = buildServiceEnvironment(
      {},
      { command: rpc("user:QUBESRPC qubes.Svc+ work"), requestedTarget: null },
    );
    expect(env.QREXEC_SERVICE_ARGUMENT).toBe("");
    expect(env.QREXEC_SERVICE_FULL_NAME).toBe("qubes.Svc+");
  });

  test("without an agent pid the inherited QREXEC_AGENT_PID is kept", () => {
    const env = buildServiceEnvironment(BASE, {
      command: rpc("u:QUBESRPC s w"),
      requestedTarget: null,
    });
    expect(env.QREXEC_AGENT_PID).toBe("1");
  });

  test("dom0 call by name", () => {
    const command = rpc("QUBESRPC qubes.Svc+ work name dom0", false);
    const args = executableArguments(command);
    if (args.kind !== "ok") throw new Error(args.reason);
    const env = buildServiceEnvironment(BASE, { command, requestedTarget: args.requestedTarget });
    expect(env.QREXEC_REQUESTED_TARGET_TYPE).toBe("name");
    expect(env.QREXEC_REQUESTED_TARGET).toBe("dom0");
    expect("QREXEC_REQUESTED_TARGET_KEYWORD" in env).toBe(false);
  });

  test("dom0 call by keyword", () => {
    const env = buildServiceEnvironment(BASE, {
      command: rpc("QUBESRPC qubes.Svc work keyword adminvm", false),
      requestedTarget: { type: "keyword", target: "adminvm" },
    });
    expect(env.QREXEC_REQUESTED_TARGET_TYPE).toBe("keyword");
    expect(env.QREXEC_REQUESTED_TARGET_KEYWORD).toBe("adminvm");
    expect("QREXEC_REQUESTED_TARGET" in env).toBe(false);
  });

  test("argv carries the argument only when it is non-empty", () => {
    expect(serviceArgv("/etc/qubes-rpc/s", "arg")).toEqual(["/etc/qubes-rpc/s", "arg"]);
    expect(serviceArgv("/etc/qubes-rpc/s", "")).toEqual(["/etc/qubes-rpc/s"]);
    expect(serviceArgv("/etc/qubes-rpc/s", null)).toEqual(["/etc/qubes-rpc/s"]);
  });
});

describe("what a service started this way sees", () => {
  const root = tempDir("qrx-env-");
  afterAll(() => root.remove());

  test("parse → lookup → environment and argv → the service's own view", () => {
    const script = join(root.path, "test.Echo");
    writeFileSync(
      script,
      '#!/bin/sh\nprintf \'%s|%s|%s|%s|%s\\n\' "$#" "$1" "$QREXEC_SERVICE_FULL_NAME" ' +
        '"$QREXEC_REMOTE_DOMAIN" "${QREXEC_SERVICE_ARGUMENT-unset}"\n',
    );
    chmodSync(script, 0o755);

    const run = (cmdline: string) => {
      const command = rpc(cmdline);
      const found = findService(command.serviceDescriptor, root.path);
      if (found.kind !== "executable") throw new Error(JSON.stringify(found));
      const env = buildServiceEnvironment(
        { PATH: process.env.PATH },
        { command, requestedTarget: null, agentPid: process.pid },
      );
      const result = Bun.spawnSync(serviceArgv(found.path, command.argument), { env });
      return result.stdout.toString();
    };
    expect(run("user:QUBESRPC test.Echo+hello work")).toBe("1|hello|test.Echo+hello|work|hello\n");
    expect(run("user:QUBESRPC test.Echo source")).toBe("0||test.Echo|source|unset\n");
    expect(run("user:QUBESRPC test.Echo+ source")).toBe("0||test.Echo+|source|\n");
  });
});
