import { describe, expect, test } from "bun:test";
import { decodeHeader, fieldText, type Header } from "../../src/protocol/codec.ts";
import * as C from "../../src/protocol/constants.ts";
import {
  buildClientTrigger,
  checkAgentHeader,
  clientServiceProblem,
  encodeClientTarget,
  identProblem,
  qubeNameProblem,
  sanitizeDomainField,
  sanitizeServiceName,
  validateAgentMessage,
} from "../../src/protocol/validate.ts";

// Payloads are assembled byte by byte here, not with the codec, so that malformed fields can be
// expressed and the layout is checked independently.
function field(content: string | Uint8Array, size: number): Buffer {
  const bytes = Buffer.alloc(size);
  (typeof content === "string" ? Buffer.from(content, "latin1") : Buffer.from(content)).copy(bytes);
  return bytes;
}

function trigger4(parts: {
  source?: string | Uint8Array;
  target?: string | Uint8Array;
  ident?: string | Uint8Array;
  tail: string;
}) {
  return Buffer.concat([
    field(parts.source ?? "", 64),
    field(parts.target ?? "work", 64),
    field(parts.ident ?? "SOCKET5", 32),
    Buffer.from(parts.tail, "latin1"),
  ]);
}

function trigger3(parts: {
  target?: string | Uint8Array;
  ident?: string | Uint8Array;
  tail: string;
}) {
  return Buffer.concat([
    field(parts.target ?? "work", 64),
    field(parts.ident ?? "SOCKET5", 32),
    Buffer.from(parts.tail, "latin1"),
  ]);
}

function triggerV2(parts: {
  service: string | Uint8Array;
  target?: string;
  ident?: string | Uint8Array;
}) {
  return Buffer.concat([
    field(parts.service, 64),
    field(parts.target ?? "work", 32),
    field(parts.ident ?? "SOCKET5", 32),
  ]);
}

function validate(type: number, body: Uint8Array, version = 4) {
  const header: Header = { type, len: body.length };
  return validateAgentMessage(header, new Uint8Array(body), version);
}

const ident = (content: string | Uint8Array) => new Uint8Array(field(content, 32));

describe("ident validation (§3.5)", () => {
  const accepted: [string, Uint8Array][] = [
    ["SOCKET12", ident("SOCKET12")],
    ["Mirage form", ident(`MIRAGE${"7".padStart(25, "0")}`)],
    ["space, dot, dash, underscore", ident("a b.c-d_e")],
    ["empty (all NUL)", new Uint8Array(32)],
    ["31 bytes", ident("x".repeat(31))],
  ];
  test.each(accepted)("accepts %s", (_name, value) => {
    expect(identProblem(value)).toBeNull();
  });

  const rejected: [string, Uint8Array, RegExp][] = [
    ["bad byte '/'", ident("SOCK/ET"), /invalid byte 47 at offset 4/],
    ["bad byte 0xff", ident(Uint8Array.from([0x41, 0xff])), /invalid byte 255/],
    ["newline", ident("a\n"), /invalid byte 10/],
    ["not NUL-terminated", new Uint8Array(32).fill(0x41), /not NUL-terminated/],
    [
      "data after the NUL (trailing data)",
      ident(Uint8Array.from([0x61, 0, 0x62])),
      /offset 2 after its terminator at 1/,
    ],
    ["last byte non-NUL after a NUL", Uint8Array.from([...new Uint8Array(31), 0x61]), /offset 31/],
    ["wrong length", new Uint8Array(31), /32 bytes/],
  ];
  test.each(rejected)("rejects %s", (_name, value, reason) => {
    expect(identProblem(value)).toMatch(reason);
  });
});

describe("sanitizing (§7.3)", () => {
  test("targets keep [A-Za-z0-9_.-@:], NUL forced at the last byte", () => {
    expect(sanitizeDomainField(field("@dispvm:fedora-41.x_y", 64))).toBe("@dispvm:fedora-41.x_y");
    expect(sanitizeDomainField(field("wo rk$/+é", 64))).toBe("wo_rk____");
    expect(sanitizeDomainField(new Uint8Array(64).fill(0x61))).toBe("a".repeat(63));
    expect(sanitizeDomainField(field(Uint8Array.from([0x61, 0, 0x62]), 64))).toBe("a");
  });

  test("service names keep [A-Za-z0-9_.-+]", () => {
    expect(sanitizeServiceName(Buffer.from("qubes.Svc+arg-1_x"))).toBe("qubes.Svc+arg-1_x");
    expect(sanitizeServiceName(Buffer.from("a$b@c:d/e f"))).toBe("a_b_c_d_e_f");
    expect(sanitizeServiceName(Buffer.from("é", "utf8"))).toBe("__");
  });
});

