// Trust boundaries of the control plane: the daemon's checks on what an agent sends (§7.3, §3.5),
// qube-name validity, and the local checks qrexec-client-vm makes before it sends a trigger (§10).
// Inputs are untrusted bytes; outputs are either a verdict with a reason or sanitized ASCII text.

import {
  decodeConnectionTerminated,
  decodeTrigger3,
  decodeTrigger4,
  decodeTriggerV2,
  encodeFixedField,
  encodeTrigger4,
  frame,
  type Header,
} from "./codec.ts";
import {
  DATA_PORT_MAX,
  DATA_PORT_MIN,
  DOMAIN_NAME_BYTES,
  EXEC_PARAMS_FIXED_BYTES,
  IDENT_BYTES,
  MAX_SERVICE_NAME_LEN,
  MSG_CONNECTION_TERMINATED,
  MSG_TRIGGER_SERVICE,
  MSG_TRIGGER_SERVICE3,
  MSG_TRIGGER_SERVICE4,
  QREXEC_PROTOCOL_V3,
  QREXEC_PROTOCOL_V4,
  TRIGGER3_FIXED_BYTES,
  TRIGGER4_FIXED_BYTES,
  TRIGGER_V2_BYTES,
} from "./constants.ts";

const PLUS = 0x2b;
const UNDERSCORE = 0x5f;

function isAlnum(byte: number): boolean {
  return (
    (byte >= 0x30 && byte <= 0x39) ||
    (byte >= 0x41 && byte <= 0x5a) ||
    (byte >= 0x61 && byte <= 0x7a)
  );
}

/** `[0-9A-Za-z_.-]` plus the given extra characters. */
function isNameByte(byte: number, extra: string): boolean {
  return (
    isAlnum(byte) ||
    byte === 0x5f ||
    byte === 0x2e ||
    byte === 0x2d ||
    extra.includes(String.fromCharCode(byte))
  );
}

// ---------------------------------------------------------------------------------------------
// ident (§3.5).

/** Why an ident is invalid, or null if it passes `validate_request_id`. An all-NUL ident passes. */
export function identProblem(ident: Uint8Array): string | null {
  if (ident.length !== IDENT_BYTES)
    return `ident must be ${IDENT_BYTES} bytes, got ${ident.length}`;
  const terminator = ident.indexOf(0);
  if (terminator === -1) return "ident is not NUL-terminated";
  for (let i = 0; i < terminator; i++) {
    const byte = ident[i]!;
    if (!isNameByte(byte, " ")) return `ident has invalid byte ${byte} at offset ${i}`;
  }
  for (let i = terminator + 1; i < IDENT_BYTES; i++) {
    if (ident[i] !== 0)
      return (
        `ident has non-NUL byte ${ident[i]} at offset ` +
        `${i} after its terminator at ${terminator}`
      );
  }
  return null;
}

// ---------------------------------------------------------------------------------------------
// Sanitizing (`sanitize_name`): each byte outside the allowed set becomes '_'. The result is ASCII.

function sanitize(bytes: Uint8Array, extra: string): string {
  let text = "";
  for (const byte of bytes)
    text += String.fromCharCode(isNameByte(byte, extra) ? byte : UNDERSCORE);
  return text;
}

/** A target or source field: NUL forced at its last byte, then `[A-Za-z0-9_.-@:]` kept. */
export function sanitizeDomainField(field: Uint8Array): string {
  if (field.length === 0) return "";
  const terminated = field.slice();
  terminated[terminated.length - 1] = 0;
  return sanitize(terminated.subarray(0, terminated.indexOf(0)), "@:");
}

/** A service name (without its NUL): `[A-Za-z0-9_.-+]` kept. */
export function sanitizeServiceName(name: Uint8Array): string {
  return sanitize(name, "+");
}

/** Why a service name (bytes before the terminator) cannot be requested, or null. */
function serviceNameProblem(name: Uint8Array): string | null {
  if (name.length === 0) return "empty service name";
  if (name[0] === PLUS) return "service name starts with '+'";
  return null;
}

/** The v3/v4 service area must be exactly "name\0": one NUL, as the last byte. */
function serviceTailProblem(tail: Uint8Array): string | null {
  if (tail.length === 0 || tail[tail.length - 1] !== 0) return "service name not NUL-terminated";
  if (tail.indexOf(0) !== tail.length - 1) return "service name contains an interior NUL";
  return serviceNameProblem(tail.subarray(0, tail.length - 1));
}

// ---------------------------------------------------------------------------------------------
// Messages from the agent (§7.3).

export type Fatal = { kind: "fatal"; reason: string };

