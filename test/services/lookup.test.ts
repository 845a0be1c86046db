import { afterAll, afterEach, beforeEach, describe, expect, test } from "bun:test";
import { chmodSync, mkdirSync, symlinkSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { join } from "node:path";
import { DEFAULT_SERVICE_PATH } from "../../src/protocol/constants.ts";
import { defaultServicePath, findFile, findService } from "../../src/services/lookup.ts";
import { tempDir } from "../helpers/paths.ts";

// Each test gets three fresh search directories a, b and c.
let root: { path: string; remove: () => void };
let a: string;
let b: string;
let c: string;
let searchPath: string;
const servers: Server[] = [];

beforeEach(() => {
  root = tempDir("qrx-lookup-");
  [a, b, c] = ["a", "b", "c"].map((name) => {
    const directory = join(root.path, name);
    mkdirSync(directory);
    return directory;
  }) as [string, string, string];
  searchPath = [a, b, c].join(":");
});

afterEach(() => root.remove());
afterAll(() => {
  for (const server of servers) server.close();
});

function executable(path: string): string {
  writeFileSync(path, "#!/bin/sh\nexit 0\n");
  chmodSync(path, 0o755);
  return path;
}

function plainFile(path: string): string {
  writeFileSync(path, "not a program\n");
  chmodSync(path, 0o644);
  return path;
}

async function socket(path: string): Promise<string> {
  const server = createServer();
  servers.push(server);
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(path, resolve);
  });
  return path;
}

describe("search order (§5.3)", () => {
  test("svc+arg in every directory before svc in any", () => {
    executable(join(a, "svc"));
    const specific = executable(join(c, "svc+arg"));
    expect(findService("svc+arg", searchPath)).toEqual({ kind: "executable", path: specific });
  });

  test("within a pass, the first directory wins", () => {
    const first = executable(join(b, "svc+arg"));
    executable(join(c, "svc+arg"));
    expect(findService("svc+arg", searchPath)).toEqual({ kind: "executable", path: first });
  });

  test("falls back to svc when no svc+arg exists", () => {
    const general = executable(join(b, "svc"));
    executable(join(a, "svc+other"));
    expect(findService("svc+arg", searchPath)).toEqual({ kind: "executable", path: general });
  });

  test("a call without '+' finds svc+ first, then svc", () => {
    executable(join(a, "svc"));
    const plus = executable(join(c, "svc+"));
    expect(findService("svc", searchPath)).toEqual({ kind: "executable", path: plus });
    expect(findService("svc+", searchPath)).toEqual({ kind: "executable", path: plus });
  });

  test("nothing found → not-found (127)", () => {
    executable(join(a, "other"));
    expect(findService("svc+arg", searchPath)).toEqual({ kind: "not-found" });
    expect(findService("svc", "")).toEqual({ kind: "not-found" });
  });

  test("a svc+arg longer than NAME_MAX counts as absent, so svc is used", () => {
    const general = executable(join(a, "svc"));
    expect(findService(`svc+${"x".repeat(252)}`, searchPath)).toEqual({
      kind: "executable",
      path: general,
    });
    expect(findFile(searchPath, `svc+${"x".repeat(251)}`)).toEqual({ kind: "absent" });
  });

  test("a service name longer than NAME_MAX is not found", () => {
    expect(findService(`${"s".repeat(256)}+a`, searchPath)).toEqual({ kind: "not-found" });
  });

  test("empty search path entries are skipped", () => {
    const general = executable(join(b, "svc"));
    expect(findService("svc", `:${b}::`)).toEqual({ kind: "executable", path: general });
  });
});

describe("broken entries (§5.3, d5d7184)", () => {
  test("a dangling symlink is absent and the search goes on", () => {
    symlinkSync(join(root.path, "missing"), join(a, "svc+arg"));
    const next = executable(join(b, "svc+arg"));
    expect(findService("svc+arg", searchPath)).toEqual({ kind: "executable", path: next });
  });

  test("test_exec_broken_specific_service: a link into /dev/null/… ends it with 125", () => {
    symlinkSync("/dev/null/doesnotexist", join(a, "svc+arg"));
    executable(join(b, "svc+arg"));
    executable(join(b, "svc"));
    const result = findService("svc+arg", searchPath);
    expect(result.kind).toBe("problem");
    expect(result.kind === "problem" && result.reason).toMatch(/ENOTDIR/);
  });

  test("a symlink loop stops the search", () => {
    symlinkSync(join(a, "svc+arg"), join(a, "svc+arg"));
    executable(join(b, "svc+arg"));
    expect(findService("svc+arg", searchPath)).toMatchObject({
      kind: "problem",
      reason: expect.stringMatching(/ELOOP/),
    });
  });

  test("a search path entry that is a file stops the search", () => {
    const file = plainFile(join(root.path, "file"));
    executable(join(b, "svc"));
    expect(findService("svc", `${file}:${b}`)).toMatchObject({
      kind: "problem",
      reason: expect.stringMatching(/ENOTDIR/),
    });
  });

  test("a missing search directory is just absent", () => {
    const general = executable(join(b, "svc"));
    expect(findService("svc", `${join(root.path, "nope")}:${b}`)).toEqual({
      kind: "executable",
      path: general,
    });
  });
});

