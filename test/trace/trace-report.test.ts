// The trace reader on hand-written traces: how events from several processes join into calls.
import { describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  groupCalls,
  parseTrace,
  summarize,
  summaryText,
  waterfallText,
  type TracedCall,
} from "../../src/trace-report.ts";
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

  test("two isolated domains' processes with the same pid and call id stay two calls", () => {
    const agent = (dom: number, t: number) => ({ ...event(t, "client-start", 56, "56.1"), dom });
    const calls = groupCalls([agent(1, 1), agent(2, 2)]);
    expect(calls.map((call) => call.events.map((e) => e.dom))).toEqual([[1], [2]]);
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
  test("a missing file, a file without calls, an unwritable SVG: a message, exit 1", async () => {
    const dir = tempDir();
    try {
      const missing = Bun.spawnSync([QRX, "trace", join(dir.path, "nope.jsonl")]);
      expect(missing.exitCode).toBe(1);
      const nope = join(dir.path, "nope.jsonl");
      expect(missing.stderr.toString()).toBe(`qrx trace: cannot read ${nope}: no such file\n`);
      const directory = Bun.spawnSync([QRX, "trace", dir.path]);
      expect(directory.exitCode).toBe(1);
      expect(directory.stderr.toString()).toBe(
        `qrx trace: cannot read ${dir.path}: it is a directory\n`,
      );
      const junk = join(dir.path, "junk.jsonl");
      writeFileSync(junk, "hello\n");
      const empty = Bun.spawnSync([QRX, "trace", junk]);
      expect(empty.exitCode).toBe(1);
      const skipped = `qrx trace: 1 line(s) in ${junk} are not trace events; skipped\n`;
      expect(empty.stderr.toString()).toBe(`${skipped}qrx trace: no calls in ${junk}\n`);
      // An SVG it could not write is said before any work, not a stack trace after it.
      const svg = join(dir.path, "no-such-dir", "calls.svg");
      const unwritable = Bun.spawnSync([QRX, "trace", junk, "--svg", svg]);
      expect(unwritable.exitCode).toBe(1);
      expect(unwritable.stderr.toString()).toBe(
        `qrx trace: cannot write ${svg}: its directory does not exist\n`,
      );
    } finally {
      dir.remove();
    }
  });
});

/** One event's line with `field` set to `json` (raw JSON text, so 1e999 and the like fit). */
function lineWith(field: string, json: string): string {
  const fields = { t: "5", stage: '"x"', pid: "7", prog: '"p"', dom: "2", call: '"7.1"' };
  const all: Record<string, string> = { ...fields, [field]: json };
  return `{${Object.entries(all)
    .map(([name, value]) => `${JSON.stringify(name)}:${value}`)
    .join(",")}}`;
}

/** Every field the report reads, each with values of the wrong type (or out of bounds). */
const MISTYPED: [string, string[]][] = [
  ["t", ["1e999", "-1e999", "1e308", "-1", "null"]],
  ["stage", [JSON.stringify("s".repeat(4097)), "null"]],
  ["pid", ["-1", "1.5", '"7"', "9007199254740992", "null"]],
  ["prog", ["{}", '["<script>"]', "5", "null"]],
  ["dom", ['"x"', "1.5", "-1", "{}", "null"]],
  ["call", ['{"toString":1}', "5", "[]", "null"]],
  ["keys", ["5", '"k"', "[{}]", "[1]", "[null]", JSON.stringify(Array(65).fill("k"))]],
  ["fresh", ["5", '["k"]', "null"]],
  ["side", ["5", "{}"]],
  ["service", ["5", '["a"]']],
  ["target", ["{}", "5"]],
  ["command", ["[]", JSON.stringify("c".repeat(4097))]],
];

/** Everything `qrx trace` prints or draws for `calls`. */
function render(calls: TracedCall[]): { text: string; svg: string } {
  const text = [...calls.flatMap(waterfallText), ...summaryText(calls)].join("\n");
  return { text, svg: waterfallSvg(calls) };
}

describe("a hostile trace (written in part by domains that may not be ours)", () => {
  test("a field of the wrong type, or too long, makes its line a bad line", () => {
    expect(parseTrace(lineWith("keys", '["k"]'))).toMatchObject({ badLines: 0 });
    const accepted = MISTYPED.flatMap(([field, values]) =>
      values.map((json) => lineWith(field, json)).filter((line) => parseTrace(line).badLines !== 1),
    );
    expect(accepted).toEqual([]);
  });

  test("a trace with every such line reports the valid call alone, without a throw", () => {
    const valid = lineWith("keys", '["k"]');
    const lines = MISTYPED.flatMap(([field, values]) => values.map((v) => lineWith(field, v)));
    const parsed = parseTrace([valid, ...lines, valid].join("\n"));
    expect(parsed.badLines).toBe(lines.length);
    const calls = groupCalls(parsed.events);
    expect(calls.map((call) => call.events.length)).toEqual([2]);
    expect(render(calls).text).toContain("x [p]");
  });

  test("an SVG label with markup and control characters is escaped text, valid XML", () => {
    const label = "<script>alert(1)</script>\x1b\x00";
    const line = JSON.stringify({ ...event(1, label, 1, "1.1"), prog: `<b>${label}` });
    const { svg } = render(groupCalls(parseTrace(line).events));
    expect(svg).toContain("&lt;script&gt;alert(1)&lt;/script&gt;\\x1b\\x00 [&lt;b&gt;&lt;script");
    expect(svg).not.toContain("<script>");
    // XML 1.0 allows no C0 control character but tab and newline: one would break the document.
    expect(svg).not.toMatch(/[\x00-\x08\x0b-\x1f]/);
  });

  test("characters XML allows nowhere (U+FFFF, a lone surrogate) become U+FFFD in the SVG", () => {
    const line = `{"t":1,"stage":"a\\uffffb\\ud800c\\udc00d","pid":1,"prog":"p","call":"1.1"}`;
    const { svg } = render(groupCalls(parseTrace(line).events));
    expect(svg).toContain("a\uFFFDb\uFFFDc\uFFFDd");
    expect(svg).not.toMatch(/[\uFFFE\uFFFF]|[\uD800-\uDFFF]/);
  });

  test("a stage name with ESC is printed with the ESC escaped, by the report and qrx trace", () => {
    const stage = "\x1b[2J\x1b]0;owned\x07exit-code";
    const line = JSON.stringify(event(1, stage, 1, "1.1"));
    const { text } = render(groupCalls(parseTrace(line).events));
    expect(text).toContain("\\x1b[2J\\x1b]0;owned\\x07exit-code [qrexec-agent]");
    expect(text).not.toMatch(/[\x00-\x09\x0b-\x1f\x7f-\x9f]/);
    const dir = tempDir();
    try {
      const file = join(dir.path, "trace.jsonl");
      writeFileSync(file, `${line}\n`);
      const shown = Bun.spawnSync([QRX, "trace", file]);
      expect(shown.exitCode).toBe(0);
      expect(shown.stdout.toString()).toContain("\\x1b[2J");
      expect(shown.stdout.toString()).not.toContain("\x1b");
    } finally {
      dir.remove();
    }
  });
});