export type AgentMessageVerdict =
  | Fatal
  /** Reply SERVICE_REFUSED with `ident`: the raw bytes as received, never sanitized. */
  | { kind: "refused"; ident: Uint8Array; reason: string }
  /**
   * A trigger to put to the policy. `source` is the TRIGGER4 relay field (possibly empty), or
   * null for older triggers, which carry none. `ident` is the raw 32 bytes to echo back.
   */
  | { kind: "ok"; source: string | null; target: string; service: string; ident: Uint8Array }
  | { kind: "connection-terminated"; connectDomain: number; connectPort: number };

function fatal(reason: string): Fatal {
  return { kind: "fatal", reason };
}

function checkVariableLength(header: Header, fixed: number, name: string): Fatal | null {
  if (header.len <= fixed || header.len - fixed > MAX_SERVICE_NAME_LEN) {
    return fatal(
      `${name} with len ${header.len}, expected ${fixed} < len <= ${fixed + MAX_SERVICE_NAME_LEN}`,
    );
  }
  return null;
}

/**
 * The header checks, made before the body is read. Any violation is fatal for the daemon, as is a
 * trigger type the negotiated `version` does not allow.
 */
export function checkAgentHeader(header: Header, version: number): Fatal | null {
  switch (header.type) {
    case MSG_TRIGGER_SERVICE:
      if (version >= QREXEC_PROTOCOL_V3) return fatal(`MSG_TRIGGER_SERVICE at protocol ${version}`);
      if (header.len !== TRIGGER_V2_BYTES) {
        return fatal(`MSG_TRIGGER_SERVICE with len ${header.len}, expected ${TRIGGER_V2_BYTES}`);
      }
      return null;
    case MSG_TRIGGER_SERVICE3:
      if (version < QREXEC_PROTOCOL_V3) return fatal(`MSG_TRIGGER_SERVICE3 at protocol ${version}`);
      return checkVariableLength(header, TRIGGER3_FIXED_BYTES, "MSG_TRIGGER_SERVICE3");
    case MSG_TRIGGER_SERVICE4:
      if (version < QREXEC_PROTOCOL_V4) return fatal(`MSG_TRIGGER_SERVICE4 at protocol ${version}`);
      return checkVariableLength(header, TRIGGER4_FIXED_BYTES, "MSG_TRIGGER_SERVICE4");
    case MSG_CONNECTION_TERMINATED:
      if (header.len !== EXEC_PARAMS_FIXED_BYTES) {
        return fatal(
          `MSG_CONNECTION_TERMINATED with len ${header.len}, expected ${EXEC_PARAMS_FIXED_BYTES}`,
        );
      }
      return null;
    default:
      return fatal(`unexpected message type 0x${header.type.toString(16)} from agent`);
  }
}

/** Header and body checks for one message from the agent. */
export function validateAgentMessage(
  header: Header,
  body: Uint8Array,
  version: number,
): AgentMessageVerdict {
  const headerProblem = checkAgentHeader(header, version);
  if (headerProblem) return headerProblem;
  if (body.length !== header.len)
    return fatal(`header len ${header.len} but ${body.length} body bytes`);
  switch (header.type) {
    case MSG_TRIGGER_SERVICE: {
      const trigger = decodeTriggerV2(body);
      const target = sanitizeDomainField(trigger.target);
      const nameField = trigger.service.slice();
      nameField[nameField.length - 1] = 0;
      const name = nameField.subarray(0, nameField.indexOf(0));
      return verdict(trigger.ident, null, target, name, serviceNameProblem(name));
    }
    case MSG_TRIGGER_SERVICE3: {
      const trigger = decodeTrigger3(body);
      const target = sanitizeDomainField(trigger.target);
      const name = trigger.service.subarray(0, trigger.service.length - 1);
      return verdict(
        trigger.ident,
        null,
        target,
        name,
        serviceTailProblem(trigger.service) ?? mirageIdentBug(name),
      );
    }
    case MSG_TRIGGER_SERVICE4: {
      const trigger = decodeTrigger4(body);
      const source = sanitizeDomainField(trigger.source);
      const target = sanitizeDomainField(trigger.target);
      const name = trigger.service.subarray(0, trigger.service.length - 1);
      return verdict(trigger.ident, source, target, name, serviceTailProblem(trigger.service));
    }
    default: {
      const { connectDomain, connectPort } = decodeConnectionTerminated(body);
      if (connectPort < DATA_PORT_MIN || connectPort > DATA_PORT_MAX) {
        return fatal(
          `MSG_CONNECTION_TERMINATED for port ${connectPort}, ` +
            `outside ${DATA_PORT_MIN}..${DATA_PORT_MAX}`,
        );
      }
      return { kind: "connection-terminated", connectDomain, connectPort };
    }
  }
}

