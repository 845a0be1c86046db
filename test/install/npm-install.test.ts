// `npm install -g` of the checkout, for real, into a temporary prefix: every command of
// package.json's `bin` is installed and runs, `qrx --version` names both halves, the man pages
// are linked where `man` finds them, and a lab call works through the installed qrx.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { ABI_VERSION } from "../../src/constants.ts";
import { TestLab } from "../helpers/lab.ts";
import { tempDir } from "../helpers/paths.ts";

const ROOT = join(import.meta.dir, "..", "..");
const PACKAGE = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as {
  version: string;
  bin: Record<string, string>;
  man: string[];
};
const dir = tempDir("qrx-install-");
const prefix = join(dir.path, "prefix");

function run(argv: string[], env: Record<string, string> = {}) {
  const result = Bun.spawnSync(argv, {
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
  const flags = ["--no-audit", "--no-fund", "--offline", "--loglevel=error"];
  const install = run(["npm", "install", "-g", "--prefix", prefix, ...flags, ROOT]);
  if (install.code !== 0)
    throw new Error(`npm install -g failed:\n${install.stdout}${install.stderr}`);
});
afterAll(() => dir.remove());

test("every bin of package.json is installed and answers --help", () => {
  expect(Object.keys(PACKAGE.bin).length).toBeGreaterThanOrEqual(13);
  for (const name of Object.keys(PACKAGE.bin)) {
    const result = run([join(prefix, "bin", name), "--help"]);
    expect({ name, code: result.code }).toEqual({ name, code: 0 });
    expect(result.stdout).toMatch(/^usage: /i);
  }
});

test("the installed qrx --version and -V print the version and the native ABI version", () => {
  for (const flag of ["--version", "-V"]) {
    const result = run([join(prefix, "bin", "qrx"), flag]);
    expect(result.code).toBe(0);
    expect(result.stdout).toStartWith(`qrx ${PACKAGE.version}\n`);
    expect(result.stdout).toContain(`ABI version ${ABI_VERSION})`);
  }
  const broken = run([join(prefix, "bin", "qrx"), "-V"], {
    QRX_NATIVE_LIB: join(dir.path, "none.so"),
  });
  expect(broken.code).toBe(0);
  expect(broken.stdout).toContain("native library: unusable:");
  expect(broken.stdout).toContain("none.so is missing");
});

test("man finds the installed pages", () => {
  expect(PACKAGE.man.length).toBe(Object.keys(PACKAGE.bin).length);
  for (const page of PACKAGE.man) expect(existsSync(join(ROOT, page))).toBe(true);
  const result = run(["man", "-M", join(prefix, "share", "man"), "-P", "cat", "qrexec-client-vm"], {
    MANWIDTH: "100",
  });
  expect(result.stderr).toBe("");
  expect(result.stdout).toContain("qrexec-client-vm");
  expect(result.stdout).toContain("--agent-socket");
  // qrx's page carries every subcommand's help.
  const qrx = run(["man", "-M", join(prefix, "share", "man"), "-P", "cat", "qrx"], {
    MANWIDTH: "100",
  });
  expect(qrx.stdout).toContain("qrx bench sweep");
  expect(qrx.stdout).toContain("--plot <file>");
});

test("a call through the installed qrx", async () => {
  const lab = new TestLab(undefined, join(prefix, "bin", "qrx"));
  try {
    await lab.up();
    const call = await lab.run("work", ["qrexec-client-vm", "vault", "test.Add"], "11 22\n");
    expect(call).toMatchObject({ code: 0, stdout: "33\n" });
    await lab.down();
  } finally {
    await lab.remove();
  }
}, 60_000);
