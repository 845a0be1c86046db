// `--trace FILE` on qrx lab up, qrx run and qrx bench latency: a FILE that cannot be written is
// refused before anything starts; a plain qrexec-client-vm call under `qrx run --trace` is
// traced even in a lab that is not (its client then runs as the Bun CLI, which writes FILE).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { groupCalls, parseTrace } from "../../src/trace-report.ts";
import { TestLab } from "../helpers/lab.ts";

const refusal = (path: string) =>
  `qrx: cannot write the trace file ${path}: its directory does not exist\n`;

describe("--trace FILE", () => {
  const lab = new TestLab();
  const missing = join(lab.root.path, "no-such-dir", "trace.jsonl");

  // `qrx run` finds its lab through QRX_DIR, as a user's shell would (its --dir goes first).
  const inLab = { withDir: false, env: { QRX_DIR: lab.dir } };

  beforeAll(() => lab.up(undefined, "none"), 30_000);
  afterAll(() => lab.remove());

  test("qrx lab up refuses a FILE it cannot write, before it starts anything", async () => {
    const other = new TestLab();
    try {
      const up = await other.qrx(["lab", "up", "--trace", missing]);
      expect({ code: up.code, stderr: up.stderr }).toEqual({ code: 1, stderr: refusal(missing) });
      expect(existsSync(join(other.dir, "admin.pid"))).toBe(false);
    } finally {
      await other.remove();
    }
  });

  test("qrx run refuses it too, without running the command", async () => {
    const marker = join(lab.root.path, "ran");
    const run = await lab.qrx(["run", "--trace", missing, "work", "--", "touch", marker], inLab);
    expect({ code: run.code, stderr: run.stderr }).toEqual({ code: 1, stderr: refusal(missing) });
    expect(existsSync(marker)).toBe(false);
  });

  test("qrx bench latency refuses it before its lab comes up", async () => {
    const bench = await lab.qrx(["bench", "latency", "--calls", "1", "--trace", missing], {
      withDir: false,
    });
    expect({ code: bench.code, stderr: bench.stderr }).toEqual({
      code: 1,
      stderr: refusal(missing),
    });
  });

  test("qrx run --trace traces a plain qrexec-client-vm call in an untraced lab", async () => {
    const file = join(lab.root.path, "run.jsonl");
    const client = ["qrexec-client-vm", "vault", "test.Add"];
    // After DOMAIN, as qrx run's other options may be.
    const run = await lab.qrx(["run", "work", "--trace", file, "--", ...client], {
      ...inLab,
      input: "1 2\n",
    });
    expect({ code: run.code, stdout: run.stdout }, run.stderr).toEqual({ code: 0, stdout: "3\n" });
    const calls = groupCalls(parseTrace(readFileSync(file, "utf8")).events);
    const stages = calls.flatMap((call) => call.events.map((event) => event.stage));
    expect(stages).toContain("client-start");
    expect(stages).toContain("exit-code");
  });
});

test("in an isolated domain COMMAND gets no QRX_TRACE: the file is out of its reach", async () => {
  const lab = new TestLab();
  try {
    await lab.up();
    const file = join(lab.root.path, "isolated.jsonl");
    const show = ["sh", "-c", 'echo "${QRX_TRACE-unset}"'];
    const run = await lab.qrx(["run", "--trace", file, "work", "--", ...show], {
      withDir: false,
      env: { QRX_DIR: lab.dir },
    });
    expect({ code: run.code, stdout: run.stdout }).toEqual({ code: 0, stdout: "unset\n" });
  } finally {
    await lab.remove();
  }
}, 30_000);