describe("TRIGGER4 body checks (§7.3)", () => {
  test("a good trigger is accepted with sanitized fields and the raw ident", () => {
    const verdict = validate(
      C.MSG_TRIGGER_SERVICE4,
      trigger4({ source: "relay", target: "$work!", tail: "qubes.Svc+a/b\0" }),
    );
    expect(verdict).toEqual({
      kind: "ok",
      source: "relay",
      target: "_work_",
      service: "qubes.Svc+a_b",
      ident: ident("SOCKET5"),
    });
  });

  test("an empty source is passed on as empty", () => {
    const verdict = validate(C.MSG_TRIGGER_SERVICE4, trigger4({ tail: "s\0" }));
    expect(verdict.kind === "ok" && verdict.source).toBe("");
  });

  test("an all-NUL ident passes", () => {
    expect(
      validate(C.MSG_TRIGGER_SERVICE4, trigger4({ ident: new Uint8Array(32), tail: "s\0" })).kind,
    ).toBe("ok");
  });

  const refused: [string, { ident?: string | Uint8Array; tail: string }, RegExp][] = [
    ["bad ident byte", { ident: "SOCK$", tail: "s\0" }, /invalid byte 36/],
    [
      "non-terminated ident",
      { ident: new Uint8Array(32).fill(0x42), tail: "s\0" },
      /not NUL-terminated/,
    ],
    [
      "ident with trailing data",
      { ident: Uint8Array.from([0x61, 0, 0x62]), tail: "s\0" },
      /after its terminator/,
    ],
    ["empty service name", { tail: "\0" }, /empty service name/],
    ["leading '+'", { tail: "+arg\0" }, /starts with '\+'/],
    ["lone '+'", { tail: "+\0" }, /starts with '\+'/],
    ["interior NUL", { tail: "a\0b\0" }, /interior NUL/],
    ["no terminating NUL", { tail: "abc" }, /not NUL-terminated/],
    [
      "ident is checked before the service name",
      { ident: "a/b", tail: "\0" },
      /ident has invalid byte/,
    ],
  ];
  test.each(refused)("refuses %s, echoing the raw ident", (_name, parts, reason) => {
    const body = trigger4(parts);
    const verdict = validate(C.MSG_TRIGGER_SERVICE4, body);
    expect(verdict.kind).toBe("refused");
    if (verdict.kind !== "refused") return;
    expect(verdict.reason).toMatch(reason);
    expect(verdict.ident).toEqual(new Uint8Array(body.subarray(128, 160)));
  });
});

describe("TRIGGER3 and TRIGGER (v2) body checks", () => {
  test("TRIGGER3 is accepted at v3 and at v4, with no source", () => {
    for (const version of [3, 4]) {
      expect(
        validate(
          C.MSG_TRIGGER_SERVICE3,
          trigger3({ target: "@default", tail: "qubes.Svc\0" }),
          version,
        ),
      ).toEqual({
        kind: "ok",
        source: null,
        target: "@default",
        service: "qubes.Svc",
        ident: ident("SOCKET5"),
      });
    }
  });

  test.each([
    ["empty", "\0", /empty/],
    ["leading '+'", "+x\0", /'\+'/],
    ["interior NUL", "x\0y\0", /interior NUL/],
    ["unterminated", "xy", /not NUL-terminated/],
  ])("TRIGGER3 refuses a service name that is %s", (_name, tail, reason) => {
    const verdict = validate(C.MSG_TRIGGER_SERVICE3, trigger3({ tail }), 3);
    expect(verdict.kind === "refused" && verdict.reason).toMatch(reason);
  });

  test("TRIGGER (v2) force-terminates the 64-byte name and sanitizes it", () => {
    const verdict = validate(
      C.MSG_TRIGGER_SERVICE,
      triggerV2({ service: "s".repeat(64), target: "w$" }),
      2,
    );
    expect(verdict).toEqual({
      kind: "ok",
      source: null,
      target: "w_",
      service: "s".repeat(63),
      ident: ident("SOCKET5"),
    });
  });

  test.each([
    ["empty", ""],
    ["leading '+'", "+arg"],
  ])("TRIGGER (v2) refuses a service name that is %s", (_name, service) => {
    expect(validate(C.MSG_TRIGGER_SERVICE, triggerV2({ service }), 2).kind).toBe("refused");
  });

  test("TRIGGER (v2) refuses a bad ident", () => {
    expect(validate(C.MSG_TRIGGER_SERVICE, triggerV2({ service: "s", ident: "a:b" }), 2).kind).toBe(
      "refused",
    );
  });
});

