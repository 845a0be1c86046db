// The lab definition: which domains exist, of what kind, with which services, and dom0's policy.
// A TOML file (Bun's parser); src/lab/default-lab.toml is the one used without --config and the
// documented example. Every problem is reported as "FILE: what is wrong", before anything starts.

import { existsSync, readFileSync, readdirSync, statSync } from "node:fs";
import { basename, dirname, isAbsolute, join, resolve } from "node:path";
import { LAB_DATA_DIR } from "../install-paths.ts";

export const DEFAULT_LAB_FILE = join(LAB_DATA_DIR, "default-lab.toml");
export const BUILTIN_SERVICES_DIR = join(LAB_DATA_DIR, "services");

/** Qubes' domain kinds; a DisposableVM template is an AppVM with template_for_dispvms. */
export const LAB_DOMAIN_TYPES = ["AppVM", "TemplateVM", "DispVMTemplate", "StandaloneVM"] as const;
export type LabDomainType = (typeof LAB_DOMAIN_TYPES)[number];

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
}

export class LabConfigError extends Error {
  override name = "LabConfigError";
}

// Qubes' own rule for VM names (qubes.vm.validate_name), within the 31 bytes qrexec allows.
const NAME = /^[a-zA-Z][a-zA-Z0-9_.-]{0,30}$/;
const TAG = /^[a-zA-Z0-9_-]{1,64}$/;
const USER = /^[a-z_][a-z0-9_-]{0,31}$/;
const SERVICE_NAME = /^[A-Za-z0-9_.+-]{1,64}$/;
const TOP_KEYS = new Set(["default_dispvm", "policy", "transport", "dom0", "domain"]);
const DOMAIN_KEYS = new Set(["name", "type", "tags", "default_user", "services", "default_dispvm", "template_for_dispvms", "start"]);

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
    throw new LabConfigError(code === "ENOENT" ? `${file}: no such file` : `${file}: cannot read: ${(error as Error).message}`);
  }
  return parseLabConfig(text, resolve(file));
}

