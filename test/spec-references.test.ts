// Every § reference in the repository resolves to a section (or a numbered item) of docs/spec/,
// by the rules of docs/spec/README.md, whose table of default documents this test reads.
import { describe, expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

const root = join(import.meta.dir, "..");
const specDir = join(root, "docs", "spec");
const documents = ["qrexec-protocol.md", "vchan.md", "filecopy.md"];
const scanned = ["src", "zig", "test", "scripts", "bin", "docs", "README.md"];
const skippedDirs = new Set(["node_modules", ".zig-cache", "zig-out", ".tools", ".git"]);
/** This file: its examples of references that do not resolve are meant not to. */
const self = "test/spec-references.test.ts";

/** A section: its own lines (up to the next heading) and all of it (with its subsections). */
interface Section {
  own: string[];
  all: string[];
}

interface Reference {
  file: string;
  line: number;
  text: string;
  doc: string;
  section: string;
  kind: "heading" | "item" | "quote";
  items: number[][];
  quote: string;
}

/** Blanks the lines of fenced code blocks: a `#define` or `1.` there is not structure. */
function outsideFences(lines: string[]): string[] {
  let fenced = false;
  return lines.map((line) => {
    if (/^\s*```/.test(line)) {
      fenced = !fenced;
      return "";
    }
    return fenced ? "" : line;
  });
}

function parseSections(text: string): Map<string, Section> {
  const lines = outsideFences(text.split("\n"));
  const headings: { level: number; number: string; at: number }[] = [];
  lines.forEach((line, at) => {
    const match = /^(#{1,6})\s+(\d+(?:\.\d+)*)\.?\s/.exec(line);
    if (match) headings.push({ level: match[1]!.length, number: match[2]!, at });
  });
  const anyHeading = /^#{1,6}\s/;
  const sections = new Map<string, Section>();
  for (const [index, heading] of headings.entries()) {
    const next = lines.findIndex((line, at) => at > heading.at && anyHeading.test(line));
    const ownEnd = next < 0 ? lines.length : next;
    const later = headings.slice(index + 1).find((h) => h.level <= heading.level);
    const allEnd = later ? later.at : lines.length;
    sections.set(heading.number, {
      own: lines.slice(heading.at + 1, ownEnd),
      all: lines.slice(heading.at, allEnd),
    });
  }
  return sections;
}

interface ListItem {
  indent: number;
  number: number;
}

function listItems(lines: string[]): ListItem[] {
  const items: ListItem[] = [];
  for (const line of lines) {
    const match = /^(\s*)(\d+)\.\s/.exec(line);
    if (match) items.push({ indent: match[1]!.length, number: Number(match[2]) });
  }
  return items;
}

/** Whether `path` (e.g. [8, 2]: item 2 of item 8) names a numbered item of the list. */
function hasItem(items: ListItem[], path: number[]): boolean {
  let scope = items;
  for (const wanted of path) {
    const indent = Math.min(...scope.map((item) => item.indent));
    const at = scope.findIndex((item) => item.indent === indent && item.number === wanted);
    if (at < 0) return false;
    const rest = scope.slice(at + 1);
    const end = rest.findIndex((item) => item.indent <= indent);
    scope = end < 0 ? rest : rest.slice(0, end);
  }
  return true;
}

const specs = new Map(
  documents.map((doc) => [doc, parseSections(readFileSync(join(specDir, doc), "utf8"))]),
);

/** The README's table: path prefixes -> the document a bare § means there. */
function defaultDocuments(): { prefixes: string[]; doc: string }[] {
  const readme = readFileSync(join(specDir, "README.md"), "utf8");
  const rows: { prefixes: string[]; doc: string }[] = [];
  for (const line of readme.split("\n")) {
    const cells = /^\| (.+) \| `([a-z-]+\.md)` \|$/.exec(line);
    if (!cells || !documents.includes(cells[2]!)) continue;
    const prefixes = [...cells[1]!.matchAll(/`([^`]+)`/g)].map((m) => m[1]!);
    rows.push({ prefixes: cells[1] === "anywhere else" ? [""] : prefixes, doc: cells[2]! });
  }
  return rows;
}

const defaults = defaultDocuments();

function defaultDocument(file: string): string {
  const row = defaults.find((r) => r.prefixes.some((prefix) => file.startsWith(prefix)));
  if (!row) throw new Error(`docs/spec/README.md has no row for ${file}`);
  return row.doc;
}

const docName = String.raw`(?:\x60?(?:[\w./-]*\/)?(qrexec-protocol|vchan|filecopy)\.md\x60?\s*)?`;
const itemPath = String.raw`\d+(?:\.\d+)*`;
const qualifier =
  String.raw`(?:\s+(?:steps?|items?|bugs?)\s+(${itemPath})(?:\s*[-–]\s*(${itemPath}))?` +
  String.raw`|\s+"([^"]+)")?`;
const referencePattern = new RegExp(`${docName}§\\s?(${itemPath})${qualifier}`, "g");
/**
 * What may stand between a named document's reference and a later one that inherits it: list
 * separators, and a line break with the comment leader of the next line (`//!`, ` * `, `#`).
 */
const listGap = /^(?:[\s,;/*#!–-]|\band\b|\bor\b)*$/;
const foreignDocument = /\b(?:Unicode|POSIX|RFC\s*\d+|ISO[\s\d]*)\s*$/;

function parseItemPath(text: string): number[] {
  return text.split(".").map(Number);
}

/** A reference's document, which the next one in the same list inherits when it names none. */
interface Carried {
  doc: string;
  end: number;
}

function referencesIn(file: string, text: string, fallback: string): Reference[] {
  const found: Reference[] = [];
  let carried: Carried | null = null;
  let line = 1;
  let counted = 0;
  for (const match of text.matchAll(referencePattern)) {
    const start = match.index;
    for (; counted < start; counted++) if (text[counted] === "\n") line++;
    const lineStart = text.lastIndexOf("\n", start - 1) + 1;
    if (!match[1] && foreignDocument.test(text.slice(lineStart, start))) continue;
    const inherited: Carried | null =
      carried !== null && listGap.test(text.slice(carried.end, start)) ? carried : null;
    const doc: string = match[1] ? `${match[1]}.md` : (inherited?.doc ?? fallback);
    carried = match[1] || inherited ? { doc, end: start + match[0].length } : null;
    const items = [match[3], match[4]].filter((path) => path !== undefined);
    found.push({
      file,
      line,
      text: match[0].trim(),
      doc,
      section: match[2]!,
      kind: match[5] ? "quote" : items.length > 0 ? "item" : "heading",
      items: items.map((path) => parseItemPath(path!)),
      quote: match[5] ?? "",
    });
  }
  return found;
}

function filesUnder(path: string): string[] {
  const full = join(root, path);
  let entries;
  try {
    entries = readdirSync(full, { withFileTypes: true });
  } catch (error) {
    // A plain file (README.md) is scanned as itself.
    if ((error as NodeJS.ErrnoException).code === "ENOTDIR") return [path];
    throw error;
  }
  return entries
    .filter((entry) => !skippedDirs.has(entry.name) && `${path}/${entry.name}` !== self)
    .flatMap((entry) => {
      const child = `${path}/${entry.name}`;
      // Sockets, fifos and links a running test may leave are not sources.
      if (entry.isDirectory()) return filesUnder(child);
      return entry.isFile() ? [child] : [];
    });
}

function allReferences(): Reference[] {
  const found: Reference[] = [];
  for (const file of scanned.flatMap(filesUnder)) {
    const text = readFileSync(join(root, file), "utf8");
    if (!text.includes("§")) continue;
    found.push(...referencesIn(file, text, defaultDocument(file)));
  }
  return found;
}

/** Why `ref` does not resolve, or null when it does. */
function problem(ref: Reference): string | null {
  const sections = specs.get(ref.doc)!;
  let section = sections.get(ref.section);
  let items = ref.items;
  if (!section) {
    // §13.21 is item 21 of §13 where §13 has no heading 13.21 (README rule 3).
    const dot = ref.section.lastIndexOf(".");
    const parent = dot < 0 ? undefined : sections.get(ref.section.slice(0, dot));
    const item = [Number(ref.section.slice(dot + 1))];
    if (!parent || ref.kind === "item" || !hasItem(listItems(parent.own), item)) {
      return "no such section";
    }
    section = parent;
    items = [];
  }
  const list = listItems(section.own);
  const missing = items.find((path) => !hasItem(list, path));
  if (missing) return `the section has no numbered item ${missing.join(".")}`;
  const quoted = ref.quote.toLowerCase();
  if (quoted && !section.all.join("\n").toLowerCase().includes(quoted)) {
    return `the section does not contain "${ref.quote}"`;
  }
  return null;
}

describe("§ references", () => {
  const references = allReferences();

  test("the scan finds the references (a broken pattern would pass vacuously)", () => {
    expect(references.length).toBeGreaterThan(400);
    const docs = new Set(references.map((ref) => ref.doc));
    expect([...docs].sort()).toEqual([...documents].sort());
  });

  test("every reference resolves to a section or a numbered item of docs/spec/", () => {
    const unresolved = references.flatMap((ref) => {
      const why = problem(ref);
      return why ? [`${ref.file}:${ref.line}: ${ref.text} (in ${ref.doc}): ${why}`] : [];
    });
    expect(unresolved).toEqual([]);
  });
});

describe("the resolver itself", () => {
  const resolve = (line: string, fallback = "qrexec-protocol.md") =>
    referencesIn("x.ts", line, fallback).map((ref) => [ref.doc, ref.text, problem(ref)]);

  test("a named document wins and carries on through the list after it", () => {
    expect(resolve("(vchan.md §5.3, §7) and later §6.6")).toEqual([
      ["vchan.md", "vchan.md §5.3", null],
      ["vchan.md", "§7", null],
      ["qrexec-protocol.md", "§6.6", null],
    ]);
    expect(resolve("`vchan.md` §4, §12", "filecopy.md").map((r) => r[0])).toEqual([
      "vchan.md",
      "vchan.md",
    ]);
  });

  test("the list goes on over a comment's line break, and stops at other words", () => {
    const text = "// (filecopy.md §3.4,\n// §3.5). Unlike ... (§2.6)\n * §3.1";
    expect(referencesIn("x.zig", text, "vchan.md").map((ref) => [ref.line, ref.doc])).toEqual([
      [1, "filecopy.md"],
      [2, "filecopy.md"],
      [2, "vchan.md"],
      [3, "vchan.md"],
    ]);
  });

  test("sections, items, nested items, quotes and the numbered-list reading", () => {
    expect(resolve("§6.2 step 8.2, §2.1 steps 1-2, §13.21, §13 item 21")).toEqual([
      ["qrexec-protocol.md", "§6.2 step 8.2", null],
      ["qrexec-protocol.md", "§2.1 steps 1-2", null],
      ["qrexec-protocol.md", "§13.21", null],
      ["qrexec-protocol.md", "§13 item 21", null],
    ]);
    expect(resolve('§9 "`-c` in detail"')[0]![2]).toBeNull();
  });

  test("what does not exist is reported", () => {
    expect(resolve("§6.2 step 8.9")[0]![2]).toBe("the section has no numbered item 8.9");
    expect(resolve("§13.99")[0]![2]).toBe("no such section");
    expect(resolve("§42")[0]![2]).toBe("no such section");
    expect(resolve("§2.10", "filecopy.md")[0]![2]).toBe("no such section");
    const quote = '§9 "no such words"';
    expect(resolve(quote)[0]![2]).toBe('the section does not contain "no such words"');
    expect(resolve("§13.2 step 1")[0]![2]).toBe("no such section");
  });

  test("another document's § is not ours", () => {
    expect(resolve("well-formed UTF-8 (Unicode §3.9, table 3-7)")).toEqual([]);
  });
});
