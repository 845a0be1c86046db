// Harnesses over the qrexec wire format in TypeScript (src/protocol/codec.ts, validate.ts): any
// bytes from a peer either decode into messages that re-encode to exactly those bytes, or fail
// with a ProtocolError (never another exception); the daemon's verdict on an agent's message only
// lets through names made of the allowed characters; the HELLO negotiation is min(own, peer) or a
// clear refusal below version 2.

import fc from "fast-check";
import {
  decodeHello,
  decodeMessage,
  encodeConnectionTerminated,
  encodeExitCode,
  encodePeerInfo,
  encodeServiceConnect,
  encodeServiceParams,
  encodeTrigger3,
  encodeTrigger4,
  encodeTriggerV2,
  frame,
  helloMessage,
  negotiateVersion,
  ProtocolError,
  readFrame,
  type Message,
} from "../../src/protocol/codec.ts";
import * as C from "../../src/protocol/constants.ts";
import { identProblem, validateAgentMessage } from "../../src/protocol/validate.ts";
import { bytesInput, type Harness } from "./harness.ts";

const TYPES = [
  C.MSG_DATA_STDIN,
  C.MSG_DATA_STDOUT,
  C.MSG_DATA_STDERR,
  C.MSG_DATA_EXIT_CODE,
  C.MSG_EXEC_CMDLINE,
  C.MSG_JUST_EXEC,
  C.MSG_SERVICE_CONNECT,
  C.MSG_SERVICE_REFUSED,
  C.MSG_TRIGGER_SERVICE,
  C.MSG_CONNECTION_TERMINATED,
  C.MSG_TRIGGER_SERVICE3,
  C.MSG_TRIGGER_SERVICE4,
  C.MSG_HELLO,
];

function assert(ok: boolean, message: string): asserts ok {
  if (!ok) throw new Error(`property violated: ${message}`);
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((byte, i) => byte === b[i]);
}

/** Runs `f`; a ProtocolError is a clean refusal (null), anything else thrown is a bug. */
function refusing<T>(f: () => T): T | null {
  try {
    return f();
  } catch (error) {
    if (error instanceof ProtocolError) return null;
    throw error;
  }
}

/** The payload that `message` encodes to, where the encoding is exact. */
function reencode(message: Message, payload: Uint8Array): Uint8Array | null {
  switch (message.kind) {
    case "hello":
      return encodePeerInfo(message.version);
    case "data-stdin":
    case "data-stdout":
    case "data-stderr":
      return message.data;
    case "exit-code":
      // A short payload means "no status" (255); bytes past the first 4 are ignored.
      return payload.length < 4 ? payload : encodeExitCode(message.status);
    case "service-connect":
      return encodeServiceConnect(message, message.ident).subarray(0, payload.length);
    case "service-refused":
      return encodeServiceParams(message.ident);
    case "connection-terminated":
      return encodeConnectionTerminated(message);
    case "trigger-v2":
      return encodeTriggerV2(message.trigger);
    case "trigger3":
      return encodeTrigger3(message.trigger);
    case "trigger4":
      return encodeTrigger4(message.trigger);
    default:
      return null; // exec commands are decoded to text: checked apart
  }
}

function checkMessage(type: number, payload: Uint8Array, version: number): void {
  const header = { type, len: payload.length };
  const message = refusing(() => decodeMessage(header, payload));
  if (message !== null) {
    const again = reencode(message, payload);
    const compared =
      message.kind === "exit-code" ? payload.subarray(0, again?.length ?? 0) : payload;
    if (again !== null) assert(equalBytes(again, compared), `${message.kind} does not re-encode`);
    if (message.kind === "exec-cmdline" || message.kind === "just-exec") {
      assert(!message.command.includes("\0"), "a command with NUL");
    }
  }
  checkVerdict(header, payload, version);
}

const SERVICE = /^[A-Za-z0-9_.+-]+$/;
const DOMAIN = /^[A-Za-z0-9_.@:-]*$/;

