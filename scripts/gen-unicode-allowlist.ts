// Generates zig/filecopy/unicode_allowlist.zig: the non-ASCII code points that a qubes.Filecopy
// name or symlink target may contain (spec filecopy.md §3.4).
//
// Run:  node_modules/.bin/bun scripts/gen-unicode-allowlist.ts
//
// Upstream (qubes-linux-utils qrexec-lib/unicode-generator.c) builds its table from ICU. We have
// no ICU bindings, so we use the Unicode property escapes of Bun's regular expressions and
// approximate the parts they do not expose:
//
// - General_Category must be a letter (L), a number (N), connector/dash/open/close/initial/
//   final/other punctuation (Pc Pd Ps Pe Pi Pf Po), a math symbol (Sm) or a currency symbol
//   (Sc). Everything else is out: marks (combining characters), separators (spaces), controls,
//   format characters, surrogates, private use, unassigned code points and noncharacters,
//   modifier symbols (Sk) and other symbols (So, which holds the emoji).
// - Script (not Script_Extensions) must be Latin, Greek, Cyrillic, Han, Hangul, Bopomofo,
//   Hiragana, Katakana, Braille, Common or Inherited.
// - Upstream also requires the bidi class to be L, ON, EN, ES, ET or CS. JavaScript has no
//   Bidi_Class escape, so we drop the blocks where right-to-left and Arabic-number characters
//   live (RTL_RANGES below). Within the allowed categories and scripts, the remaining bidi
//   classes (NSM, BN, B, S, WS, LRE and the other explicit controls) are already excluded by
//   the category rule.
//
// The result is therefore an approximation of upstream's ICU table: it follows the Unicode
// version of Bun's regular-expression engine and may differ from upstream at the edges.

const OUTPUT = new URL("../zig/filecopy/unicode_allowlist.zig", import.meta.url).pathname;

const CATEGORIES = /^[\p{L}\p{N}\p{Pc}\p{Pd}\p{Ps}\p{Pe}\p{Pi}\p{Pf}\p{Po}\p{Sm}\p{Sc}]$/u;

const SCRIPT_NAMES = [
  "Latin",
  "Greek",
  "Cyrillic",
  "Han",
  "Hangul",
  "Bopomofo",
  "Hiragana",
  "Katakana",
  "Braille",
  "Common",
  "Inherited",
];
const SCRIPTS = new RegExp(
  `^[${SCRIPT_NAMES.map((name) => `\\p{Script=${name}}`).join("")}]$`,
  "u",
);

/** Inclusive ranges whose characters are right-to-left (R, AL) or Arabic numbers (AN). */
const RTL_RANGES: ReadonlyArray<readonly [number, number]> = [
  [0x0590, 0x08ff], // Hebrew, Arabic, Syriac, Thaana, NKo, Samaritan, Mandaic, Arabic Extended
  [0xfb1d, 0xfdff], // Hebrew and Arabic presentation forms A
  [0xfe70, 0xfeff], // Arabic presentation forms B (and the BOM, which is Cf anyway)
  [0x10800, 0x10fff], // right-to-left historic scripts, Rumi numerals, Arabic Extended-C
  [0x1e800, 0x1efff], // Mende Kikakui, Adlam, Indic Siyaq, Arabic mathematical symbols
];

const CODE_POINT_FIRST = 0x80;
const CODE_POINT_LAST = 0x10ffff;

function isRightToLeft(code_point: number): boolean {
  return RTL_RANGES.some(([first, last]) => code_point >= first && code_point <= last);
}

function isAllowed(code_point: number): boolean {
  // Surrogates are not characters; String.fromCodePoint would yield a lone surrogate.
  if (code_point >= 0xd800 && code_point <= 0xdfff) return false;
  if (isRightToLeft(code_point)) return false;
  const text = String.fromCodePoint(code_point);
  return CATEGORIES.test(text) && SCRIPTS.test(text);
}

function collectRanges(): Array<[number, number]> {
  const ranges: Array<[number, number]> = [];
  for (let code_point = CODE_POINT_FIRST; code_point <= CODE_POINT_LAST; code_point++) {
    if (!isAllowed(code_point)) continue;
    const last = ranges[ranges.length - 1];
    if (last !== undefined && last[1] === code_point - 1) {
      last[1] = code_point;
    } else {
      ranges.push([code_point, code_point]);
    }
  }
  return ranges;
}

function hex(code_point: number): string {
  return "0x" + code_point.toString(16).toUpperCase().padStart(4, "0");
}

function render(ranges: ReadonlyArray<readonly [number, number]>): string {
  const count = ranges.reduce((sum, [first, last]) => sum + (last - first + 1), 0);
  const lines = [
    "//! GENERATED FILE, DO NOT EDIT. Regenerate with:",
    "//!     node_modules/.bin/bun scripts/gen-unicode-allowlist.ts",
    "//!",
    "//! The non-ASCII code points allowed in qubes.Filecopy names and symlink targets (spec",
    "//! filecopy.md §3.4), as sorted, disjoint, non-adjacent inclusive [first, last] ranges.",
    "//! This approximates upstream's ICU-generated table (qrexec-lib/unicode-allowlist-table.c):",
    "//! General_Category and Script come from the Unicode property escapes of Bun's regular",
    "//! expressions, and the bidi-class rule is approximated by excluding right-to-left blocks.",
    `//! Unicode data: Bun ${Bun.version} (process.versions.unicode ` +
      `${process.versions.unicode ?? "unknown"}).`,
    `//! ${ranges.length} ranges, ${count} code points.`,
    "",
    "pub const ranges = [_][2]u21{",
  ];
  for (const [first, last] of ranges) lines.push(`    .{ ${hex(first)}, ${hex(last)} },`);
  lines.push("};", "");
  return lines.join("\n");
}

const ranges = collectRanges();
await Bun.write(OUTPUT, render(ranges));
console.log(`wrote ${OUTPUT}: ${ranges.length} ranges`);
