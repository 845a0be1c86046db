import { describe, expect, test } from "bun:test";
import {
  decodeConnectionTerminated,
  decodeExecCommand,
  decodeExecParams,
  decodeExitCode,
  decodeHeader,
  decodeHello,
  decodeMessage,
  decodeServiceConnect,
  decodeServiceParams,
  decodeTrigger3,
  decodeTrigger4,
  decodeTriggerV2,
  encodeConnectionTerminated,
  encodeExecCommand,
  encodeExitCode,
  encodeFixedField,
  encodeHeader,
  encodeServiceConnect,
  encodeServiceParams,
  encodeTrigger3,
  encodeTrigger4,
  encodeTriggerForVersion,
  encodeTriggerV2,
  fieldText,
  frame,
  helloMessage,
  maxDataChunk,
  negotiateVersion,
  ProtocolError,
  readFrame,
  trigger3To2,
  trigger4To3,
  withIdent,
} from "../../src/protocol/codec.ts";
import * as C from "../../src/protocol/constants.ts";

const text = new TextEncoder();

function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString("hex");
}

/** Little-endian u32 as hex, written independently of the codec. */
function le(value: number): string {
  const buffer = Buffer.alloc(4);
  buffer.writeUInt32LE(value);
  return buffer.toString("hex");
}

function padded(value: string, size: number): string {
  const bytes = Buffer.alloc(size);
  bytes.write(value, "latin1");
  return bytes.toString("hex");
}

describe("header and framing", () => {
  test("header is type then len, both little-endian u32", () => {
    expect(hex(encodeHeader({ type: C.MSG_HELLO, len: 4 }))).toBe("0003000004000000");
    expect(decodeHeader(Uint8Array.from([0x13, 0x02, 0, 0, 0xa1, 0, 0, 0]))).toEqual({
      type: C.MSG_TRIGGER_SERVICE4,
      len: 161,
    });
  });

  test("encodeHeader refuses values that are not u32", () => {
    for (const len of [-1, 2 ** 32, 1.5, Number.NaN]) {
      expect(() => encodeHeader({ type: C.MSG_HELLO, len })).toThrow(ProtocolError);
    }
  });

  test("decodeHeader needs 8 bytes", () => {
    expect(() => decodeHeader(new Uint8Array(7))).toThrow(ProtocolError);
  });

  test("HELLO is header + peer_info", () => {
    expect(hex(helloMessage(4))).toBe(`${le(0x300)}${le(4)}${le(4)}`);
    expect(hex(helloMessage(3))).toBe(`${le(0x300)}${le(4)}${le(3)}`);
  });

  test("readFrame splits a stream, waits for more bytes, and bounds the announced length", () => {
    const stream = new Uint8Array([
      ...frame(C.MSG_DATA_STDOUT, text.encode("abc")),
      ...helloMessage(4),
    ]);
    const first = readFrame(stream, 65536)!;
    expect(first.header).toEqual({ type: C.MSG_DATA_STDOUT, len: 3 });
    expect(new TextDecoder().decode(first.payload)).toBe("abc");
    expect(first.consumed).toBe(11);
    const second = readFrame(stream.subarray(first.consumed), 65536)!;
    expect(decodeHello(second.header, second.payload)).toBe(4);
    expect(readFrame(stream.subarray(0, 7), 65536)).toBeNull();
    expect(readFrame(stream.subarray(0, 10), 65536)).toBeNull();
    expect(() => readFrame(frame(C.MSG_DATA_STDOUT, new Uint8Array(4097)), 4096)).toThrow(
      ProtocolError,
    );
    // The limit applies as soon as the header is there, before the payload arrives.
    expect(() => readFrame(encodeHeader({ type: C.MSG_DATA_STDIN, len: 2 ** 31 }), 65536)).toThrow(
      /limit 65536/,
    );
  });
});

