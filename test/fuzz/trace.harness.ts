// Harness over the trace reader (src/trace-report.ts, src/trace-svg.ts): the trace file is
// written by processes inside lab domains that may be hostile. Text of trace-like lines, some
// well typed, some with one field mistyped or too long, and garbage: each line is an event exactly
// when its fields are well typed; nothing throws; what reaches a terminal has no control
// character, and the SVG is our markup alone, every string from the file in it escaped text.

import fc from "fast-check";
import { PUMP_MARKS } from "../../src/constants.ts";
import {
  groupCalls,
  parseTrace,
  summaryText,
  TRACE_KEYS_MAX,
  TRACE_TEXT_MAX,
  waterfallText,
} from "../../src/trace-report.ts";
import { waterfallSvg } from "../../src/trace-svg.ts";
import { jsonInput, type Harness } from "./harness.ts";

/** A line as text, and whether it is an event (null: garbage, either way). */
interface Line {
  text: string;
  event: boolean | null;
}

interface Input {
  lines: Line[];
}

const STAGES = [
  "process-start",
  "client-start",
  "trigger-sent",
  "agent-trigger",
  "daemon-received",
  "policy-asked",
  "policy-answered",
  "exec-request-sent",
  "exec-request",
  "service-connect-sent",
  "call-allowed",
  "data-connected",
  "service-spawned",
  ...PUMP_MARKS,
  "exit-code",
  "teardown",
];

/** Strings a hostile writer would try: markup, terminal escapes, XML's forbidden characters. */
const HOSTILE = [
  "<script>alert(1)</script>",
  "<svg onload=alert(1)>",
  "</text><text>",
  "]]><!--",
  "\x1b[2J\x1b]0;owned\x07",
  "\x9b31m",
  "a\x00b\nc\rd\te\\f",
  "&amp;&#x3c;\"'",
  "\ud800",
  "__proto__",
];

const hostile = fc.constantFrom(...HOSTILE);
const text = fc.oneof(
  { weight: 3, arbitrary: fc.string({ maxLength: 12 }) },
  { weight: 2, arbitrary: hostile },
  { weight: 1, arbitrary: fc.tuple(hostile, fc.string()).map(([a, b]) => a + b) },
);
/** Few enough keys that events share them and calls get joined (and split by fresh ones). */
const key = fc.constantFrom("port:2:3:513", "port:2:3:514", "trig:2:SOCKET1", "trig:2:SOCKET2");
const id = fc.nat({ max: 3 });

/** Raw JSON of a well typed value and of wrongly typed ones, per field. */
const FIELDS: Record<string, { good: fc.Arbitrary<unknown>; bad: string[] }> = {
  t: {
    good: fc.oneof(fc.nat({ max: 50 }), fc.double({ min: 0, max: 1e13, noNaN: true })),
    bad: ["1e999", "-1e999", "1e308", "-0.5", '"1"', "null", "[]", "{}", "true"],
  },
  stage: {
    good: fc.oneof(fc.constantFrom(...STAGES), text),
    bad: ["5", "null", "[]", '{"x":1}', JSON.stringify("s".repeat(TRACE_TEXT_MAX + 1))],
  },
  pid: { good: id, bad: ["-1", "1.5", '"7"', "9007199254740992", "1e999", "null", "[]"] },
  prog: { good: text, bad: ["{}", '["<script>"]', "5", "null", "false"] },
  dom: { good: id, bad: ['"x"', "1.5", "-1", "{}", "null", "1e999"] },
  call: { good: id.map(String), bad: ['{"toString":1}', '{"valueOf":{}}', "5", "[]", "null"] },
  keys: {
    good: fc.array(key, { maxLength: 3 }),
    bad: [
      "5",
      '"k"',
      "[{}]",
      "[1]",
      "[null]",
      "[[]]",
      JSON.stringify(Array(TRACE_KEYS_MAX + 1).fill("k")),
    ],
  },
  fresh: { good: key, bad: ["5", '["k"]', "null", "{}"] },
  side: { good: text, bad: ["5", "{}", "null"] },
  service: { good: text, bad: ["5", '["a"]', "null"] },
  target: { good: text, bad: ["{}", "5", "null"] },
  command: { good: text, bad: ["[]", "1", JSON.stringify("c".repeat(TRACE_TEXT_MAX + 1))] },
};
const REQUIRED = ["t", "stage", "pid"];
const OPTIONAL = Object.keys(FIELDS).filter((name) => !REQUIRED.includes(name));
/** What src/trace.ts always writes, with keys (mostly) to join on. */
const WRITTEN = ["prog", "dom", "call", "keys"];
const present = fc.oneof(
  {
    weight: 3,
    arbitrary: fc.subarray(OPTIONAL).map((some) => [...new Set([...WRITTEN, ...some])]),
  },
  { weight: 1, arbitrary: fc.subarray(OPTIONAL) },
);