describe("result types", () => {
  test("a non-executable file is a problem (125), and it shadows later directories", () => {
    plainFile(join(a, "svc"));
    executable(join(b, "svc"));
    expect(findService("svc", searchPath)).toMatchObject({
      kind: "problem",
      reason: expect.stringMatching(/neither executable nor a socket/),
    });
  });

  test("a directory is a problem", () => {
    mkdirSync(join(a, "svc+"));
    expect(findService("svc", searchPath).kind).toBe("problem");
  });

  test("a symlink to an executable is followed", () => {
    const target = executable(join(root.path, "real"));
    symlinkSync(target, join(a, "svc"));
    expect(findService("svc", searchPath)).toEqual({ kind: "executable", path: join(a, "svc") });
  });

  test("a unix socket is a socket service, also through a symlink", async () => {
    const path = await socket(join(a, "svc+"));
    expect(findService("svc", searchPath)).toEqual({ kind: "socket", path });
    const elsewhere = await socket(join(root.path, "real.sock"));
    symlinkSync(elsewhere, join(b, "other"));
    expect(findService("other+x", searchPath)).toEqual({ kind: "socket", path: join(b, "other") });
  });
});

describe("TCP services (symlinks to /dev/tcp…)", () => {
  function tcpLink(name: string, target: string): string {
    const path = join(a, name);
    symlinkSync(target, path);
    return path;
  }

  test("/dev/tcp/HOST/PORT needs an empty argument", () => {
    const path = tcpLink("svc", "/dev/tcp/127.0.0.1/22");
    expect(findService("svc", searchPath)).toEqual({
      kind: "tcp",
      host: "127.0.0.1",
      port: 22,
      family: 4,
      path,
    });
    expect(findService("svc+", searchPath)).toMatchObject({ kind: "tcp", port: 22 });
    expect(findService("svc+80", searchPath)).toMatchObject({
      kind: "problem",
      reason: expect.stringMatching(/fixes the port/),
    });
  });

  test("/dev/tcp/HOST takes the port from the argument", () => {
    const path = tcpLink("svc", "/dev/tcp/127.0.0.1");
    expect(findService("svc+8080", searchPath)).toEqual({
      kind: "tcp",
      host: "127.0.0.1",
      port: 8080,
      family: 4,
      path,
    });
    expect(findService("svc+65535", searchPath)).toMatchObject({ kind: "tcp", port: 65535 });
  });

  test.each([
    ["empty", "svc"],
    ["zero", "svc+0"],
    ["too large", "svc+65536"],
    ["leading zero", "svc+080"],
    ["not decimal", "svc+0x50"],
    ["signed", "svc+-1"],
    ["spaces", "svc+ 80"],
  ])("/dev/tcp/HOST rejects a port that is %s", (_name, descriptor) => {
    tcpLink("svc", "/dev/tcp/127.0.0.1");
    expect(findService(descriptor, searchPath)).toMatchObject({
      kind: "problem",
      reason: expect.stringMatching(/port/),
    });
  });

  test("test_connect_socket_tcp_empty_host: a bare /dev/tcp/ is an error", () => {
    tcpLink("svc", "/dev/tcp/");
    expect(findService("svc+22", searchPath)).toMatchObject({
      kind: "problem",
      reason: expect.stringMatching(/empty host/),
    });
  });

  test("the host must be numeric; IPv6 when it has ':'", () => {
    tcpLink("name", "/dev/tcp/localhost/22");
    expect(findService("name", searchPath)).toMatchObject({
      kind: "problem",
      reason: expect.stringMatching(/numeric/),
    });
    tcpLink("six", "/dev/tcp/::1/22");
    expect(findService("six", searchPath)).toMatchObject({
      kind: "tcp",
      host: "::1",
      port: 22,
      family: 6,
    });
  });

  test("/dev/tcp takes HOST+PORT from the argument, '+' in the host standing for ':'", () => {
    const path = tcpLink("svc", "/dev/tcp");
    expect(findService("svc+10.0.0.1+22", searchPath)).toEqual({
      kind: "tcp",
      host: "10.0.0.1",
      port: 22,
      family: 4,
      path,
    });
    expect(findService("svc+fe80++1+443", searchPath)).toMatchObject({
      kind: "tcp",
      host: "fe80::1",
      port: 443,
      family: 6,
    });
    expect(findService("svc+++1+443", searchPath)).toMatchObject({ kind: "tcp", host: "::1" });
  });

  test.each([
    ["'_' in the argument", "svc+10.0.0.1_+22", /'_'/],
    ["no '+' between host and port", "svc+22", /HOST\+PORT/],
    ["empty host", "svc++22", /empty host/],
    ["empty argument", "svc", /HOST\+PORT/],
    ["name host", "svc+localhost+22", /numeric/],
    ["bad port", "svc+10.0.0.1+99999", /port/],
  ])("/dev/tcp rejects %s", (_name, descriptor, reason) => {
    tcpLink("svc", "/dev/tcp");
    expect(findService(descriptor, searchPath)).toMatchObject({
      kind: "problem",
      reason: expect.stringMatching(reason),
    });
  });

  test("/dev/tcpfoo is an ordinary (here dangling) symlink", () => {
    tcpLink("svc+", "/dev/tcpfoo");
    expect(findService("svc", searchPath)).toEqual({ kind: "not-found" });
  });

  test("a TCP link for svc+arg wins over svc; the argument still counts", () => {
    executable(join(a, "svc"));
    tcpLink("svc+9", "/dev/tcp/127.0.0.1");
    expect(findService("svc+9", searchPath)).toMatchObject({ kind: "tcp", port: 9 });
    // The spec's rule is about the call's argument, not about which file matched.
    tcpLink("svc+7", "/dev/tcp/127.0.0.1/7");
    expect(findService("svc+7", searchPath).kind).toBe("problem");
  });
});

describe("default search path", () => {
  test("QREXEC_SERVICE_PATH, else the built-in path", () => {
    expect(defaultServicePath({ QREXEC_SERVICE_PATH: "/x:/y" })).toBe("/x:/y");
    expect(defaultServicePath({})).toBe(DEFAULT_SERVICE_PATH);
  });
});