describe("versions (§4)", () => {
  test.each([
    [4, 4, 4],
    [4, 3, 3],
    [3, 4, 3],
    [4, 2, 2],
    [3, 0xffffffff, 3],
  ])("negotiateVersion(%d, %d) = %d", (own, peer, expected) => {
    expect(negotiateVersion(own, peer)).toBe(expected);
  });

  test.each([
    [4, 1],
    [4, 0],
    [1, 4],
  ])("negotiateVersion(%d, %d) is below the minimum", (own, peer) => {
    expect(() => negotiateVersion(own, peer)).toThrow(ProtocolError);
  });

  test("data chunk limit: 4096 at v2, 65536 from v3", () => {
    expect(maxDataChunk(2)).toBe(4096);
    expect(maxDataChunk(3)).toBe(65536);
    expect(maxDataChunk(4)).toBe(65536);
    expect(() => maxDataChunk(1)).toThrow(ProtocolError);
  });

  test("a HELLO with the wrong type or len is fatal", () => {
    const payload = Uint8Array.from([4, 0, 0, 0]);
    expect(decodeHello({ type: C.MSG_HELLO, len: 4 }, payload)).toBe(4);
    expect(() => decodeHello({ type: C.MSG_EXEC_CMDLINE, len: 4 }, payload)).toThrow(
      /expected MSG_HELLO/,
    );
    expect(() => decodeHello({ type: C.MSG_HELLO, len: 5 }, new Uint8Array(5))).toThrow(/len 5/);
    expect(() => decodeHello({ type: C.MSG_HELLO, len: 4 }, new Uint8Array(3))).toThrow(
      ProtocolError,
    );
  });
});

describe("fixed char fields", () => {
  test("text is zero-filled and cut to N-1 bytes", () => {
    expect(hex(encodeFixedField("ab", 8))).toBe("6162000000000000");
    const long = encodeFixedField("x".repeat(70), 64);
    expect(long.length).toBe(64);
    expect(fieldText(long)).toBe("x".repeat(63));
    expect(long[63]).toBe(0);
  });

  test("a raw field is echoed verbatim and must have the exact size", () => {
    const raw = new Uint8Array(32).fill(0x41);
    expect(encodeFixedField(raw, 32)).toEqual(raw);
    expect(() => encodeFixedField(new Uint8Array(31), 32)).toThrow(ProtocolError);
  });

  test("text containing NUL is refused", () => {
    expect(() => encodeFixedField("a\0b", 32)).toThrow(/NUL/);
  });
});

describe("exec_params and friends (§3.3)", () => {
  test("EXEC_CMDLINE payload: domain, port, command, NUL", () => {
    const payload = encodeExecCommand({ connectDomain: 7, connectPort: 513 }, "user:QUBESRPC a b");
    expect(hex(payload)).toBe(
      `${le(7)}${le(513)}${Buffer.from("user:QUBESRPC a b\0").toString("hex")}`,
    );
    expect(decodeExecCommand(payload, "strict")).toEqual({
      connectDomain: 7,
      connectPort: 513,
      command: "user:QUBESRPC a b",
    });
  });

  test("strict decoding needs the NUL; the agent's mode overwrites the last byte", () => {
    const unterminated = new Uint8Array([
      ...encodeExecCommand({ connectDomain: 0, connectPort: 0 }, "").subarray(0, 8),
      0x61,
      0x62,
    ]);
    expect(() => decodeExecCommand(unterminated, "strict")).toThrow(/NUL-terminated/);
    expect(decodeExecCommand(unterminated, "terminate").command).toBe("a");
    expect(() => decodeExecCommand(new Uint8Array(8), "terminate")).toThrow(/without a command/);
    expect(() => decodeExecCommand(new Uint8Array(7), "strict")).toThrow(ProtocolError);
  });

  test("the command ends at its first NUL", () => {
    const payload = new Uint8Array([...new Uint8Array(8), ...text.encode("a\0b\0")]);
    expect(decodeExecCommand(payload, "strict").command).toBe("a");
  });

  test("a command containing NUL cannot be encoded", () => {
    expect(() => encodeExecCommand({ connectDomain: 0, connectPort: 0 }, "a\0b")).toThrow(
      ProtocolError,
    );
  });

  test("decodeExecParams leaves the tail alone", () => {
    const { connectDomain, connectPort, tail } = decodeExecParams(
      Uint8Array.from([1, 0, 0, 0, 2, 3, 0, 0, 9]),
    );
    expect([connectDomain, connectPort, [...tail]]).toEqual([1, 0x302, [9]]);
  });

  test("SERVICE_CONNECT carries exec_params and the 32-byte ident", () => {
    const payload = encodeServiceConnect({ connectDomain: 3, connectPort: 600 }, "SOCKET12");
    expect(payload.length).toBe(40);
    expect(hex(payload)).toBe(`${le(3)}${le(600)}${padded("SOCKET12", 32)}`);
    const decoded = decodeServiceConnect(payload);
    expect([decoded.connectDomain, decoded.connectPort, fieldText(decoded.ident)]).toEqual([
      3,
      600,
      "SOCKET12",
    ]);
  });

  test("SERVICE_CONNECT: strict decoding wants the last byte NUL; agent's mode not", () => {
    const full = new Uint8Array([...new Uint8Array(8), ...new Uint8Array(32).fill(0x41)]);
    expect(() => decodeServiceConnect(full)).toThrow(/not NUL-terminated/);
    expect(fieldText(decodeServiceConnect(full, "terminate").ident)).toBe("A".repeat(32));
    expect(() => decodeMessage({ type: C.MSG_SERVICE_CONNECT, len: 40 }, full)).toThrow(
      ProtocolError,
    );
  });

  test("SERVICE_CONNECT: a short ident is zero-padded; none or over 32 bytes is an error", () => {
    const short = decodeServiceConnect(
      new Uint8Array([...new Uint8Array(8), ...text.encode("ab")]),
      "terminate",
    );
    expect(short.ident.length).toBe(32);
    expect(hex(short.ident)).toBe(padded("ab", 32));
    expect(() => decodeServiceConnect(new Uint8Array(8))).toThrow(ProtocolError);
    expect(() => decodeServiceConnect(new Uint8Array(41))).toThrow(ProtocolError);
  });

  test("SERVICE_REFUSED echoes a raw ident byte for byte", () => {
    const raw = Uint8Array.from({ length: 32 }, (_, i) => (i * 37) & 0xff);
    expect(encodeServiceParams(raw)).toEqual(raw);
    expect(decodeServiceParams(encodeServiceParams(raw))).toEqual(raw);
    expect(hex(encodeServiceParams("SOCKET5"))).toBe(padded("SOCKET5", 32));
    expect(() => decodeServiceParams(new Uint8Array(31))).toThrow(ProtocolError);
  });

  test("CONNECTION_TERMINATED is exactly exec_params", () => {
    const payload = encodeConnectionTerminated({ connectDomain: 5, connectPort: 514 });
    expect(hex(payload)).toBe(`${le(5)}${le(514)}`);
    expect(decodeConnectionTerminated(payload)).toEqual({ connectDomain: 5, connectPort: 514 });
    expect(() => decodeConnectionTerminated(new Uint8Array(9))).toThrow(ProtocolError);
  });
});

