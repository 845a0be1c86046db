// The lab definition: which domains exist, of what kind, with which services, and dom0's policy.
// A TOML file (Bun's parser); src/lab/default-lab.toml is the one used without --config and the
// documented example. Every problem is reported at once, each as "FILE:LINE: what is wrong",
// before anything starts.

import { existsSync, readFileSync, readdirSync, statSync } from "node:fs";
import { basename, dirname, isAbsolute, join, resolve } from "node:path";
import { LAB_DATA_DIR } from "../install-paths.ts";
import { KeyLines, type Section } from "./config-lines.ts";
import { ISOLATION_MODES, type IsolationMode } from "./isolation.ts";

export const DEFAULT_LAB_FILE = join(LAB_DATA_DIR, "default-lab.toml");
export const BUILTIN_SERVICES_DIR = join(LAB_DATA_DIR, "services");

/** Qubes' domain kinds; a DisposableVM template is an AppVM with template_for_dispvms. */
export const LAB_DOMAIN_TYPES = ["AppVM", "TemplateVM", "DispVMTemplate", "StandaloneVM"] as const;

/** A service to install: its name in the domain's rpc dir and the file it is copied from. */
export interface ServiceFile {
  name: string;
  path: string;
}

export interface LabDomainConfig {
  name: string;
  /** What qubesd would call its class: AppVM, TemplateVM, StandaloneVM (a template is an AppVM). */
  klass: "AppVM" | "TemplateVM" | "StandaloneVM";
  templateForDispvms: boolean;
  tags: string[];
  defaultUser: string;
  defaultDispvm: string | null;
  services: ServiceFile[];
  /** Started by `lab up`; otherwise halted until started (qrx vm start, or autostart=yes). */
  start: boolean;
  /**
   * DispVM templates: how many DisposableVMs of it the lab keeps created and started ahead of
   * `$dispvm` calls (Qubes 4.3's preloaded disposables, feature `preload-dispvm-max`).
   */
  preloadDispvm: number;
}

export interface LabConfig {
  /** The file it came from (the embedded default's path when none was given). */
  file: string;
  domains: LabDomainConfig[];
  dom0Services: ServiceFile[];
  /** dom0's default DisposableVM template, also the default for domains that name none. */
  defaultDispvm: string | null;
  /** Text of policy.d/50-lab.policy, or null to leave policy.d as it is. */
  policy: string | null;
  transport: "shm" | "socket";
  /** Who answers the policy's ask rules: "tty", "deny" or "program:CMD" (see LAB_ASK_HELP). */
  ask: string;
  /** Each VM domain in its own namespaces (the default), or a process on the host as dom0. */
  isolation: IsolationMode;
}

export const LAB_ASK_HELP =
  "tty (the terminal of qrx run, or qrx lab answer), program:CMD (sh -c CMD answers), or deny";

/** The reason `ask` is not a valid ask mode, or null when it is. */
export function askModeProblem(ask: string): string | null {
  if (ask === "tty" || ask === "deny") return null;
  if (ask.startsWith("program:") && ask.slice("program:".length).trim() !== "") return null;
  return `ask must be ${LAB_ASK_HELP}; not "${ask}"`;
}

export class LabConfigError extends Error {
  override name = "LabConfigError";
}

// Qubes' own rule for VM names (qubes.vm.validate_name), within the 31 bytes qrexec allows.
const NAME = /^[a-zA-Z][a-zA-Z0-9_.-]{0,30}$/;
const TAG = /^[a-zA-Z0-9_-]{1,64}$/;
const USER = /^[a-z_][a-z0-9_-]{0,31}$/;
const SERVICE_NAME = /^[A-Za-z0-9_.+-]{1,64}$/;
const TOP_KEYS = new Set([
  "default_dispvm",
  "policy",
  "transport",
  "ask",
  "isolation",
  "dom0",
  "domain",
]);
const DOMAIN_KEYS = new Set([
  "name",
  "type",
  "tags",
  "default_user",
  "services",
  "default_dispvm",
  "template_for_dispvms",
  "start",
  "preload_dispvm",
]);
/** More would only hold memory: a call takes one and the next is started at once. */
const PRELOAD_DISPVM_MAX = 8;