function checkVerdict(
  header: { type: number; len: number },
  body: Uint8Array,
  version: number,
): void {
  const verdict = validateAgentMessage(header, body, version);
  if (verdict.kind === "ok") {
    assert(
      SERVICE.test(verdict.service) && !verdict.service.startsWith("+"),
      `service ${verdict.service}`,
    );
    assert(verdict.service.length <= C.MAX_SERVICE_NAME_LEN, "service name too long");
    assert(DOMAIN.test(verdict.target), `target ${verdict.target}`);
    assert(verdict.source === null || DOMAIN.test(verdict.source), `source ${verdict.source}`);
    assert(identProblem(verdict.ident) === null, "an invalid ident passed");
    if (header.type !== C.MSG_TRIGGER_SERVICE) {
      const tail = body.subarray(body.length - verdict.service.length - 1);
      assert(tail.indexOf(0) === tail.length - 1, "a service area with an interior NUL passed");
    }
  } else if (verdict.kind === "connection-terminated") {
    assert(
      verdict.connectPort >= C.DATA_PORT_MIN && verdict.connectPort <= C.DATA_PORT_MAX,
      "port range",
    );
  }
}

/** A peer's byte stream: frames cut off the front until one is incomplete or refused. */
function checkStream(bytes: Uint8Array, limit: number, version: number): void {
  let at = 0;
  let rebuilt = new Uint8Array(0);
  for (;;) {
    const next = refusing(() => readFrame(bytes.subarray(at), limit));
    if (next === null) break; // incomplete, or a length over the limit
    assert(next.header.len <= limit && next.consumed === 8 + next.header.len, "frame size");
    rebuilt = new Uint8Array([...rebuilt, ...frame(next.header.type, next.payload)]);
    checkMessage(next.header.type, next.payload, version);
    at += next.consumed;
  }
  assert(equalBytes(rebuilt, bytes.subarray(0, at)), "frames do not re-encode to the stream");
}

/** Mostly well-formed frames of known types, with hostile lengths and bytes mixed in. */
const frameArbitrary = fc.tuple(
  fc.constantFrom(...TYPES, 0, 0xffffffff),
  fc.uint8Array({ maxLength: 300 }),
);
const streamArbitrary = fc.oneof(
  fc.uint8Array({ maxLength: 600 }),
  fc
    .array(frameArbitrary, { maxLength: 6 })
    .map(
      (frames) => new Uint8Array(frames.flatMap(([type, payload]) => [...frame(type, payload)])),
    ),
);

export const codecHarness: Harness<{ bytes: Uint8Array; limit: number; version: number }> = {
  name: "ts-codec",
  arbitrary: fc.record({
    bytes: streamArbitrary,
    limit: fc.constantFrom(0, 100, 65536, 65160),
    version: fc.constantFrom(2, 3, 4),
  }),
  property: ({ bytes, limit, version }) => checkStream(bytes, limit, version),
  ...bytesInput(["bytes"]),
};

function checkHello(
  own: number,
  peer: number,
  type: number,
  len: number,
  payload: Uint8Array,
): void {
  const version = refusing(() => negotiateVersion(own, peer));
  assert(
    (version === null) === Math.min(own, peer) < C.QREXEC_PROTOCOL_VERSION_MIN,
    "negotiation refusal",
  );
  if (version !== null) assert(version === Math.min(own, peer), "negotiated version");
  const decoded = refusing(() => decodeHello({ type, len }, payload));
  const valid = type === C.MSG_HELLO && len === 4 && payload.length === 4;
  assert((decoded !== null) === valid, `hello type ${type} len ${len} accepted: ${decoded}`);
  if (decoded !== null) assert(equalBytes(encodePeerInfo(decoded), payload), "hello re-encodes");
  const sent = helloMessage(own);
  const back = readFrame(sent, 4);
  assert(back !== null && decodeHello(back.header, back.payload) === own, "hello round trip");
}

export const helloHarness: Harness<{
  own: number;
  peer: number;
  type: number;
  len: number;
  payload: Uint8Array;
}> = {
  name: "ts-hello",
  arbitrary: fc.record({
    own: fc.oneof(fc.integer({ min: 0, max: 6 }), fc.nat({ max: 0xffffffff })),
    peer: fc.oneof(fc.integer({ min: 0, max: 6 }), fc.nat({ max: 0xffffffff })),
    type: fc.constantFrom(C.MSG_HELLO, C.MSG_HELLO + 1, 0, C.MSG_DATA_STDIN),
    len: fc.constantFrom(0, 3, 4, 5, 0xffffffff),
    payload: fc.uint8Array({ maxLength: 6 }),
  }),
  property: ({ own, peer, type, len, payload }) => checkHello(own, peer, type, len, payload),
  ...bytesInput(["payload"]),
};