/**
 * mirage-qubes request ids are "MIRAGE" and 25 digits (§3.5); its TRIGGER3 puts the request id
 * where the service name belongs (§14, bug 2). Upstream's daemon would put a service of that
 * name to the policy; we refuse it and say why.
 */
export const MIRAGE_IDENT_AS_SERVICE = /^MIRAGE[0-9]{25}$/;

export const MIRAGE_TRIGGER3_BUG =
  "peer protocol error: TRIGGER3 carries the request " +
  "id in the service-name field (mirage-qubes 2.0 bug)";

function mirageIdentBug(name: Uint8Array): string | null {
  return MIRAGE_IDENT_AS_SERVICE.test(String.fromCharCode(...name.subarray(0, 64))) &&
    name.length === 31
    ? MIRAGE_TRIGGER3_BUG
    : null;
}

/** The ident is checked before the service name, as upstream does. */
function verdict(
  ident: Uint8Array,
  source: string | null,
  target: string,
  name: Uint8Array,
  nameProblem: string | null,
): AgentMessageVerdict {
  const problem = identProblem(ident) ?? nameProblem;
  if (problem) return { kind: "refused", ident, reason: problem };
  return { kind: "ok", source, target, service: sanitizeServiceName(name), ident };
}

// ---------------------------------------------------------------------------------------------
// Qube names (`[LU qrexec-lib/qube-name.c]`).

const RESERVED_QUBE_NAMES = new Set(["none", "default", "Domain-0"]);
const QUBE_NAME_LENGTH_MAX = 31;

/** Why `name` is not a valid qube name, or null. */
export function qubeNameProblem(name: string): string | null {
  if (name.length < 1 || name.length > QUBE_NAME_LENGTH_MAX) {
    return `qube name must be 1..${QUBE_NAME_LENGTH_MAX} characters, got ${name.length}`;
  }
  if (!/^[A-Za-z]/.test(name)) return "qube name must start with a letter";
  if (!/^[A-Za-z0-9_.-]+$/.test(name)) return "qube name may contain only [A-Za-z0-9_.-]";
  if (name.endsWith("-dm")) return "qube names ending in '-dm' are reserved";
  if (RESERVED_QUBE_NAMES.has(name)) return `qube name '${name}' is reserved`;
  return null;
}

// ---------------------------------------------------------------------------------------------
// qrexec-client-vm (§10).

const CLIENT_REQUEST_ID = "SOCKET";

/**
 * TARGET as qrexec-client-vm sends it: every '$' becomes '@', empty means "@default", and only
 * the first 63 bytes are kept (silently, as upstream). Returns the 64-byte target_domain field.
 */
export function encodeClientTarget(target: string): Uint8Array {
  return encodeFixedField(
    target === "" ? "@default" : target.replaceAll("$", "@"),
    DOMAIN_NAME_BYTES,
  );
}

/**
 * Why SERVICE[+ARG] cannot be requested, or null. These are the daemon's refusal rules, checked
 * locally so that a bad request fails with a clear message instead of a bare "Request refused".
 */
export function clientServiceProblem(service: string): string | null {
  if (service === "") return "service name is empty";
  if (service.startsWith("+")) return "service name must not start with '+'";
  if (service.includes("\0")) return "service name must not contain NUL";
  const areaBytes = Buffer.byteLength(service, "utf8") + 1;
  if (areaBytes > MAX_SERVICE_NAME_LEN) {
    return `service name is too long (${areaBytes - 1} bytes, at most ${MAX_SERVICE_NAME_LEN - 1})`;
  }
  return null;
}

export interface ClientTriggerRequest {
  target: string;
  service: string;
  /** `--source-qube`; empty when unused. */
  source?: string;
}

/** The whole TRIGGER4 message qrexec-client-vm writes to the agent socket, or why it may not. */
export function buildClientTrigger(
  request: ClientTriggerRequest,
): { kind: "ok"; message: Uint8Array } | { kind: "invalid"; reason: string } {
  const problem = clientServiceProblem(request.service);
  if (problem) return { kind: "invalid", reason: problem };
  if (request.target.includes("\0"))
    return { kind: "invalid", reason: "target must not contain NUL" };
  if ((request.source ?? "").includes("\0"))
    return { kind: "invalid", reason: "source qube must not contain NUL" };
  const payload = encodeTrigger4({
    source: request.source ?? "",
    target: encodeClientTarget(request.target),
    ident: CLIENT_REQUEST_ID,
    service: request.service,
  });
  return { kind: "ok", message: frame(MSG_TRIGGER_SERVICE4, payload) };
}