export function builtinServiceNames(): string[] {
  return readdirSync(BUILTIN_SERVICES_DIR).sort();
}

function isTable(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

export function loadLabConfig(file: string = DEFAULT_LAB_FILE): LabConfig {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const why = code === "ENOENT" ? "no such file" : `cannot read: ${(error as Error).message}`;
    throw new LabConfigError(`${file}: ${why}`);
  }
  return parseLabConfig(text, resolve(file));
}

/** Collects every problem with its line; a value with a problem reads as undefined. */
class Checker {
  readonly problems: string[] = [];

  constructor(
    readonly file: string,
    readonly lines: KeyLines,
  ) {}

  problem(section: Section, key: string, message: string): undefined {
    const line = this.lines.of(section, key);
    this.problems.push(`${this.file}${line === null ? "" : `:${line}`}: ${message}`);
    return undefined;
  }

  str(section: Section, key: string, value: unknown, what: string): string | undefined {
    if (value === undefined || typeof value === "string") return value;
    return this.problem(section, key, `${what} must be a string`);
  }

  bool(section: Section, key: string, value: unknown, what: string): boolean | undefined {
    if (value === undefined || typeof value === "boolean") return value;
    return this.problem(section, key, `${what} must be true or false`);
  }

  strings(section: Section, key: string, value: unknown, what: string): string[] | undefined {
    if (value === undefined) return undefined;
    if (Array.isArray(value) && value.every((item) => typeof item === "string")) return value;
    return this.problem(section, key, `${what} must be a list of strings`);
  }

  unknownKeys(section: Section, table: Record<string, unknown>, known: Set<string>, where: string) {
    for (const key of Object.keys(table)) {
      if (known.has(key)) continue;
      this.problem(section, key, `${where}unknown key '${key}' (known: ${[...known].join(", ")})`);
    }
  }

  services(section: Section, value: unknown, what: string): ServiceFile[] {
    if (value === undefined) {
      const names = builtinServiceNames();
      return names.map((name) => ({ name, path: join(BUILTIN_SERVICES_DIR, name) }));
    }
    const out: ServiceFile[] = [];
    for (const entry of this.strings(section, "services", value, what) ?? []) {
      // A path installs that file under its own name; a bare name is one of ours.
      const isPath = entry.includes("/");
      const base = dirname(this.file);
      const given = isAbsolute(entry) ? entry : resolve(base, entry);
      const path = isPath ? given : join(BUILTIN_SERVICES_DIR, entry);
      const name = basename(path);
      const fail = (message: string) => this.problem(section, "services", `${what}: ${message}`);
      if (!SERVICE_NAME.test(name)) fail(`'${name}' is not a valid service name`);
      else if (!existsSync(path) || !statSync(path).isFile()) {
        const builtin = builtinServiceNames().join(", ");
        const none = `no built-in service '${entry}' (built-in: ${builtin}; or give a path)`;
        fail(isPath ? `${path} does not exist` : none);
      } else if (out.some((service) => service.name === name)) fail(`'${name}' listed twice`);
      else out.push({ name, path });
    }
    return out;
  }
}

export function parseLabConfig(text: string, file: string): LabConfig {
  let data: unknown;
  try {
    data = Bun.TOML.parse(text);
  } catch (error) {
    const message = (error as Error).message.replace(/^TOML Parse error: /, "");
    throw new LabConfigError(`${file}:${syntaxErrorLine(text)}: not valid TOML: ${message}`);
  }
  const check = new Checker(file, new KeyLines(text));
  if (!isTable(data)) throw new LabConfigError(`${file}: expected a table at the top level`);
  check.unknownKeys("top", data, TOP_KEYS, "");
  const config = topLevel(check, data);
  config.domains = domainEntries(check, data.domain, config.defaultDispvm);
  dispvmReferences(check, config);
  if (check.problems.length > 0) throw new LabConfigError(check.problems.join("\n"));
  return config;
}

