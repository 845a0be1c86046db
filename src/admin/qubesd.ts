// qubesd's socket protocol (§7.6), both ends: what qrexec-daemon sends to start, create and kill
// domains, and what the lab's admin service answers. One request per connection:
//
//   "<method>+<arg> <source> (name|keyword) <dest>\0" payload, then the client shuts its write side
//   reply: "0\0<data>" on success, "2\0<ExcType>\0<traceback>\0<message>\0" on error
//
// A destination starting with `@` travels as a keyword without the `@`.

import { Connection } from "../io/connection.ts";

/** Upstream's socket; the lab's lives in its state directory. */
export const DEFAULT_QUBESD_SOCKET = "/run/qubesd.sock";
/** Requests and replies are small; anything larger is a broken or hostile peer. */
export const QUBESD_MESSAGE_MAX = 1 << 20;

export interface QubesdRequest {
  method: string;
  /** The part after `+`; empty when there is none. */
  arg: string;
  source: string;
  /** Keywords come back with their `@`. */
  dest: string;
  payload: Uint8Array;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A problem the admin service reports back as `2\0<type>\0...`. */
export class QubesdError extends Error {
  override name = "QubesdError";
  constructor(
    readonly type: string,
    message: string,
  ) {
    super(message);
  }
}

export function encodeRequest(
  request: Omit<QubesdRequest, "source" | "payload"> & { source?: string; payload?: Uint8Array },
): Uint8Array {
  const keyword = request.dest.startsWith("@");
  const dest = keyword ? `keyword ${request.dest.slice(1)}` : `name ${request.dest}`;
  const head = encoder.encode(
    `${request.method}+${request.arg} ${request.source ?? "dom0"} ${dest}\0`,
  );
  const payload = request.payload ?? new Uint8Array(0);
  const out = new Uint8Array(head.length + payload.length);
  out.set(head);
  out.set(payload, head.length);
  return out;
}

/** Parses a request; throws QubesdError("ProtocolError") on anything malformed. */
export function decodeRequest(bytes: Uint8Array): QubesdRequest {
  const end = bytes.indexOf(0);
  if (end < 0) throw new QubesdError("ProtocolError", "request has no NUL-terminated header");
  const words = decoder.decode(bytes.subarray(0, end)).split(" ");
  if (words.length !== 4)
    throw new QubesdError("ProtocolError", `request header has ${words.length} fields, expected 4`);
  const [call, source, kind, name] = words as [string, string, string, string];
  if (kind !== "name" && kind !== "keyword")
    throw new QubesdError(
      "ProtocolError",
      `destination type '${kind}' is neither name nor keyword`,
    );
  const plus = call.indexOf("+");
  return {
    method: plus < 0 ? call : call.slice(0, plus),
    arg: plus < 0 ? "" : call.slice(plus + 1),
    source,
    dest: kind === "keyword" ? `@${name}` : name,
    payload: bytes.slice(end + 1),
  };
}

export function encodeSuccess(data: string | Uint8Array = ""): Uint8Array {
  const body = typeof data === "string" ? encoder.encode(data) : data;
  const out = new Uint8Array(2 + body.length);
  out.set([0x30, 0]);
  out.set(body, 2);
  return out;
}

export function encodeError(type: string, message: string): Uint8Array {
  return encoder.encode(`2\0${type}\0\0${message}\0`);
}

/** The reply's data, or a QubesdError with the type and message the service gave. */
export function decodeReply(bytes: Uint8Array): Uint8Array {
  if (bytes.length >= 2 && bytes[0] === 0x30 && bytes[1] === 0) return bytes.subarray(2);
  if (bytes.length >= 2 && bytes[0] === 0x32 && bytes[1] === 0) {
    const [type = "", , message = ""] = decoder.decode(bytes.subarray(2)).split("\0");
    throw new QubesdError(type || "QubesException", message || type || "unknown error");
  }
  throw new QubesdError(
    "ProtocolError",
    bytes.length === 0
      ? "the admin service closed without a reply"
      : "malformed reply from the admin service",
  );
}

/** One call: connect, send, shut the write side, read the reply to EOF. */
export async function qubesdCall(
  socketPath: string,
  method: string,
  dest: string,
  options: { arg?: string; payload?: Uint8Array | string } = {},
): Promise<Uint8Array> {
  const payload =
    typeof options.payload === "string" ? encoder.encode(options.payload) : options.payload;
  const request = encodeRequest({ method, arg: options.arg ?? "", dest, payload });
  return decodeReply(
    await Connection.exchange(socketPath, request, {
      halfClose: true,
      bytesMax: QUBESD_MESSAGE_MAX,
    }),
  );
}

export async function qubesdCallText(
  socketPath: string,
  method: string,
  dest: string,
  options: { arg?: string; payload?: Uint8Array | string } = {},
): Promise<string> {
  return decoder.decode(await qubesdCall(socketPath, method, dest, options));
}