/** Raw JSON text of each present field: the required ones and a random subset of the rest. */
const goodFields = fc
  .tuple(
    fc.record(Object.fromEntries(Object.entries(FIELDS).map(([n, f]) => [n, f.good]))),
    present,
    fc.option(fc.jsonValue({ maxDepth: 2 })),
  )
  .map(([values, present, extra]) => {
    const fields: Record<string, string> = {};
    for (const name of [...REQUIRED, ...present]) fields[name] = JSON.stringify(values[name]);
    // A field the report does not read may hold anything.
    if (extra !== null) fields.extra = JSON.stringify(extra);
    return fields;
  });

function objectText(fields: Record<string, string>): string {
  const entries = Object.entries(fields).map(([name, json]) => `${JSON.stringify(name)}:${json}`);
  return `{${entries.join(",")}}`;
}

const goodLine = goodFields.map((fields): Line => ({ text: objectText(fields), event: true }));
const mistypedLine = fc
  .tuple(goodFields, fc.constantFrom(...Object.keys(FIELDS)), fc.nat())
  .map(([fields, name, pick]): Line => {
    const bad = FIELDS[name]!.bad;
    return { text: objectText({ ...fields, [name]: bad[pick % bad.length]! }), event: false };
  });
const missingLine = fc
  .tuple(goodFields, fc.constantFrom(...REQUIRED))
  .map(([fields, name]): Line => {
    const { [name]: _dropped, ...rest } = fields;
    return { text: objectText(rest), event: false };
  });
const garbageLine = fc
  .oneof(
    fc.string({ maxLength: 40 }),
    fc.jsonValue({ maxDepth: 3 }).map((value) => JSON.stringify(value)),
    goodLine.map((line) => line.text.slice(0, line.text.length >> 1)),
    fc.constantFrom("[]", "null", "{}", '{"t":1,"stage":"x"}', "\r", " \t "),
    // Deep nesting: JSON.parse must neither run out of stack nor be treated as an event.
    fc.constantFrom("[".repeat(10_000), `${"[".repeat(10_000)}${"]".repeat(10_000)}`),
  )
  .map((text): Line => ({ text, event: null }));

function assert(ok: boolean, message: string): asserts ok {
  if (!ok) throw new Error(`property violated: ${message}`);
}

/** The SVG's lines, each one of ours; text content escaped (`&` only in an entity, no `<>`). */
const CONTENT = `(?:[^<>&\\x00-\\x08\\x0b-\\x1f]|&(?:lt|gt|amp|quot|apos);)*`;
const SVG_LINE = new RegExp(
  [
    `<\\?xml version="1\\.0" encoding="UTF-8"\\?>`,
    `<svg xmlns="http://www\\.w3\\.org/2000/svg" width="\\d+" height="\\d+" ` +
      `viewBox="0 0 \\d+ \\d+" font-family="monospace" font-size="11">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="\\d+" y="\\d+"(?: font-weight="bold")?>${CONTENT}</text>`,
    `<rect x="\\d+\\.\\d" y="\\d+" width="\\d+\\.\\d" height="\\d+" fill="#[0-9a-f]{6}"/>`,
    `</svg>`,
    ``,
  ]
    .map((line) => `^(?:${line})$`)
    .join("|"),
);

function checkSvg(svg: string, strings: string[]): void {
  for (const line of svg.split("\n")) {
    assert(SVG_LINE.test(line), `SVG line ${JSON.stringify(line)}`);
  }
  for (const string of strings) {
    assert(!svg.includes(string), `${JSON.stringify(string)} verbatim in the SVG`);
  }
}

function check({ lines }: Input): void {
  for (const line of lines) {
    if (line.event === null) continue;
    const single = parseTrace(line.text);
    const got = single.events.length === 1 && single.badLines === 0;
    assert(got === line.event, `${line.text.slice(0, 200)}: event ${got}, want ${line.event}`);
  }
  const whole = lines.map((line) => line.text).join("\n");
  const parsed = parseTrace(whole);
  const nonBlank = whole.split("\n").filter((line) => line.trim() !== "").length;
  assert(parsed.events.length + parsed.badLines === nonBlank, "lines lost or counted twice");

  const calls = groupCalls(parsed.events);
  assert(calls.flatMap((call) => call.events).length === parsed.events.length, "events lost");
  const terminal = [...calls.flatMap(waterfallText), ...summaryText(calls)];
  for (const line of terminal) {
    assert(!/[\x00-\x1f\x7f-\x9f]/.test(line), `control character in ${JSON.stringify(line)}`);
    assert(line.length <= 2000, `a line of ${line.length} characters`);
  }
  checkSvg(
    waterfallSvg(calls),
    HOSTILE.filter((string) => string.includes("<")),
  );
}

export const traceHarness: Harness<Input> = {
  name: "ts-trace",
  arbitrary: fc.record({
    lines: fc.array(
      fc.oneof(
        { weight: 6, arbitrary: goodLine },
        { weight: 3, arbitrary: mistypedLine },
        { weight: 1, arbitrary: missingLine },
        { weight: 2, arbitrary: garbageLine },
      ),
      { maxLength: 40, size: "medium" },
    ),
  }),
  property: check,
  ...jsonInput,
};
