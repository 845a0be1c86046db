// Reads a policy.d set (§11.1) into rules in evaluation order: files by bytewise basename, an
// earlier directory hiding the same basename in a later one, includes expanded where they stand,
// `!compat-4.0` importing the legacy directory. Every problem is collected, never just the first.
// A load never throws for a bad policy: the result then denies every call.

import { resolve } from "node:path";
import type { Origin, PolicyError } from "./errors.ts";
import { compareBytewise, diskFileSystem, type PolicyFileSystem } from "./files.ts";
import { DEFAULT_LEGACY_POLICY_DIR } from "./defaults.ts";
import { listLegacyServiceFiles, translateLegacyLine } from "./legacy.ts";
import { CompiledPolicy, type ReadPolicy } from "./policy.ts";
import { buildRule, serviceArgumentErrors, type Rule, type RuleFields } from "./rule.ts";

export interface ReadOptions {
  /** Where `!compat-4.0` reads legacy files; default /etc/qubes-rpc/policy. */
  legacyDir?: string;
  fs?: PolicyFileSystem;
}

const POLICY_SUFFIX = ".policy";
/** A policy file outside this charset makes every call be denied (§11.1). */
const POLICY_FILE_NAME = /^[0-9a-z_.-]+$/;

/** Directive -> how many parameters it takes. */
const DIRECTIVE_PARAMS = new Map([
  ["!include", 1],
  ["!include-dir", 1],
  ["!include-service", 3],
  ["!compat-4.0", 0],
]);

interface PolicyFile {
  name: string;
  path: string;
}

function errorText(error: unknown): string {
  if (typeof error === "object" && error !== null && "code" in error && error.code === "ENOENT")
    return "no such file or directory";
  return error instanceof Error ? error.message : String(error);
}

class PolicyReader {
  readonly rules: Rule[] = [];
  readonly errors: PolicyError[] = [];
  readonly warnings: PolicyError[] = [];
  readonly paths = new Set<string>();
  /** Files being read right now, outermost first: an include of one of them is a loop. */
  readonly #reading: string[] = [];

  constructor(
    readonly fs: PolicyFileSystem,
    readonly legacyDir: string,
  ) {}

  error(file: string, line: number, message: string): void {
    this.errors.push({ file, line, message });
  }

  /** `*.policy` regular files not starting with '.', in bytewise order of name. */
  policyFilesIn(directory: string): PolicyFile[] {
    this.paths.add(directory);
    return this.fs
      .list(directory)
      .filter(
        (entry) =>
          entry.kind === "file" &&
          entry.name.endsWith(POLICY_SUFFIX) &&
          !entry.name.startsWith("."),
      )
      .map((entry) => ({ name: entry.name, path: `${directory}/${entry.name}` }))
      .sort((a, b) => compareBytewise(a.name, b.name));
  }

  checkFileName(file: PolicyFile): void {
    if (!POLICY_FILE_NAME.test(file.name))
      this.error(file.path, 0, "file name has characters outside [0-9a-z_.-]");
  }

  readTopLevel(directories: string[]): void {
    const chosen = new Map<string, { file: PolicyFile; directory: string }>();
    let found = 0;
    for (const directory of directories.map((path) => resolve(path))) {
      if (!this.fs.exists(directory)) continue;
      found++;
      try {
        for (const file of this.policyFilesIn(directory)) {
          if (!chosen.has(file.name)) chosen.set(file.name, { file, directory });
        }
      } catch (error) {
        this.error(directory, 0, `cannot list directory: ${errorText(error)}`);
      }
    }
    if (found === 0) this.error(directories.join(", "), 0, "no policy directory exists");
    const ordered = [...chosen.values()].sort((a, b) => compareBytewise(a.file.name, b.file.name));
    for (const { file, directory } of ordered) {
      this.checkFileName(file);
      this.readPolicyFile(file.path, directory, null);
    }
  }

  /**
   * Reads a file; problems opening it are reported at `includedFrom` (the directive's line) when
   * there is one. Returns the text, or null if it could not or must not be read.
   */
  open(path: string, includedFrom: Origin | null, what: string): string | null {
    const at = includedFrom ?? { file: path, line: 0 };
    if (this.#reading.includes(path)) {
      this.error(at.file, at.line, `include loop: ${[...this.#reading, path].join(" -> ")}`);
      return null;
    }
    try {
      const text = this.fs.readText(path);
      this.paths.add(path);
      return text;
    } catch (error) {
      this.error(
        at.file,
        at.line,
        includedFrom === null
          ? `cannot read: ${errorText(error)}`
          : `cannot read ${what} ${path}: ${errorText(error)}`,
      );
      return null;
    }
  }

  /** A current-format file. `topDir` is where relative includes resolve, even when nested. */
  readPolicyFile(path: string, topDir: string, includedFrom: Origin | null): void {
    const text = this.open(path, includedFrom, "included file");
    if (text === null) return;
    this.#reading.push(path);
    for (const [index, raw] of text.split("\n").entries()) {
      const line = raw.trim();
      if (line === "" || line.startsWith("#")) continue;
      const origin = { file: path, line: index + 1 };
      const words = line.split(/\s+/);
      if (line.startsWith("!")) {
        this.directive(words, origin, topDir);
        continue;
      }
      if (words.length < 5) {
        this.error(
          path,
          origin.line,
          `wrong number of fields: expected SERVICE ARGUMENT SOURCE ` +
            `TARGET ACTION [PARAM=VALUE...], got ${words.length}`,
        );
        continue;
      }
      const [service, argument, source, target, action, ...params] = words as [
        string,
        string,
        string,
        string,
        string,
        ...string[],
      ];
      this.addRule({ service, argument, source, target, action, params }, origin, line);
    }
    this.#reading.pop();
  }

