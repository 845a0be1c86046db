// The conformance kit's vocabulary: roles, cases, results, deviations.

export type Role = "agent" | "daemon" | "client-vm";
export const ROLES: readonly Role[] = ["agent", "daemon", "client-vm"];

export type Result = "pass" | "fail" | "deviation" | "skip";

/** One row of output (`--json` prints these). */
export interface Row {
  case: string;
  role: Role;
  result: Result;
  expected: string;
  seen: string;
  ms: number;
  /** The spec section the case checks. */
  spec: string;
  /** For a deviation: the documented behaviour it matched; for a skip: why. */
  note?: string;
}

/** Thrown by a case when what it saw is not what it expected. */
export class CaseFailure extends Error {
  override name = "CaseFailure";
  constructor(readonly seen: string) {
    super(seen);
  }
}

/** Thrown by a case that cannot run against this program (reported as "skip"). */
export class CaseSkip extends Error {
  override name = "CaseSkip";
}

export function check(condition: unknown, seen: string): asserts condition {
  if (!condition) throw new CaseFailure(seen);
}

export interface CaseContext {
  /** Records what the case is doing now; a timeout reports the last step. */
  step(what: string): void;
  /** Milliseconds left before the case times out. */
  remainingMs(): number;
}

export interface Case<Fixture> {
  name: string;
  role: Role;
  /** Spec section(s) of docs/spec/qrexec-protocol.md. */
  spec: string;
  /** What the case checks, one sentence (docs/conformance.md and `--list`). */
  checks: string;
  /** What a conforming program does, as printed beside what was seen. */
  expected: string;
  timeoutMs?: number;
  /**
   * Runs against a fresh fixture (program under test started, kit's side ready); returns what was
   * seen.
   */
  run(fixture: Fixture, context: CaseContext): Promise<string>;
}

/** A documented deviation: a failure of `case` whose `seen` matches `when` is reported as one. */
export interface Deviation {
  role: Role;
  /** A case name, or "*" for any case of the role. */
  case: string;
  note: string;
  when?: RegExp;
}

export interface Profile {
  name: string;
  description: string;
  deviations: Deviation[];
}
