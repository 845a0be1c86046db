// Domain facts from a file, until the lab supplies live ones. TOML or JSON (by extension: .json is
// JSON, anything else TOML), shaped like qubesd's internal.GetSystemInfo (§11.1): a `domains`
// table keyed by name. Every field is optional:
//
//   [domains.work]
//   type = "AppVM"                 # AdminVM, AppVM, TemplateVM, DispVM, StandaloneVM, RemoteVM
//   tags = ["trusted"]
//   default_dispvm = "default-dvm"
//   template_for_dispvms = false
//   uuid = "11111111-1111-1111-1111-111111111111"   # "uuid:" prefix optional
//   power_state = "Running"        # or running = true; autostart=no refuses halted targets
//   internal = false
//   relayvm = "relay"              # RemoteVM only
//   transport_rpc = "qubesair.SSHProxy"
//
// dom0 is added when the file has none. Problems are thrown as "file: what is wrong".

import { readFileSync } from "node:fs";
import { TableDomainFacts, type DomainSpec, type DomainType } from "./domains.ts";

const TYPES: readonly DomainType[] = [
  "AdminVM",
  "AppVM",
  "TemplateVM",
  "DispVM",
  "StandaloneVM",
  "RemoteVM",
];
const NAME = /^[A-Za-z0-9_.-]{1,31}$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const KEYS = new Set([
  "type",
  "tags",
  "default_dispvm",
  "template_for_dispvms",
  "uuid",
  "power_state",
  "running",
  "internal",
  "relayvm",
  "transport_rpc",
  // GetSystemInfo carries these too; accepted and unused.
  "icon",
  "label",
  "guivm",
]);

export class DomainsFileError extends Error {
  override name = "DomainsFileError";
  constructor(
    readonly file: string,
    readonly detail: string,
  ) {
    super(`${file}: ${detail}`);
  }
}

function isTable(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Parses the text of a domains file; `file` names it in errors and picks the syntax. */
export function parseDomains(text: string, file: string): DomainSpec[] {
  const fail = (message: string): never => {
    throw new DomainsFileError(file, message);
  };
  let data: unknown;
  try {
    data = file.endsWith(".json") ? JSON.parse(text) : Bun.TOML.parse(text);
  } catch (error) {
    fail(`cannot parse: ${error instanceof Error ? error.message : String(error)}`);
  }
  if (!isTable(data) || !isTable(data.domains))
    return fail("expected a 'domains' table keyed by domain name");
  const specs: DomainSpec[] = [];
  for (const [name, entry] of Object.entries(data.domains)) {
    const at = (message: string) => fail(`domain '${name}': ${message}`);
    if (!NAME.test(name)) at("not a valid domain name");
    if (!isTable(entry)) return at("expected a table");
    for (const key of Object.keys(entry)) if (!KEYS.has(key)) at(`unknown key '${key}'`);
    const string = (key: string): string | null => {
      const value = entry[key];
      if (value === undefined || value === null || value === "") return null;
      if (typeof value !== "string") return at(`${key} must be a string`);
      return value;
    };
    const boolean = (key: string): boolean | undefined => {
      const value = entry[key];
      if (value === undefined) return undefined;
      if (typeof value !== "boolean") return at(`${key} must be true or false`);
      return value;
    };
    const type = string("type") ?? (name === "dom0" ? "AdminVM" : "AppVM");
    if (!TYPES.includes(type as DomainType)) at(`type must be one of ${TYPES.join(", ")}`);
    const tags = entry.tags ?? [];
    if (!Array.isArray(tags) || tags.some((tag) => typeof tag !== "string"))
      at("tags must be a list of strings");
    let uuid = string("uuid");
    if (uuid !== null) {
      if (uuid.startsWith("uuid:")) uuid = uuid.slice(5);
      if (!UUID.test(uuid)) at(`uuid '${uuid}' is not a lowercase UUID`);
    }
    const powerState = string("power_state");
    const running =
      boolean("running") ?? (powerState === null ? type === "AdminVM" : powerState === "Running");
    specs.push({
      name,
      type: type as DomainType,
      tags: tags as string[],
      defaultDispvm: string("default_dispvm"),
      templateForDispvms: boolean("template_for_dispvms") ?? false,
      running,
      uuid,
      internal: boolean("internal") ?? false,
      relayvm: string("relayvm"),
      transportRpc: string("transport_rpc"),
    });
  }
  return specs;
}

/** Reads a domains file into facts the engine reads; throws DomainsFileError on any problem. */
export function loadDomainsFile(file: string): TableDomainFacts {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (error) {
    throw new DomainsFileError(
      file,
      `cannot read: ${error instanceof Error ? error.message : String(error)}`,
    );
  }
  return new TableDomainFacts(parseDomains(text, file));
}
