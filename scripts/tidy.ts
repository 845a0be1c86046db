// The TypeScript side of the project's tidy rules, in the spirit of TigerBeetle's tidy.zig: rules
// a formatter cannot enforce, checked over every .ts file in src, test and scripts.
//
// - A line is at most 100 columns (code points). A line right after `// tidy: allow-long-line` is
//   exempt: for the rare line that cannot be split (a URL, a byte-exact fixture).
// - A function's body is at most 70 lines: the lines strictly between its `{` and `}` (for an
//   arrow with an expression body, the lines after the `=>` line up to the end of the expression).
//   Measured: function declarations, methods (class and object literal, get/set, constructors),
//   and function or arrow expressions given a name (`const f = () => {`, a class field, an object
//   property `f: () => {`). An unnamed callback counts within the function around it.
// - A catch that drops the error (`catch {}`, `catch (e) {}`, `.catch(() => {})`,
//   `.catch(() => undefined)`) says why in a comment inside it, on its line, or on the line before.
//   `.catch(() => null)` is not dropping: it turns the error into a value the caller checks.
//
// Files whose first line starts with `// Generated` are skipped. Violations print as
// `file:line: message`, and the exit code is 1 when there is any.

import { readdirSync, readFileSync } from "node:fs";
import { join, relative } from "node:path";

export const MAX_LINE_COLUMNS = 100;
export const MAX_FUNCTION_LINES = 70;
export const ALLOW_LONG_LINE = "// tidy: allow-long-line";
const ROOTS = ["src", "test", "scripts"];

export interface Violation {
  line: number;
  message: string;
}

interface Token {
  text: string;
  line: number;
}

interface Scanned {
  tokens: Token[];
  /** Lines that have (part of) a comment on them. */
  commentLines: Set<number>;
}

const KEYWORDS_BEFORE_EXPRESSION = new Set([
  "return",
  "typeof",
  "instanceof",
  "in",
  "of",
  "new",
  "delete",
  "void",
  "throw",
  "case",
  "do",
  "else",
  "yield",
  "await",
]);

/** Not function names: `if (x) {` and the like also put a `{` right after a `)`. */
const CONTROL_KEYWORDS = new Set(["if", "for", "while", "switch", "catch", "with", "function"]);

const PUNCTUATORS = [
  "...",
  "===",
  "!==",
  "??=",
  "&&=",
  "||=",
  "=>",
  "==",
  "!=",
  "<=",
  ">=",
  "&&",
  "||",
  "??",
  "?.",
  "+=",
  "-=",
  "*=",
  "/=",
];

/** Whether a `/` after the code in `out` (masked so far) starts a regular expression. */
function slashStartsRegex(out: string[]): boolean {
  let end = out.length - 1;
  while (end >= 0 && /^\s$/.test(out[end] ?? "")) end--;
  const last = out[end];
  if (last === undefined) return true;
  if (!/[\w$]/.test(last)) return !")]\"'`".includes(last);
  let word = "";
  for (let i = end; i >= 0 && /[\w$]/.test(out[i] ?? ""); i--) word = out[i] + word;
  return KEYWORDS_BEFORE_EXPRESSION.has(word);
}

/** What a character becomes when masked: blank, but a newline stays. */
function blank(char: string): string {
  return char === "\n" ? "\n" : " ";
}

class Masker {
  readonly out: string[] = [];
  readonly commentLines = new Set<number>();
  // One entry per open `{`: true when it is a template's `${`, whose `}` goes back to the text.
  readonly #braces: boolean[] = [];
  #line = 1;
  #i = 0;

  constructor(readonly source: string) {}

  get #char(): string {
    return this.source.charAt(this.#i);
  }

