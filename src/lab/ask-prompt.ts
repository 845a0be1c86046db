// The lab's ask prompts on the terminal of the user who started the call: while `qrx run DOMAIN`
// runs, questions the policy asks about calls from DOMAIN (src/policy/ask-queue.ts) are put on
// its /dev/tty; without a terminal it says how to answer from another one. When an ask ends in
// "no", it says so on stderr, since the caller otherwise only sees "Request refused".

import { closeSync, constants, openSync, readSync, writeSync } from "node:fs";
import type { AskQuestion } from "../policy/ask.ts";
import { answerQueued, askOutcome, pendingAsks } from "../policy/ask-queue.ts";

const POLL_MS = 30;
const ANSWERED_BY = "the terminal of qrx run";

/** The prompt for one question: who calls what, the choices, and what Enter does. */
export function formatQuestion(id: string, question: AskQuestion): string {
  const argument = question.argument === "+" ? "" : question.argument;
  const lines = [
    `qrx: policy question ${id} (rule ${question.rule}):`,
    `  ${question.source} wants to call ${question.service}${argument}` +
      ` (argument: ${argument === "" ? "none" : argument.slice(1)}),` +
      ` asking for ${question.intendedTarget}`,
  ];
  question.targets.forEach((target, index) => {
    const mark = target === question.defaultTarget ? " (default)" : "";
    lines.push(`  ${index + 1}) ${target}${mark}`);
  });
  lines.push("  n) deny");
  return `${lines.join("\n")}\n${promptLine(question)}`;
}

function promptLine(question: AskQuestion): string {
  return `Allow to which target? [Enter = ${question.defaultTarget ?? "deny"}] `;
}

/** The answer an input line means: a target, null for deny, or undefined when it means none. */
export function parseChoice(input: string, question: AskQuestion): string | null | undefined {
  const text = input.trim();
  if (text === "") return question.defaultTarget;
  if (["n", "no", "deny"].includes(text.toLowerCase())) return null;
  if (/^\d+$/.test(text)) return question.targets[Number(text) - 1];
  return question.targets.includes(text) ? text : undefined;
}

interface Tracked {
  question: AskQuestion;
  prompted: boolean;
}

/** Watches the ask queue for one domain's calls; stop() when the command is done. */
export class AskWatcher {
  readonly #tracked = new Map<string, Tracked>();
  #tty: number | null = null;
  /** The question on the terminal now, and what has been typed toward its answer. */
  #current: { id: string; typed: string } | null = null;
  #timer: ReturnType<typeof setInterval> | null = null;

  /**
   * SINCE: questions asked from then on are this command's (qrx run notes it before the spawn;
   * those asked before are about other calls).
   */
  constructor(
    readonly dir: string,
    readonly domain: string,
    readonly labDirOption: string,
    readonly since: number,
    readonly write: (text: string) => void = (text) => process.stderr.write(text),
  ) {}

  /** Looks at the queue now, then every POLL_MS until stop(). */
  start(): void {
    try {
      // A description of its own, non-blocking: the command's stdin is left as it is.
      const flags = constants.O_RDWR | constants.O_NONBLOCK | constants.O_NOCTTY;
      this.#tty = openSync("/dev/tty", flags);
    } catch {
      this.#tty = null;
    }
    this.#tick();
    this.#timer = setInterval(() => this.#tick(), POLL_MS);
  }

  stop(): void {
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = null;
    // The last outcomes are still told; nothing new is put on the terminal.
    this.#tick(false);
    if (this.#tty !== null) closeSync(this.#tty);
    this.#tty = null;
  }

  #tick(prompting = true): void {
    for (const pending of pendingAsks(this.dir)) {
      if (pending.question.source !== this.domain || pending.askedAt < this.since) continue;
      if (this.#tracked.has(pending.id)) continue;
      this.#tracked.set(pending.id, { question: pending.question, prompted: false });
    }
    for (const [id, tracked] of this.#tracked) {
      const outcome = askOutcome(this.dir, id);
      if (outcome === null) continue;
      this.#tracked.delete(id);
      if (this.#current?.id === id) {
        this.#current = null;
        this.#toTerminal(`\n(answered by ${outcome.by})\n`);
      }
      if (outcome.target === null) this.#said(this.#refusal(id, tracked.question, outcome.by));
    }
    if (!prompting) return;
    if (this.#current === null) this.#promptNext();
    else this.#readAnswer();
  }

  #refusal(id: string, question: AskQuestion, by: string): string {
    const argument = question.argument === "+" ? "" : question.argument;
    return (
      `qrx: the policy asked (question ${id}, rule ${question.rule}) whether ` +
      `${question.source} may call ${question.service}${argument}, and the answer was no (${by})\n`
    );
  }

  #promptNext(): void {
    for (const [id, tracked] of this.#tracked) {
      if (tracked.prompted) continue;
      tracked.prompted = true;
      if (this.#tty === null) {
        const { source, service } = tracked.question;
        const dir = this.labDirOption;
        this.#said(
          `qrx: policy question ${id} waits for an answer: ${source} -> ${service}; ` +
            `from another terminal: qrx lab asks${dir}, ` +
            `then qrx lab answer${dir} ${id} TARGET|deny\n`,
        );
        continue;
      }
      this.#current = { id, typed: "" };
      this.#toTerminal(`\n${formatQuestion(id, tracked.question)}`);
      return;
    }
  }

  #readAnswer(): void {
    const current = this.#current!;
    const buffer = Buffer.alloc(256);
    let count: number;
    try {
      count = readSync(this.#tty!, buffer, 0, buffer.length, null);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "EAGAIN") return;
      count = 0;
    }
    if (count === 0) {
      this.#current = null; // the terminal went away: the question stays for qrx lab answer
      return;
    }
    current.typed += buffer.subarray(0, count).toString("utf8");
    const newline = current.typed.indexOf("\n");
    if (newline === -1) return;
    const question = this.#tracked.get(current.id)!.question;
    const choice = parseChoice(current.typed.slice(0, newline), question);
    if (choice === undefined) {
      current.typed = "";
      this.#toTerminal(`not one of the choices (a number, a name, or n)\n${promptLine(question)}`);
      return;
    }
    this.#current = null;
    const result = answerQueued(this.dir, current.id, choice, ANSWERED_BY);
    if (result !== "answered") this.#toTerminal(`(question ${current.id}: ${result})\n`);
  }

  #toTerminal(text: string): void {
    if (this.#tty !== null) writeSync(this.#tty, text);
  }

  /** What the caller must see even with the terminal elsewhere: on stderr, beside the refusal. */
  #said(text: string): void {
    this.write(text);
  }
}
