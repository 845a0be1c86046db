// Encode and decode qrexec messages (spec §3, §4, §15.1). Pure: no I/O. Every integer is a
// little-endian u32 (the exit code is an i32). Decoders take untrusted bytes: they check lengths
// before reading and throw ProtocolError instead of reading out of bounds. They check structure
// only; the daemon's acceptance rules for triggers live in validate.ts.

import {
  DOMAIN_NAME_BYTES,
  DOMAIN_NAME_V2_BYTES,
  EXEC_PARAMS_FIXED_BYTES,
  EXIT_CODE_BYTES,
  HEADER_BYTES,
  IDENT_BYTES,
  MAX_DATA_CHUNK_V2,
  MAX_DATA_CHUNK_V3,
  MSG_CONNECTION_TERMINATED,
  MSG_DATA_EXIT_CODE,
  MSG_DATA_STDERR,
  MSG_DATA_STDIN,
  MSG_DATA_STDOUT,
  MSG_EXEC_CMDLINE,
  MSG_HELLO,
  MSG_JUST_EXEC,
  MSG_SERVICE_CONNECT,
  MSG_SERVICE_REFUSED,
  MSG_TRIGGER_SERVICE,
  MSG_TRIGGER_SERVICE3,
  MSG_TRIGGER_SERVICE4,
  PEER_INFO_BYTES,
  QREXEC_EXIT_NO_STATUS,
  QREXEC_PROTOCOL_V2,
  QREXEC_PROTOCOL_V3,
  QREXEC_PROTOCOL_V4,
  QREXEC_PROTOCOL_VERSION_MIN,
  SERVICE_NAME_V2_BYTES,
  SERVICE_PARAMS_BYTES,
  TRIGGER3_FIXED_BYTES,
  TRIGGER4_FIXED_BYTES,
  TRIGGER_V2_BYTES,
} from "./constants.ts";

/** A peer sent bytes that do not form a valid message, or a message cannot be built. */
export class ProtocolError extends Error {
  override name = "ProtocolError";
}

const utf8Encoder = new TextEncoder();
const utf8Decoder = new TextDecoder();
const U32_MAX = 0xffff_ffff;

// ---------------------------------------------------------------------------------------------
// Little-endian integers and fixed char fields.

