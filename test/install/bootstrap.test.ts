// scripts/bootstrap.sh's long Zig build is not silent, and its pip step does not print pip's
// warning about root: run in a copy of the tree whose `zig` is a stand-in that takes seconds to
// build (the real one takes a minute) and whose `python3 -m pip` is one that warns as pip does.
import { afterAll, expect, test } from "bun:test";
import {
  chmodSync,
  copyFileSync,
  mkdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { tempDir } from "../helpers/paths.ts";

const ROOT = join(import.meta.dir, "..", "..");
const tree = tempDir("qrx-bootstrap-");
afterAll(() => tree.remove());

function zigStandIn(root: string, buildSeconds: number): string {
  return (
    `#!/bin/sh\n[ "$1" = version ] && exec cat "${join(root, ".zig-version")}"\n` +
    `sleep ${buildSeconds}\n`
  );
}

function fakeTree(buildSeconds: number, name = `tree-${buildSeconds}`): string {
  const root = join(tree.path, name);
  for (const dir of ["scripts", ".tools/zig/ziglang", "src/cli", "share/man/man1"]) {
    mkdirSync(join(root, dir), { recursive: true });
  }
  copyFileSync(join(ROOT, "scripts", "bootstrap.sh"), join(root, "scripts", "bootstrap.sh"));
  copyFileSync(join(ROOT, ".zig-version"), join(root, ".zig-version"));
  copyFileSync(join(ROOT, "package.json"), join(root, "package.json"));
  symlinkSync(join(ROOT, "node_modules"), join(root, "node_modules"));
  const zig = join(root, ".tools/zig/ziglang/zig");
  writeFileSync(zig, zigStandIn(root, buildSeconds));
  chmodSync(zig, 0o755);
  // Older than node_modules and the man pages: only the build step has work to do.
  const old = new Date(Date.now() - 86_400_000);
  for (const path of ["package.json", "src/cli"]) utimesSync(join(root, path), old, old);
  writeFileSync(join(root, "share/man/man1/qrx.1"), "");
  // The bundle step's own output is scripts/bundle.ts's: a stand-in with nothing to bundle.
  writeFileSync(join(root, "scripts", "bundle.ts"), "");
  return root;
}

async function bootstrap(root: string, path = process.env.PATH) {
  const started = performance.now();
  const env: Record<string, string | undefined> = { ...process.env, PATH: path };
  delete env.QRX_BOOTSTRAPPING;
  const child = Bun.spawn(["sh", join(root, "scripts", "bootstrap.sh")], {
    env,
    stdout: "pipe",
    stderr: "pipe",
  });
  const [stdout, stderr, code] = await Promise.all([
    new Response(child.stdout).text(),
    new Response(child.stderr).text(),
    child.exited,
  ]);
  return { code, stdout, stderr, seconds: (performance.now() - started) / 1000 };
}

test("a build longer than 2 s (4 s here) says so; nothing keeps the output open", async () => {
  const result = await bootstrap(fakeTree(4));
  expect(result.code).toBe(0);
  expect(result.stderr).toBe(
    "qrx setup: building the native library with Zig (about a minute the first time)\n",
  );
  // The 10 s sleep of the ticker must die with it, or the pipe stays open until it ends.
  expect(result.seconds).toBeLessThan(10);
}, 20_000);

test("a quick (cached) build prints nothing", async () => {
  const result = await bootstrap(fakeTree(0));
  expect(result).toMatchObject({ code: 0, stdout: "", stderr: "" });
}, 20_000);

test("installing Zig with pip says so, without pip's warning about running as root", async () => {
  const root = fakeTree(0, "no-zig");
  rmSync(join(root, ".tools"), { recursive: true });
  // pip as root prints this unless told not to (PIP_ROOT_USER_ACTION=ignore, pip >= 22.1).
  const warning = "WARNING: Running pip as the 'root' user can result in broken permissions";
  const bin = join(root, "fake-bin");
  mkdirSync(bin);
  const zig = join(root, ".tools/zig/ziglang/zig");
  writeFileSync(
    join(bin, "python3"),
    `#!/bin/sh\n[ "$PIP_ROOT_USER_ACTION" = ignore ] || echo "${warning}" >&2\n` +
      `mkdir -p "${join(root, ".tools/zig/ziglang")}"\n` +
      `cat > "${zig}" <<'EOF'\n${zigStandIn(root, 0)}EOF\nchmod +x "${zig}"\n`,
  );
  chmodSync(join(bin, "python3"), 0o755);
  const result = await bootstrap(root, `${bin}:${process.env.PATH}`);
  expect(result.code).toBe(0);
  const version = readFileSync(join(ROOT, ".zig-version"), "utf8").trim();
  expect(result.stderr).toBe(
    `qrx setup: installing Zig ${version} from PyPI (ziglang) into .tools/zig\n`,
  );
}, 20_000);

// A worktree may link another checkout's node_modules: `npm ci` there would empty the other
// tree's dependencies through the link (it clears the directory first), so it never runs.
test("a node_modules linked from another tree is never reinstalled", async () => {
  const root = fakeTree(0, "linked");
  // The other tree's dependencies, installed before this tree's package.json was written.
  const other = join(tree.path, "other-node_modules");
  mkdirSync(join(other, ".bin"), { recursive: true });
  mkdirSync(join(other, "commander"));
  copyFileSync(join(ROOT, "node_modules", ".bin", "bun"), join(other, ".bin", "bun"));
  writeFileSync(join(other, ".package-lock.json"), "{}");
  const older = new Date(Date.now() - 2 * 86_400_000);
  utimesSync(join(other, ".package-lock.json"), older, older);
  rmSync(join(root, "node_modules"));
  symlinkSync(other, join(root, "node_modules"));
  const bin = join(root, "stand-in-bin");
  mkdirSync(bin);
  writeFileSync(join(bin, "npm"), '#!/bin/sh\necho "npm ran: $*" >&2\nexit 3\n');
  chmodSync(join(bin, "npm"), 0o755);
  const result = await bootstrap(root, `${bin}:${process.env.PATH}`);
  expect(result).toMatchObject({ code: 0, stderr: "" });
}, 20_000);
