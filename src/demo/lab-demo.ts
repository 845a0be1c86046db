// `npm run demo` / `qrx demo`: the default lab brought up in a fresh directory, and what a user
// of Qubes would try first, shown as they would type it: a service call, a call the policy
// refuses, a DisposableVM that exists for one call, and a large transfer with its throughput.
// Every step checks its own result; the exit status is 0 only if all did what they should.

import { gather } from "../io/run-to-end.ts";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { LabStatus } from "../lab/admin.ts";
import {
  domainCommand,
  formatDuration,
  formatStatus,
  formatTable,
  labDown,
  labLayout,
  labStatus,
  labUp,
} from "../lab/control.ts";
import { formatBytes } from "../filecopy/progress.ts";
import { writeRandomFile } from "../tools/random-file.ts";
import type { LabLayout } from "../lab/layout.ts";

interface Step {
  what: string;
  expected: string;
  seen: string;
  ms: number;
  ok: boolean;
}

/** Copies what a stream says to `write` as it arrives; resolves with all of it. */
async function relay(
  stream: ReadableStream<Uint8Array>,
  write: (text: string) => void,
): Promise<string> {
  let all = "";
  const decoder = new TextDecoder();
  for await (const chunk of stream) {
    const text = decoder.decode(chunk, { stream: true });
    all += text;
    write(text);
  }
  return all;
}

async function sameContent(a: string, b: string): Promise<boolean> {
  const child = Bun.spawn(["cmp", "-s", a, b], { stdio: ["ignore", "ignore", "ignore"] });
  return (await child.exited) === 0;
}

class Demo {
  readonly steps: Step[] = [];
  /** The lab as `lab up` left it: how to enter its domains. */
  status: LabStatus | null = null;

  constructor(
    readonly layout: LabLayout,
    readonly say: (text: string) => void,
  ) {}

  /** Starts `script` with sh in `domain`, echoing it as a prompt line. */
  spawn<In extends "pipe" | "ignore" = "ignore">(
    domain: string,
    script: string,
    stdin: In = "ignore" as In,
    stderr: "pipe" | "inherit" = "pipe",
  ) {
    this.say(`\n  ${domain}$ ${script}`);
    const command = domainCommand(this.layout, this.status!, domain, ["sh", "-c", script]);
    return Bun.spawn(command.argv, {
      env: command.env,
      stdin,
      stdout: "pipe",
      stderr,
    });
  }

  async run(
    domain: string,
    script: string,
  ): Promise<{ code: number; stdout: string; stderr: string; ms: number }> {
    const started = performance.now();
    const finished = await gather(this.spawn(domain, script), started);
    const { code, stdout, stderr } = finished;
    for (const line of `${stdout}${stderr}`.trimEnd().split("\n"))
      if (line !== "") this.say(`  ${line}`);
    this.say(`  (exit status ${code})`);
    return finished;
  }

  record(step: Step): void {
    this.steps.push(step);
    if (!step.ok) this.say(`  FAILED: expected ${step.expected}, saw ${step.seen}`);
  }
}

/** Step 1: a service call the policy allows. */
async function serviceCall(demo: Demo): Promise<void> {
  demo.say(
    "\n1. A service call: test.Add in vault adds the two numbers work sends (policy: allow).",
  );
  const add = await demo.run("work", "echo 11 22 | qrexec-client-vm vault test.Add");
  demo.record({
    what: "work -> vault test.Add 11 22",
    expected: "33, exit 0",
    seen: `${add.stdout.trim() || "nothing"}, exit ${add.code}`,
    ms: add.ms,
    ok: add.code === 0 && add.stdout.trim() === "33",
  });
}

/** Step 2: a call the policy refuses. */
async function deniedCall(demo: Demo): Promise<void> {
  demo.say(
    "\n2. A call the policy denies: vault may not " +
      "call test.Add in work (the catch-all deny rule).",
  );
  const deny = await demo.run("vault", "echo 1 2 | qrexec-client-vm work test.Add");
  demo.record({
    what: "vault -> work test.Add (denied)",
    expected: "Request refused, exit 126",
    seen: `${deny.stderr.trim() || "nothing"}, exit ${deny.code}`,
    ms: deny.ms,
    ok: deny.code === 126 && deny.stderr.trim() === "Request refused",
  });
}

