// The trace reader on hand-written traces: how events from several processes join into calls.
import { describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { groupCalls, parseTrace, summarize } from "../../src/trace-report.ts";
import { waterfallSvg } from "../../src/trace-svg.ts";
import { portKey, pumpStages, triggerKey, type TraceEvent } from "../../src/trace.ts";
import { QRX } from "../helpers/lab.ts";
import { tempDir } from "../helpers/paths.ts";

type Extra = Partial<TraceEvent>;

function event(t: number, stage: string, pid: number, call: string, more: Extra = {}): TraceEvent {
  const prog = pid === 1 ? "qrexec-agent" : "qrexec-daemon";
  return { t, stage, pid, prog, dom: pid === 1 ? 2 : 0, call, ...more };
}

/** One VM -> VM call on `port` as four processes would write it, from time `t0`. */
function vmCall(t0: number, n: number, port: number): TraceEvent[] {
  const trigger = triggerKey(2, `SOCKET${n}`);
  const data = portKey(2, 3, port);
  return [
    event(t0, "client-start", 1, `1.${10 * n}`),
    event(t0 + 1, "agent-trigger", 1, `1.${10 * n + 1}`, {
      keys: [trigger],
      target: "vault",
      service: "test.Add",
    }),
    event(t0 + 2, "daemon-received", 2, `2.${n}`, { keys: [trigger] }),
    event(t0 + 3, "exec-request-sent", 3, `3.${n}`, { keys: [data], fresh: data }),
    event(t0 + 4, "exec-request", 4, `4.${n}`, { keys: [data], dom: 3 }),
    event(t0 + 5, "service-connect-sent", 2, `2.${n}b`, { keys: [data, trigger] }),
    event(t0 + 6, "call-allowed", 1, `1.${10 * n}`, { keys: [data] }),
    event(t0 + 7, "teardown", 4, `4.${n}`, { dom: 3 }),
    event(t0 + 8, "exit-code", 1, `1.${10 * n}`),
  ];
}

describe("joining a trace into calls", () => {
  test("two calls that reuse a port stay two calls, each with all four processes", () => {
    const calls = groupCalls([...vmCall(100, 1, 513), ...vmCall(200, 2, 513)]);
    expect(calls.map((call) => call.events.length)).toEqual([9, 9]);
    const title = "dom2 -> vault test.Add";
    expect(calls.map((call) => call.title)).toEqual([title, title]);
    expect(calls[1]!.events.map((e) => e.t)).toEqual([200, 201, 202, 203, 204, 205, 206, 207, 208]);
    expect(calls[0]!.events.find((e) => e.stage === "exec-request")!.side).toBe("service");
    expect(calls[0]!.durationMs).toBe(8);
  });

  test("events written out of order (several processes, one file) are joined by time", () => {
    const lines = [...vmCall(100, 1, 513), ...vmCall(200, 2, 513)].reverse();
    const calls = groupCalls(lines);
    expect(calls.map((call) => call.start)).toEqual([100, 200]);
  });

  test("the summary is the median offset per stage and side over the calls", () => {
    const slow = vmCall(300, 3, 515).map((e) => (e.stage === "exit-code" ? { ...e, t: 320 } : e));
    const calls = groupCalls([...vmCall(100, 1, 513), ...vmCall(200, 2, 513), ...slow]);
    const { stages, medianCallMs } = summarize(calls);
    expect(medianCallMs).toBe(8);
    const exec = "exec-request [service]";
    expect(stages.find((s) => s.label === exec)).toEqual({ label: exec, calls: 3, medianMs: 4 });
    expect(stages.at(-1)).toEqual({ label: "exit-code [client]", calls: 3, medianMs: 8 });
  });

  test("a hostile service name reaches the title escaped (no terminal escapes, valid XML)", () => {
    const calls = groupCalls([
      event(1, "client-start", 1, "1.1"),
      event(2, "trigger-sent", 1, "1.1", { target: "vault", service: "x\x1b[2J\x07<svg>" }),
    ]);
    expect(calls[0]!.title).toBe("dom2 -> vault x\\x1b[2J\\x07<svg>");
    expect(waterfallSvg(calls)).toContain("dom2 -&gt; vault x\\x1b[2J\\x07&lt;svg&gt;");
  });

  test("torn and foreign lines are counted and skipped", () => {
    const good = JSON.stringify(event(1, "client-start", 1, "1.1"));
    const parsed = parseTrace(`${good}\n{"t":\nnot json\n{"stage":"x"}\n\n${good}\n`);
    expect(parsed.events).toHaveLength(2);
    expect(parsed.badLines).toBe(3);
  });

  test("the pump's marks: realtime ns to ms, unreached stages left out", () => {
    const marks = new Uint8Array(48);
    const view = new DataView(marks.buffer);
    view.setBigUint64(0, 1_796_000_000_123_456_789n, true);
    view.setBigUint64(5 * 8, 1_796_000_000_200_000_000n, true);
    expect(pumpStages(marks)).toEqual([
      { stage: "first-byte-sent", t: 1_796_000_000_123.456 },
      { stage: "exit-received", t: 1_796_000_000_200 },
    ]);
    expect(pumpStages(new Uint8Array(8))).toEqual([]);
    expect(pumpStages(null)).toEqual([]);
  });
});

describe("qrx trace on bad input", () => {
  test("a missing file and a file without calls: a message and exit 1", async () => {
    const dir = tempDir();
    try {
      const missing = Bun.spawnSync([QRX, "trace", join(dir.path, "nope.jsonl")]);
      expect(missing.exitCode).toBe(1);
      expect(missing.stderr.toString()).toMatch(/^qrx trace: cannot read .*nope\.jsonl: .*ENOENT/);
      const junk = join(dir.path, "junk.jsonl");
      writeFileSync(junk, "hello\n");
      const empty = Bun.spawnSync([QRX, "trace", junk]);
      expect(empty.exitCode).toBe(1);
      const skipped = `qrx trace: 1 line(s) in ${junk} are not trace events; skipped\n`;
      expect(empty.stderr.toString()).toBe(`${skipped}qrx trace: no calls in ${junk}\n`);
    } finally {
      dir.remove();
    }
  });
});
