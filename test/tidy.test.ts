// scripts/tidy.ts catches each rule it claims to, and what only looks like code does not fool it.
import { expect, test } from "bun:test";
import { ALLOW_LONG_LINE, MAX_FUNCTION_LINES, maskSource, tidyText } from "../scripts/tidy.ts";

const messages = (text: string) => tidyText(text).map(({ line, message }) => `${line}: ${message}`);

/** `count` body lines of statements. */
function body(count: number, indent = "  "): string {
  return Array.from({ length: count }, (_, i) => `${indent}call(${i});`).join("\n");
}

test("a line over 100 columns is one violation; 100 columns is fine", () => {
  const exact = `const a = "${"x".repeat(100 - 'const a = "";'.length)}";`;
  expect(exact.length).toBe(100);
  expect(messages(`${exact}\n${exact}x\n`)).toEqual(["2: line is 101 columns, over 100"]);
});

test("columns are code points: a multi-byte character is one column", () => {
  expect(messages(`// ${"ž".repeat(97)}\n`)).toEqual([]);
});

test("the allow mark exempts only the line right after it", () => {
  const long = `const url = "${"u".repeat(100)}";`;
  expect(messages(`${ALLOW_LONG_LINE}\n${long}\n`)).toEqual([]);
  expect(messages(`${ALLOW_LONG_LINE}\n\n${long}\n`)).toEqual(["3: line is 115 columns, over 100"]);
});

test("a function declaration of 71 body lines is too long; 70 is fine", () => {
  const over = `export async function big(a: number): Promise<void> {\n${body(71)}\n}\n`;
  const limit = `function fine() {\n${body(MAX_FUNCTION_LINES)}\n}\n`;
  expect(messages(over)).toEqual(["1: big is 71 lines, over 70"]);
  expect(messages(limit)).toEqual([]);
});

test("methods are named after their class: plain, private, static, getters, constructors", () => {
  const text = [
    "export class Daemon extends Base<number> implements Thing {",
    "  constructor(a: number) {",
    body(71, "    "),
    "  }",
    "  async #handleTrigger(trigger: { ident: Uint8Array }): Promise<void> {",
    body(72, "    "),
    "  }",
    "  static get size(): number {",
    body(73, "    "),
    "  }",
    "}",
  ].join("\n");
  expect(messages(text)).toEqual([
    "2: Daemon#constructor is 71 lines, over 70",
    "75: Daemon#handleTrigger is 72 lines, over 70",
    "149: Daemon#size is 73 lines, over 70",
  ]);
});

test("arrows and function expressions given a name count; their own name is used", () => {
  const text = [
    "const handler = async (x: number): Promise<string | null> => {",
    body(71),
    "};",
    "class Server {",
    "  #onRequest = (request: Request) => {",
    body(71, "    "),
    "  };",
    "}",
    "const table = {",
    "  open(socket: Socket) {",
    body(71, "    "),
    "  },",
    "  close: function (socket: Socket) {",
    body(71, "    "),
    "  },",
    "};",
  ].join("\n");
  expect(messages(text)).toEqual([
    "1: handler is 71 lines, over 70",
    "75: Server#onRequest is 71 lines, over 70",
    "150: open is 71 lines, over 70",
    "223: close is 71 lines, over 70",
  ]);
});

test("an arrow with an expression body counts the lines after its arrow", () => {
  const chain = Array.from({ length: 71 }, (_, i) => `    .option("-${i}")`).join("\n");
  expect(messages(`const build = (program: Command) =>\n  program\n${chain};\n`)).toEqual([
    "1: build is 72 lines, over 70",
  ]);
});

test("an unnamed callback counts within the function around it, not on its own", () => {
  const nested = `function outer() {\n  run(() => {\n${body(70, "    ")}\n  });\n}\n`;
  expect(messages(nested)).toEqual(["1: outer is 72 lines, over 70"]);
  expect(messages(`test("a long test", async () => {\n${body(200)}\n});\n`)).toEqual([]);
});

test("braces in strings, templates, regular expressions and comments do not end a function", () => {
  const tricky = [
    "function tricky(): { a: number } {",
    "  const s = \"}}\" + '}';",
    "  const t = `}${x ? `}` : '}'}}`;",
    "  const r = /}[}/]\\//g.test(s) ? 1 : 2 / 3;",
    "  // } a comment",
    "  /* } */",
    "  const name = header.type.toString(16) + constructor.valueOf();",
    body(64),
    "}",
    "const after = () => {",
    body(71),
    "};",
  ].join("\n");
  expect(messages(tricky)).toEqual(["73: after is 71 lines, over 70"]);
});

test("masking keeps the code and the newlines and blanks what is not code", () => {
  const { masked, commentLines } = maskSource('a("{", /}/) // }\n`x${b}y` /* }\n*/ c');
  expect(masked).toBe('a(" ", " ")     \n`   b  `     \n   c');
  expect([...commentLines]).toEqual([1, 2, 3]);
});

test("a catch that drops the error needs a comment in it, on its line or right before", () => {
  const text = [
    "try { a(); } catch {}",
    "try { a(); } catch (error) {}",
    "try { a(); } catch {",
    "  // a missing file is fine: it was already gone",
    "}",
    "// cleanup only: the process exits next",
    "try { a(); } catch {}",
    "try { a(); } catch {} // best effort",
    "try { a(); } catch (error) { log(error); }",
    "promise.catch(() => {});",
    "promise.catch((_error) => undefined);",
    "promise.catch(() => null);",
    "promise.catch((error) => log(error));",
  ].join("\n");
  const drops = "a catch drops the error without a comment saying why";
  expect(messages(text)).toEqual([`1: ${drops}`, `2: ${drops}`, `10: ${drops}`, `11: ${drops}`]);
});

test("a generated file is skipped", () => {
  expect(tidyText(`// Generated by scripts/abi.ts: do not edit.\n${"x".repeat(120)}\n`)).toEqual(
    [],
  );
});
