// A trace file nobody can write (QRX_TRACE naming a directory that does not exist; `--trace`
// refuses such a file before anything starts): no trace, as for any program of the lab, not an
// isolated domain that does not start.
import { expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { TestLab } from "../helpers/lab.ts";

test("an isolated lab with an unwritable trace comes up; calls work; log says why", async () => {
  const lab = new TestLab();
  try {
    const file = join(lab.root.path, "no-such-dir", "trace.jsonl");
    const up = await lab.qrx(["lab", "up", "--isolation", "namespaces"], {
      env: { QRX_TRACE: file },
    });
    expect(up.code).toBe(0);
    const call = await lab.run("work", ["qrexec-client-vm", "vault", "test.Add"], "1 2\n");
    expect(call).toMatchObject({ code: 0, stdout: "3\n" });
    const log = readFileSync(join(lab.dir, "logs", "work.agent.log"), "utf8");
    expect(log).toContain(`cannot write the trace file ${file}: not tracing`);
  } finally {
    await lab.remove();
  }
}, 60_000);
