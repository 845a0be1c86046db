// `npm run dist` (scripts/dist.sh): one compiled executable with its programs as symlinks, run
// from outside the checkout: --version, a lab with a call and a file copy, and the benchmarks'
// helper processes (started by .ts path in a checkout) in tiny runs.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { readFileSync, readlinkSync, renameSync } from "node:fs";
import { join } from "node:path";
import { SCRIPT_PROGRAMS } from "../../src/cli/programs.ts";
import { ABI_VERSION } from "../../src/constants.ts";
import { processesMentioning, TestLab } from "../helpers/lab.ts";
import { tempDir } from "../helpers/paths.ts";

const ROOT = join(import.meta.dir, "..", "..");
const PACKAGE = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as {
  version: string;
  bin: object;
};
const dir = tempDir("qrx-dist-");
// Built in one place and moved: nothing may point back at where it was built, or at the checkout.
const dist = join(dir.path, "moved");
const qrx = join(dist, "qrx");

function run(argv: string[], env: Record<string, string> = {}) {
  const result = Bun.spawnSync(argv, {
    cwd: dir.path,
    env: { ...process.env, ...env },
    stdout: "pipe",
    stderr: "pipe",
  });
  return {
    code: result.exitCode,
    stdout: result.stdout.toString(),
    stderr: result.stderr.toString(),
  };
}

beforeAll(() => {
  const built = run(["sh", join(ROOT, "scripts", "dist.sh"), join(dir.path, "built")]);
  if (built.code !== 0) throw new Error(`scripts/dist.sh failed:\n${built.stderr}`);
  renameSync(join(dir.path, "built"), dist);
}, 120_000);
afterAll(() => dir.remove());

test("every program of package.json is a symlink to the one executable, or a script copied", () => {
  const scripts: string[] = [...SCRIPT_PROGRAMS];
  for (const name of Object.keys(PACKAGE.bin)) {
    if (scripts.includes(name)) {
      const copied = readFileSync(join(dist, name), "utf8");
      expect(copied).toBe(readFileSync(join(ROOT, "bin", name), "utf8"));
    } else if (name !== "qrx") expect(readlinkSync(join(dist, name))).toBe("qrx");
  }
  const version = run([qrx, "-V"]);
  expect(version.code).toBe(0);
  expect(version.stdout).toBe(
    `qrx ${PACKAGE.version}\n` +
      `native library: ${join(dist, "libqrx.so")} (ABI version ${ABI_VERSION})\n`,
  );
  const help = run([join(dist, "qvm-move-to-vm"), "--help"]);
  expect(help.stdout).toStartWith("usage: qvm-move-to-vm ");
  expect(run([join(dist, "qvm-run"), "--help"]).stdout).toStartWith("Usage: qvm-run ");
  const openHelp = run([join(dist, "qvm-open-in-dvm"), "--help"]);
  expect(openHelp.stdout).toStartWith("usage: qvm-open-in-dvm ");
  const wrong = run(["bash", "-c", `exec -a nonsense ${qrx}`]);
  expect(wrong.code).toBe(127);
  expect(wrong.stderr).toContain("started as 'nonsense', which is none of its programs");
});

test("a lab from the executable: a call, a file copy, nothing run from the checkout", async () => {
  const lab = new TestLab(undefined, qrx);
  try {
    await lab.up();
    expect(await lab.run("work", ["qrexec-client-vm", "vault", "test.Add"], "2 3\n")).toMatchObject(
      { code: 0, stdout: "5\n" },
    );
    const copy = await lab.run("work", [
      "sh",
      "-c",
      "cd && echo hello > note && qvm-copy --without-progress note",
    ]);
    expect(copy).toMatchObject({ code: 0, stderr: "" });
    expect(
      readFileSync(
        join(lab.dir, "domains", "vault", "home", "QubesIncoming", "work", "note"),
        "utf8",
      ),
    ).toBe("hello\n");
    const shell = await lab.run("dom0", ["qvm-run", "-p", "work", "echo hi"]);
    expect(shell).toMatchObject({ code: 0, stdout: "hi\n" });
    // The admin service, policy daemon, agents and daemons: all the one executable. Each isolated
    // domain's namespaces are the system's unshare running the dist's own init script.
    const processes = processesMentioning(lab.dir).map((line) => {
      const pid = line.split(" ")[0];
      return { exe: readlinkSync(`/proc/${pid}/exe`), line };
    });
    expect(processes.filter(({ exe }) => exe === qrx).length).toBeGreaterThanOrEqual(6);
    for (const { exe, line } of processes) {
      expect(line).not.toContain(ROOT);
      if (exe === qrx) continue;
      expect(exe).toMatch(/^\/(usr\/)?bin\//);
      expect(line).toContain(` ${join(dist, "libexec", "qrx-domain-ns")} `);
    }
    await lab.down();
  } finally {
    await lab.remove();
  }
}, 60_000);

test("qrx bench vchan and qrx bench call run their helper processes from the executable", () => {
  const vchan = run([qrx, "bench", "vchan", "--json", "--sizes", "4K", "--bytes", "1M"]);
  expect(vchan.code).toBe(0);
  const rows = JSON.parse(vchan.stdout) as Array<{ name: string; bytes: number }>;
  expect(rows.map((row) => row.name).sort()).toEqual([
    "baseline:pipe",
    "baseline:socketpair",
    "shm",
  ]);
  const call = run([qrx, "bench", "call", "--json", "--bytes", "1M", "--calls", "2"]);
  expect(call.code).toBe(0);
  const names = (JSON.parse(call.stdout) as Array<{ name: string }>).map((row) => row.name);
  expect(names).toContain("baseline:bun-start");
  expect(names).toContain("latency-vm-vm");
}, 60_000);