describe("header rules (§7.3): violations are fatal", () => {
  const cases: [string, number, number, number, "fatal" | "ok"][] = [
    ["TRIGGER len 128 at v2", C.MSG_TRIGGER_SERVICE, 128, 2, "ok"],
    ["TRIGGER len 127", C.MSG_TRIGGER_SERVICE, 127, 2, "fatal"],
    ["TRIGGER len 129", C.MSG_TRIGGER_SERVICE, 129, 2, "fatal"],
    ["TRIGGER at v3", C.MSG_TRIGGER_SERVICE, 128, 3, "fatal"],
    ["TRIGGER at v4", C.MSG_TRIGGER_SERVICE, 128, 4, "fatal"],
    ["TRIGGER3 len 96 (no name area)", C.MSG_TRIGGER_SERVICE3, 96, 3, "fatal"],
    ["TRIGGER3 len 97", C.MSG_TRIGGER_SERVICE3, 97, 3, "ok"],
    ["TRIGGER3 len 96+65000", C.MSG_TRIGGER_SERVICE3, 96 + 65000, 3, "ok"],
    ["TRIGGER3 len 96+65001", C.MSG_TRIGGER_SERVICE3, 96 + 65001, 3, "fatal"],
    ["TRIGGER3 at v2", C.MSG_TRIGGER_SERVICE3, 100, 2, "fatal"],
    ["TRIGGER3 at v4", C.MSG_TRIGGER_SERVICE3, 100, 4, "ok"],
    ["TRIGGER4 len 160", C.MSG_TRIGGER_SERVICE4, 160, 4, "fatal"],
    ["TRIGGER4 len 161", C.MSG_TRIGGER_SERVICE4, 161, 4, "ok"],
    ["TRIGGER4 len 160+65000", C.MSG_TRIGGER_SERVICE4, 160 + 65000, 4, "ok"],
    ["TRIGGER4 len 160+65001", C.MSG_TRIGGER_SERVICE4, 160 + 65001, 4, "fatal"],
    ["TRIGGER4 at v3", C.MSG_TRIGGER_SERVICE4, 200, 3, "fatal"],
    ["CONNECTION_TERMINATED len 8", C.MSG_CONNECTION_TERMINATED, 8, 4, "ok"],
    ["CONNECTION_TERMINATED len 9", C.MSG_CONNECTION_TERMINATED, 9, 4, "fatal"],
    ["EXEC_CMDLINE from the agent", C.MSG_EXEC_CMDLINE, 20, 4, "fatal"],
    ["HELLO after the handshake", C.MSG_HELLO, 4, 4, "fatal"],
    ["DATA_STDIN on the control channel", C.MSG_DATA_STDIN, 0, 4, "fatal"],
    ["unassigned type 0x214", 0x214, 0, 4, "fatal"],
  ];
  test.each(cases)("%s", (_name, type, len, version, expected) => {
    const problem = checkAgentHeader({ type, len }, version);
    expect(problem === null ? "ok" : problem.kind).toBe(expected);
  });

  test("validateAgentMessage applies the header rules first", () => {
    expect(validate(C.MSG_TRIGGER_SERVICE4, trigger4({ tail: "s\0" }), 3).kind).toBe("fatal");
    expect(validate(C.MSG_TRIGGER_SERVICE3, trigger3({ tail: "" }), 3).kind).toBe("fatal");
  });

  test("a body whose size disagrees with the header is fatal", () => {
    const body = trigger4({ tail: "s\0" });
    expect(
      validateAgentMessage({ type: C.MSG_TRIGGER_SERVICE4, len: body.length + 1 }, body, 4).kind,
    ).toBe("fatal");
  });
});

