// QRX_TRACE end to end: a lab started with it, real calls, and `qrx trace` on what they wrote.
// Twice: with the domains as plain processes, and isolated (the default), where the trace file
// is on the host and each domain's agent gets it as an fd from its namespace's init.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { TestLab } from "../helpers/lab.ts";
import { groupCalls, parseTrace, type TracedCall } from "../../src/trace-report.ts";

async function tracedLab(isolation: string): Promise<{ lab: TestLab; file: string }> {
  const lab = new TestLab();
  const file = join(lab.root.path, "trace.jsonl");
  // The lab's programs trace through `lab up --trace`, the client through `run --trace`.
  const up = await lab.qrx(["lab", "up", "--isolation", isolation, "--trace", file]);
  if (up.code !== 0) throw new Error(`qrx lab up failed: ${up.stderr}`);
  const vmToVm = await lab.run("work", ["qrexec-client-vm", "vault", "test.Add"], "11 22\n");
  expect(vmToVm).toMatchObject({ code: 0, stdout: "33\n" });
  const client = ["qrexec-client", "-d", "vault", "DEFAULT:QUBESRPC test.Echo dom0"];
  const dom0 = await lab.qrx(["run", "--trace", file, "dom0", "--", ...client], {
    input: "hi\n",
    withDir: false,
    env: { QRX_DIR: lab.dir },
  });
  expect(dom0).toMatchObject({ code: 0, stdout: "hi\n" });
  return { lab, file };
}

function callTitled(file: string, text: string): TracedCall {
  const calls = groupCalls(parseTrace(readFileSync(file, "utf8")).events);
  const found = calls.filter((call) => call.title.includes(text));
  expect(found.map((call) => call.title)).toHaveLength(1);
  return found[0]!;
}

/** The time `stage` was reached on `side` (the first time), failing when it never was. */
function at(call: TracedCall, label: string): number {
  const event = call.events.find((candidate) => `${candidate.stage} [${candidate.side}]` === label);
  const all = () => call.events.map((e) => `${e.stage} [${e.side}]`).join(", ");
  if (!event) throw new Error(`${label} missing from ${call.title}: ${all()}`);
  return event.t;
}

/** Each stage exists and none comes before the one it causally follows. */
function expectInOrder(call: TracedCall, labels: string[]): void {
  const times = labels.map((label) => [label, at(call, label)] as const);
  for (let index = 1; index < times.length; index++) {
    const [before, earlier] = times[index - 1]!;
    const [after, later] = times[index]!;
    if (later < earlier) {
      throw new Error(`${after} (${later}) came before ${before} (${earlier}) in ${call.title}`);
    }
  }
}

describe.each(["none", "namespaces"])("QRX_TRACE in a lab (isolation %s)", (isolation) => {
  let lab: TestLab;
  let file: string;

  beforeAll(async () => {
    ({ lab, file } = await tracedLab(isolation));
  }, 60_000);

  afterAll(async () => {
    await lab.remove();
  });

  test("a VM -> VM call has every stage, in order, from the four processes of the call", () => {
    const call = callTitled(file, "-> vault test.Add");
    expectInOrder(call, [
      "client-start [client]",
      "trigger-sent [client]",
      "agent-trigger [qrexec-agent]",
      "daemon-received [qrexec-daemon]",
      "policy-asked [qrexec-daemon]",
      "policy-answered [qrexec-daemon]",
      "exec-request-sent [qrexec-daemon]",
      "service-connect-sent [qrexec-daemon]",
      "agent-service-connect [qrexec-agent]",
      "call-allowed [client]",
      "first-byte-sent [client]",
      "first-byte-received [service]",
      "first-byte-sent [service]",
      "first-byte-received [client]",
      "exit-received [client]",
      "exit-code [client]",
    ]);
    expectInOrder(call, [
      "exec-request-sent [qrexec-daemon]",
      "exec-request [service]",
      "data-connected [service]",
      "service-spawned [service]",
    ]);
    expectInOrder(call, ["eof-sent [client]", "eof-received [service]"]);
    expectInOrder(call, ["eof-sent [service]", "eof-received [client]"]);
    expectInOrder(call, ["exit-sent [service]", "exit-received [client]"]);
    expectInOrder(call, ["call-allowed [client]", "data-connected [client]", "teardown [client]"]);
    expectInOrder(call, ["data-connected [service]", "teardown [service]"]);
    // work's agent, work's daemon, vault's daemon, vault's agent (isolated agents may share a
    // pid, each in its own PID namespace: a process is its domain and pid).
    const processes = new Set(call.events.map((event) => `${event.dom}:${event.pid}`));
    expect(processes.size).toBeGreaterThanOrEqual(4);
    const domOf = (side: string) => call.events.find((event) => event.side === side)!.dom;
    expect(domOf("client")).not.toBe(domOf("service"));
    const doms = new Set(call.events.map((event) => event.dom));
    expect(doms).toEqual(new Set([0, domOf("client"), domOf("service")]));
  });

  test("a dom0 -> VM call from qrexec-client starts with the client process itself", () => {
    const call = callTitled(file, "-> vault: user:QUBESRPC test.Echo dom0");
    expectInOrder(call, [
      "process-start [client]",
      "client-start [client]",
      "exec-request-sent [qrexec-daemon]",
      "exec-request [service]",
      "data-connected [service]",
      "first-byte-received [service]",
      "first-byte-sent [service]",
      "exit-sent [service]",
      "exit-received [client]",
      "exit-code [client]",
    ]);
    const started = call.events.find((event) => event.stage === "process-start")!;
    expect(started.prog).toBe("qrexec-client");
  });

  test("qrx trace draws each call, a summary per kind of call, and a well-formed SVG", async () => {
    const svg = join(lab.root.path, "calls.svg");
    const shown = await lab.qrx(["trace", file, "--svg", svg], { withDir: false });
    expect(shown.code).toBe(0);
    expect(shown.stdout).toMatch(/^call 1: dom\d+ -> vault test\.Add {2}\(\d+\.\d\d ms\)$/m);
    const times = / +\d+\.\d\d +\+\d+\.\d\d {2}/.source;
    const who = /policy-answered \[qrexec-daemon\] +qrexec-daemon\[\d+\] dom0 +\|[ #]+\|/.source;
    expect(shown.stdout).toMatch(new RegExp(`^${times}${who}$`, "m"));
    const summary = /^summary of dom\d+ -> vault test\.Add: 1 call, median \d+\.\d\d ms/m;
    expect(shown.stdout).toMatch(summary);
    const dom0 = "summary of dom0 -> vault: user:QUBESRPC test.Echo dom0: 1 call";
    expect(shown.stdout).toContain(dom0);
    const check = [
      "import sys, xml.dom.minidom as m",
      "d = m.parse(sys.argv[1])",
      "print(d.documentElement.tagName, len(d.getElementsByTagName('rect')))",
    ].join("\n");
    const parsed = Bun.spawnSync(["python3", "-c", check, svg]);
    expect(parsed.stderr.toString()).toBe("");
    const [tag, rects] = parsed.stdout.toString().trim().split(" ");
    expect(tag).toBe("svg");
    // A background and one bar per event.
    const calls = groupCalls(parseTrace(readFileSync(file, "utf8")).events);
    const events = calls.reduce((sum, call) => sum + call.events.length, 0);
    expect(Number(rects)).toBe(events + 1);
  });
});
