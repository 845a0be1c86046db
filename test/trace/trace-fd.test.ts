// QRX_TRACE_FD: a process handed the trace as an open fd (an isolated lab domain's agent, from
// its namespace's init) writes its stages there, and takes the variable out of its environment
// so that its children cannot mistake an fd of their own for the trace, and keeps the file in a
// close-on-exec copy of the fd, so that its children do not inherit it.
import { expect, test } from "bun:test";
import { closeSync, openSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { tempDir } from "../helpers/paths.ts";

const TRACE_MODULE = join(import.meta.dir, "..", "..", "src", "trace.ts");

test("stages go to the inherited fd, and QRX_TRACE_FD leaves the environment", async () => {
  const dir = tempDir();
  try {
    const file = join(dir.path, "trace.jsonl");
    const fd = openSync(file, "a");
    const code = [
      `const { traceCall } = await import(${JSON.stringify(TRACE_MODULE)});`,
      "traceCall(7)?.stage('probe-stage');",
      "console.log(process.env.QRX_TRACE_FD ?? 'gone');",
      // The trace's fd is a close-on-exec copy now: a child (a service) gets neither.
      "const links = ['sh', '-c', 'for f in /proc/$$/fd/*; do readlink $f; done'];",
      "const open = Bun.spawnSync(links).stdout.toString();",
      "const still = require('node:fs').existsSync('/proc/self/fd/9');",
      "console.log(still, open.includes('trace.jsonl'));",
    ].join("\n");
    const filler = Array.from({ length: 6 }, () => "ignore" as const);
    const child = Bun.spawn([process.execPath, "-e", code], {
      env: { ...process.env, QRX_TRACE: "", QRX_TRACE_FD: "9" },
      stdio: ["ignore", "pipe", "pipe", ...filler, fd],
    });
    const [stdout, stderr] = await Promise.all([
      new Response(child.stdout).text(),
      new Response(child.stderr).text(),
    ]);
    expect({ code: await child.exited, stdout, stderr }).toEqual({
      code: 0,
      stdout: "gone\nfalse false\n",
      stderr: "",
    });
    closeSync(fd);
    const events = readFileSync(file, "utf8")
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line));
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({ stage: "probe-stage", dom: 7 });
  } finally {
    dir.remove();
  }
});

test("a QRX_TRACE_FD that is not a number above 2, or not an open fd, is ignored", async () => {
  // "9": not open here, and whatever the process opened later as fd 9 must not get the trace.
  for (const value of ["1", "abc", "-3", "99999", "9"]) {
    const code = `const t = await import(${JSON.stringify(TRACE_MODULE)}); console.log(t.tracing);`;
    const child = Bun.spawnSync([process.execPath, "-e", code], {
      env: { ...process.env, QRX_TRACE: "", QRX_TRACE_FD: value },
    });
    expect(child.stdout.toString()).toBe("false\n");
  }
});
