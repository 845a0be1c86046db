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

/** Every problem of a service side's messages against §6.3 and the expectation. */
export function checkServiceStream(
  messages: RawMessage[],
  expected: ServiceStreamExpectation,
  endError?: string,
): StreamCheck {
  const problems: string[] = [];
  const limit = maxDataChunk(Math.max(2, expected.version));
  let stdout = "";
  let stderr = "";
  let stdoutEofs = 0;
  let stderrEofs = 0;
  let exits = 0;
  let exitCode: number | null = null;
  let afterExit = 0;
  let dataAfterEof = false;
  for (const [index, message] of messages.entries()) {
    if (exits > 0) afterExit++;
    const length = message.payload.length;
    const isData = message.type === C.MSG_DATA_STDOUT || message.type === C.MSG_DATA_STDERR;
    if (isData && length > limit) {
      // Fatal for any receiver (§3.4): what follows cannot be framed, so nothing after it counts.
      const problem =
        `${typeName(message.type)} header announces ${length} bytes, over the ` +
        `chunk limit ${limit} at version ${expected.version} (fatal for a receiver)`;
      return {
        problems: [problem],
        stdout,
        stderr,
        exitCode,
        summary: summarize(messages.slice(0, index + 1)),
      };
    }
    switch (message.type) {
      case C.MSG_DATA_STDOUT:
        if (length === 0) stdoutEofs++;
        else {
          if (stdoutEofs > 0) dataAfterEof = true;
          stdout += text(message.payload);
        }
        break;
      case C.MSG_DATA_STDERR:
        if (length === 0) stderrEofs++;
        else {
          if (stderrEofs > 0) dataAfterEof = true;
          stderr += text(message.payload);
        }
        break;
      case C.MSG_DATA_EXIT_CODE:
        exits++;
        if (length !== 4) problems.push(`an EXIT_CODE payload of ${length} bytes`);
        exitCode = exitCodeOf(message);
        break;
      default:
        problems.push(
          `a ${typeName(message.type)} message on a service's data channel (fatal for a receiver)`,
        );
        return {
          problems,
          stdout,
          stderr,
          exitCode,
          summary: summarize(messages.slice(0, index + 1)),
        };
    }
  }
  if (exits === 0) problems.push("no EXIT_CODE");
  if (exits > 1) problems.push(`${exits} EXIT_CODE messages`);
  if (afterExit > 0) problems.push(`${afterExit} message(s) after EXIT_CODE`);
  if (dataAfterEof) problems.push("data after a stream's EOF");
  if (expected.exitCodeOnly) {
    if (messages.some((m) => m.type !== C.MSG_DATA_EXIT_CODE))
      problems.push("messages besides EXIT_CODE (JUST_EXEC sends only the exit code, §5.8)");
  } else {
    if (stdoutEofs === 0) problems.push("no STDOUT EOF");
    if (stdoutEofs > 1) problems.push(`${stdoutEofs} STDOUT EOFs`);
    if (stderrEofs > 1) problems.push(`${stderrEofs} STDERR EOFs`);
    if (stderrEofs === 0) problems.push("no STDERR EOF");
  }
  if (expected.exitCode !== undefined && exitCode !== null && exitCode !== expected.exitCode)
    problems.push(`exit code ${exitCode}, expected ${expected.exitCode}`);
  const matches = (want: ServiceStreamExpectation["stdout"], got: string) =>
    typeof want === "function" ? want(got) : want === got;
  if (expected.stdout !== undefined && !matches(expected.stdout, stdout))
    problems.push(
      `stdout ${JSON.stringify(stdout.slice(0, 80))}${stdout.length > 80 ? ` (${stdout.length} chars)` : ""}`,
    );
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