  addRule(fields: RuleFields, origin: Origin, text: string): void {
    const result = buildRule(fields, this.rules.length, origin, text);
    if (result.ok) this.rules.push(result.rule);
    else for (const message of result.errors) this.error(origin.file, origin.line, message);
  }

  directive(words: string[], origin: Origin, topDir: string): void {
    const [name, ...params] = words as [string, ...string[]];
    const expected = DIRECTIVE_PARAMS.get(name);
    if (expected === undefined)
      return this.error(origin.file, origin.line, `invalid directive '${name}'`);
    if (params.length !== expected) {
      return this.error(
        origin.file,
        origin.line,
        `${name} takes ${expected} parameter${expected === 1 ? "" : "s"}, got ${params.length}`,
      );
    }
    switch (name) {
      case "!include":
        return this.readPolicyFile(resolve(topDir, params[0]!), topDir, origin);
      case "!include-dir":
        return this.includeDirectory(resolve(topDir, params[0]!), topDir, origin);
      case "!include-service": {
        const [service, argument, path] = params as [string, string, string];
        const problems = serviceArgumentErrors(service, argument);
        for (const message of problems) this.error(origin.file, origin.line, message);
        if (problems.length === 0)
          this.readLegacyFile(resolve(topDir, path), service, argument, topDir, origin);
        return;
      }
      case "!compat-4.0":
        return this.compat40(origin);
    }
  }

  includeDirectory(directory: string, topDir: string, origin: Origin): void {
    let files: PolicyFile[];
    try {
      files = this.policyFilesIn(directory);
    } catch (error) {
      return this.error(
        origin.file,
        origin.line,
        `cannot read included directory ${directory}: ${errorText(error)}`,
      );
    }
    for (const file of files) {
      this.checkFileName(file);
      this.readPolicyFile(file.path, topDir, origin);
    }
  }

  /** A legacy-format file for one service; its `$include:` lines resolve against `baseDir`. */
  readLegacyFile(
    path: string,
    service: string,
    argument: string,
    baseDir: string,
    includedFrom: Origin | null,
  ): void {
    const text = this.open(path, includedFrom, "legacy policy file");
    if (text === null) return;
    this.#reading.push(path);
    for (const [index, raw] of text.split("\n").entries()) {
      const origin = { file: path, line: index + 1 };
      const line = translateLegacyLine(raw, service, argument);
      if (line.kind === "error") this.error(path, origin.line, line.message);
      else if (line.kind === "include")
        this.readLegacyFile(resolve(baseDir, line.path), service, argument, baseDir, origin);
      else if (line.kind === "rule") {
        if (line.warning !== null) this.warnings.push({ ...origin, message: line.warning });
        this.addRule(line.fields, origin, raw.trim());
      }
    }
    this.#reading.pop();
  }

  /**
   * R4.0 semantics (§11.2): a SERVICE+ARG file, when present, decided alone; the implicit denies
   * after it keep a call from falling through to the generic file or later policy files. The
   * generic file has none, so what it does not match falls through.
   */
  compat40(origin: Origin): void {
    let files;
    try {
      files = listLegacyServiceFiles(this.fs, this.legacyDir);
    } catch (error) {
      return this.error(
        origin.file,
        origin.line,
        `cannot read legacy policy directory ${this.legacyDir}: ${errorText(error)}`,
      );
    }
    this.paths.add(this.legacyDir);
    for (const file of files) {
      this.readLegacyFile(file.path, file.service, file.argument, this.legacyDir, origin);
      if (file.argument === "*") continue;
      const implicit = { ...origin, note: `implicit deny after ${file.path}` };
      for (const target of ["@anyvm", "@adminvm"]) {
        const fields = {
          service: file.service,
          argument: file.argument,
          source: "@anyvm",
          target,
          action: "deny",
          params: [],
        };
        this.addRule(fields, implicit, `${file.service} ${file.argument} @anyvm ${target} deny`);
      }
    }
  }
}

/** Reads the policy in `directories` (earlier ones hide same-named files in later ones). */
export function readPolicy(directories: string[], options: ReadOptions = {}): ReadPolicy {
  const reader = new PolicyReader(
    options.fs ?? diskFileSystem,
    resolve(options.legacyDir ?? DEFAULT_LEGACY_POLICY_DIR),
  );
  reader.readTopLevel(directories);
  const { rules, errors, warnings } = reader;
  return { rules, errors, warnings, paths: [...reader.paths] };
}

/** Reads a legacy directory alone, exactly as a policy.d holding only `!compat-4.0` would. */
export function readLegacyPolicy(
  legacyDir: string,
  options: Omit<ReadOptions, "legacyDir"> = {},
): ReadPolicy {
  const reader = new PolicyReader(options.fs ?? diskFileSystem, resolve(legacyDir));
  reader.compat40({ file: reader.legacyDir, line: 0 });
  const { rules, errors, warnings } = reader;
  return { rules, errors, warnings, paths: [...reader.paths] };
}

export interface LoadedPolicy {
  /** Always usable: with errors it denies every call. */
  policy: CompiledPolicy;
  errors: readonly PolicyError[];
}

/** Loads `dirs` (one directory, or several where an earlier one hides same-named files). */
export function loadPolicy(dirs: string | string[], options: ReadOptions = {}): LoadedPolicy {
  const policy = new CompiledPolicy(readPolicy(typeof dirs === "string" ? [dirs] : dirs, options));
  return { policy, errors: policy.errors };
}