  get #more(): boolean {
    return this.#i < this.source.length;
  }

  #take(masked: string): void {
    if (this.#char === "\n") this.#line++;
    this.out.push(masked);
    this.#i++;
  }

  run(): void {
    while (this.#more) {
      const char = this.#char;
      const next = this.source.charAt(this.#i + 1);
      if (char === "/" && next === "/") this.#lineComment();
      else if (char === "/" && next === "*") this.#blockComment();
      else if (char === '"' || char === "'") this.#quoted(char);
      else if (char === "`") {
        this.#take("`");
        this.#templateText();
      } else if (char === "/" && slashStartsRegex(this.out)) this.#regex();
      else if (char === "}" && this.#braces.at(-1) === true) {
        this.#braces.pop();
        this.#take(" ");
        this.#templateText();
      } else {
        if (char === "{") this.#braces.push(false);
        else if (char === "}") this.#braces.pop();
        this.#take(char);
      }
    }
  }

  #lineComment(): void {
    while (this.#more && this.#char !== "\n") {
      this.commentLines.add(this.#line);
      this.#take(" ");
    }
  }

  #blockComment(): void {
    while (this.#more && !(this.#char === "*" && this.source[this.#i + 1] === "/")) {
      this.commentLines.add(this.#line);
      this.#take(blank(this.#char));
    }
    this.commentLines.add(this.#line);
    this.#take(" ");
    this.#take(" ");
  }

  #quoted(quote: string): void {
    this.#take(quote);
    while (this.#more && this.#char !== quote && this.#char !== "\n") {
      if (this.#char === "\\") this.#take(" ");
      this.#take(blank(this.#char));
    }
    this.#take(quote);
  }

  #templateText(): void {
    while (this.#more) {
      const char = this.#char;
      if (char === "\\") {
        this.#take(" ");
        if (this.#more) this.#take(blank(this.#char));
      } else if (char === "`") {
        this.#take("`");
        return;
      } else if (char === "$" && this.source[this.#i + 1] === "{") {
        this.#take(" ");
        this.#take(" ");
        this.#braces.push(true);
        return;
      } else this.#take(blank(char));
    }
  }

  #regex(): void {
    this.#take('"');
    let inClass = false;
    while (this.#more && this.#char !== "\n") {
      const char = this.#char;
      if (char === "\\") this.#take(" ");
      else if (char === "[") inClass = true;
      else if (char === "]") inClass = false;
      else if (char === "/" && !inClass) break;
      this.#take(" ");
    }
    this.#take('"');
  }
}

/**
 * The source with comments blanked and the contents of strings, template text and regular
 * expressions blanked (their quotes kept, a regex's slashes turned into quotes), newlines kept:
 * what is left is code whose brackets match. Template substitutions stay code.
 */
export function maskSource(source: string): { masked: string; commentLines: Set<number> } {
  const masker = new Masker(source);
  masker.run();
  return { masked: masker.out.join(""), commentLines: masker.commentLines };
}

function tokenize(masked: string): Token[] {
  const tokens: Token[] = [];
  let line = 1;
  let i = 0;
  while (i < masked.length) {
    const char = masked.charAt(i);
    if (char === "\n") {
      line++;
      i++;
      continue;
    }
    if (/\s/.test(char)) {
      i++;
      continue;
    }
    const word = /^[#\w$]+/.exec(masked.slice(i, i + 256))?.[0];
    const punctuator = PUNCTUATORS.find((text) => masked.startsWith(text, i));
    const text = word ?? punctuator ?? char;
    tokens.push({ text, line });
    i += text.length;
  }
  return tokens;
}

function scan(source: string): Scanned {
  const { masked, commentLines } = maskSource(source);
  return { tokens: tokenize(masked), commentLines };
}

// Sets, not objects: `"toString" in {}` is true.
const OPENERS = new Set(["(", "[", "{"]);
const CLOSERS = new Set([")", "]", "}"]);

/** For each opening bracket's index, its closing one's (missing when unbalanced). */
function matchBrackets(tokens: Token[]): Map<number, number> {
  const matches = new Map<number, number>();
  const open: number[] = [];
  tokens.forEach((token, index) => {
    if (OPENERS.has(token.text)) open.push(index);
    else if (CLOSERS.has(token.text)) {
      const start = open.pop();
      if (start !== undefined) matches.set(start, index);
    }
  });
  return matches;
}

function isName(text: string | undefined): text is string {
  return text !== undefined && /^[#A-Za-z_$][\w$]*$/.test(text);
}

const TYPE_BEFORE_OBJECT = [":", "|", "&", "<", ",", "(", "=>"];

/**
 * The index of the body's `{` after a parameter list ending at `close`, skipping a return type;
 * -1 when there is no block body (a call, a type, an arrow with an expression body).
 */
function blockBodyAfter(tokens: Token[], close: number, matches: Map<number, number>): number {
  let i = close + 1;
  if (tokens[i]?.text !== ":") return tokens[i]?.text === "{" ? i : -1;
  // A return type: a `{` right after `:`, `|`, `&`, `<`, `,`, `(` or `=>` is an object type.
  let angles = 0;
  for (i++; i < tokens.length; i++) {
    const text = tokens[i]?.text;
    const previous = tokens[i - 1]?.text ?? "";
    if (text === "<") angles++;
    else if (text === ">") angles--;
    else if (text === "(" || text === "[") i = matches.get(i) ?? i;
    else if (text === "{") {
      if (angles === 0 && !TYPE_BEFORE_OBJECT.includes(previous)) return i;
      i = matches.get(i) ?? i;
    } else if (text === ";" || text === "=" || text === "=>") return -1;
  }
  return -1;
}

/** The name an arrow or function expression starting at `start` is given, or null for none. */
function assignedName(tokens: Token[], start: number): string | null {
  let i = start - 1;
  if (tokens[i]?.text === "async") i--;
  const token = tokens[i]?.text;
  if (token === ":") return isName(tokens[i - 1]?.text) ? (tokens[i - 1]?.text ?? null) : null;
  if (token !== "=") return null;
  // `name = ` or `name: Type = `: the name is the first word of the declaration.
  for (let j = i - 1, depth = 0; j >= 0 && j > i - 64; j--) {
    const text = tokens[j]?.text ?? "";
    if (CLOSERS.has(text) || text === ">") depth++;
    else if (OPENERS.has(text) || text === "<") depth--;
    if (depth < 0 || text === ";" || text === "," || text === "}") return null;
    const before = tokens[j - 1]?.text ?? "";
    const declares = ["const", "let", "var", "readonly", "static", "private", "public"];
    if (depth === 0 && isName(text) && (declares.includes(before) || ";{}".includes(before)))
      return text;
  }
  return null;
}

/** The `=>` of an arrow whose parameter list ends at `close` (after a return type), or -1. */
function arrowAfter(tokens: Token[], close: number, matches: Map<number, number>): number {
  if (tokens[close + 1]?.text === "=>") return close + 1;
  if (tokens[close + 1]?.text !== ":") return -1;
  for (let i = close + 2, angles = 0; i < tokens.length; i++) {
    const text = tokens[i]?.text ?? "";
    if (text === "=>" && angles === 0) return i;
    if (text === "<") angles++;
    else if (text === ">") angles--;
    else if (OPENERS.has(text)) i = matches.get(i) ?? i;
    else if (CLOSERS.has(text) || [";", ",", "=", "?"].includes(text)) return -1;
  }
  return -1;
}

/** The last token of an arrow's expression body starting at `start`. */
function expressionEnd(tokens: Token[], start: number, matches: Map<number, number>): number {
  let i = start;
  for (; i < tokens.length; i++) {
    const text = tokens[i]?.text ?? "";
    if (OPENERS.has(text)) i = matches.get(i) ?? i;
    else if (CLOSERS.has(text) || text === ";" || text === ",") return i - 1;
  }
  return i - 1;
}

interface FunctionSpan {
  name: string;
  /** Index of the token that names it (for its class). */
  at: number;
  line: number;
  bodyLines: number;
}

/** Each class body's `{` index, with the class's name. */
function classBodies(tokens: Token[], matches: Map<number, number>): Map<number, string> {
  const bodies = new Map<number, string>();
  tokens.forEach((token, index) => {
    if (token.text !== "class") return;
    const name = isName(tokens[index + 1]?.text) ? (tokens[index + 1]?.text ?? "") : "";
    for (let i = index + 1; i < tokens.length; i++) {
      const text = tokens[i]?.text;
      if (text === "{") {
        bodies.set(i, name);
        return;
      }
      if (text === "(" || text === "<") i = matches.get(i) ?? i;
    }
  });
  return bodies;
}

/** For each token, the index of the innermost `{` it is in (-1 at the top level). */
function enclosingBraces(tokens: Token[]): number[] {
  const stack: number[] = [];
  return tokens.map((token, index) => {
    const inside = stack.at(-1) ?? -1;
    if (token.text === "{") stack.push(index);
    else if (token.text === "}") stack.pop();
    return inside;
  });
}

function namedFunctions(tokens: Token[]): FunctionSpan[] {
  const matches = matchBrackets(tokens);
  const found: FunctionSpan[] = [];
  const block = (name: string, at: number, open: number) => {
    const close = matches.get(open);
    const first = tokens[open]?.line ?? 0;
    const last = close === undefined ? first : (tokens[close]?.line ?? first);
    found.push({ name, at, line: tokens[at]?.line ?? 0, bodyLines: Math.max(0, last - first - 1) });
  };
  tokens.forEach((token, index) => {
    const close = matches.get(index);
    if (token.text !== "(" || close === undefined) return;
    // `name(...) {` or `name<T>(...) {`: a declaration or a method.
    const named = tokens[index - 1]?.text === ">" ? typeParametersStart(tokens, index - 1) : index;
    const name = tokens[named - 1]?.text;
    const open = blockBodyAfter(tokens, close, matches);
    if (open !== -1 && isName(name) && !CONTROL_KEYWORDS.has(name))
      return block(name, named - 1, open);
    const assigned = assignedName(tokens, name === "function" ? named - 1 : named);
    if (assigned === null) return;
    if (open !== -1 && name === "function") return block(assigned, named - 1, open);
    const arrow = arrowAfter(tokens, close, matches);
    if (arrow === -1) return;
    if (tokens[arrow + 1]?.text === "{") return block(assigned, named, arrow + 1);
    const end = tokens[expressionEnd(tokens, arrow + 1, matches)]?.line ?? token.line;
    const line = tokens[named]?.line ?? 0;
    found.push({ name: assigned, at: named, line, bodyLines: end - (tokens[arrow]?.line ?? 0) });
  });
  return withClassNames(tokens, matches, found);
}

function typeParametersStart(tokens: Token[], close: number): number {
  let depth = 0;
  for (let i = close; i >= 0; i--) {
    const text = tokens[i]?.text;
    if (text === ">") depth++;
    else if (text === "<" && --depth === 0) return i;
  }
  return close;
}

/** Methods and fields directly in a class body are named `Class#name`. */
function withClassNames(
  tokens: Token[],
  matches: Map<number, number>,
  found: FunctionSpan[],
): FunctionSpan[] {
  const bodies = classBodies(tokens, matches);
  const enclosing = enclosingBraces(tokens);
  return found.map((span) => {
    const className = bodies.get(enclosing[span.at] ?? -1);
    if (className === undefined) return span;
    return { ...span, name: `${className}#${span.name.replace(/^#/, "")}` };
  });
}

/**
 * Catches that drop the error: `catch {}`, `catch (e) {}`, `.catch(() => {})`, `.catch(() => 0)`.
 */
function silentCatches(tokens: Token[]): { line: number; lastLine: number }[] {
  const found: { line: number; lastLine: number }[] = [];
  tokens.forEach((token, index) => {
    if (token.text !== "catch") return;
    const text = (offset: number) => tokens[index + offset]?.text;
    const line = token.line;
    if (text(-1) === ".") {
      // `.catch(() => {})`, `.catch((_e) => {})`, `.catch(() => undefined)`.
      if (text(1) !== "(" || text(2) !== "(") return;
      const i = text(3) === ")" ? 3 : text(4) === ")" ? 4 : -1;
      if (i === -1 || text(i + 1) !== "=>") return;
      const body = [text(i + 2), text(i + 3), text(i + 4)];
      const empty = body[0] === "{" && body[1] === "}" && body[2] === ")";
      const literal = body[0] === "undefined" && body[1] === ")";
      const last = tokens[index + i + (empty ? 4 : 3)]?.line ?? line;
      if (empty || literal) found.push({ line, lastLine: last });
      return;
    }
    let open = index + 1;
    if (text(1) === "(") open = text(3) === ")" ? index + 4 : -1;
    if (open === -1 || tokens[open]?.text !== "{" || tokens[open + 1]?.text !== "}") return;
    found.push({ line, lastLine: tokens[open + 1]?.line ?? line });
  });
  return found;
}

/** The rules over one file's text. */
export function tidyText(text: string): Violation[] {
  if (text.startsWith("// Generated")) return [];
  const violations: Violation[] = [];
  const lines = text.split("\n");
  lines.forEach((line, index) => {
    const columns = [...line].length;
    if (columns <= MAX_LINE_COLUMNS) return;
    if (lines[index - 1]?.trim() === ALLOW_LONG_LINE) return;
    violations.push({
      line: index + 1,
      message: `line is ${columns} columns, over ${MAX_LINE_COLUMNS}`,
    });
  });
  const { tokens, commentLines } = scan(text);
  for (const span of namedFunctions(tokens)) {
    if (span.bodyLines <= MAX_FUNCTION_LINES) continue;
    violations.push({
      line: span.line,
      message: `${span.name} is ${span.bodyLines} lines, over ${MAX_FUNCTION_LINES}`,
    });
  }
  for (const { line, lastLine } of silentCatches(tokens)) {
    let said = false;
    for (let seen = line - 1; seen <= lastLine && !said; seen++) said = commentLines.has(seen);
    if (!said)
      violations.push({ line, message: "a catch drops the error without a comment saying why" });
  }
  return violations.sort((a, b) => a.line - b.line);
}

function typeScriptFiles(directory: string): string[] {
  const entries = readdirSync(directory, { withFileTypes: true, recursive: true });
  return entries
    .filter((entry) => entry.isFile() && entry.name.endsWith(".ts"))
    .map((entry) => join(entry.parentPath, entry.name))
    .filter((path) => !path.split("/").includes("node_modules"))
    .sort();
}

/** Every violation under `root`, as `file:line: message` lines. */
export function tidyTree(root: string): string[] {
  const report: string[] = [];
  for (const directory of ROOTS) {
    for (const path of typeScriptFiles(join(root, directory))) {
      const file = relative(root, path);
      for (const { line, message } of tidyText(readFileSync(path, "utf8")))
        report.push(`${file}:${line}: ${message}`);
    }
  }
  return report;
}

if (import.meta.main) {
  const report = tidyTree(join(import.meta.dir, ".."));
  for (const line of report) console.error(line);
  if (report.length > 0) {
    console.error(
      `tidy: ${report.length} violations (the rules are at the top of scripts/tidy.ts)`,
    );
    process.exit(1);
  }
}
