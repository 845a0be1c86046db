// The command text carried by MSG_EXEC_CMDLINE (§3.6): parsing as `parse_qubes_rpc_command` does,
// the argument-count check made before an executable service runs, and the builders for the
// commands the daemon sends. Lengths are counted in UTF-8 bytes, as on the wire.

import { ProtocolError } from "./codec.ts";
import {
  DEFAULT_USER_PREFIX,
  MAX_SERVICE_NAME_LEN,
  NAME_MAX,
  NOGUI_COMMAND_PREFIX,
  RPC_REQUEST_COMMAND,
} from "./constants.ts";

/** The requested target passed to a dom0 service as the `name|keyword TARGET` tokens. */
export interface RequestedTarget {
  type: "name" | "keyword";
  target: string;
}

export interface RpcCommand {
  kind: "rpc";
  /** Text before the first ':', or null when the command carried no user (dom0). */
  user: string | null;
  nogui: boolean;
  /** Everything after "QUBESRPC ": what a socket service is sent (plus a NUL), never the user. */
  socketDescriptor: string;
  /** The descriptor as received, e.g. "qubes.Svc" or "qubes.Svc+arg" (QREXEC_SERVICE_FULL_NAME). */
  descriptor: string;
  /** The descriptor used for lookups: '+' appended when the received one has none. */
  serviceDescriptor: string;
  /** The part before the first '+': 1..255 bytes. */
  serviceName: string;
  /** The part after the first '+', or null when the received descriptor has no '+'. */
  argument: string | null;
  source: string;
}

export interface LegacyCommand {
  kind: "legacy";
  user: string | null;
  nogui: boolean;
  /** A shell command line. */
  command: string;
}

export type ParsedCommand = RpcCommand | LegacyCommand | { kind: "invalid"; reason: string };

function byteLength(text: string): number {
  return Buffer.byteLength(text, "utf8");
}

function invalid(reason: string): { kind: "invalid"; reason: string } {
  return { kind: "invalid", reason };
}

/**
 * Parses a command. `stripUser` is true in a VM, where the command must start with "USER:"; dom0
 * commands carry no user. Only a "QUBESRPC" prefix makes a service call; anything else is a legacy
 * shell command, but "QUBESRPC" not followed by exactly one space is an error.
 */
export function parseCommand(cmdline: string, options: { stripUser: boolean }): ParsedCommand {
  let rest = cmdline;
  let user: string | null = null;
  if (options.stripUser) {
    const colon = rest.indexOf(":");
    if (colon === -1) return invalid("command has no 'user:' prefix");
    user = rest.slice(0, colon);
    rest = rest.slice(colon + 1);
  }
  const nogui = rest.startsWith(NOGUI_COMMAND_PREFIX);
  if (nogui) rest = rest.slice(NOGUI_COMMAND_PREFIX.length);
  if (!rest.startsWith(RPC_REQUEST_COMMAND)) return { kind: "legacy", user, nogui, command: rest };

  rest = rest.slice(RPC_REQUEST_COMMAND.length);
  if (!rest.startsWith(" ")) return invalid(`no space after ${RPC_REQUEST_COMMAND}`);
  const socketDescriptor = rest.slice(1);

  const descriptorEnd = socketDescriptor.indexOf(" ");
  if (descriptorEnd === -1) return invalid("no space after the service descriptor");
  const descriptor = socketDescriptor.slice(0, descriptorEnd);
  if (byteLength(descriptor) > MAX_SERVICE_NAME_LEN) {
    return invalid(
      `service descriptor too long (${byteLength(descriptor)} ` +
        `bytes, at most ${MAX_SERVICE_NAME_LEN})`,
    );
  }
  const plus = descriptor.indexOf("+");
  const serviceName = plus === -1 ? descriptor : descriptor.slice(0, plus);
  if (serviceName === "") return invalid("service name is empty");
  if (byteLength(serviceName) > NAME_MAX) {
    return invalid(`service name too long (${byteLength(serviceName)} bytes, at most ${NAME_MAX})`);
  }

  const afterDescriptor = socketDescriptor.slice(descriptorEnd + 1);
  const sourceEnd = afterDescriptor.indexOf(" ");
  const source = sourceEnd === -1 ? afterDescriptor : afterDescriptor.slice(0, sourceEnd);
  if (source === "") return invalid("source domain is empty");

  return {
    kind: "rpc",
    user,
    nogui,
    socketDescriptor,
    descriptor,
    serviceDescriptor: plus === -1 ? `${descriptor}+` : descriptor,
    serviceName,
    argument: plus === -1 ? null : descriptor.slice(plus + 1),
    source,
  };
}