/** The running DisposableVM while `call` is open, shown as `qrx lab status` shows it. */
async function runningDispvm(demo: Demo, call: { exitCode: number | null }) {
  let status = await labStatus(demo.layout);
  let dispvm: string | null = null;
  const deadline = Date.now() + 10_000;
  while (dispvm === null && Date.now() < deadline && call.exitCode === null) {
    status = await labStatus(demo.layout);
    dispvm =
      status.domains.find((domain) => domain.klass === "DispVM" && domain.state === "Running")
        ?.name ?? null;
    if (dispvm === null) await Bun.sleep(10);
  }
  demo.say(`  (while the call is open, qrx lab status shows ${dispvm ?? "no DisposableVM"}:)`);
  for (const line of formatStatus(status)
    .split("\n")
    .filter((line) => line.startsWith("DOMAIN") || line.startsWith("disp")))
    demo.say(`    ${line}`);
  return dispvm;
}

/** Whether `dispvm` left the lab within 10 s. */
async function disposableGone(demo: Demo, dispvm: string | null): Promise<boolean> {
  const goneBy = Date.now() + 10_000;
  while (dispvm !== null && Date.now() < goneBy) {
    const status = await labStatus(demo.layout);
    if (!status.domains.some((domain) => domain.name === dispvm)) return true;
    await Bun.sleep(10);
  }
  return false;
}

/** Step 3: a call to $dispvm, whose DisposableVM is seen running and then gone. */
async function disposableCall(demo: Demo): Promise<void> {
  demo.say(
    "\n3. A DisposableVM: $dispvm means a fresh copy of " +
      "default-dvm, created for this call and destroyed after it.",
  );
  const started = performance.now();
  const call = demo.spawn("work", "qrexec-client-vm '$dispvm' test.Add", "pipe");
  // The call stays open until work sends its numbers, so the DisposableVM can be seen running.
  const dispvm = await runningDispvm(demo, call);
  call.stdin.write("2 3\n");
  await call.stdin.end();
  const [stdout, stderr, code] = await Promise.all([
    new Response(call.stdout).text(),
    new Response(call.stderr).text(),
    call.exited,
  ]);
  for (const line of `${stdout}${stderr}`.trimEnd().split("\n"))
    if (line !== "") demo.say(`  ${line}`);
  const gone = await disposableGone(demo, dispvm);
  demo.say(
    `  (after the call: ${dispvm ?? "the DisposableVM"} ` +
      `${gone ? "is gone; its directory and domain id are free again" : "is STILL THERE"})`,
  );
  demo.record({
    what: "work -> $dispvm test.Add 2 3",
    expected: "5 from a new DispVM, destroyed after",
    seen:
      `${stdout.trim() || "nothing"} from ${dispvm ?? "no DispVM"}, ` +
      `${gone ? "destroyed" : "not destroyed"}`,
    ms: performance.now() - started,
    ok: code === 0 && stdout.trim() === "5" && dispvm !== null && gone,
  });
}

