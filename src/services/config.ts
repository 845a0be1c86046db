// Per-service configuration (§5.4): the strict TOML subset of `[Q libqrexec/toml.c]` and the
// lookup in QUBES_RPC_CONFIG_PATH. Every failure means the call fails with 125; a missing file
// means the defaults.

import { readFileSync } from "node:fs";
import { DEFAULT_RPC_CONFIG_PATH } from "../protocol/constants.ts";
import { findFile } from "./lookup.ts";

export interface ServiceConfig {
  waitForSession: boolean;
  forceUser: string | null;
  /** Socket/TCP services only: do not send the service descriptor. */
  skipServiceDescriptor: boolean;
  /** Socket/TCP services only. */
  exitOnServiceEof: boolean;
  /** Socket/TCP services only. */
  exitOnClientEof: boolean;
}

export const DEFAULT_SERVICE_CONFIG: Readonly<ServiceConfig> = Object.freeze({
  waitForSession: false,
  forceUser: null,
  skipServiceDescriptor: false,
  exitOnServiceEof: false,
  exitOnClientEof: false,
});

export type ParsedConfig =
  /** `unknownKeys` were ignored and should be logged. */
  { kind: "ok"; config: ServiceConfig; unknownKeys: string[] } | { kind: "error"; reason: string };

export type LoadedConfig =
  /** `path` is null when no file exists and the defaults apply. */
  | { kind: "ok"; config: ServiceConfig; unknownKeys: string[]; path: string | null }
  | { kind: "error"; reason: string };

export function defaultConfigPath(env: NodeJS.ProcessEnv = process.env): string {
  return env.QUBES_RPC_CONFIG_PATH ?? DEFAULT_RPC_CONFIG_PATH;
}

// ---------------------------------------------------------------------------------------------
// The TOML subset: "key = value" lines, '#' comments, no sections, no leading whitespace, values
// true/false, integers and 'single-quoted' strings.

type Value =
  | { type: "bool"; value: boolean }
  | { type: "integer"; value: number }
  | { type: "string"; value: string };

const LINE = /^([A-Za-z0-9_-]+)[ \t]*=[ \t]*(.*)$/s;
/** Digits only, as upstream's parser: no sign, no leading zero (`+1`, `-0`, `01` are errors). */
const INTEGER = /^(0|[1-9][0-9]*)/;
/** A literal string: no quote and no control character except tab inside. */
const LITERAL_STRING = /^'([^'\x00-\x08\x0a-\x1f\x7f]*)'/;

/** The value at the start of `text` and what follows it, or null if none parses. */
function parseValue(text: string): { value: Value; rest: string } | null {
  for (const word of ["true", "false"]) {
    if (text.startsWith(word) && !/^[A-Za-z0-9_-]/.test(text.slice(word.length))) {
      return { value: { type: "bool", value: word === "true" }, rest: text.slice(word.length) };
    }
  }
  const integer = INTEGER.exec(text);
  if (integer)
    return {
      value: { type: "integer", value: Number(integer[0]) },
      rest: text.slice(integer[0].length),
    };
  const string = LITERAL_STRING.exec(text);
  if (string)
    return { value: { type: "string", value: string[1]! }, rest: text.slice(string[0].length) };
  return null;
}

type FlagKey = "waitForSession" | "skipServiceDescriptor" | "exitOnServiceEof" | "exitOnClientEof";

const FLAG_KEYS = new Map<string, FlagKey>([
  ["wait-for-session", "waitForSession"],
  ["skip-service-descriptor", "skipServiceDescriptor"],
  ["exit-on-service-eof", "exitOnServiceEof"],
  ["exit-on-client-eof", "exitOnClientEof"],
]);

function isKnownKey(key: string): boolean {
  return key === "force-user" || FLAG_KEYS.has(key);
}

