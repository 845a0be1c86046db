// What the lab's policy daemon said about one domain's calls while `qrx run DOMAIN` ran, told on
// the caller's terminal: always that a target does not exist (dom0's policy then decides, as
// @default: a typo is otherwise invisible), and with -v why a call was refused (the rule, and the
// `qrx policy explain` command that shows every rule considered). Upstream's programs print what
// they print; these lines come from qrx run, after the command.

import { closeSync, openSync, readFileSync, readSync, statSync } from "node:fs";

/** `<time> qrexec-policy-daemon[pid]: SOURCE -> TARGET ...`, as src/policy/answer.ts logs. */
const LINE = /^\S+ qrexec-policy-daemon\[\d+\]: (\S+) -> (\S+)(?: (\S+))?(?: \(via \S+\))?: (.*)$/;
const UNKNOWN = /^target '.*' does not exist, using @default$/;
const DENY = /^deny \((.*)\) by (\S+)$/;

function sizeOf(path: string): number {
  try {
    return statSync(path).size;
  } catch {
    return 0;
  }
}

function readFrom(path: string, offset: number): string {
  const size = sizeOf(path);
  if (size <= offset) return "";
  const buffer = Buffer.alloc(size - offset);
  const fd = openSync(path, "r");
  try {
    readSync(fd, buffer, 0, buffer.length, offset);
  } finally {
    closeSync(fd);
  }
  return buffer.toString("utf8");
}

/** The text of the rule at FILE:LINE, for the caller to see without opening the file. */
function ruleText(origin: string): string {
  const match = /^(.*):(\d+)$/.exec(origin);
  if (match === null) return "(rule text not available)";
  try {
    const line = readFileSync(match[1]!, "utf8").split("\n")[Number(match[2]) - 1];
    return line?.trim() || "(rule text not available)";
  } catch {
    return "(rule text not available)";
  }
}

/** The notes for `domain` among policy log lines. */
export function policyNotes(text: string, domain: string, verbose: boolean): string[] {
  const notes: string[] = [];
  for (const line of text.split("\n")) {
    const match = LINE.exec(line);
    if (match === null || match[1] !== domain) continue;
    const [, source, target, service, rest] = match as unknown as string[] & { 4: string };
    if (UNKNOWN.test(rest)) {
      const decided = "dom0's policy decided where the call went";
      notes.push(`qrx: ${rest} (no domain '${target}' in the lab: ${decided})`);
      continue;
    }
    const deny = DENY.exec(rest);
    if (!verbose || deny === null || service === undefined) continue;
    const [, reason, rule] = deny as unknown as [string, string, string];
    const why = reason.startsWith("denied by ") ? "" : ` (${reason})`;
    notes.push(`qrx: the policy refused ${source} -> ${target} ${service}${why}, by ${rule}:`);
    notes.push(`qrx:   ${ruleText(rule)}`);
    const explain = `qrx run dom0 -- qrx policy explain ${source} ${target} ${service}`;
    notes.push(`qrx: every rule considered: ${explain}`);
  }
  return notes;
}

/** Reads what the policy log gets from now on; notes() after the command ended. */
export class PolicyLogReader {
  readonly #offset: number;

  /**
   * OFFSET: the log's size when the reading should start (qrx run takes it before loading this).
   */
  constructor(
    readonly path: string,
    offset = sizeOf(path),
  ) {
    this.#offset = offset;
  }

  notes(domain: string, verbose: boolean): string[] {
    return policyNotes(readFrom(this.path, this.#offset), domain, verbose);
  }
}
