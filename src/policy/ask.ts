// Who answers an `ask` (§11.1 step 5). Upstream asks the source's GUI VM over policy.Ask; on one
// host we ask, in this order: an --ask-program when one is given, else the terminal (/dev/tty)
// when there is one, else nobody, which denies (upstream: "no GUI VM means deny").
//
// The ask program is run as `sh -c CMD`. It gets the question twice, use either:
//   - stdin: one JSON object {"source", "service", "argument", "targets", "default_target",
//     "intended_target", "rule"} (upstream's policy.Ask request, plus the last two; no icons);
//   - environment: QRX_ASK_SOURCE, QRX_ASK_SERVICE, QRX_ASK_ARGUMENT ("+ARG"), QRX_ASK_TARGETS
//     (space separated), QRX_ASK_DEFAULT_TARGET ("" if none), QRX_ASK_INTENDED_TARGET,
//     QRX_ASK_RULE.
// It answers on stdout with the chosen target (or upstream's `allow:TARGET`); empty output,
// `deny`, a non-zero exit or no answer within the timeout denies.

import { closeSync, openSync } from "node:fs";
import type { FileHandle } from "node:fs/promises";
import { QueueAsker } from "./ask-queue.ts";
import type { AskAnswer, Asker, AskQuestion } from "./ask-types.ts";
import type { AskDecision } from "./decision.ts";
import { decidedBy } from "./decision.ts";

export type { AskAnswer, Asker, AskQuestion } from "./ask-types.ts";

export function questionOf(decision: AskDecision): AskQuestion {
  return {
    source: decision.request.source,
    service: decision.request.service,
    argument: decision.request.argument,
    targets: [...decision.targets],
    defaultTarget: decision.defaultTarget,
    intendedTarget: decision.request.intendedTarget,
    rule: decidedBy(decision),
  };
}

/** An answer line: "TARGET", "allow:TARGET", "deny" or "" (deny). */
export function parseAnswer(output: string): string | null {
  const line = (output.split("\n")[0] ?? "").trim();
  if (line === "" || line === "deny") return null;
  return line.startsWith("allow:") ? line.slice("allow:".length) : line;
}

/** Nobody to ask: every ask is denied, and the log says why. */
export class NoAsker implements Asker {
  readonly description: string;
  constructor(readonly why: string) {
    this.description = `nobody (${why})`;
  }
  async ask(): Promise<AskAnswer> {
    return { target: null, reason: `nobody to ask (${this.why})` };
  }
}

export class ProgramAsker implements Asker {
  readonly description: string;
  constructor(
    readonly command: string,
    readonly timeoutMs = 60_000,
  ) {
    this.description = `ask program '${command}'`;
  }

  async ask(question: AskQuestion): Promise<AskAnswer> {
    const json = JSON.stringify({
      source: question.source,
      service: question.service,
      argument: question.argument,
      targets: question.targets,
      default_target: question.defaultTarget ?? "",
      intended_target: question.intendedTarget,
      rule: question.rule,
    });
    const env: Record<string, string> = {};
    for (const [key, value] of Object.entries(process.env))
      if (value !== undefined) env[key] = value;
    Object.assign(env, {
      QRX_ASK_SOURCE: question.source,
      QRX_ASK_SERVICE: question.service,
      QRX_ASK_ARGUMENT: question.argument,
      QRX_ASK_TARGETS: question.targets.join(" "),
      QRX_ASK_DEFAULT_TARGET: question.defaultTarget ?? "",
      QRX_ASK_INTENDED_TARGET: question.intendedTarget,
      QRX_ASK_RULE: question.rule,
    });
    let child;
    try {
      child = Bun.spawn(["/bin/sh", "-c", this.command], {
        stdin: new TextEncoder().encode(json + "\n"),
        stdout: "pipe",
        stderr: "inherit",
        env,
      });
    } catch (error) {
      return {
        target: null,
        reason:
          `${this.description} could not start: ` +
          `${error instanceof Error ? error.message : String(error)}`,
      };
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<null>((resolve) => {
      timer = setTimeout(() => resolve(null), this.timeoutMs);
    });
    try {
      // Not waiting for stdout's EOF after a timeout: a grandchild may still hold it open.
      const result = await Promise.race([
        Promise.all([new Response(child.stdout).text(), child.exited]),
        timeout,
      ]);
      if (result === null) {
        child.kill("SIGKILL");
        return {
          target: null,
          reason: `${this.description} gave no answer within ${this.timeoutMs} ms`,
        };
      }
      const [output, status] = result;
      if (status !== 0)
        return { target: null, reason: `${this.description} exited with status ${status}` };
      const target = parseAnswer(output);
      return {
        target,
        reason:
          target === null ? `${this.description} denied` : `${this.description} chose ${target}`,
      };
    } finally {
      clearTimeout(timer);
    }
  }
}

/** True if this process has a controlling terminal it can open. */
export function terminalAvailable(): boolean {
  try {
    closeSync(openSync("/dev/tty", "r+"));
    return true;
  } catch {
    return false;
  }
}

/**
 * Asks on /dev/tty, one question at a time. Input: a number from the list, a target name, empty
 * for the default (deny when there is none), or `n` to deny.
 */
export class TerminalAsker implements Asker {
  readonly description = "terminal";
  #queue: Promise<unknown> = Promise.resolve();

