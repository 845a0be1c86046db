// Prebuilt start-up bundles (docs/architecture.md, "Start-up"): one file per program in bin/,
// with Bun's bytecode beside it, so a start neither transpiles nor parses our sources.
// Run by scripts/bootstrap.sh; rebuilds only programs whose check says they are stale.
// Usage: bun scripts/bundle.ts [--force] [--strict (exit 1 if one fails)] [PROGRAM...]
//
// bundle/PROGRAM.js (+ .js.jsc)  CommonJS: Bun's bytecode cache needs it (so no top-level await)
// bundle/PROGRAM.check.sh        sourced by bin/launch.sh with $root and $bundle set: returns 0
//                                only if $root is the tree it was built in (the same directory)
//                                and no input (or its directory, for renames and deletions) is
//                                newer than the bundle; then it also defines replay_help (below)
import { spawnSync } from "node:child_process";
import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
} from "node:fs";
import { utimesSync, writeFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";

const root = join(import.meta.dir, "..");
const outDir = join(root, "bundle");
/** Inputs outside src/ that change what a bundle holds. */
const EXTRA_INPUTS = [
  "package.json",
  "package-lock.json",
  "bunfig.toml",
  "tsconfig.json",
  "scripts/bundle.ts",
];
/**
 * commander loads node:fs and node:child_process (~3 ms of a start) for executable subcommands,
 * which we never use: in a bundle they load on first use. Unmatched (another commander), the
 * bundle is built unchanged.
 */
const LAZY_COMMANDER_REQUIRES = [
  ["const childProcess = require('node:child_process');", "node:child_process"],
  ["const fs = require('node:fs');", "node:fs"],
] as const;
/**
 * Programs whose entry loads a module only for some command lines (`qrx`: all but a plain
 * `qrx run` and `--version`; `qrexec-policy-exec`: all but the daemon's; `qvm-run`: all but a
 * plain one): that module is bundled into a file of its own, bundle/MODULE.js, so the other
 * command lines do not load its bytecode (~4 ms of `qrx run`'s start). Both are one bundle for
 * the check: the union of their inputs, built and replaced together.
 */
const PARTS: Record<string, { module: string; require: string }> = {
  qrx: { module: "qrx-commands", require: 'require("./qrx-commands.ts")' },
  "qrexec-policy-exec": {
    module: "qrexec-policy-exec-commands",
    require: 'require("./qrexec-policy-exec-commands.ts")',
  },
  "qvm-run": { module: "qvm-run-command", require: 'require("./qvm-run-command.ts")' },
};
/** Names that need no quoting in the generated shell (our tree's own file names). */
const PLAIN_PATH = /^[A-Za-z0-9._/+-]+$/;
/**
 * Preloaded into a help run: which environment variables the program read, so a replay happens
 * only under the same values. A program that lists the environment cannot be replayed.
 */
const ENV_RECORDER = `
const out = process.env.QRX_HELP_ENV_OUT, names = new Set(); let listed = false;
const note = (key) => { if (typeof key === "string") names.add(key); };
process.env = new Proxy(process.env, {
  get(target, key) { note(key); return Reflect.get(target, key); },
  has(target, key) { note(key); return Reflect.has(target, key); },
  getOwnPropertyDescriptor(target, key) {
    note(key);
    return Reflect.getOwnPropertyDescriptor(target, key);
  },
  ownKeys(target) { listed = true; return Reflect.ownKeys(target); },
});
process.on("exit", () =>
  require("node:fs").writeFileSync(out, JSON.stringify({ names: [...names], listed })));
`;

/** Programs whose launcher in bin/ sets `program=NAME` and sources launch.sh. */
export function programs(): string[] {
  const names = new Set<string>();
  for (const file of readdirSync(join(root, "bin"))) {
    const text = readFileSync(join(root, "bin", file), "utf8");
    const match = /\bprogram=([a-z0-9-]+)\b/.exec(text);
    if (match && text.includes("launch.sh")) names.add(match[1]!);
  }
  return [...names].sort();
}

function quote(text: string): string {
  return `'${text.replaceAll("'", `'\\''`)}'`;
}

/** What one help run printed and the environment it read (undefined: unset). */
type HelpRecord = {
  arg: string;
  stdout: string;
  stderr: string;
  status: number;
  env: Map<string, string | undefined>;
};

/**
 * Runs the new bundle (in TEMP) with ARG as its one argument, output to pipes, noting what it
 * read of the environment. Undefined when a replay could not be faithful: a signal or timeout,
 * a NUL in the text (no shell string holds one), the listed environment, a variable name the
 * shell cannot test, or a path of the build in the text.
 */
async function recordHelp(
  program: string,
  temp: string,
  arg: string,
  variant: Record<string, string>,
): Promise<HelpRecord | undefined> {
  const envOut = join(temp, `env-${process.hrtime.bigint()}.json`);
  const recorder = join(temp, "env-recorder.js");
  writeFileSync(recorder, ENV_RECORDER);
  const env: Record<string, string | undefined> = { ...process.env, ...variant };
  const child = Bun.spawn(
    [process.execPath, "--preload", recorder, join(temp, `${program}.js`), arg],
    {
      cwd: root,
      env: { ...env, QRX_HELP_ENV_OUT: envOut },
      stdio: ["ignore", "pipe", "pipe"],
      timeout: 30_000,
    },
  );
  const [outBytes, errBytes, status] = await Promise.all([
    new Response(child.stdout).arrayBuffer(),
    new Response(child.stderr).arrayBuffer(),
    child.exited,
  ]);
  if (child.signalCode !== null || !existsSync(envOut)) return undefined;
  // The check is written as UTF-8: other bytes would not come back the same.
  let stdout: string, stderr: string;
  try {
    const decoder = new TextDecoder("utf-8", { fatal: true });
    [stdout, stderr] = [decoder.decode(outBytes), decoder.decode(errBytes)];
  } catch {
    return undefined;
  }
  if ((stdout + stderr).includes("\0") || (stdout + stderr).includes(temp)) return undefined;
  const seen = JSON.parse(readFileSync(envOut, "utf8")) as { names: string[]; listed: boolean };
  if (seen.listed || seen.names.some((name) => !/^[A-Za-z_][A-Za-z0-9_]*$/.test(name))) {
    return undefined;
  }
  return {
    arg,
    stdout,
    stderr,
    status,
    env: new Map(seen.names.sort().map((name) => [name, env[name]])),
  };
}

/**
 * The environments PROGRAM's help is recorded in: the builder's, and each launcher's in bin/
 * that sets QRX_PROGRAM_NAME for it (qvm-move runs qvm-copy's bundle under its own name).
 */
function helpVariants(program: string): Record<string, string>[] {
  const variants: Record<string, string>[] = [{}];
  for (const file of readdirSync(join(root, "bin"))) {
    const text = readFileSync(join(root, "bin", file), "utf8");
    const name = /^QRX_PROGRAM_NAME=([a-z0-9-]+) /m.exec(text)?.[1];
    if (name !== undefined && new RegExp(`\\bprogram=${program}\\b`).test(text)) {
      variants.push({ QRX_PROGRAM_NAME: name });
    }
  }
  return variants;
}

/** The help texts that can be replayed: `-h` only where it prints what `--help` does. */
async function recordHelps(program: string, temp: string): Promise<HelpRecord[]> {
  const records: HelpRecord[] = [];
  for (const variant of helpVariants(program)) {
    const long = await recordHelp(program, temp, "--help", variant);
    if (long === undefined) continue;
    records.push(long);
    const short = await recordHelp(program, temp, "-h", variant);
    if (short !== undefined && short.stdout === long.stdout) records.push(short);
  }
  return records;
}

/** replay_help ARG in the shell: a record's text and status, if the environment matches. */
function replayFunction(records: HelpRecord[]): string[] {
  const lines = [
    "# replay_help ARG: prints what `PROGRAM ARG` printed when the bundle was built, and exits",
    "# with its status, if fds 1 and 2 are open (Bun would write a closed one's share to",
    "# /dev/null) and no terminal (commander would ask it for width and colours), and each",
    "# variable the program read then has the same value; else returns 1.",
    "replay_help() {",
    '    if [ ! -L "/proc/$$/fd/1" ] || [ ! -L "/proc/$$/fd/2" ]; then return 1; fi',
    "    if [ -t 1 ] || [ -t 2 ]; then return 1; fi",
  ];
  for (const record of records) {
    const tests = [`[ "$1" = ${quote(record.arg)} ]`];
    for (const [name, value] of record.env) {
      tests.push(
        value === undefined
          ? `[ -z "\${${name}+set}" ]`
          : `[ -n "\${${name}+set}" ] && [ "\${${name}}" = ${quote(value)} ]`,
      );
    }
    lines.push(`    if ${tests.join(" && ")}; then`);
    if (record.stdout !== "") lines.push(`        printf %s ${quote(record.stdout)}`);
    if (record.stderr !== "") lines.push(`        printf %s ${quote(record.stderr)} >&2`);
    lines.push(`        exit ${record.status}`, "    fi");
  }
  lines.push("    return 1", "}");
  return lines;
}

/** The shell check for one bundle: inputs (node_modules stands for package files) and dirs. */
function checkScript(inputs: string[], helps: HelpRecord[], parts: string[]): string {
  const files = inputs.filter((path) => !path.startsWith("node_modules/"));
  // A directory stands for a module added beside the ones read; the checkout's root holds none,
  // only the files above, and a log or a note written there must not make every program stale.
  const dirs = files.map((path) => dirname(path)).filter((dir) => dir !== ".");
  const paths = [...new Set([...files, ...EXTRA_INPUTS, ...dirs])];
  const odd = paths.find((path) => !PLAIN_PATH.test(path));
  if (odd !== undefined) throw new Error(`input ${odd} has a name the check cannot hold`);
  return [
    "# Generated by scripts/bundle.ts: is $bundle fresh for the tree at $root?",
    `[ "$root" -ef ${quote(root)} ] || return 1`,
    `for f in ${paths.sort().join(" ")}; do`,
    '    [ "$root/$f" -nt "$bundle" ] && return 1',
    "done",
    ...parts.map((part) => `[ -f "$root/bundle/${part}.js" ] || return 1`),
    ...replayFunction(helps),
    "return 0",
    "",
  ].join("\n");
}

/** True when PROGRAM's bundle passes its own check, exactly as bin/launch.sh runs it. */
function fresh(program: string): boolean {
  const check = join(outDir, `${program}.check.sh`);
  const script = '[ -f "$bundle" ] && [ -f "$check" ] && . "$check"';
  const env = { ...process.env, root, bundle: join(outDir, `${program}.js`), check };
  return spawnSync("/bin/sh", ["-c", script], { env }).status === 0;
}

const lazyCommanderRequires: import("bun").BunPlugin = {
  name: "lazy-commander-requires",
  setup(builder) {
    builder.onLoad({ filter: /[\\/]commander[\\/]lib[\\/]command\.js$/ }, async ({ path }) => {
      let text = await Bun.file(path).text();
      for (const [line, module] of LAZY_COMMANDER_REQUIRES) {
        const name = line.split(" ")[1];
        const lazy = `new Proxy({}, { get: (_, key) => require('${module}')[key] })`;
        text = text.replace(line, `const ${name} = ${lazy};`);
      }
      return { contents: text, loader: "js" };
    });
  },
};

/** The filesystem's own clock (it stamps the sources), read before any source is. */
function fsNow(): number {
  const stamp = join(outDir, `.stamp-${process.pid}`);
  writeFileSync(stamp, "");
  const seconds = statSync(stamp).mtimeMs / 1000;
  rmSync(stamp);
  return seconds;
}

function remove(program: string): void {
  for (const suffix of [".js", ".js.jsc", ".check.sh"]) {
    rmSync(join(outDir, program + suffix), { force: true });
  }
  const part = PARTS[program];
  if (part !== undefined) {
    for (const suffix of [".js", ".js.jsc"])
      rmSync(join(outDir, part.module + suffix), { force: true });
  }
}

/** Bundles src/cli/NAME.ts into DIR (NAME.js and its bytecode); the inputs it read. */
async function bundleInto(
  name: string,
  dir: string,
  plugins: import("bun").BunPlugin[],
  external: string[] = [],
): Promise<string[]> {
  const result = await Bun.build({
    entrypoints: [join(root, "src", "cli", `${name}.ts`)],
    outdir: dir,
    target: "bun",
    format: "cjs",
    bytecode: true,
    metafile: true,
    plugins: [lazyCommanderRequires, ...plugins],
    external,
  });
  if (!result.success) throw new AggregateError(result.logs, "bundle failed");
  return Object.keys(result.metafile!.inputs).map((path) => relative(root, resolve(root, path)));
}

/** PROGRAM's entry with its part's require pointed at the part's bundle file. */
function partRequire(
  program: string,
  part: { module: string; require: string },
  target: string,
): import("bun").BunPlugin {
  return {
    name: "part-require",
    setup(builder) {
      const filter = new RegExp(`[\\\\/]src[\\\\/]cli[\\\\/]${program}\\.ts$`);
      builder.onLoad({ filter }, async ({ path }) => {
        const text = await Bun.file(path).text();
        if (!text.includes(part.require)) throw new Error(`${program}.ts has no ${part.require}`);
        return {
          contents: text.replace(part.require, `require(${JSON.stringify(target)})`),
          loader: "ts",
        };
      });
    },
  };
}

/** Replaces NAME.js and its bytecode in bundle/ by those in DIR, the .js dated STARTED. */
function install(name: string, dir: string, started: number): void {
  renameSync(join(dir, `${name}.js.jsc`), join(outDir, `${name}.js.jsc`));
  utimesSync(join(dir, `${name}.js`), started, started);
  renameSync(join(dir, `${name}.js`), join(outDir, `${name}.js`));
}

async function build(program: string): Promise<void> {
  // Back-dated a little: an edit in the same clock tick as the build start still reads as newer.
  const started = fsNow() - 0.01;
  const temp = join(outDir, `.tmp-${program}-${process.pid}`);
  try {
    const inputs: string[] = [];
    const part = PARTS[program];
    if (part !== undefined) {
      // In place before the entry is run for its help (below): an old entry never loads it,
      // since its check fails once an input changed, and without a change both are the same.
      const partDir = join(temp, "part");
      inputs.push(...(await bundleInto(part.module, partDir, [])));
      install(part.module, partDir, started);
    }
    const target = part && join(outDir, `${part.module}.js`);
    const plugins = part && target ? [partRequire(program, part, target)] : [];
    inputs.push(...(await bundleInto(program, temp, plugins, target ? [target] : [])));
    const helps = await recordHelps(program, temp);
    writeFileSync(
      join(temp, "check.sh"),
      checkScript([...new Set(inputs)], helps, part ? [part.module] : []),
    );
    // Each file replaced whole, the bytecode first and the check last: a launcher running now
    // never pairs a new .js with an old .jsc, nor an old .js with a new check.
    install(program, temp, started);
    renameSync(join(temp, "check.sh"), join(outDir, `${program}.check.sh`));
  } finally {
    rmSync(temp, { recursive: true, force: true });
  }
}

async function main(): Promise<number> {
  process.chdir(root);
  mkdirSync(outDir, { recursive: true });
  const force = process.argv.includes("--force");
  // Program names among the arguments: only those (the tests build one in a copy of the tree).
  const named = process.argv.slice(2).filter((arg) => !arg.startsWith("--"));
  const unknown = named.filter((name) => !programs().includes(name));
  if (unknown.length > 0) {
    process.stderr.write(`bundle: no program ${unknown.join(", ")} in bin/\n`);
    return 2;
  }
  const chosen = named.length > 0 ? named : programs();
  const stale = chosen.filter((program) => force || !fresh(program));
  let failed = 0;
  await Promise.all(
    stale.map((program) =>
      build(program).catch((error: unknown) => {
        // The launcher runs this program from its sources until a build succeeds.
        remove(program);
        failed++;
        const reason =
          error instanceof AggregateError ? error.errors.map(String).join("\n") : String(error);
        const what = `cannot bundle ${program} (it will start from sources)`;
        process.stderr.write(`qrx setup: ${what}: ${reason}\n`);
      }),
    ),
  );
  if (stale.length > 0) {
    process.stderr.write(`qrx setup: bundled ${stale.length - failed} program(s)\n`);
  }
  return failed > 0 && process.argv.includes("--strict") ? 1 : 0;
}

if (import.meta.main) process.exitCode = await main();
