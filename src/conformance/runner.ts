// Runs a role's cases one by one, each against a fresh fixture (the program under test started
// anew, the kit's side of every channel ready), each under a timeout: a program that hangs is a
// failed case and never a hung kit. Failures that match a documented deviation of the chosen
// profile are reported as "deviation".

import {
  CaseFailure,
  CaseSkip,
  type Case,
  type CaseContext,
  type Profile,
  type Role,
  type Row,
} from "./types.ts";

export const DEFAULT_CASE_TIMEOUT_MS = 15_000;
/** A row's `seen` is cut here: enough to explain, short enough to read. */
const SEEN_CHARS_MAX = 1500;

/** How a role builds and tears down the world one case runs in. */
export interface RoleDriver<Fixture> {
  role: Role;
  cases: Case<Fixture>[];
  /** A fresh fixture (scratch directory and bookkeeping; nothing started yet). */
  create(caseName: string): Fixture;
  /**
   * Starts the program under test and the kit's side of the channels into `fixture` (so teardown
   * finds whatever was started, even when the case timed out half-way).
   */
  start(fixture: Fixture, signal: AbortSignal, caseName: string): Promise<void>;
  /** Stops the program, closes every socket, removes the scratch directory. Never throws. */
  teardown(fixture: Fixture): Promise<void>;
  /** Text about the program after a failure: its status and log tail. */
  diagnose(fixture: Fixture): string;
}

export interface RunOptions {
  /** Only these cases (names); every case when empty or absent. */
  cases?: string[];
  profile?: Profile;
  /** Every case's timeout is multiplied by this (a slow machine). */
  timeoutScale?: number;
  /** Called with each row as soon as it is known. */
  onRow?: (row: Row) => void;
  /** Include the program's log tail in a failed row's `seen`. */
  verboseFailures?: boolean;
}

class Timeout extends Error {}

export function selectCases<F>(driver: RoleDriver<F>, names: string[] | undefined): Case<F>[] {
  if (!names || names.length === 0) return driver.cases;
  const known = new Set(driver.cases.map((c) => c.name));
  const unknown = names.filter((name) => !known.has(name));
  if (unknown.length > 0) {
    throw new Error(
      `unknown case${unknown.length > 1 ? "s" : ""} for role ${driver.role}: ` +
        `${unknown.join(", ")} (qrx conformance --role ${driver.role} --list)`,
    );
  }
  return driver.cases.filter((c) => names.includes(c.name));
}

export async function runCases<F>(driver: RoleDriver<F>, options: RunOptions = {}): Promise<Row[]> {
  const rows: Row[] = [];
  for (const testCase of selectCases(driver, options.cases)) {
    const row = await runOne(driver, testCase, options);
    rows.push(row);
    options.onRow?.(row);
  }
  return rows;
}

/** The profile's note when this failure is a deviation it documents, else null. */
function deviationNote(
  profile: RunOptions["profile"],
  role: string,
  caseName: string,
  seen: string,
): string | null {
  const deviation = profile?.deviations.find(
    (d) =>
      d.role === role && (d.case === caseName || d.case === "*") && (!d.when || d.when.test(seen)),
  );
  return profile && deviation ? `${profile.name}: ${deviation.note}` : null;
}

async function runOne<F>(
  driver: RoleDriver<F>,
  testCase: Case<F>,
  options: RunOptions,
): Promise<Row> {
  const timeoutMs = Math.round(
    (testCase.timeoutMs ?? DEFAULT_CASE_TIMEOUT_MS) * (options.timeoutScale ?? 1),
  );
  const started = performance.now();
  const deadline = Date.now() + timeoutMs;
  let step = "starting the program under test";
  const context: CaseContext = {
    step: (what) => {
      step = what;
    },
    remainingMs: () => Math.max(0, deadline - Date.now()),
  };
  const abort = new AbortController();
  let fixture = null as F | null;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      abort.abort();
      reject(new Timeout());
    }, timeoutMs);
  });
  const base = {
    case: testCase.name,
    role: driver.role,
    expected: testCase.expected,
    spec: testCase.spec,
  };
  let result: Pick<Row, "result" | "seen" | "note">;
  try {
    const work = (async () => {
      fixture = driver.create(testCase.name);
      await driver.start(fixture, abort.signal, testCase.name);
      if (abort.signal.aborted) throw new Timeout();
      step = "running";
      return testCase.run(fixture, context);
    })();
    // The race below takes its outcome; this only keeps a late rejection from going unhandled.
    work.catch(() => {});
    const seen = await Promise.race([work, timeout]);
    result = { result: "pass", seen };
  } catch (error) {
    if (error instanceof CaseSkip) result = { result: "skip", seen: "", note: error.message };
    else {
      let seen: string;
      if (error instanceof Timeout) seen = `no progress within ${timeoutMs} ms while ${step}`;
      else if (error instanceof CaseFailure) seen = error.seen;
      else seen = `${step}: ${(error as Error).message ?? String(error)}`;
      if (fixture !== null) {
        const diagnosis = driver.diagnose(fixture);
        if (diagnosis && (options.verboseFailures || error instanceof Timeout))
          seen += `; ${diagnosis}`;
      }
      const note = deviationNote(options.profile, driver.role, testCase.name, seen);
      result = note === null ? { result: "fail", seen } : { result: "deviation", seen, note };
    }
  } finally {
    clearTimeout(timer);
    abort.abort();
    // The case's outcome is decided; a failing teardown must not replace it.
    if (fixture !== null) await driver.teardown(fixture).catch(() => {});
  }
  if (result.seen.length > SEEN_CHARS_MAX)
    result.seen = `${result.seen.slice(0, SEEN_CHARS_MAX)}… (${result.seen.length} characters)`;
  return { ...base, ...result, ms: Math.round(performance.now() - started) };
}

/** One line per row for a terminal. */
export function formatRow(row: Row): string {
  const mark = { pass: "PASS", fail: "FAIL", deviation: "DEVN", skip: "SKIP" }[row.result];
  const lines = [`${mark}  ${row.role} ${row.case}  (${row.spec}, ${row.ms} ms)`];
  if (row.result !== "pass") {
    lines.push(`      expected: ${row.expected}`);
    if (row.seen) lines.push(`      seen:     ${row.seen}`);
    if (row.note) lines.push(`      note:     ${row.note}`);
  }
  return lines.join("\n");
}

export function formatSummary(rows: Row[]): string {
  const count = (result: Row["result"]) => rows.filter((row) => row.result === result).length;
  return (
    `${rows.length} cases: ${count("pass")} passed, ${count("fail")} failed, ` +
    `${count("deviation")} documented deviations, ${count("skip")} skipped`
  );
}
