// The agent role against `qrexec-agent --peer-profile=mirage` (a mirage-qubes 2.0-like agent, spec
// §14): nothing fails; its documented behaviour (HELLO 3 only, no stderr EOF) and, with
// QRX_MIRAGE_BUGS, its two wire bugs are reported as deviations under --profile mirage.
import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { failures, resultOf, ROOT, run } from "./helpers.ts";

const MIRAGE_AGENT = `${join(ROOT, "bin", "qrexec-agent")} --peer-profile=mirage`;

describe("conformance: the mirage agent profile", () => {
  test("no case fails; HELLO 3 and the missing stderr EOF are deviations", async () => {
    const rows = await run("agent", MIRAGE_AGENT, { profile: "mirage" });
    expect(failures(rows)).toBe("");
    expect(resultOf(rows, "handshake-v4")).toBe("deviation");
    const exec = rows.find((row) => row.case === "exec-service")!;
    expect(exec.result).toBe("deviation");
    expect(exec.note).toMatch(/never sends stderr EOF/);
    expect(resultOf(rows, "just-exec")).toBe("pass");
    // Under the strict profile the same behaviour fails.
    const strict = await run("agent", MIRAGE_AGENT, { cases: ["handshake-v4", "exec-service"] });
    expect(strict.map((row) => row.result)).toEqual(["fail", "fail"]);
  }, 120_000);

  test("QRX_MIRAGE_BUGS=chunk-length,trigger3-ident: both bugs are named deviations", async () => {
    const rows = await run("agent", MIRAGE_AGENT, {
      profile: "mirage",
      cases: ["chunk-size-v3", "trigger-forward", "exec-service"],
      env: { QRX_MIRAGE_BUGS: "chunk-length,trigger3-ident" },
    });
    expect(failures(rows)).toBe("");
    const chunk = rows.find((row) => row.case === "chunk-size-v3")!;
    expect(chunk.result).toBe("deviation");
    expect(chunk.note).toMatch(/total remaining length/);
    expect(chunk.seen).toMatch(/header announces 200000 bytes/);
    const trigger = rows.find((row) => row.case === "trigger-forward")!;
    expect(trigger.result).toBe("deviation");
    expect(trigger.note).toMatch(/request id in the service-name field/);
  }, 120_000);
});