describe("exit code", () => {
  test("an i32, little-endian", () => {
    expect(hex(encodeExitCode(0))).toBe("00000000");
    expect(hex(encodeExitCode(127))).toBe("7f000000");
    expect(hex(encodeExitCode(-1))).toBe("ffffffff");
    expect(decodeExitCode(encodeExitCode(-2))).toBe(-2);
    expect(decodeExitCode(encodeExitCode(125))).toBe(125);
    expect(() => encodeExitCode(2 ** 31)).toThrow(ProtocolError);
  });

  test("fewer than 4 bytes means 255; extra bytes are ignored", () => {
    for (const length of [0, 1, 2, 3])
      expect(decodeExitCode(new Uint8Array(length).fill(1))).toBe(255);
    expect(decodeExitCode(Uint8Array.from([42, 0, 0, 0, 9, 9]))).toBe(42);
  });
});

describe("triggers (§3.3)", () => {
  test("TRIGGER (v2) layout: service[64], target[32], ident[32]", () => {
    const payload = encodeTriggerV2({ service: "qubes.Svc+a", target: "work", ident: "SOCKET7" });
    expect(payload.length).toBe(128);
    expect(hex(payload)).toBe(
      `${padded("qubes.Svc+a", 64)}${padded("work", 32)}${padded("SOCKET7", 32)}`,
    );
    const decoded = decodeTriggerV2(payload);
    expect([
      fieldText(decoded.service),
      fieldText(decoded.target),
      fieldText(decoded.ident),
    ]).toEqual(["qubes.Svc+a", "work", "SOCKET7"]);
    expect(() => decodeTriggerV2(new Uint8Array(127))).toThrow(ProtocolError);
    expect(() => decodeTriggerV2(new Uint8Array(129))).toThrow(ProtocolError);
  });

  test("TRIGGER3 layout: target[64], ident[32], name + NUL", () => {
    const payload = encodeTrigger3({ target: "@dispvm", ident: "SOCKET7", service: "qubes.Svc" });
    expect(hex(payload)).toBe(
      padded("@dispvm", 64) + padded("SOCKET7", 32) + Buffer.from("qubes.Svc\0").toString("hex"),
    );
    const decoded = decodeTrigger3(payload);
    expect(new TextDecoder().decode(decoded.service)).toBe("qubes.Svc\0");
    expect(() => decodeTrigger3(new Uint8Array(96))).toThrow(ProtocolError);
  });

  test("TRIGGER4 layout: source[64], target[64], ident[32], name + NUL", () => {
    const payload = encodeTrigger4({
      source: "relay",
      target: "work",
      ident: "SOCKET",
      service: "test.Add",
    });
    expect(payload.length).toBe(160 + 9);
    expect(hex(payload)).toBe(
      padded("relay", 64) +
        padded("work", 64) +
        padded("SOCKET", 32) +
        Buffer.from("test.Add\0").toString("hex"),
    );
    const decoded = decodeTrigger4(payload);
    expect([
      fieldText(decoded.source),
      fieldText(decoded.target),
      fieldText(decoded.ident),
    ]).toEqual(["relay", "work", "SOCKET"]);
    expect(() => decodeTrigger4(new Uint8Array(160))).toThrow(ProtocolError);
  });

  test("a received service tail is sent back as is", () => {
    const tail = Uint8Array.from([0x61, 0x00, 0x62, 0x00]);
    const decoded = decodeTrigger3(encodeTrigger3({ target: "t", ident: "i", service: tail }));
    expect(decoded.service).toEqual(tail);
    expect(() => encodeTrigger3({ target: "t", ident: "i", service: new Uint8Array(0) })).toThrow(
      ProtocolError,
    );
  });

  test("withIdent replaces only the ident", () => {
    const trigger = decodeTrigger4(
      encodeTrigger4({ source: "", target: "work", ident: "SOCKET", service: "s" }),
    );
    const relabelled = withIdent(trigger, "SOCKET42");
    expect(fieldText(relabelled.ident)).toBe("SOCKET42");
    expect(relabelled.target).toEqual(trigger.target);
    expect(fieldText(trigger.ident)).toBe("SOCKET");
  });
});

