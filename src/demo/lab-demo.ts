// `npm run demo` / `qrx demo`: the default lab brought up in a fresh directory, and what a user
// of Qubes would try first, shown as they would type it: a service call, a call the policy
// refuses, a DisposableVM that exists for one call, and a large transfer with its throughput.
// Every step checks its own result; the exit status is 0 only if all did what they should.

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
    const child = this.spawn(domain, script);
    const [stdout, stderr, code] = await Promise.all([
      new Response(child.stdout).text(),
      new Response(child.stderr).text(),
      child.exited,
    ]);
    for (const line of `${stdout}${stderr}`.trimEnd().split("\n"))
      if (line !== "") this.say(`  ${line}`);
    this.say(`  (exit status ${code})`);
    return { code, stdout, stderr, ms: performance.now() - started };
  }

  record(step: Step): void {
    this.steps.push(step);
    if (!step.ok) this.say(`  FAILED: expected ${step.expected}, saw ${step.seen}`);
  }
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
    let status = await labUp(layout);
    up = true;
    demo.status = status;
    say(formatStatus(status));

    say("\n1. A service call: test.Add in vault adds the two numbers work sends (policy: allow).");
    const add = await demo.run("work", "echo 11 22 | qrexec-client-vm vault test.Add");
    demo.record({
      what: "work -> vault test.Add 11 22",
      expected: "33, exit 0",
      seen: `${add.stdout.trim() || "nothing"}, exit ${add.code}`,
      ms: add.ms,
      ok: add.code === 0 && add.stdout.trim() === "33",
    });

    say(
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

    say(
      "\n3. A DisposableVM: $dispvm means a fresh copy of " +
        "default-dvm, created for this call and destroyed after it.",
    );
    const dispStarted = performance.now();
    const dispCall = demo.spawn("work", "qrexec-client-vm '$dispvm' test.Add", "pipe");
    // The call stays open until work sends its numbers, so the DisposableVM can be seen running.
    let dispvm: string | null = null;
    const deadline = Date.now() + 10_000;
    while (dispvm === null && Date.now() < deadline && dispCall.exitCode === null) {
      status = await labStatus(layout);
      dispvm =
        status.domains.find((domain) => domain.klass === "DispVM" && domain.state === "Running")
          ?.name ?? null;
      if (dispvm === null) await Bun.sleep(10);
    }
    say(`  (while the call is open, qrx lab status shows ${dispvm ?? "no DisposableVM"}:)`);
    for (const line of formatStatus(status)
      .split("\n")
      .filter((line) => line.startsWith("DOMAIN") || line.startsWith("disp")))
      say(`    ${line}`);
    dispCall.stdin.write("2 3\n");
    await dispCall.stdin.end();
    const [dispOut, dispErr, dispCode] = await Promise.all([
      new Response(dispCall.stdout).text(),
      new Response(dispCall.stderr).text(),
      dispCall.exited,
    ]);
    for (const line of `${dispOut}${dispErr}`.trimEnd().split("\n"))
      if (line !== "") say(`  ${line}`);
    let gone = false;
    const goneBy = Date.now() + 10_000;
    while (!gone && Date.now() < goneBy) {
      status = await labStatus(layout);
      gone = dispvm !== null && !status.domains.some((domain) => domain.name === dispvm);
      if (!gone) await Bun.sleep(10);
    }
    say(
      `  (after the call: ${dispvm ?? "the DisposableVM"} ` +
        `${gone ? "is gone; its directory and domain id are free again" : "is STILL THERE"})`,
    );
    demo.record({
      what: "work -> $dispvm test.Add 2 3",
      expected: "5 from a new DispVM, destroyed after",
      seen:
        `${dispOut.trim() || "nothing"} from ${dispvm ?? "no DispVM"}, ` +
        `${gone ? "destroyed" : "not destroyed"}`,
      ms: performance.now() - dispStarted,
      ok: dispCode === 0 && dispOut.trim() === "5" && dispvm !== null && gone,
    });

    say(
      `\n4. A file copy: qvm-copy sends ${formatBytes(options.bytes)} ` +
        `from work; dom0's policy picks vault for @default.`,
    );
    const big = join(layout.home("work"), "big.bin");
    writeRandomFile(big, options.bytes);
    say(`  (the demo wrote ${formatBytes(options.bytes)} of random bytes to work's ~/big.bin)`);
    const copyStarted = performance.now();
    // On a terminal qfile-agent draws its progress there itself; otherwise it prints lines,
    // passed through as they come.
    const live = process.stderr.isTTY === true && options.say === undefined;
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
            say(text.trimEnd().replace(/^/gm, "  ")),
          ),
      copy.exited,
    ]);
    const seconds = (performance.now() - copyStarted) / 1000;
    if (copyOut.trim()) say(`  ${copyOut.trim()}`);
    const arrived = join(layout.home("vault"), "QubesIncoming", "work", "big.bin");
    const same = copyCode === 0 && (await sameContent(big, arrived));
    say(
      `  vault's ~/QubesIncoming/work/big.bin ` +
        `${same ? "has the same bytes" : "DIFFERS or is missing"}`,
    );
    demo.record({
      what: `work -> vault qvm-copy ${formatBytes(options.bytes)}`,
      expected: "exit 0, identical file in QubesIncoming/work",
      seen:
        `exit ${copyCode}, ${same ? "identical" : "different"}, ` +
        `${formatBytes(options.bytes / seconds)}/s`,
      ms: seconds * 1000,
      ok: same && (live || /sent .* in .* s, /.test(copyErr)),
    });

    status = await labStatus(layout);
    say("\nThe lab now (calls served per domain):");
    say(formatStatus(status));
  } catch (error) {
    demo.record({
      what: "the demo itself",
      expected: "no error",
      seen: error instanceof Error ? error.message : String(error),
      ms: 0,
      ok: false,
    });
  } finally {
    if (up) {
      say(`\nTaking the lab down.`);
      try {
        await labDown(layout);
      } catch (error) {
        demo.record({
          what: "qrx lab down",
          expected: "a clean stop",
          seen: error instanceof Error ? error.message : String(error),
          ms: 0,
          ok: false,
        });
      }
    }
    if (ownDir) rmSync(layout.dir, { recursive: true, force: true });
  }

  say("\nSummary");
  say(
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
  say(
    `\n${failed === 0 ? "All steps passed" : `${failed} step(s) FAILED`} ` +
      `in ${formatDuration(performance.now() - started)}.`,
  );
  return failed === 0 ? 0 : 1;
}