/**
 * The line of a TOML syntax error. Bun's parser does not say, so: the line after the longest
 * prefix of whole lines that parses (a prefix that stops inside a multi-line string fails too,
 * which is why it is the longest, not the first failing one).
 */
function syntaxErrorLine(text: string): number {
  const lines = text.split("\n");
  for (let count = lines.length - 1; count > 0; count--) {
    try {
      Bun.TOML.parse(lines.slice(0, count).join("\n"));
      return count + 1;
    } catch {
      // Still a syntax error: try a shorter prefix.
    }
  }
  return 1;
}

function topLevel(check: Checker, data: Record<string, unknown>): LabConfig {
  let transport = check.str("top", "transport", data.transport, "transport") ?? "shm";
  if (transport !== "shm" && transport !== "socket") {
    check.problem("top", "transport", `transport must be "shm" or "socket", not "${transport}"`);
    transport = "shm";
  }
  const isolation = check.str("top", "isolation", data.isolation, "isolation") ?? "namespaces";
  if (!(ISOLATION_MODES as readonly string[]).includes(isolation)) {
    check.problem(
      "top",
      "isolation",
      `isolation must be "namespaces" or "none", not "${isolation}"`,
    );
  }
  const ask = check.str("top", "ask", data.ask, "ask") ?? "tty";
  const askProblem = askModeProblem(ask);
  if (askProblem !== null) check.problem("top", "ask", askProblem);
  let dom0Services = check.services("dom0", undefined, "dom0.services");
  if (data.dom0 !== undefined) {
    if (!isTable(data.dom0)) check.problem("top", "dom0", "[dom0] must be a table");
    else {
      check.unknownKeys("dom0", data.dom0, new Set(["services"]), "[dom0]: ");
      dom0Services = check.services("dom0", data.dom0.services, "dom0.services");
    }
  }
  const defaultDispvm = check.str("top", "default_dispvm", data.default_dispvm, "default_dispvm");
  return {
    file: check.file,
    domains: [],
    dom0Services,
    defaultDispvm: defaultDispvm ?? null,
    policy: check.str("top", "policy", data.policy, "policy") ?? null,
    transport: transport as "shm" | "socket",
    ask,
    isolation: isolation as IsolationMode,
  };
}

/** Each domain's [[domain]] entry, for the lines of problems found after the entries are read. */
const entryIndex = new WeakMap<LabDomainConfig, number>();

function domainEntries(check: Checker, raw: unknown, defaultDispvm: string | null) {
  if (raw === undefined) return [];
  if (!Array.isArray(raw)) {
    check.problem("top", "domain", "domains are [[domain]] tables");
    return [];
  }
  const domains: LabDomainConfig[] = [];
  raw.forEach((entry: unknown, index: number) => {
    if (!isTable(entry)) check.problem(index, "", `domain #${index + 1} must be a table`);
    else {
      const domain = domainEntry(check, entry, index, defaultDispvm);
      if (domain === undefined) return;
      if (domains.some((other) => other.name === domain.name)) {
        check.problem(index, "name", `domain '${domain.name}' is defined twice`);
      } else {
        domains.push(domain);
        entryIndex.set(domain, index);
      }
    }
  });
  return domains;
}