describe("trigger downgrade (§15.1)", () => {
  const trigger4 = (source: string, target: string, service: string) =>
    decodeTrigger4(encodeTrigger4({ source, target, ident: "SOCKET9", service }));

  test("v4 is sent unchanged as TRIGGER4", () => {
    const trigger = trigger4("", "work", "qubes.Svc+arg");
    const { type, payload } = encodeTriggerForVersion(trigger, 4);
    expect(type).toBe(C.MSG_TRIGGER_SERVICE4);
    expect(payload).toEqual(encodeTrigger4(trigger));
  });

  test("v3 drops the empty source field", () => {
    const { type, payload } = encodeTriggerForVersion(trigger4("", "work", "qubes.Svc+arg"), 3);
    expect(type).toBe(C.MSG_TRIGGER_SERVICE3);
    expect(payload).toEqual(
      encodeTrigger3({ target: "work", ident: "SOCKET9", service: "qubes.Svc+arg" }),
    );
  });

  test("a source qube cannot be sent below v4", () => {
    expect(() => trigger4To3(trigger4("relay", "work", "s"))).toThrow(/source qube/);
    expect(() => encodeTriggerForVersion(trigger4("relay", "work", "s"), 3)).toThrow(ProtocolError);
    expect(() => encodeTriggerForVersion(trigger4("relay", "work", "s"), 2)).toThrow(ProtocolError);
  });

  test("v2 packs name and target into the fixed fields", () => {
    const { type, payload } = encodeTriggerForVersion(trigger4("", "work", "qubes.Svc+arg"), 2);
    expect(type).toBe(C.MSG_TRIGGER_SERVICE);
    expect(payload).toEqual(
      encodeTriggerV2({ service: "qubes.Svc+arg", target: "work", ident: "SOCKET9" }),
    );
  });

  test("v2 limits: name at most 63 bytes, target at most 31", () => {
    const trigger3 = (target: string, service: string) =>
      decodeTrigger3(encodeTrigger3({ target, ident: "SOCKET9", service }));
    expect(fieldText(trigger3To2(trigger3("t", "s".repeat(63))).service)).toBe("s".repeat(63));
    expect(() => trigger3To2(trigger3("t", "s".repeat(64)))).toThrow(/64 bytes/);
    expect(fieldText(trigger3To2(trigger3("t".repeat(31), "s")).target)).toBe("t".repeat(31));
    expect(() => trigger3To2(trigger3("t".repeat(32), "s"))).toThrow(/target of 32 bytes/);
  });

  test("protocol 1 is not supported", () => {
    expect(() => encodeTriggerForVersion(trigger4("", "w", "s"), 1)).toThrow(ProtocolError);
  });
});

