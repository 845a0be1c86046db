// Checks of a service side's data stream (§6.3): one EOF per stream, EXIT_CODE last and once,
// chunks within the negotiated limit, nothing after the exit code, no foreign message types.

import * as C from "../protocol/constants.ts";
import { maxDataChunk } from "../protocol/codec.ts";
import { exitCodeOf, summarize, text, typeName, type RawMessage } from "./wire.ts";

export interface ServiceStreamExpectation {
  /** The whole stdout, if it matters. */
  stdout?: string | ((stdout: string) => boolean);
  stderr?: string | ((stderr: string) => boolean);
  exitCode?: number;
  /** Negotiated data version (chunk limit). */
  version: number;
  /** JUST_EXEC: only EXIT_CODE. */
  exitCodeOnly?: boolean;
}

export interface StreamCheck {
  problems: string[];
  stdout: string;
  stderr: string;
  exitCode: number | null;
  summary: string;
}

/** What a service side's messages added up to. */
interface Tally {
  problems: string[];
  stdout: string;
  stderr: string;
  stdoutEofs: number;
  stderrEofs: number;
  exits: number;
  exitCode: number | null;
  afterExit: number;
  dataAfterEof: boolean;
  /** The message after which nothing can be framed (fatal for a receiver), or null. */
  fatalAt: number | null;
}

function tally(messages: RawMessage[], version: number): Tally {
  const limit = maxDataChunk(Math.max(2, version));
  const t: Tally = {
    problems: [],
    stdout: "",
    stderr: "",
    stdoutEofs: 0,
    stderrEofs: 0,
    exits: 0,
    exitCode: null,
    afterExit: 0,
    dataAfterEof: false,
    fatalAt: null,
  };
  for (const [index, message] of messages.entries()) {
    if (t.exits > 0) t.afterExit++;
    const length = message.payload.length;
    const isData = message.type === C.MSG_DATA_STDOUT || message.type === C.MSG_DATA_STDERR;
    if (isData && length > limit) {
      // Fatal for any receiver (§3.4): what follows cannot be framed, so nothing after it counts.
      t.problems = [
        `${typeName(message.type)} header announces ${length} bytes, over the ` +
          `chunk limit ${limit} at version ${version} (fatal for a receiver)`,
      ];
      return { ...t, fatalAt: index };
    }
    switch (message.type) {
      case C.MSG_DATA_STDOUT:
        if (length === 0) t.stdoutEofs++;
        else {
          if (t.stdoutEofs > 0) t.dataAfterEof = true;
          t.stdout += text(message.payload);
        }
        break;
      case C.MSG_DATA_STDERR:
        if (length === 0) t.stderrEofs++;
        else {
          if (t.stderrEofs > 0) t.dataAfterEof = true;
          t.stderr += text(message.payload);
        }
        break;
      case C.MSG_DATA_EXIT_CODE:
        t.exits++;
        if (length !== 4) t.problems.push(`an EXIT_CODE payload of ${length} bytes`);
        t.exitCode = exitCodeOf(message);
        break;
      default:
        t.problems.push(
          `a ${typeName(message.type)} message on a service's data channel (fatal for a receiver)`,
        );
        return { ...t, fatalAt: index };
    }
  }
  return t;
}

/** Exit codes and EOFs: how many, and in which order (§6.3). */
function framingProblems(
  t: Tally,
  messages: RawMessage[],
  expected: ServiceStreamExpectation,
): string[] {
  const problems: string[] = [];
  if (t.exits === 0) problems.push("no EXIT_CODE");
  if (t.exits > 1) problems.push(`${t.exits} EXIT_CODE messages`);
  if (t.afterExit > 0) problems.push(`${t.afterExit} message(s) after EXIT_CODE`);
  if (t.dataAfterEof) problems.push("data after a stream's EOF");
  if (expected.exitCodeOnly) {
    if (messages.some((m) => m.type !== C.MSG_DATA_EXIT_CODE))
      problems.push("messages besides EXIT_CODE (JUST_EXEC sends only the exit code, §5.8)");
  } else {
    if (t.stdoutEofs === 0) problems.push("no STDOUT EOF");
    if (t.stdoutEofs > 1) problems.push(`${t.stdoutEofs} STDOUT EOFs`);
    if (t.stderrEofs > 1) problems.push(`${t.stderrEofs} STDERR EOFs`);
    if (t.stderrEofs === 0) problems.push("no STDERR EOF");
  }
  return problems;
}

/** Every problem of a service side's messages against §6.3 and the expectation. */
export function checkServiceStream(
  messages: RawMessage[],
  expected: ServiceStreamExpectation,
  endError?: string,
): StreamCheck {
  const t = tally(messages, expected.version);
  const { stdout, stderr, exitCode } = t;
  if (t.fatalAt !== null) {
    const summary = summarize(messages.slice(0, t.fatalAt + 1));
    return { problems: t.problems, stdout, stderr, exitCode, summary };
  }
  const problems = [...t.problems, ...framingProblems(t, messages, expected)];
  if (expected.exitCode !== undefined && exitCode !== null && exitCode !== expected.exitCode)
    problems.push(`exit code ${exitCode}, expected ${expected.exitCode}`);
  const matches = (want: ServiceStreamExpectation["stdout"], got: string) =>
    typeof want === "function" ? want(got) : want === got;
  if (expected.stdout !== undefined && !matches(expected.stdout, stdout)) {
    const more = stdout.length > 80 ? ` (${stdout.length} chars)` : "";
    problems.push(`stdout ${JSON.stringify(stdout.slice(0, 80))}${more}`);
  }
  if (expected.stderr !== undefined && !matches(expected.stderr, stderr))
    problems.push(`stderr ${JSON.stringify(stderr.slice(0, 80))}`);
  if (endError) problems.push(endError);
  // "no STDERR EOF" last, so a profile that never sends it can match the problem list exactly.
  problems.sort((a, b) => Number(a === "no STDERR EOF") - Number(b === "no STDERR EOF"));
  return { problems, stdout, stderr, exitCode, summary: summarize(messages) };
}

/** `summary`, or `summary — problem; problem` */
export function describeCheck(check: StreamCheck): string {
  return check.problems.length === 0
    ? check.summary
    : `${check.summary} — ${check.problems.join("; ")}`;
}