function view(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function checkU32(value: number, what: string): void {
  if (!Number.isInteger(value) || value < 0 || value > U32_MAX) {
    throw new ProtocolError(`${what} must be a u32, got ${value}`);
  }
}

function writeU32(bytes: Uint8Array, offset: number, value: number, what: string): void {
  checkU32(value, what);
  view(bytes).setUint32(offset, value, true);
}

function readU32(bytes: Uint8Array, offset: number): number {
  return view(bytes).getUint32(offset, true);
}

function requireLength(payload: Uint8Array, expected: number, what: string): void {
  if (payload.length !== expected) {
    throw new ProtocolError(`${what}: expected ${expected} bytes, got ${payload.length}`);
  }
}

function requireMinLength(payload: Uint8Array, minimum: number, what: string): void {
  if (payload.length < minimum) {
    throw new ProtocolError(`${what}: expected at least ${minimum} bytes, got ${payload.length}`);
  }
}

/**
 * The value of a fixed `char[N]` field. A string is text: the field is zero-filled and at most
 * N−1 of its bytes are copied, as the C senders do with strncpy. A Uint8Array is a field received
 * earlier and echoed back verbatim (for example the raw ident in SERVICE_REFUSED), so it must be
 * exactly N bytes.
 */
export type FixedField = string | Uint8Array;

export function encodeFixedField(value: FixedField, size: number): Uint8Array {
  if (value instanceof Uint8Array) {
    if (value.length !== size) {
      throw new ProtocolError(
        `a raw ${size}-byte field must be ${size} bytes, got ${value.length}`,
      );
    }
    return value.slice();
  }
  const text = utf8Encoder.encode(value);
  if (text.includes(0)) throw new ProtocolError(`text for a ${size}-byte field contains NUL`);
  const field = new Uint8Array(size);
  field.set(text.subarray(0, size - 1));
  return field;
}

/** The bytes of a C string: everything before the first NUL, or all bytes if there is none. */
export function cString(bytes: Uint8Array): Uint8Array {
  const end = bytes.indexOf(0);
  return end === -1 ? bytes : bytes.subarray(0, end);
}

/** The text of a fixed char field (bytes before the first NUL), decoded as UTF-8. */
export function fieldText(bytes: Uint8Array): string {
  return utf8Decoder.decode(cString(bytes));
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const total = parts.reduce((sum, part) => sum + part.length, 0);
  const out = new Uint8Array(total);
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

/** Text plus its terminating NUL; the text itself must not contain NUL. */
function nulTerminated(text: string, what: string): Uint8Array {
  const bytes = utf8Encoder.encode(text);
  if (bytes.includes(0)) throw new ProtocolError(`${what} contains NUL`);
  return concat(bytes, new Uint8Array(1));
}

// ---------------------------------------------------------------------------------------------
// Header and framing (§3.1).

export interface Header {
  type: number;
  len: number;
}

export function encodeHeader(header: Header): Uint8Array {
  const bytes = new Uint8Array(HEADER_BYTES);
  writeU32(bytes, 0, header.type, "header type");
  writeU32(bytes, 4, header.len, "header len");
  return bytes;
}

/** Reads the first 8 bytes as a header. */
export function decodeHeader(bytes: Uint8Array): Header {
  requireMinLength(bytes, HEADER_BYTES, "header");
  return { type: readU32(bytes, 0), len: readU32(bytes, 4) };
}

/** A whole message: header with `len = payload.length`, then the payload. */
export function frame(type: number, payload: Uint8Array = new Uint8Array(0)): Uint8Array {
  return concat(encodeHeader({ type, len: payload.length }), payload);
}

export interface Frame {
  header: Header;
  payload: Uint8Array;
  /** Bytes of `bytes` this frame used (header plus payload). */
  consumed: number;
}

/**
 * Splits one message off the front of a byte stream; null if more bytes are needed. A header
 * announcing more than `payloadBytesMax` is an error at once, so a hostile length never makes the
 * caller buffer without bound.
 */
export function readFrame(bytes: Uint8Array, payloadBytesMax: number): Frame | null {
  if (bytes.length < HEADER_BYTES) return null;
  const header = decodeHeader(bytes);
  if (header.len > payloadBytesMax) {
    throw new ProtocolError(
      `message type 0x${header.type.toString(16)} announces ` +
        `${header.len} bytes, limit ${payloadBytesMax}`,
    );
  }
  const consumed = HEADER_BYTES + header.len;
  if (bytes.length < consumed) return null;
  return { header, payload: bytes.subarray(HEADER_BYTES, consumed), consumed };
}

// ---------------------------------------------------------------------------------------------
// Versions (§4).

/** The negotiated version: min(own, peer), which must be at least 2. */
export function negotiateVersion(own: number, peer: number): number {
  const version = Math.min(own, peer);
  if (version < QREXEC_PROTOCOL_VERSION_MIN) {
    throw new ProtocolError(
      `protocol version ${version} (own ${own}, peer ${peer}) ` +
        `is below the minimum ${QREXEC_PROTOCOL_VERSION_MIN}`,
    );
  }
  return version;
}

/** The data payload limit after negotiating `version`. */
export function maxDataChunk(version: number): number {
  if (version < QREXEC_PROTOCOL_VERSION_MIN)
    throw new ProtocolError(`unsupported protocol version ${version}`);
  return version === QREXEC_PROTOCOL_V2 ? MAX_DATA_CHUNK_V2 : MAX_DATA_CHUNK_V3;
}

// ---------------------------------------------------------------------------------------------
// HELLO (peer_info).

export function encodePeerInfo(version: number): Uint8Array {
  const bytes = new Uint8Array(PEER_INFO_BYTES);
  writeU32(bytes, 0, version, "protocol version");
  return bytes;
}

export function helloMessage(version: number): Uint8Array {
  return frame(MSG_HELLO, encodePeerInfo(version));
}

/** The peer's version. A wrong type or a len other than 4 is fatal for the connection (§4.2). */
export function decodeHello(header: Header, payload: Uint8Array): number {
  if (header.type !== MSG_HELLO) {
    throw new ProtocolError(`expected MSG_HELLO, got type 0x${header.type.toString(16)}`);
  }
  if (header.len !== PEER_INFO_BYTES)
    throw new ProtocolError(`MSG_HELLO with len ${header.len}, expected 4`);
  requireLength(payload, PEER_INFO_BYTES, "MSG_HELLO payload");
  return readU32(payload, 0);
}

// ---------------------------------------------------------------------------------------------
// exec_params, commands, SERVICE_CONNECT, CONNECTION_TERMINATED (§3.3).

export interface ExecParams {
  connectDomain: number;
  connectPort: number;
}

export function encodeExecParams(params: ExecParams): Uint8Array {
  const bytes = new Uint8Array(EXEC_PARAMS_FIXED_BYTES);
  writeU32(bytes, 0, params.connectDomain, "connect_domain");
  writeU32(bytes, 4, params.connectPort, "connect_port");
  return bytes;
}

/** exec_params and whatever follows it (the cmdline position), uninterpreted. */
export function decodeExecParams(payload: Uint8Array): ExecParams & { tail: Uint8Array } {
  requireMinLength(payload, EXEC_PARAMS_FIXED_BYTES, "exec_params");
  return {
    connectDomain: readU32(payload, 0),
    connectPort: readU32(payload, 4),
    tail: payload.subarray(EXEC_PARAMS_FIXED_BYTES),
  };
}

/** Payload of MSG_EXEC_CMDLINE / MSG_JUST_EXEC: exec_params + command + NUL. */
export function encodeExecCommand(params: ExecParams, command: string): Uint8Array {
  return concat(encodeExecParams(params), nulTerminated(command, "command"));
}

/**
 * How a receiver treats the command's terminator. "strict" (the daemon, §7.2) requires a
 * non-empty command area whose last byte is NUL. "terminate" (the agent, §5.1) overwrites the last
 * byte with NUL, as `cmdline[len-9]=0` does, and so never fails on it.
 */
export type CommandTermination = "strict" | "terminate";

export interface ExecCommand extends ExecParams {
  /** The command up to its first NUL. */
  command: string;
}

export function decodeExecCommand(
  payload: Uint8Array,
  termination: CommandTermination,
): ExecCommand {
  const { connectDomain, connectPort, tail } = decodeExecParams(payload);
  if (tail.length === 0) throw new ProtocolError("exec request without a command");
  if (termination === "strict" && tail[tail.length - 1] !== 0) {
    throw new ProtocolError("exec request command is not NUL-terminated");
  }
  const body = tail.subarray(0, tail.length - 1);
  return { connectDomain, connectPort, command: fieldText(body) };
}

/** Payload of MSG_SERVICE_CONNECT: exec_params + ident[32]. */
export function encodeServiceConnect(params: ExecParams, ident: FixedField): Uint8Array {
  return concat(encodeExecParams(params), encodeFixedField(ident, IDENT_BYTES));
}

/**
 * Every sender puts a full 32-byte ident after exec_params. A shorter one is accepted and
 * zero-padded: the daemon compares it with `strncmp` over the payload length, which is the same
 * comparison as against the padded field. "strict" (the daemon) also requires the last byte to be
 * NUL, as for every message on its socket; the agent only reads "SOCKET<n>" out of it.
 */
export function decodeServiceConnect(
  payload: Uint8Array,
  termination: CommandTermination = "strict",
): ExecParams & { ident: Uint8Array } {
  const { connectDomain, connectPort, tail } = decodeExecParams(payload);
  if (tail.length === 0 || tail.length > IDENT_BYTES) {
    throw new ProtocolError(
      `MSG_SERVICE_CONNECT ident of ${tail.length} bytes, expected 1..${IDENT_BYTES}`,
    );
  }
  if (termination === "strict" && tail[tail.length - 1] !== 0) {
    throw new ProtocolError("MSG_SERVICE_CONNECT ident is not NUL-terminated");
  }
  const ident = new Uint8Array(IDENT_BYTES);
  ident.set(tail);
  return { connectDomain, connectPort, ident };
}

export function encodeConnectionTerminated(params: ExecParams): Uint8Array {
  return encodeExecParams(params);
}

export function decodeConnectionTerminated(payload: Uint8Array): ExecParams {
  requireLength(payload, EXEC_PARAMS_FIXED_BYTES, "MSG_CONNECTION_TERMINATED");
  const { connectDomain, connectPort } = decodeExecParams(payload);
  return { connectDomain, connectPort };
}

// ---------------------------------------------------------------------------------------------
// service_params (SERVICE_REFUSED).

export function encodeServiceParams(ident: FixedField): Uint8Array {
  return encodeFixedField(ident, SERVICE_PARAMS_BYTES);
}

/** The raw 32-byte ident. */
export function decodeServiceParams(payload: Uint8Array): Uint8Array {
  requireLength(payload, SERVICE_PARAMS_BYTES, "service_params");
  return payload.slice();
}

// ---------------------------------------------------------------------------------------------
// Exit code.

export function encodeExitCode(status: number): Uint8Array {
  if (!Number.isInteger(status) || status < -0x8000_0000 || status > 0x7fff_ffff) {
    throw new ProtocolError(`exit status must be an i32, got ${status}`);
  }
  const bytes = new Uint8Array(EXIT_CODE_BYTES);
  view(bytes).setInt32(0, status, true);
  return bytes;
}

/** The first 4 bytes as an i32; a shorter payload means status 255 (`remote.c`). */
export function decodeExitCode(payload: Uint8Array): number {
  if (payload.length < EXIT_CODE_BYTES) return QREXEC_EXIT_NO_STATUS;
  return view(payload).getInt32(0, true);
}

// ---------------------------------------------------------------------------------------------
// Trigger messages. Decoded fields are raw bytes; validate.ts turns them into trusted text.

/** trigger_service_params (protocol 2): fixed fields only, 128 bytes. */
export interface TriggerV2 {
  service: Uint8Array; // 64
  target: Uint8Array; // 32
  ident: Uint8Array; // 32
}

/** trigger_service_params3 + name: `service` is the raw tail, normally "name\0". */
export interface Trigger3 {
  target: Uint8Array; // 64
  ident: Uint8Array; // 32
  service: Uint8Array;
}

export interface Trigger4 extends Trigger3 {
  source: Uint8Array; // 64
}

/** A service name to send: a string gets its NUL appended; a Uint8Array is a received tail. */
export type ServiceName = string | Uint8Array;

export interface TriggerV2Fields {
  service: FixedField;
  target: FixedField;
  ident: FixedField;
}

export interface Trigger3Fields {
  target: FixedField;
  ident: FixedField;
  service: ServiceName;
}

export interface Trigger4Fields extends Trigger3Fields {
  source: FixedField;
}

function serviceTail(service: ServiceName): Uint8Array {
  const tail =
    service instanceof Uint8Array ? service.slice() : nulTerminated(service, "service name");
  if (tail.length === 0) throw new ProtocolError("empty service name area");
  return tail;
}

export function encodeTriggerV2(fields: TriggerV2Fields): Uint8Array {
  return concat(
    encodeFixedField(fields.service, SERVICE_NAME_V2_BYTES),
    encodeFixedField(fields.target, DOMAIN_NAME_V2_BYTES),
    encodeFixedField(fields.ident, IDENT_BYTES),
  );
}

export function decodeTriggerV2(payload: Uint8Array): TriggerV2 {
  requireLength(payload, TRIGGER_V2_BYTES, "MSG_TRIGGER_SERVICE");
  const targetStart = SERVICE_NAME_V2_BYTES;
  const identStart = targetStart + DOMAIN_NAME_V2_BYTES;
  return {
    service: payload.slice(0, targetStart),
    target: payload.slice(targetStart, identStart),
    ident: payload.slice(identStart, TRIGGER_V2_BYTES),
  };
}

export function encodeTrigger3(fields: Trigger3Fields): Uint8Array {
  return concat(
    encodeFixedField(fields.target, DOMAIN_NAME_BYTES),
    encodeFixedField(fields.ident, IDENT_BYTES),
    serviceTail(fields.service),
  );
}

export function decodeTrigger3(payload: Uint8Array): Trigger3 {
  requireMinLength(payload, TRIGGER3_FIXED_BYTES + 1, "MSG_TRIGGER_SERVICE3");
  return {
    target: payload.slice(0, DOMAIN_NAME_BYTES),
    ident: payload.slice(DOMAIN_NAME_BYTES, TRIGGER3_FIXED_BYTES),
    service: payload.slice(TRIGGER3_FIXED_BYTES),
  };
}

export function encodeTrigger4(fields: Trigger4Fields): Uint8Array {
  return concat(
    encodeFixedField(fields.source, DOMAIN_NAME_BYTES),
    encodeFixedField(fields.target, DOMAIN_NAME_BYTES),
    encodeFixedField(fields.ident, IDENT_BYTES),
    serviceTail(fields.service),
  );
}

export function decodeTrigger4(payload: Uint8Array): Trigger4 {
  requireMinLength(payload, TRIGGER4_FIXED_BYTES + 1, "MSG_TRIGGER_SERVICE4");
  const identStart = 2 * DOMAIN_NAME_BYTES;
  return {
    source: payload.slice(0, DOMAIN_NAME_BYTES),
    target: payload.slice(DOMAIN_NAME_BYTES, identStart),
    ident: payload.slice(identStart, TRIGGER4_FIXED_BYTES),
    service: payload.slice(TRIGGER4_FIXED_BYTES),
  };
}

// ---------------------------------------------------------------------------------------------
// Trigger downgrade (§15.1): the agent receives TRIGGER4 from qrexec-client-vm whatever the
// daemon speaks; upstream forwards it as is, which kills a v3 daemon. We translate instead.

/** TRIGGER4 → TRIGGER3. Only possible when the relay field `source` is empty. */
export function trigger4To3(trigger: Trigger4): Trigger3 {
  const source = cString(trigger.source);
  if (source.length > 0) {
    throw new ProtocolError(
      `cannot send a source qube ("${fieldText(source)}") to a daemon older than protocol 4`,
    );
  }
  return {
    target: trigger.target.slice(),
    ident: trigger.ident.slice(),
    service: trigger.service.slice(),
  };
}

/** TRIGGER3 → TRIGGER (v2): the name must fit in 63 bytes and the target in 31. */
export function trigger3To2(trigger: Trigger3): TriggerV2 {
  const name = cString(trigger.service);
  if (name.length > SERVICE_NAME_V2_BYTES - 1) {
    throw new ProtocolError(
      `service name of ${name.length} bytes does not fit ` +
        `protocol 2 (at most ${SERVICE_NAME_V2_BYTES - 1})`,
    );
  }
  const target = cString(trigger.target);
  if (target.length > DOMAIN_NAME_V2_BYTES - 1) {
    throw new ProtocolError(
      `target of ${target.length} bytes does not fit ` +
        `protocol 2 (at most ${DOMAIN_NAME_V2_BYTES - 1})`,
    );
  }
  const service = new Uint8Array(SERVICE_NAME_V2_BYTES);
  service.set(name);
  const targetField = new Uint8Array(DOMAIN_NAME_V2_BYTES);
  targetField.set(target);
  return { service, target: targetField, ident: trigger.ident.slice() };
}

/** The same trigger with another ident (the agent sets "SOCKET<fd>", §2.1 step 2). */
export function withIdent<T extends TriggerV2 | Trigger3 | Trigger4>(
  trigger: T,
  ident: FixedField,
): T {
  return { ...trigger, ident: encodeFixedField(ident, IDENT_BYTES) };
}

/** A TRIGGER4 as the message the daemon at `version` accepts (§3.2). */
export function encodeTriggerForVersion(
  trigger: Trigger4,
  version: number,
): { type: number; payload: Uint8Array } {
  if (version >= QREXEC_PROTOCOL_V4)
    return { type: MSG_TRIGGER_SERVICE4, payload: encodeTrigger4(trigger) };
  const trigger3 = trigger4To3(trigger);
  if (version >= QREXEC_PROTOCOL_V3)
    return { type: MSG_TRIGGER_SERVICE3, payload: encodeTrigger3(trigger3) };
  if (version >= QREXEC_PROTOCOL_V2) {
    return { type: MSG_TRIGGER_SERVICE, payload: encodeTriggerV2(trigger3To2(trigger3)) };
  }
  throw new ProtocolError(`unsupported protocol version ${version}`);
}

// ---------------------------------------------------------------------------------------------
// Any message, by type.

export type Message =
  | { kind: "hello"; version: number }
  | { kind: "data-stdin" | "data-stdout" | "data-stderr"; data: Uint8Array }
  | { kind: "exit-code"; status: number }
  | ({ kind: "exec-cmdline" | "just-exec" } & ExecCommand)
  | ({ kind: "service-connect"; ident: Uint8Array } & ExecParams)
  | { kind: "service-refused"; ident: Uint8Array }
  | ({ kind: "connection-terminated" } & ExecParams)
  | { kind: "trigger-v2"; trigger: TriggerV2 }
  | { kind: "trigger3"; trigger: Trigger3 }
  | { kind: "trigger4"; trigger: Trigger4 };

/**
 * Decodes a payload by its header type. `header.len` must match the payload. Data payloads are
 * returned as is: the chunk limit depends on the negotiated version and is the caller's check.
 */
export function decodeMessage(
  header: Header,
  payload: Uint8Array,
  termination: CommandTermination = "strict",
): Message {
  if (header.len !== payload.length) {
    throw new ProtocolError(`header len ${header.len} but ${payload.length} payload bytes`);
  }
  switch (header.type) {
    case MSG_HELLO:
      return { kind: "hello", version: decodeHello(header, payload) };
    case MSG_DATA_STDIN:
      return { kind: "data-stdin", data: payload };
    case MSG_DATA_STDOUT:
      return { kind: "data-stdout", data: payload };
    case MSG_DATA_STDERR:
      return { kind: "data-stderr", data: payload };
    case MSG_DATA_EXIT_CODE:
      return { kind: "exit-code", status: decodeExitCode(payload) };
    case MSG_EXEC_CMDLINE:
      return { kind: "exec-cmdline", ...decodeExecCommand(payload, termination) };
    case MSG_JUST_EXEC:
      return { kind: "just-exec", ...decodeExecCommand(payload, termination) };
    case MSG_SERVICE_CONNECT:
      return { kind: "service-connect", ...decodeServiceConnect(payload, termination) };
    case MSG_SERVICE_REFUSED:
      return { kind: "service-refused", ident: decodeServiceParams(payload) };
    case MSG_CONNECTION_TERMINATED:
      return { kind: "connection-terminated", ...decodeConnectionTerminated(payload) };
    case MSG_TRIGGER_SERVICE:
      return { kind: "trigger-v2", trigger: decodeTriggerV2(payload) };
    case MSG_TRIGGER_SERVICE3:
      return { kind: "trigger3", trigger: decodeTrigger3(payload) };
    case MSG_TRIGGER_SERVICE4:
      return { kind: "trigger4", trigger: decodeTrigger4(payload) };
    default:
      throw new ProtocolError(`unknown message type 0x${header.type.toString(16)}`);
  }
}
