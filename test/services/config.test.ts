import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { mkdirSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { DEFAULT_RPC_CONFIG_PATH } from "../../src/protocol/constants.ts";
import {
  DEFAULT_SERVICE_CONFIG,
  defaultConfigPath,
  loadServiceConfig,
  parseServiceConfig,
  type ServiceConfig,
} from "../../src/services/config.ts";
import { tempDir } from "../helpers/paths.ts";

function config(overrides: Partial<ServiceConfig>): ServiceConfig {
  return { ...DEFAULT_SERVICE_CONFIG, ...overrides };
}

describe("TOML subset: accepted (§5.4)", () => {
  const accepted: [string, string, Partial<ServiceConfig>, string[]?][] = [
    ["an empty file", "", {}],
    ["comments and blank lines", "# a comment\n\n#another\n", {}],
    ["wait-for-session = true", "wait-for-session = true\n", { waitForSession: true }],
    ["wait-for-session = false", "wait-for-session = false\n", { waitForSession: false }],
    ["qubes.StartApp: wait-for-session=1", "wait-for-session=1\n", { waitForSession: true }],
    ["wait-for-session = 0", "wait-for-session = 0\n", { waitForSession: false }],
    ["force-user", "force-user = 'root'\n", { forceUser: "root" }],
    [
      "a string with '#' and spaces, then a comment",
      "force-user = 'a b#c'  # who\n",
      { forceUser: "a b#c" },
    ],
    ["an empty string", "force-user = ''\n", { forceUser: "" }],
    [
      "qubes.ConnectTCP",
      "skip-service-descriptor = true\nexit-on-service-eof = true\n",
      { skipServiceDescriptor: true, exitOnServiceEof: true },
    ],
    ["exit-on-client-eof", "exit-on-client-eof = true\n", { exitOnClientEof: true }],
    ["a comment right after the value", "wait-for-session = true#x\n", { waitForSession: true }],
    ["tabs around '='", "wait-for-session\t=\ttrue\t\n", { waitForSession: true }],
    ["no newline at the end", "wait-for-session = true", { waitForSession: true }],
    [
      "force-user with the socket-only keys set to false",
      "force-user = 'u'\nskip-service-descriptor = false\nexit-on-service-eof = false\n" +
        "exit-on-client-eof = false\n",
      { forceUser: "u" },
    ],
    ["an unknown key with a string", "foo = 'x'\n", {}, ["foo"]],
    [
      "an unknown key with an integer and one with a bool",
      "foo = 3\nbar = false\n",
      {},
      ["foo", "bar"],
    ],
  ];
  test.each(accepted)("%s", (_name, text, expected, unknownKeys = []) => {
    expect(parseServiceConfig(text)).toEqual({ kind: "ok", config: config(expected), unknownKeys });
  });
});

describe("TOML subset: rejected (125)", () => {
  const rejected: [string, string, RegExp][] = [
    ["leading space", " wait-for-session = true\n", /leading whitespace/],
    ["leading tab", "\twait-for-session = true\n", /leading whitespace/],
    ["a whitespace-only line", "  \n", /leading whitespace/],
    [
      "a duplicate key",
      "wait-for-session = true\nwait-for-session = false\n",
      /line 2: duplicate key/,
    ],
    ["a duplicate unknown key", "foo = 1\nfoo = 1\n", /duplicate key 'foo'/],
    ["a double-quoted string, even for an unknown key", 'foo = "x"\n', /bad value for 'foo'/],
    ["a double-quoted force-user", 'force-user = "root"\n', /bad value/],
    ["a bare string", "force-user = root\n", /bad value/],
    ["force-user as an integer", "force-user = 1\n", /'force-user' must be a 'string'/],
    ["force-user as a bool", "force-user = true\n", /'force-user' must be a 'string'/],
    ["an integer for a socket-only key", "skip-service-descriptor = 1\n", /must be true or false/],
    ["a string for a bool", "exit-on-client-eof = 'true'\n", /must be true or false/],
    ["wait-for-session = 2", "wait-for-session = 2\n", /true, false, 0 or 1/],
    ["wait-for-session = 01", "wait-for-session = 01\n", /unexpected text/],
    ["wait-for-session = 00", "wait-for-session = 00\n", /unexpected text/],
    ["a sign: wait-for-session = +1", "wait-for-session = +1\n", /bad value/],
    ["a sign: wait-for-session = -0", "wait-for-session = -0\n", /bad value/],
    ["a signed integer for an unknown key", "foo = -3\n", /bad value for 'foo'/],
    ["a quoted integer", "wait-for-session = '1'\n", /true, false, 0 or 1/],
    ["wait-for-session = yes", "wait-for-session = yes\n", /bad value/],
    ["capitalised True", "wait-for-session = True\n", /bad value/],
    ["truex", "wait-for-session = truex\n", /bad value/],
    ["two values", "wait-for-session = true false\n", /unexpected text/],
    ["no '='", "wait-for-session\n", /expected 'key = value'/],
    ["no value", "wait-for-session =\n", /bad value/],
    ["no key", "= true\n", /expected 'key = value'/],
    ["a dotted key", "a.b = true\n", /expected 'key = value'/],
    ["a section", "[service]\n", /expected 'key = value'/],
    ["an unterminated string", "force-user = 'root\n", /bad value/],
    ["a control character in a string", "force-user = 'a\u0001b'\n", /bad value/],
    ["CRLF line ends", "wait-for-session = true\r\n", /unexpected text/],
    ["NUL", "wait-for-session = true\0\n", /NUL/],
    [
      "force-user with skip-service-descriptor",
      "force-user = 'u'\nskip-service-descriptor = true\n",
      /conflicts with skip-service-descriptor/,
    ],
    [
      "force-user with exit-on-service-eof",
      "exit-on-service-eof = true\nforce-user = 'u'\n",
      /conflicts with exit-on-service-eof/,
    ],
    [
      "force-user with exit-on-client-eof",
      "force-user = 'u'\nexit-on-client-eof = true\n",
      /conflicts with exit-on-client-eof/,
    ],
  ];
  test.each(rejected)("%s", (_name, text, reason) => {
    const parsed = parseServiceConfig(text);
    expect(parsed.kind).toBe("error");
    expect(parsed.kind === "error" && parsed.reason).toMatch(reason);
  });
});

describe("config lookup in QUBES_RPC_CONFIG_PATH", () => {
  let root: { path: string; remove: () => void };
  let a: string;
  let b: string;
  let configPath: string;

  beforeEach(() => {
    root = tempDir("qrx-config-");
    a = join(root.path, "a");
    b = join(root.path, "b");
    mkdirSync(a);
    mkdirSync(b);
    configPath = `${a}:${b}`;
  });
  afterEach(() => root.remove());

  test("svc+arg across all directories first, then svc", () => {
    writeFileSync(join(a, "svc"), "wait-for-session = true\n");
    writeFileSync(join(b, "svc+arg"), "force-user = 'other'\n");
    expect(loadServiceConfig("svc+arg", configPath)).toEqual({
      kind: "ok",
      config: config({ forceUser: "other" }),
      unknownKeys: [],
      path: join(b, "svc+arg"),
    });
    expect(loadServiceConfig("svc+else", configPath)).toMatchObject({
      config: config({ waitForSession: true }),
      path: join(a, "svc"),
    });
  });

  test("a call without '+' looks for svc+ first", () => {
    writeFileSync(join(a, "svc"), "wait-for-session = true\n");
    writeFileSync(join(b, "svc+"), "exit-on-client-eof = true\n");
    expect(loadServiceConfig("svc", configPath)).toMatchObject({
      path: join(b, "svc+"),
      config: config({ exitOnClientEof: true }),
    });
  });

  test("no file: the defaults, with no path", () => {
    expect(loadServiceConfig("svc+arg", configPath)).toEqual({
      kind: "ok",
      config: config({}),
      unknownKeys: [],
      path: null,
    });
  });

  test("unknown keys are reported", () => {
    writeFileSync(join(a, "svc"), "future-key = 'x'\n");
    expect(loadServiceConfig("svc", configPath)).toMatchObject({
      kind: "ok",
      unknownKeys: ["future-key"],
    });
  });

  test("a bad file fails the call and names the file", () => {
    writeFileSync(join(a, "svc"), "force-user = 'u'\nexit-on-service-eof = true\n");
    expect(loadServiceConfig("svc", configPath)).toEqual({
      kind: "error",
      reason: expect.stringContaining(`${join(a, "svc")}: 'force-user' conflicts`),
    });
  });

  test("an unreadable entry (a directory) fails the call", () => {
    mkdirSync(join(a, "svc+"));
    expect(loadServiceConfig("svc", configPath)).toMatchObject({
      kind: "error",
      reason: expect.stringMatching(/cannot read/),
    });
  });

  test("a link into /dev/null/… fails the call; a dangling link is skipped", () => {
    symlinkSync(join(root.path, "missing"), join(a, "svc+"));
    writeFileSync(join(b, "svc+"), "wait-for-session = 1\n");
    expect(loadServiceConfig("svc", configPath)).toMatchObject({
      kind: "ok",
      path: join(b, "svc+"),
    });
    symlinkSync("/dev/null/x", join(a, "other"));
    expect(loadServiceConfig("other+x", configPath)).toMatchObject({
      kind: "error",
      reason: expect.stringMatching(/ENOTDIR/),
    });
  });

  test("QUBES_RPC_CONFIG_PATH, else the built-in path", () => {
    expect(defaultConfigPath({ QUBES_RPC_CONFIG_PATH: "/x" })).toBe("/x");
    expect(defaultConfigPath({})).toBe(DEFAULT_RPC_CONFIG_PATH);
  });
});
