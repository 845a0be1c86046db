// `qrx lab top`: a call held open in a real lab shows up with its source, target, service, ring
// sizes and the bytes that crossed its vchan; the live view refreshes on a terminal (a pty from
// `script`); the rates come from the difference between two samples.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { CallStatus } from "../../src/agent/call-status.ts";
import type { LabStatus } from "../../src/lab/admin.ts";
import { formatTable } from "../../src/lab/control.ts";
import { formatBytes, renderFrame, type TopFrame, topFrame } from "../../src/cli/lab-top.ts";
import { QRX, TestLab } from "../helpers/lab.ts";
import { waitFor } from "../helpers/system.ts";

const lab = new TestLab();
beforeAll(() => lab.up(), 60_000);
afterAll(() => lab.remove());

const MB3 = 3_000_000;

function statusFile(domain: string): CallStatus | null {
  try {
    return JSON.parse(
      readFileSync(join(lab.dir, "domains", domain, "calls-running.json"), "utf8"),
    ) as CallStatus;
  } catch {
    return null;
  }
}

test("a running call: source -> target, service, rings, bytes each way; then gone", async () => {
  // The call stays open as long as its stdin does: 3 MB go through test.Echo, then it waits.
  const call = Bun.spawn(
    [QRX, "run", "work", "--", "qrexec-client-vm", "--buffer-size=8192", "vault", "test.Echo+x"],
    {
      env: lab.env({ QRX_DIR: lab.dir }),
      stdin: "pipe",
      stdout: "pipe",
      stderr: "pipe",
    },
  );
  const echoed = new Response(call.stdout).arrayBuffer();
  try {
    call.stdin.write(new Uint8Array(MB3).fill(7));
    call.stdin.flush();
    await waitFor(
      () => (statusFile("vault")?.calls[0]?.bytesFromService ?? 0) >= MB3,
      "the echo in vault's status file",
      30_000,
    );
    const top = await lab.qrx(["lab", "top", "--json", "--interval", "0.2"]);
    expect(top).toMatchObject({ code: 0, stderr: "" });
    const frame = JSON.parse(top.stdout) as TopFrame;
    expect(frame.calls.length).toBe(1);
    const [shown] = frame.calls;
    expect(shown).toMatchObject({
      source: "work",
      target: "vault",
      service: "test.Echo+x",
      toServiceRingBytes: 8192,
      fromServiceRingBytes: 8192,
    });
    // The payload plus an 8-byte header per chunk (a chunk fills at most the 8 KiB ring).
    for (const bytes of [shown!.bytesToService, shown!.bytesFromService]) {
      expect(bytes).toBeGreaterThanOrEqual(MB3);
      expect(bytes).toBeLessThan(MB3 * 1.05);
    }
    expect(shown!.ageSeconds).toBeGreaterThan(0);
    expect(frame.domains.find((domain) => domain.name === "vault")?.state).toBe("Running");
  } finally {
    call.stdin.end();
  }
  expect(await call.exited).toBe(0);
  expect((await echoed).byteLength).toBe(MB3);
  await waitFor(
    () => statusFile("vault")?.calls.length === 0,
    "vault's status file to empty",
    10_000,
  );
  const after = JSON.parse(
    (await lab.qrx(["lab", "top", "--json", "--interval", "0.1"])).stdout,
  ) as TopFrame;
  expect(after.calls).toEqual([]);
}, 60_000);

test("on a terminal it redraws each frame; --count ends it", async () => {
  const command = `${QRX} lab top --dir ${lab.dir} --count 2 --interval 0.2`;
  const child = Bun.spawn(["script", "-qfec", command, "/dev/null"], {
    env: lab.env(),
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  const [out, code] = await Promise.all([new Response(child.stdout).text(), child.exited]);
  expect(code).toBe(0);
  expect(out.split("\x1b[H\x1b[2J").length - 1).toBe(2);
  expect(out.match(/qrx lab top: /g)?.length).toBe(2);
  expect(out).toContain("CALLS/S");
}, 30_000);

test("no lab there: one line saying so, exit 1", async () => {
  const none = join(lab.root.path, "none");
  const result = await lab.qrx(["lab", "top", "--once", "--dir", none], { withDir: false });
  expect(result.code).toBe(1);
  expect(result.stderr).toBe(`qrx: no lab running in ${none}: run qrx lab up --dir ${none}\n`);
});

test("rates are the differences between two samples; calls per second per domain", () => {
  const status = (calls: number): LabStatus => ({
    dir: "/lab",
    config: "",
    transport: "shm",
    isolation: "namespaces",
    adminPid: 1,
    policyPid: 2,
    startedAt: 0,
    ready: true,
    disposablesCreated: 0,
    domains: [
      {
        name: "vault",
        id: 2,
        klass: "AppVM",
        templateForDispvms: false,
        state: "Running",
        template: null,
        agentPid: 3,
        daemonPid: 4,
        runningSince: 0,
        calls,
        restarts: 0,
        preloaded: false,
        isolation: "namespaces",
      },
    ],
  });
  const call = (bytes: number) => ({
    source: "work",
    target: "vault",
    service: "test.Echo",
    startedAt: 1_000,
    toServiceRingBytes: 65536,
    fromServiceRingBytes: 1024,
    bytesToService: bytes,
    bytesFromService: bytes / 2,
  });
  const frame = topFrame(
    { at: 2_000, status: status(10), calls: [call(1 << 20)] },
    { at: 4_000, status: status(16), calls: [call(5 << 20)] },
  );
  expect(frame.intervalSeconds).toBe(2);
  expect(frame.calls[0]).toMatchObject({
    ageSeconds: 3,
    toServiceRate: 2 << 20,
    fromServiceRate: 1 << 20,
  });
  expect(frame.domains[0]!.callsPerSecond).toBe(3);
  // A call first seen in this sample: its rate is over its whole life.
  const fresh = topFrame(
    { at: 2_000, status: status(10), calls: [] },
    { at: 3_000, status: status(10), calls: [call(4 << 20)] },
  );
  expect(fresh.calls[0]!.toServiceRate).toBe(2 << 20);
  const text = renderFrame(frame, formatTable);
  expect(text).toContain("work -> vault  test.Echo  64K/1K");
  expect(text).toContain("2.00 MiB/s");
  expect(formatBytes(0)).toBe("0 B");
  expect(formatBytes(1536)).toBe("1.50 KiB");
});
