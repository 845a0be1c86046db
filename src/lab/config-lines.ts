// Where a key of a lab definition is written: Bun's TOML parser gives values but no positions,
// so the lines are found by a scan of the text that knows tables, [[domain]] entries and
// multi-line strings (enough for the lab's flat files; an unknown spot is the table's line).

/** Which table a key is in: the top level, [dom0], or the Nth [[domain]] (0-based). */
export type Section = "top" | "dom0" | number;

const HEADER = /^\s*(\[\[?)\s*([A-Za-z0-9_.-]+)\s*\]\]?/;
const KEY = /^\s*("[^"]*"|'[^']*'|[A-Za-z0-9_-]+)\s*=/;

function sectionKey(section: Section, key: string): string {
  return `${section}\u0000${key}`;
}

export class KeyLines {
  readonly #lines = new Map<string, number>();

  constructor(text: string) {
    let section: Section | null = "top";
    let domains = -1;
    let multiline: string | null = null;
    text.split("\n").forEach((line, index) => {
      const number = index + 1;
      if (multiline !== null) {
        if (line.includes(multiline)) multiline = null;
        return;
      }
      const header = HEADER.exec(line);
      if (header !== null) {
        if (header[1] === "[[" && header[2] === "domain") section = ++domains;
        else section = header[1] === "[" && header[2] === "dom0" ? "dom0" : null;
        if (section !== null) this.#remember(section, "", number);
        return;
      }
      const key = KEY.exec(line);
      if (key === null || section === null) return;
      this.#remember(section, key[1]!.replace(/^["']|["']$/g, ""), number);
      const rest = line.slice(key[0].length);
      const quote = /^\s*("""|''')/.exec(rest)?.[1];
      if (quote !== undefined && !rest.slice(rest.indexOf(quote) + 3).includes(quote)) {
        multiline = quote;
      }
    });
  }

  #remember(section: Section, key: string, line: number): void {
    const at = sectionKey(section, key);
    if (!this.#lines.has(at)) this.#lines.set(at, line);
  }

  /** The line of `key` in `section`, else of the section's header, else null. */
  of(section: Section, key = ""): number | null {
    const line = this.#lines.get(sectionKey(section, key));
    return line ?? this.#lines.get(sectionKey(section, "")) ?? null;
  }
}
