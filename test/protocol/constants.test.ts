import { describe, expect, test } from "bun:test";
import * as C from "../../src/protocol/constants.ts";
import * as Abi from "../../src/abi.generated.ts";

describe("protocol constants", () => {
  test("message types are the upstream values (§3.2)", () => {
    expect([C.MSG_DATA_STDIN, C.MSG_DATA_STDOUT, C.MSG_DATA_STDERR, C.MSG_DATA_EXIT_CODE]).toEqual([
      0x190, 0x191, 0x192, 0x193,
    ]);
    expect([
      C.MSG_EXEC_CMDLINE,
      C.MSG_JUST_EXEC,
      C.MSG_SERVICE_CONNECT,
      C.MSG_SERVICE_REFUSED,
    ]).toEqual([0x200, 0x201, 0x202, 0x203]);
    expect([
      C.MSG_TRIGGER_SERVICE,
      C.MSG_CONNECTION_TERMINATED,
      C.MSG_TRIGGER_SERVICE3,
      C.MSG_TRIGGER_SERVICE4,
    ]).toEqual([0x210, 0x211, 0x212, 0x213]);
    expect(C.MSG_HELLO).toBe(0x300);
  });

  test("versions, limits, ports and exit codes", () => {
    expect([
      C.QREXEC_PROTOCOL_VERSION,
      C.QREXEC_CLIENT_PROTOCOL_VERSION,
      C.QREXEC_PROTOCOL_VERSION_MIN,
    ]).toEqual([4, 3, 2]);
    expect([C.MAX_DATA_CHUNK_V2, C.MAX_DATA_CHUNK_V3]).toEqual([4096, 65536]);
    expect([C.MAX_SERVICE_NAME_LEN, C.NAME_MAX, C.MAX_QREXEC_CMD_LEN]).toEqual([65000, 255, 65535]);
    expect([C.VCHAN_BASE_PORT, C.MAX_CLIENTS, C.DATA_PORT_MIN, C.DATA_PORT_MAX]).toEqual([
      512, 256, 513, 768,
    ]);
    expect([
      C.QREXEC_EXIT_PROBLEM,
      C.QREXEC_EXIT_REQUEST_REFUSED,
      C.QREXEC_EXIT_SERVICE_NOT_FOUND,
    ]).toEqual([125, 126, 127]);
  });

  test("struct sizes add up from their fields (§3.3)", () => {
    expect(C.HEADER_BYTES).toBe(8);
    expect(C.EXEC_PARAMS_FIXED_BYTES).toBe(8);
    expect(C.SERVICE_PARAMS_BYTES).toBe(32);
    expect(C.PEER_INFO_BYTES).toBe(4);
    expect(C.TRIGGER_V2_BYTES).toBe(128);
    expect(C.TRIGGER3_FIXED_BYTES).toBe(96);
    expect(C.TRIGGER4_FIXED_BYTES).toBe(160);
  });

  test("default paths (§5.3, §5.4, §10)", () => {
    expect(C.DEFAULT_SERVICE_PATH.split(":")).toEqual([
      "/run/qubes-rpc",
      "/usr/local/etc/qubes-rpc",
      "/etc/qubes-rpc",
    ]);
    expect(C.DEFAULT_RPC_CONFIG_PATH.split(":")).toEqual([
      "/run/qubes/rpc-config",
      "/usr/local/etc/qubes/rpc-config",
      "/etc/qubes/rpc-config",
    ]);
    expect(C.DEFAULT_AGENT_SOCKET).toBe("/var/run/qubes/qrexec-agent");
    expect(C.DEFAULT_DAEMON_SOCKET_DIR).toBe("/var/run/qubes");
  });

  // Each snake_case key, upper-cased, names the export it mirrors, with or without the QREXEC_
  // prefix. That pins each value to its name, both ways.
  const exports = C as unknown as Record<string, unknown>;
  function exportNameOf(key: string): string | undefined {
    const upper = key.toUpperCase();
    return [upper, `QREXEC_${upper}`].find((candidate) => candidate in exports);
  }

  test("every protocolConstants key is snake_case and names an export of the same value", () => {
    for (const [key, value] of Object.entries(C.protocolConstants)) {
      expect(key).toMatch(/^[a-z][a-z0-9_]*$/);
      const name = exportNameOf(key);
      expect({ key, name }).toEqual({ key, name: expect.any(String) });
      expect(exports[name!]).toBe(value);
    }
    expect(C.protocolConstants.msg_data_stdin).toBe(0x190);
    expect(C.protocolConstants.max_data_chunk_v3).toBe(65536);
    expect(C.protocolConstants.trigger4_fixed_bytes).toBe(160);
  });

  test("every numeric export is listed in protocolConstants", () => {
    const listed = new Set(Object.keys(C.protocolConstants).map(exportNameOf));
    for (const [name, value] of Object.entries(C)) {
      if (typeof value === "number")
        expect({ name, listed: listed.has(name) }).toEqual({ name, listed: true });
    }
  });
});

describe("protocol constants against zig/protocol.zig (via src/abi.generated.ts)", () => {
  const snake = (pascal: string) => pascal.replace(/(?<=[a-z0-9])(?=[A-Z])/g, "_").toLowerCase();

  test("every message type Zig knows has the same number here, and no other", () => {
    const zig: Record<string, number> = {};
    for (const [name, value] of Object.entries(Abi.ProtocolMsgType))
      zig[`msg_${snake(name)}`] = value;
    const ours = Object.entries(C.protocolConstants).filter(([key]) => key.startsWith("msg_"));
    expect(Object.fromEntries(ours)).toEqual(zig);
  });

  test("versions, chunk limits and sizes agree", () => {
    expect(C.QREXEC_PROTOCOL_VERSION_MIN).toBe(Abi.PROTOCOL_VERSION_MIN);
    expect(C.QREXEC_PROTOCOL_VERSION).toBe(Abi.PROTOCOL_VERSION_MAX);
    expect(C.QREXEC_CLIENT_PROTOCOL_VERSION).toBe(Abi.CLIENT_PROTOCOL_VERSION);
    expect(C.QREXEC_EXIT_SIGNAL_BASE).toBe(Abi.EXIT_SIGNAL_BASE);
    expect(C.QREXEC_EXIT_NO_STATUS).toBe(Abi.EXIT_NO_STATUS);
    expect(C.MAX_DATA_CHUNK_V2).toBe(Abi.MAX_DATA_CHUNK_V2);
    expect(C.MAX_DATA_CHUNK_V3).toBe(Abi.MAX_DATA_CHUNK_V3);
    expect(C.HEADER_BYTES).toBe(Abi.PROTOCOL_HEADER_BYTES);
    expect(C.HEADER_BYTES + C.EXIT_CODE_BYTES).toBe(Abi.PROTOCOL_EXIT_CODE_BYTES);
    expect(C.TRIGGER4_FIXED_BYTES + C.MAX_SERVICE_NAME_LEN).toBe(Abi.CONTROL_BODY_BYTES_MAX);
  });
});