function domainEntry(
  check: Checker,
  raw: Record<string, unknown>,
  index: number,
  defaultDispvm: string | null,
): LabDomainConfig | undefined {
  check.unknownKeys(index, raw, DOMAIN_KEYS, `domain #${index + 1}: `);
  const name = check.str(index, "name", raw.name, `domain #${index + 1}: name`);
  if (name === undefined) {
    const missing = `domain #${index + 1}: name must be a string`;
    if (raw.name === undefined) check.problem(index, "", missing);
    return undefined;
  }
  const at = `domain '${name}'`;
  const fail = (key: string, message: string) => check.problem(index, key, `${at}: ${message}`);
  const str = (key: string) => check.str(index, key, raw[key], `${at}: ${key}`);
  if (!NAME.test(name)) {
    fail("name", "a name starts with a letter and has at most 31 letters, digits, '_', '.' or '-'");
  }
  if (name === "dom0") fail("name", "dom0 is always there; configure it in [dom0]");
  const type = str("type") ?? "AppVM";
  if (!(LAB_DOMAIN_TYPES as readonly string[]).includes(type)) {
    fail("type", `type must be one of ${LAB_DOMAIN_TYPES.join(", ")}, not "${type}"`);
  }
  const tags = check.strings(index, "tags", raw.tags, `${at}: tags`) ?? [];
  for (const tag of tags) {
    if (!TAG.test(tag)) fail("tags", `'${tag}' is not a valid tag (letters, digits, '_' and '-')`);
  }
  const defaultUser = str("default_user") ?? "user";
  if (!USER.test(defaultUser)) fail("default_user", `'${defaultUser}' is not a valid user name`);
  const bool = (key: string) => check.bool(index, key, raw[key], `${at}: ${key}`);
  const forDispvms = bool("template_for_dispvms");
  const templateForDispvms = type === "DispVMTemplate" || forDispvms === true;
  const preloadProblem = (why: string) => fail("preload_dispvm", why);
  const preloadDispvm = preloadCount(raw.preload_dispvm, templateForDispvms, preloadProblem);
  if (!NAME.test(name) || name === "dom0") return undefined;
  return {
    name,
    klass: type === "DispVMTemplate" ? "AppVM" : (type as LabDomainConfig["klass"]),
    templateForDispvms,
    tags,
    defaultUser,
    defaultDispvm:
      raw.default_dispvm === undefined ? defaultDispvm : (str("default_dispvm") ?? null),
    services: check.services(index, raw.services, `${at}: services`),
    start: bool("start") ?? true,
    preloadDispvm,
  };
}

/** `preload_dispvm`: how many started DisposableVMs a template keeps ready (0 when unset). */
function preloadCount(value: unknown, template: boolean, problem: (why: string) => void): number {
  if (value === undefined) return 0;
  const whole = typeof value === "number" && Number.isInteger(value);
  if (!whole || value < 0 || value > PRELOAD_DISPVM_MAX) {
    problem(`preload_dispvm must be a whole number from 0 to ${PRELOAD_DISPVM_MAX}`);
    return 0;
  }
  if (value > 0 && !template) {
    problem(`preload_dispvm is for DisposableVM templates (type = "DispVMTemplate")`);
    return 0;
  }
  return value;
}

function dispvmReferences(check: Checker, config: LabConfig): void {
  config.domains.forEach((domain) => {
    const template = domain.defaultDispvm;
    if (template === null || template === config.defaultDispvm) return;
    const index = entryIndex.get(domain)!;
    const target = config.domains.find((candidate) => candidate.name === template);
    const at = `domain '${domain.name}': default_dispvm '${template}'`;
    if (!target) check.problem(index, "default_dispvm", `${at} is not a domain of this lab`);
    else if (!target.templateForDispvms) {
      const why = `${at} is not a DisposableVM template (type = "DispVMTemplate")`;
      check.problem(index, "default_dispvm", why);
    }
  });
  const { defaultDispvm } = config;
  const isTemplate = (domain: LabDomainConfig) =>
    domain.name === defaultDispvm && domain.templateForDispvms;
  if (defaultDispvm !== null && !config.domains.some(isTemplate)) {
    const why = `default_dispvm '${defaultDispvm}' is not a DisposableVM template of this lab`;
    check.problem("top", "default_dispvm", why);
  }
}