/**
 * The tokens after "QUBESRPC" an executable service is given: 2 (VM form) or 4 (dom0 form, with
 * `name|keyword TARGET`), split on runs of spaces like `strtok`. The check is "2 or 4" wherever the
 * service runs. Any other count fails with 125.
 */
export function executableArguments(
  command: RpcCommand,
): { kind: "ok"; requestedTarget: RequestedTarget | null } | { kind: "invalid"; reason: string } {
  const tokens = command.socketDescriptor.split(" ").filter((token) => token !== "");
  if (tokens.length === 2) return { kind: "ok", requestedTarget: null };
  if (tokens.length !== 4)
    return invalid(`service command has ${tokens.length} arguments, expected 2 or 4`);
  const [, , type, target] = tokens as [string, string, string, string];
  if (type !== "name" && type !== "keyword")
    return invalid(`requested target type '${type}' is not name or keyword`);
  return { kind: "ok", requestedTarget: { type, target } };
}

/** The daemon replaces a leading "DEFAULT:" with its default user (§7.2). */
export function substituteDefaultUser(command: string, defaultUser: string): string {
  if (!command.startsWith(DEFAULT_USER_PREFIX)) return command;
  return `${defaultUser}:${command.slice(DEFAULT_USER_PREFIX.length)}`;
}

/** "@adminvm" → keyword "adminvm"; "dom0" → name "dom0" (§2.2). */
export function requestedTargetOf(requestedTarget: string): RequestedTarget {
  return requestedTarget.startsWith("@")
    ? { type: "keyword", target: requestedTarget.slice(1) }
    : { type: "name", target: requestedTarget };
}

function requireToken(value: string, what: string): void {
  if (value === "") throw new ProtocolError(`${what} is empty`);
  if (/[ \0]/.test(value))
    throw new ProtocolError(`${what} must not contain a space or NUL: '${value}'`);
}

/** The service descriptor with '+' appended when it has none. */
function withPlus(service: string): string {
  return service.includes("+") ? service : `${service}+`;
}

/** The command the daemon sends to a target VM: "<user>:QUBESRPC <svc>[+] <source>" (§2.1). */
export function buildVmServiceCommand(request: {
  user: string;
  service: string;
  source: string;
}): string {
  if (request.user === "" || /[:\0]/.test(request.user)) {
    throw new ProtocolError(`user must be non-empty with no ':' or NUL: '${request.user}'`);
  }
  requireToken(request.service, "service");
  requireToken(request.source, "source");
  return `${request.user}:${RPC_REQUEST_COMMAND} ${withPlus(request.service)} ${request.source}`;
}

/**
 * The command for a call into dom0: "QUBESRPC <svc>[+] <source> <name|keyword> <target>" (§2.2).
 */
export function buildDom0ServiceCommand(request: {
  service: string;
  source: string;
  requestedTarget: string;
}): string {
  requireToken(request.service, "service");
  requireToken(request.source, "source");
  const { type, target } = requestedTargetOf(request.requestedTarget);
  requireToken(target, "requested target");
  return `${RPC_REQUEST_COMMAND} ${withPlus(request.service)} ${request.source} ${type} ${target}`;
}