describe("decodeMessage", () => {
  const cases: [string, number, Uint8Array, Record<string, unknown>][] = [
    ["hello", C.MSG_HELLO, Uint8Array.from([3, 0, 0, 0]), { kind: "hello", version: 3 }],
    ["stdin", C.MSG_DATA_STDIN, text.encode("in"), { kind: "data-stdin", data: text.encode("in") }],
    [
      "stdout EOF",
      C.MSG_DATA_STDOUT,
      new Uint8Array(0),
      { kind: "data-stdout", data: new Uint8Array(0) },
    ],
    [
      "stderr",
      C.MSG_DATA_STDERR,
      text.encode("e"),
      { kind: "data-stderr", data: text.encode("e") },
    ],
    ["exit code", C.MSG_DATA_EXIT_CODE, encodeExitCode(3), { kind: "exit-code", status: 3 }],
    [
      "short exit code",
      C.MSG_DATA_EXIT_CODE,
      new Uint8Array(2),
      { kind: "exit-code", status: 255 },
    ],
    [
      "exec",
      C.MSG_EXEC_CMDLINE,
      encodeExecCommand({ connectDomain: 1, connectPort: 513 }, "u:c"),
      { kind: "exec-cmdline", connectDomain: 1, connectPort: 513, command: "u:c" },
    ],
    [
      "just exec",
      C.MSG_JUST_EXEC,
      encodeExecCommand({ connectDomain: 0, connectPort: 514 }, "u:c"),
      { kind: "just-exec", connectDomain: 0, connectPort: 514, command: "u:c" },
    ],
    [
      "connection terminated",
      C.MSG_CONNECTION_TERMINATED,
      encodeConnectionTerminated({ connectDomain: 4, connectPort: 515 }),
      { kind: "connection-terminated", connectDomain: 4, connectPort: 515 },
    ],
  ];
  test.each(cases)("%s", (_name, type, payload, expected) => {
    expect(decodeMessage({ type, len: payload.length }, payload)).toEqual(expected as never);
  });

  test("service connect, refused and triggers", () => {
    const connect = encodeServiceConnect({ connectDomain: 2, connectPort: 520 }, "SOCKET3");
    const decoded = decodeMessage({ type: C.MSG_SERVICE_CONNECT, len: 40 }, connect);
    expect(decoded.kind).toBe("service-connect");
    const refused = decodeMessage(
      { type: C.MSG_SERVICE_REFUSED, len: 32 },
      encodeServiceParams("SOCKET3"),
    );
    expect(refused.kind === "service-refused" && fieldText(refused.ident)).toBe("SOCKET3");
    const trigger = encodeTrigger4({ source: "", target: "t", ident: "i", service: "s" });
    expect(decodeMessage({ type: C.MSG_TRIGGER_SERVICE4, len: trigger.length }, trigger).kind).toBe(
      "trigger4",
    );
  });

  test("unknown types and a len that disagrees with the payload are errors", () => {
    expect(() => decodeMessage({ type: 0x204, len: 0 }, new Uint8Array(0))).toThrow(
      /unknown message type 0x204/,
    );
    expect(() => decodeMessage({ type: C.MSG_DATA_STDIN, len: 5 }, new Uint8Array(4))).toThrow(
      ProtocolError,
    );
  });

  test("random bytes only ever produce a message or a ProtocolError", () => {
    // A seeded generator keeps failures reproducible.
    let seed = 0x2545f491;
    const next = () => {
      seed ^= seed << 13;
      seed ^= seed >>> 17;
      seed ^= seed << 5;
      return seed >>> 0;
    };
    const types = [
      0x190, 0x191, 0x192, 0x193, 0x200, 0x201, 0x202, 0x203, 0x210, 0x211, 0x212, 0x213, 0x300,
      0x204,
    ];
    for (let round = 0; round < 3000; round++) {
      const length = next() % 200;
      const payload = Uint8Array.from({ length }, () => next() & 0xff);
      const type = types[next() % types.length]!;
      try {
        decodeMessage({ type, len: length }, payload, next() % 2 ? "strict" : "terminate");
      } catch (error) {
        expect(error).toBeInstanceOf(ProtocolError);
      }
    }
  });
});
