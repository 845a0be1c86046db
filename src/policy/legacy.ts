// The legacy per-service format (§11.2): `SRC DEST ACTION[,param=value…]` lines in a file named
// SERVICE or SERVICE+ARG, with R3/R4.0 `$` keywords and the R2 bare keywords. Lines are rewritten
// into the current format's fields so both formats share one rule builder and one evaluator.

import { compareBytewise, type PolicyFileSystem } from "./files.ts";
import type { RuleFields } from "./rule.ts";

export type LegacyLine =
  | { kind: "skip" }
  | { kind: "include"; path: string }
  /** `warning`: the line reads differently under upstream's compat parser (bare R2 keywords). */
  | { kind: "rule"; fields: RuleFields; warning: string | null }
  | { kind: "error"; message: string };

/**
 * R2 wrote `anyvm` and `dispvm` without a sigil. Upstream's translation leaves them alone, so they
 * would name qubes called "anyvm"/"dispvm"; they meant the keywords, so they are mapped here, and
 * each such line gets a warning, because upstream's 4.x compat parser reads it the other way.
 * (`dom0` needs no mapping: it is the admin VM in both formats.)
 */
const R2_KEYWORDS = new Map([
  ["anyvm", "@anyvm"],
  ["dispvm", "@dispvm"],
]);

function withKeyword(token: string): string {
  return R2_KEYWORDS.get(token) ?? token;
}

/** target=/default_target= values name domains too, so R2 keywords are mapped there as well. */
function withKeywordParam(param: string): string {
  for (const key of ["target=", "default_target="]) {
    if (param.startsWith(key)) return key + withKeyword(param.slice(key.length));
  }
  return param;
}

/** The bare R2 keywords among a line's domain words (param values included), once each. */
function bareKeywordsIn(words: readonly string[]): string[] {
  const values = words.map((word) => word.replace(/^(default_)?target=/, ""));
  return [...new Set(values.filter((value) => R2_KEYWORDS.has(value)))];
}

function bareKeywordWarning(bare: readonly string[]): string | null {
  if (bare.length === 0) return null;
  const each = bare.map((word) => `'${word}' (write '$${word}')`).join(" and ");
  const upstream = "upstream's 4.x compat parser reads it as a qube name";
  return `bare ${each} read as the keyword here; ${upstream}`;
}

/** One legacy line for SERVICE/ARGUMENT (the file's name, or !include-service's parameters). */
export function translateLegacyLine(raw: string, service: string, argument: string): LegacyLine {
  let line = raw.trim();
  if (line === "" || line.startsWith("#")) return { kind: "skip" };
  // Upstream's substitutions, in upstream's order.
  line = line.replaceAll("$include:", "!include ").replaceAll("$", "@").replaceAll(",", " ");
  const words = line.split(/\s+/);
  if (line.startsWith("!")) {
    if (words[0] !== "!include")
      return { kind: "error", message: `invalid directive '${words[0]}' in a legacy policy file` };
    if (words.length !== 2)
      return { kind: "error", message: `$include: takes 1 path, got ${words.length - 1}` };
    return { kind: "include", path: words[1]! };
  }
  if (words.length < 3) {
    return {
      kind: "error",
      message:
        `wrong number of fields: expected SOURCE TARGET ` +
        `ACTION[,PARAM=VALUE...], got ${words.length}`,
    };
  }
  const [source, target, action, ...params] = words as [string, string, string, ...string[]];
  return {
    kind: "rule",
    warning: bareKeywordWarning(bareKeywordsIn([source, target, ...params])),
    fields: {
      service,
      argument,
      source: withKeyword(source),
      target: withKeyword(target),
      action,
      params: params.map(withKeywordParam),
    },
  };
}

/** A legacy policy file and the service/argument its name stands for. */
export interface LegacyServiceFile {
  path: string;
  name: string;
  service: string;
  /** "+ARG", or "*" for the generic SERVICE file. */
  argument: string;
}

const LEGACY_FILE_NAME = /^([A-Za-z0-9._-]+)(\+[A-Za-z0-9+._-]*)?$/;
const IGNORED_SUFFIXES = [".rpmsave", ".rpmnew", ".swp"];

function legacyFileOf(directory: string, name: string): LegacyServiceFile | null {
  if (name.startsWith(".") || IGNORED_SUFFIXES.some((suffix) => name.endsWith(suffix))) return null;
  const match = LEGACY_FILE_NAME.exec(name);
  if (match === null) return null;
  return { path: `${directory}/${name}`, name, service: match[1]!, argument: match[2] ?? "*" };
}

/**
 * The files `!compat-4.0` imports, in its order: services sorted; per service the `+ARG` files
 * sorted, then the generic file. A missing directory holds no legacy policy.
 */
export function listLegacyServiceFiles(
  fs: PolicyFileSystem,
  directory: string,
): LegacyServiceFile[] {
  if (!fs.exists(directory)) return [];
  const files = fs
    .list(directory)
    .filter((entry) => entry.kind === "file")
    .map((entry) => legacyFileOf(directory, entry.name))
    .filter((file): file is LegacyServiceFile => file !== null);
  return files.sort(
    (a, b) =>
      compareBytewise(a.service, b.service) ||
      Number(a.argument === "*") - Number(b.argument === "*") ||
      compareBytewise(a.argument, b.argument),
  );
}
