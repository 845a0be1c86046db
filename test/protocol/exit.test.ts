import { describe, expect, test } from "bun:test";
import {
  clientExitCode,
  processExitCode,
  QREXEC_EXIT_PROBLEM,
  QREXEC_EXIT_REQUEST_REFUSED,
  QREXEC_EXIT_SERVICE_NOT_FOUND,
  signalExitStatus,
  waitStatus,
} from "../../src/protocol/exit.ts";

describe("exit statuses (§8)", () => {
  test("the qrexec codes", () => {
    expect([
      QREXEC_EXIT_PROBLEM,
      QREXEC_EXIT_REQUEST_REFUSED,
      QREXEC_EXIT_SERVICE_NOT_FOUND,
    ]).toEqual([125, 126, 127]);
  });

  test("killed by signal N → 128+N", () => {
    expect(signalExitStatus(9)).toBe(137);
    expect(signalExitStatus("SIGTERM")).toBe(143);
    expect(signalExitStatus("SIGKILL")).toBe(137);
    expect(() => signalExitStatus(0)).toThrow(RangeError);
    expect(() => signalExitStatus("SIGNOPE" as NodeJS.Signals)).toThrow(RangeError);
  });

  test("waitStatus prefers the signal", () => {
    expect(waitStatus({ exitCode: 3, signalCode: null })).toBe(3);
    expect(waitStatus({ exitCode: null, signalCode: "SIGINT" })).toBe(130);
    expect(() => waitStatus({ exitCode: null, signalCode: null })).toThrow(RangeError);
  });

  test("exit() keeps the low 8 bits", () => {
    expect([
      processExitCode(-1),
      processExitCode(256),
      processExitCode(300),
      processExitCode(42),
    ]).toEqual([255, 0, 44, 42]);
  });

  test.each([
    ["no local program: the remote code", 42, null, 42],
    ["test_run_client_with_local_proc: remote 42 → 42", 42, 0, 42],
    ["…_local_proc_failed: remote 0, local 1 → 1", 0, 1, 1],
    ["…_service_failed: remote 125 → 125", 125, 1, 125],
    ["both zero", 0, 0, 0],
    ["no exit code arrived → 255", null, 0, 255],
    ["no exit code, local failed → still 255", null, 3, 255],
    ["remote -1 → 255", -1, null, 255],
    ["local killed by SIGTERM", 0, 143, 143],
  ] as const)("%s", (_name, remote, local, expected) => {
    expect(clientExitCode(remote, local)).toBe(expected);
  });
});