/** Stores a known key's value, or says why the value has the wrong type. */
function applyKey(config: ServiceConfig, key: string, value: Value): string | null {
  if (key === "force-user") {
    if (value.type !== "string") return "'force-user' must be a 'string'";
    config.forceUser = value.value;
    return null;
  }
  const field = FLAG_KEYS.get(key)!;
  if (value.type === "bool") {
    config[field] = value.value;
    return null;
  }
  // Only wait-for-session also accepts the integers 0 and 1 (qubes.StartApp uses 1).
  if (
    key === "wait-for-session" &&
    value.type === "integer" &&
    (value.value === 0 || value.value === 1)
  ) {
    config[field] = value.value === 1;
    return null;
  }
  return key === "wait-for-session"
    ? `'${key}' must be true, false, 0 or 1`
    : `'${key}' must be true or false`;
}

function parseError(lineNumber: number, reason: string): ParsedConfig {
  return { kind: "error", reason: `line ${lineNumber}: ${reason}` };
}

export function parseServiceConfig(text: string): ParsedConfig {
  if (text.includes("\0")) return { kind: "error", reason: "config contains NUL" };
  const config: ServiceConfig = { ...DEFAULT_SERVICE_CONFIG };
  const unknownKeys: string[] = [];
  const seen = new Set<string>();
  const lines = text.split("\n");
  if (lines[lines.length - 1] === "") lines.pop();

  for (const [index, line] of lines.entries()) {
    const lineNumber = index + 1;
    if (line === "" || line.startsWith("#")) continue;
    if (/^[ \t]/.test(line)) return parseError(lineNumber, "leading whitespace is not supported");
    const match = LINE.exec(line);
    if (!match)
      return parseError(lineNumber, `expected 'key = value', got ${JSON.stringify(line)}`);
    const key = match[1]!;
    // The value is parsed before the key is looked at, so an unknown key with a bad value fails.
    const parsed = parseValue(match[2]!);
    if (!parsed)
      return parseError(lineNumber, `bad value for '${key}': ${JSON.stringify(match[2])}`);
    if (!/^[ \t]*(#.*)?$/.test(parsed.rest)) {
      return parseError(
        lineNumber,
        `unexpected text after the value of '${key}': ${JSON.stringify(parsed.rest)}`,
      );
    }
    if (seen.has(key)) return parseError(lineNumber, `duplicate key '${key}'`);
    seen.add(key);
    if (!isKnownKey(key)) {
      unknownKeys.push(key);
      continue;
    }
    const problem = applyKey(config, key, parsed.value);
    if (problem !== null) return parseError(lineNumber, problem);
  }

  if (config.forceUser !== null) {
    const socketOnly = (
      [
        ["skip-service-descriptor", config.skipServiceDescriptor],
        ["exit-on-service-eof", config.exitOnServiceEof],
        ["exit-on-client-eof", config.exitOnClientEof],
      ] as const
    ).filter(([, set]) => set);
    if (socketOnly.length > 0) {
      const keys = socketOnly.map(([key]) => key).join(", ");
      return { kind: "error", reason: `'force-user' conflicts with ${keys}` };
    }
  }
  return { kind: "ok", config, unknownKeys };
}

// ---------------------------------------------------------------------------------------------
// Lookup: "svc+arg" across every directory first, then "svc". A call without an argument is
// looked up as "svc+" first, as for the service itself.

export function loadServiceConfig(
  descriptor: string,
  configPath: string = defaultConfigPath(),
): LoadedConfig {
  const serviceDescriptor = descriptor.includes("+") ? descriptor : `${descriptor}+`;
  const serviceName = serviceDescriptor.slice(0, serviceDescriptor.indexOf("+"));
  let found = findFile(configPath, serviceDescriptor);
  if (found.kind === "absent") found = findFile(configPath, serviceName);
  if (found.kind === "absent")
    return { kind: "ok", config: { ...DEFAULT_SERVICE_CONFIG }, unknownKeys: [], path: null };
  if (found.kind === "error") return { kind: "error", reason: found.reason };

  let text: string;
  try {
    text = readFileSync(found.path, "utf8");
  } catch (error) {
    return {
      kind: "error",
      reason: `cannot read ${found.path}: ${error instanceof Error ? error.message : error}`,
    };
  }
  const parsed = parseServiceConfig(text);
  if (parsed.kind === "error") return { kind: "error", reason: `${found.path}: ${parsed.reason}` };
  return { ...parsed, path: found.path };
}