  constructor(readonly path = "/dev/tty") {}

  ask(question: AskQuestion): Promise<AskAnswer> {
    const next = this.#queue.then(() => this.#ask(question));
    // The queue only orders the questions: each caller gets its own error from `next`.
    this.#queue = next.catch(() => undefined);
    return next;
  }

  async #ask(question: AskQuestion): Promise<AskAnswer> {
    let tty: FileHandle;
    try {
      // Loaded here: node:fs/promises is ~1 ms of qrexec-policy-exec's start, which rarely asks.
      const { open } = await import("node:fs/promises");
      tty = await open(this.path, "r+");
    } catch (error) {
      return {
        target: null,
        reason:
          `cannot open ${this.path}: ` +
          `${error instanceof Error ? error.message : String(error)}`,
      };
    }
    try {
      const lines = [
        `\nqrx policy: ${question.source} wants to call ` +
          `${question.service}${question.argument} (rule ${question.rule})`,
      ];
      question.targets.forEach((target, index) =>
        lines.push(
          `  ${index + 1}) ${target}${target === question.defaultTarget ? " (default)" : ""}`,
        ),
      );
      const empty = question.defaultTarget === null ? "deny" : question.defaultTarget;
      lines.push(`Target? [number or name; empty = ${empty}; n = deny] `);
      await tty.write(lines.join("\n"));
      const buffer = Buffer.alloc(256);
      const { bytesRead } = await tty.read(buffer, 0, buffer.length, null);
      const input = buffer.subarray(0, bytesRead).toString("utf8").trim();
      let target: string | null;
      if (input === "") target = question.defaultTarget;
      else if (input === "n" || input === "no" || input === "deny") target = null;
      else if (/^\d+$/.test(input)) target = question.targets[Number(input) - 1] ?? input;
      else target = input;
      return {
        target,
        reason: target === null ? "denied at the terminal" : `${target} chosen at the terminal`,
      };
    } finally {
      await tty.close();
    }
  }
}

export interface AskerOptions {
  /** --ask-program; wins over the terminal when given. */
  askProgram?: string | null;
  /** --ask-queue: a directory where questions wait for any terminal to answer (the lab's tty). */
  askQueue?: string | null;
  /** Whether a terminal prompt is allowed (false: --no-tty). */
  terminal?: boolean;
}

/** The asker for these options: the program, else the terminal if there is one, else nobody. */
export function chooseAsker(options: AskerOptions): Asker {
  if (options.askProgram) return new ProgramAsker(options.askProgram);
  if (options.askQueue) return new QueueAsker(options.askQueue);
  if (options.terminal === false)
    return new NoAsker("no --ask-program and terminal prompts are off");
  if (terminalAvailable()) return new TerminalAsker();
  return new NoAsker("no --ask-program and no terminal (/dev/tty)");
}
