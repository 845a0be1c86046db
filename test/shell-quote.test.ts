import { describe, expect, test } from "bun:test";
import { shellQuote } from "../src/shell-quote.ts";

describe("shellQuote", () => {
  test("spells words as Python's shlex.quote does", () => {
    expect(shellQuote("a/b-c.d")).toBe("a/b-c.d");
    expect(shellQuote("")).toBe("''");
    expect(shellQuote("a b")).toBe("'a b'");
    expect(shellQuote("it's")).toBe(`'it'"'"'s'`.replace(`'"'"'`, `'\\''`));
  });

  test("sh reads every tricky word back as exactly one word, unchanged", () => {
    const words = ["", "a b", "it's", "$HOME", "`id`", 'a"b', "a\\b", "x\ny", "*", "-n", "'"];
    const script = `for w in ${words.map(shellQuote).join(" ")}; do printf '%s\\0' "$w"; done`;
    const out = Bun.spawnSync(["sh", "-c", script]).stdout.toString();
    expect(out.split("\0").slice(0, -1)).toEqual(words);
  });
});