/** Step 4: qvm-copy of `bytes` random bytes, its progress passed through, checked byte for byte. */
async function fileCopy(demo: Demo, bytes: number, live: boolean): Promise<void> {
  demo.say(
    `\n4. A file copy: qvm-copy sends ${formatBytes(bytes)} ` +
      `from work; dom0's policy picks vault for @default.`,
  );
  const big = join(demo.layout.home("work"), "big.bin");
  writeRandomFile(big, bytes);
  demo.say(`  (the demo wrote ${formatBytes(bytes)} of random bytes to work's ~/big.bin)`);
  const started = performance.now();
  const copy = demo.spawn(
    "work",
    "cd ~ && qvm-copy --with-progress big.bin",
    "ignore",
    live ? "inherit" : "pipe",
  );
  const [copyOut, copyErr, copyCode] = await Promise.all([
    new Response(copy.stdout).text(),
    live
      ? Promise.resolve("")
      : relay(copy.stderr as ReadableStream<Uint8Array>, (text) =>
          demo.say(text.trimEnd().replace(/^/gm, "  ")),
        ),
    copy.exited,
  ]);
  const seconds = (performance.now() - started) / 1000;
  if (copyOut.trim()) demo.say(`  ${copyOut.trim()}`);
  const arrived = join(demo.layout.home("vault"), "QubesIncoming", "work", "big.bin");
  const same = copyCode === 0 && (await sameContent(big, arrived));
  demo.say(
    `  vault's ~/QubesIncoming/work/big.bin ` +
      `${same ? "has the same bytes" : "DIFFERS or is missing"}`,
  );
  demo.record({
    what: `work -> vault qvm-copy ${formatBytes(bytes)}`,
    expected: "exit 0, identical file in QubesIncoming/work",
    seen:
      `exit ${copyCode}, ${same ? "identical" : "different"}, ` +
      `${formatBytes(bytes / seconds)}/s`,
    ms: seconds * 1000,
    ok: same && (live || /sent .* in .* s, /.test(copyErr)),
  });
}

/** A step for what went wrong outside the steps' own checks. */
function failure(what: string, expected: string, error: unknown): Step {
  const seen = error instanceof Error ? error.message : String(error);
  return { what, expected, seen, ms: 0, ok: false };
}

/** The summary table and line; the demo's exit status. */
function summary(demo: Demo, started: number): number {
  demo.say("\nSummary");
  demo.say(
    formatTable(
      ["STEP", "EXPECTED", "SEEN", "TIME", "OK"],
      demo.steps.map((step) => [
        step.what,
        step.expected,
        step.seen,
        formatDuration(step.ms),
        step.ok ? "ok" : "FAILED",
      ]),
    ),
  );
  const failed = demo.steps.filter((step) => !step.ok).length;
  demo.say(
    `\n${failed === 0 ? "All steps passed" : `${failed} step(s) FAILED`} ` +
      `in ${formatDuration(performance.now() - started)}.`,
  );
  return failed === 0 ? 0 : 1;
}

export async function runLabDemo(options: {
  bytes: number;
  dir?: string;
  say?: (text: string) => void;
}): Promise<number> {
  const say = options.say ?? ((text: string) => console.log(text));
  const ownDir = options.dir === undefined;
  // On /dev/shm when there is one: the copy's syncfs then waits for no disk.
  const layout = labLayout(
    options.dir ?? mkdtempSync(join(existsSync("/dev/shm") ? "/dev/shm" : tmpdir(), "qrx-demo-")),
  );
  const demo = new Demo(layout, say);
  const started = performance.now();
  let up = false;
  try {
    say(`qrx demo: the default lab (dom0, work, vault, personal, default-dvm) in ${layout.dir}`);
    say(
      "Each domain is an agent process, each has a daemon " +
        "in dom0, and calls flow over shared-memory vchans.\n",
    );
    demo.status = await labUp(layout);
    up = true;
    say(formatStatus(demo.status));
    await serviceCall(demo);
    await deniedCall(demo);
    await disposableCall(demo);
    // On a terminal qfile-agent draws its progress there itself; otherwise it prints lines,
    // passed through as they come.
    await fileCopy(demo, options.bytes, process.stderr.isTTY === true && options.say === undefined);
    say("\nThe lab now (calls served per domain):");
    say(formatStatus(await labStatus(layout)));
  } catch (error) {
    demo.record(failure("the demo itself", "no error", error));
  } finally {
    if (up) {
      say(`\nTaking the lab down.`);
      await labDown(layout).catch((error) =>
        demo.record(failure("qrx lab down", "a clean stop", error)),
      );
    }
    if (ownDir) rmSync(layout.dir, { recursive: true, force: true });
  }
  return summary(demo, started);
}
