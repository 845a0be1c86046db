// qrx bench faults end to end, two rows of the matrix on a smaller call: a killed service ends
// the call with 137 at once, a killed daemon (not on the data path) does not disturb it, and
// neither leaves anything behind.
import { expect, test } from "bun:test";
import { join } from "node:path";
import type { FaultRow } from "../../src/bench/faults.ts";

const QRX = join(import.meta.dir, "..", "..", "bin", "qrx");
const MiB = 1 << 20;

async function qrx(args: string[]) {
  const run = Bun.spawn([QRX, ...args], { stdout: "pipe", stderr: "pipe" });
  const [stdout, stderr, code] = await Promise.all([
    new Response(run.stdout).text(),
    new Response(run.stderr).text(),
    run.exited,
  ]);
  return { stdout, stderr, code };
}

test("SIGKILL of the service or the target's daemon mid-call: codes, data, no leaks", async () => {
  const args = ["bench", "faults", "--victims", "service,target-daemon", "--bytes", "64M"];
  const result = await qrx([...args, "--json"]);
  expect({ code: result.code, stderr: result.stderr }).toEqual({ code: 0, stderr: "" });
  const [service, daemon] = JSON.parse(result.stdout) as FaultRow[];
  expect(service).toMatchObject({ victim: "service", caller: "exit 137", delivered: null });
  expect(service!.leaks).toEqual([]);
  // Generous bounds for a loaded machine; a hang would be 30 s ("never").
  expect(service!.callerEndedMs).toBeLessThan(5_000);
  expect(service!.serviceEndedMs).toBeLessThan(5_000);
  expect(service!.recoveredMs).not.toBeNull();

  expect(daemon).toMatchObject({ victim: "target-daemon", caller: "exit 0", delivered: 64 * MiB });
  expect(daemon!.leaks).toEqual([]);
  expect(daemon!.recoveredMs).not.toBeNull();
}, 90_000);

test("an unknown victim is refused with the list of known ones", async () => {
  const result = await qrx(["bench", "faults", "--victims", "kernel"]);
  expect(result.code).toBe(1);
  expect(result.stderr).toContain("unknown victim kernel (one of none, caller, caller-bun");
  expect(result.stdout).toBe("");
});
