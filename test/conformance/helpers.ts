// Running the conformance kit from the tests: in process (rows) or through its command line.
import { join } from "node:path";
import { runConformance } from "../../src/conformance/catalogue.ts";
import { PROFILES } from "../../src/conformance/catalogue.ts";
import type { Role, Row } from "../../src/conformance/types.ts";

export const ROOT = join(import.meta.dir, "..", "..");
export const BUN = process.execPath;
export const BROKEN = join(import.meta.dir, "broken");

export function brokenCommand(role: Role): string {
  return `${BUN} ${join(BROKEN, `${role}.ts`)}`;
}

export async function run(
  role: Role,
  command: string,
  options: {
    cases?: string[];
    profile?: string;
    timeoutScale?: number;
    env?: Record<string, string>;
  } = {},
): Promise<Row[]> {
  const saved: Record<string, string | undefined> = {};
  for (const [key, value] of Object.entries(options.env ?? {})) {
    saved[key] = process.env[key];
    process.env[key] = value;
  }
  try {
    return await runConformance({
      role,
      command,
      cases: options.cases,
      profile: PROFILES[options.profile ?? "strict"],
      timeoutScale: options.timeoutScale,
    });
  } finally {
    for (const [key, value] of Object.entries(saved)) {
      if (value === undefined) delete process.env[key];
      else process.env[key] = value;
    }
  }
}

export function resultOf(rows: Row[], name: string): Row["result"] | undefined {
  return rows.find((row) => row.case === name)?.result;
}

/** Failed rows, readable in an assertion message. */
export function failures(rows: Row[]): string {
  return rows
    .filter((row) => row.result === "fail")
    .map((row) => `${row.case}: expected ${row.expected}; seen ${row.seen}`)
    .join("\n");
}