describe("CONNECTION_TERMINATED (§7.3)", () => {
  const body = (domain: number, port: number) => {
    const bytes = Buffer.alloc(8);
    bytes.writeUInt32LE(domain, 0);
    bytes.writeUInt32LE(port, 4);
    return bytes;
  };
  test.each([513, 640, 768])("port %d is accepted", (port) => {
    expect(validate(C.MSG_CONNECTION_TERMINATED, body(3, port))).toEqual({
      kind: "connection-terminated",
      connectDomain: 3,
      connectPort: port,
    });
  });
  test.each([0, 512, 769, 0xffffffff])("port %d kills the daemon", (port) => {
    expect(validate(C.MSG_CONNECTION_TERMINATED, body(3, port)).kind).toBe("fatal");
  });
});

describe("qube names (qube-name.c)", () => {
  test.each([
    "work",
    "a",
    "A1",
    "x".repeat(31),
    "my-vm.1_2",
    "sys-net",
    "dom0",
    "nonesuch",
    "vm-dmx",
  ])("'%s' is valid", (name) => {
    expect(qubeNameProblem(name)).toBeNull();
  });
  test.each([
    ["", /1\.\.31/],
    ["x".repeat(32), /1\.\.31/],
    ["1work", /letter/],
    ["-a", /letter/],
    ["_a", /letter/],
    ["wo rk", /\[A-Za-z0-9_.-\]/],
    ["wörk", /\[A-Za-z0-9_.-\]/],
    ["a/b", /\[A-Za-z0-9_.-\]/],
    ["@dispvm", /letter/],
    ["work-dm", /-dm/],
    ["none", /reserved/],
    ["default", /reserved/],
    ["Domain-0", /reserved/],
  ])("'%s' is invalid", (name, reason) => {
    expect(qubeNameProblem(name)).toMatch(reason);
  });
});

describe("qrexec-client-vm TARGET and SERVICE (§10)", () => {
  test.each([
    ["$dispvm", "@dispvm"],
    ["$default", "@default"],
    ["$dispvm:tmpl", "@dispvm:tmpl"],
    ["a$b$", "a@b@"],
    ["", "@default"],
    ["work", "work"],
    ["x".repeat(70), "x".repeat(63)],
  ])("target '%s' is sent as '%s'", (target, expected) => {
    const encoded = encodeClientTarget(target);
    expect(encoded.length).toBe(64);
    expect(fieldText(encoded)).toBe(expected);
    expect(encoded[63]).toBe(0);
  });

  test.each([
    ["empty", "", /empty/],
    ["leading '+'", "+arg", /'\+'/],
    ["with NUL", "a\0b", /NUL/],
    ["of 65000 bytes (no room for the NUL)", "s".repeat(65000), /too long/],
  ])("a service %s is rejected locally", (_name, service, reason) => {
    expect(clientServiceProblem(service)).toMatch(reason);
    const built = buildClientTrigger({ target: "work", service });
    expect(built.kind === "invalid" && built.reason).toMatch(reason);
  });

  test.each(["qubes.Svc+arg", "a$b", "s".repeat(64999), "qubes.Filecopy"])(
    "service %#: accepted",
    (service) => {
      expect(clientServiceProblem(service)).toBeNull();
    },
  );

  test("the built TRIGGER4 is what the daemon accepts", () => {
    const built = buildClientTrigger({
      target: "$dispvm:fedora",
      service: "qubes.Svc+x",
      source: "relay",
    });
    if (built.kind !== "ok") throw new Error(built.reason);
    const header = decodeHeader(built.message);
    expect(header).toEqual({ type: C.MSG_TRIGGER_SERVICE4, len: 160 + "qubes.Svc+x".length + 1 });
    const body = built.message.subarray(8);
    expect(fieldText(body.subarray(128, 160))).toBe("SOCKET");
    expect(validateAgentMessage(header, body, 4)).toEqual({
      kind: "ok",
      source: "relay",
      target: "@dispvm:fedora",
      service: "qubes.Svc+x",
      ident: ident("SOCKET"),
    });
  });

  test("NUL in target or source is rejected", () => {
    expect(buildClientTrigger({ target: "a\0b", service: "s" }).kind).toBe("invalid");
    expect(buildClientTrigger({ target: "a", service: "s", source: "x\0" }).kind).toBe("invalid");
  });
});