export function parseLabConfig(text: string, file: string): LabConfig {
  const fail = (message: string): never => {
    throw new LabConfigError(`${file}: ${message}`);
  };
  let data: unknown;
  try {
    data = Bun.TOML.parse(text);
  } catch (error) {
    fail(`not valid TOML: ${(error as Error).message}`);
  }
  if (!isTable(data)) return fail("expected a table at the top level");
  for (const key of Object.keys(data)) if (!TOP_KEYS.has(key)) fail(`unknown key '${key}' (known: ${[...TOP_KEYS].join(", ")})`);

  const str = (value: unknown, what: string): string => (typeof value === "string" ? value : fail(`${what} must be a string`));
  const bool = (value: unknown, what: string): boolean => (typeof value === "boolean" ? value : fail(`${what} must be true or false`));
  const strings = (value: unknown, what: string): string[] =>
    Array.isArray(value) && value.every((item) => typeof item === "string") ? (value as string[]) : fail(`${what} must be a list of strings`);

  const services = (value: unknown, what: string): ServiceFile[] => {
    if (value === undefined) return builtinServiceNames().map((name) => ({ name, path: join(BUILTIN_SERVICES_DIR, name) }));
    const out: ServiceFile[] = [];
    for (const entry of strings(value, what)) {
      // A path installs that file under its own name; a bare name is one of ours.
      const path = entry.includes("/") ? (isAbsolute(entry) ? entry : resolve(dirname(file), entry)) : join(BUILTIN_SERVICES_DIR, entry);
      const name = basename(path);
      if (!SERVICE_NAME.test(name)) fail(`${what}: '${name}' is not a valid service name`);
      if (!existsSync(path) || !statSync(path).isFile()) {
        fail(entry.includes("/") ? `${what}: ${path} does not exist` : `${what}: no built-in service '${entry}' (built-in: ${builtinServiceNames().join(", ")}; or give a path)`);
      }
      if (out.some((service) => service.name === name)) fail(`${what}: '${name}' listed twice`);
      out.push({ name, path });
    }
    return out;
  };

  const transport = data.transport === undefined ? "shm" : str(data.transport, "transport");
  if (transport !== "shm" && transport !== "socket") fail(`transport must be "shm" or "socket", not "${transport}"`);
  const defaultDispvm = data.default_dispvm === undefined ? null : str(data.default_dispvm, "default_dispvm");
  const policy = data.policy === undefined ? null : str(data.policy, "policy");

  let dom0Services = services(undefined, "dom0.services");
  if (data.dom0 !== undefined) {
    if (!isTable(data.dom0)) fail("[dom0] must be a table");
    for (const key of Object.keys(data.dom0 as object)) if (key !== "services") fail(`[dom0]: unknown key '${key}' (known: services)`);
    dom0Services = services((data.dom0 as Record<string, unknown>).services, "dom0.services");
  }

  const rawDomains = data.domain === undefined ? [] : data.domain;
  if (!Array.isArray(rawDomains)) return fail("domains are [[domain]] tables");
  const domains: LabDomainConfig[] = [];
  rawDomains.forEach((raw: unknown, index: number) => {
    const where = `domain #${index + 1}`;
    if (!isTable(raw)) return fail(`${where} must be a table`);
    for (const key of Object.keys(raw)) if (!DOMAIN_KEYS.has(key)) fail(`${where}: unknown key '${key}' (known: ${[...DOMAIN_KEYS].join(", ")})`);
    const name = str(raw.name, `${where}: name`);
    const at = `domain '${name}'`;
    if (!NAME.test(name)) fail(`${at}: a name starts with a letter and has at most 31 letters, digits, '_', '.' or '-'`);
    if (name === "dom0") fail(`${at}: dom0 is always there; configure it in [dom0]`);
    if (domains.some((domain) => domain.name === name)) fail(`${at} is defined twice`);
    const type = raw.type === undefined ? "AppVM" : str(raw.type, `${at}: type`);
    if (!(LAB_DOMAIN_TYPES as readonly string[]).includes(type)) fail(`${at}: type must be one of ${LAB_DOMAIN_TYPES.join(", ")}, not "${type}"`);
    const tags = raw.tags === undefined ? [] : strings(raw.tags, `${at}: tags`);
    for (const tag of tags) if (!TAG.test(tag)) fail(`${at}: '${tag}' is not a valid tag (letters, digits, '_' and '-')`);
    const defaultUser = raw.default_user === undefined ? "user" : str(raw.default_user, `${at}: default_user`);
    if (!USER.test(defaultUser)) fail(`${at}: '${defaultUser}' is not a valid user name`);
    const templateForDispvms = type === "DispVMTemplate" || (raw.template_for_dispvms !== undefined && bool(raw.template_for_dispvms, `${at}: template_for_dispvms`));
    domains.push({
      name,
      klass: type === "DispVMTemplate" ? "AppVM" : (type as LabDomainConfig["klass"]),
      templateForDispvms,
      tags,
      defaultUser,
      defaultDispvm: raw.default_dispvm === undefined ? defaultDispvm : str(raw.default_dispvm, `${at}: default_dispvm`),
      services: services(raw.services, `${at}: services`),
      start: raw.start === undefined ? true : bool(raw.start, `${at}: start`),
    });
  });

  for (const domain of domains) {
    const template = domain.defaultDispvm;
    if (template === null) continue;
    const target = domains.find((candidate) => candidate.name === template);
    if (!target) fail(`domain '${domain.name}': default_dispvm '${template}' is not a domain of this lab`);
    else if (!target.templateForDispvms) fail(`domain '${domain.name}': default_dispvm '${template}' is not a DisposableVM template (type = "DispVMTemplate")`);
  }
  if (defaultDispvm !== null && !domains.some((domain) => domain.name === defaultDispvm && domain.templateForDispvms)) {
    fail(`default_dispvm '${defaultDispvm}' is not a DisposableVM template of this lab`);
  }
  return { file, domains, dom0Services, defaultDispvm, policy, transport };
}
