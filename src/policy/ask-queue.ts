// Ask questions that wait for a person in a directory, so that any terminal can answer them: the
// lab's `ask = "tty"`. The policy daemon (QueueAsker) writes ID.ask and waits for ID.answer;
// `qrx run` (on the caller's terminal) and `qrx lab answer` write ID.answer. The first answer
// wins, because it is created exclusively; the daemon then renames it to ID.done, which says
// how the question ended until it is swept a while later.
//
//   ID.ask     {"id", "asked_at", "question": AskQuestion}   (written to a temp name, then linked)
//   ID.answer  "TARGET" or "deny", a newline, then who answered
//   ID.done    the same, after the policy daemon took the answer (or "deny\nREASON" on timeout)

import { linkSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync } from "node:fs";
import { statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { AskAnswer, Asker, AskQuestion } from "./ask-types.ts";

/** Nobody answering within this long denies, so that a forgotten question does not hang a call. */
export const ASK_QUEUE_TIMEOUT_MS = 300_000;
const POLL_MS = 25;
/** ID.done files older than this are removed. */
const DONE_KEEP_MS = 60_000;

export interface PendingAsk {
  id: string;
  askedAt: number;
  question: AskQuestion;
}

export interface AskOutcome {
  /** The chosen target, or null for deny. */
  target: string | null;
  /** Who answered ("terminal of qrx run", "qrx lab answer", or why nobody did). */
  by: string;
}

function parseOutcome(text: string): AskOutcome {
  const [answer = "", by = ""] = text.split("\n");
  return { target: answer === "deny" || answer === "" ? null : answer, by };
}

function readText(path: string): string | null {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return null;
  }
}

/** Questions not answered yet, oldest first. */
export function pendingAsks(dir: string): PendingAsk[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  const pending: PendingAsk[] = [];
  for (const name of names) {
    if (!name.endsWith(".ask")) continue;
    const id = name.slice(0, -".ask".length);
    if (names.includes(`${id}.answer`)) continue;
    const text = readText(join(dir, name));
    if (text === null) continue;
    try {
      const data = JSON.parse(text) as { asked_at: number; question: AskQuestion };
      pending.push({ id, askedAt: data.asked_at, question: data.question });
    } catch {
      // Not one of ours (the directory is the lab's, but a file may be cut short by a crash).
    }
  }
  return pending.sort((a, b) => a.askedAt - b.askedAt || Number(a.id) - Number(b.id));
}

/** How question `id` ended (answered, or taken by the daemon), or null while it is pending. */
export function askOutcome(dir: string, id: string): AskOutcome | null {
  const text = readText(join(dir, `${id}.answer`)) ?? readText(join(dir, `${id}.done`));
  return text === null ? null : parseOutcome(text);
}

export type AnswerResult = "answered" | "already answered" | "no such question";

/** Answers `id` with a target or null (deny); only the first answer counts. */
export function answerQueued(
  dir: string,
  id: string,
  target: string | null,
  by: string,
): AnswerResult {
  if (!/^\d+$/.test(id) || readText(join(dir, `${id}.ask`)) === null) {
    return readText(join(dir, `${id}.done`)) === null ? "no such question" : "already answered";
  }
  // Whole before anyone can see it (the daemon polls for ID.answer and would read a file being
  // written as an empty answer, a deny), and only the first answer: link, which fails on EEXIST.
  const temp = join(dir, `.answer-${process.pid}-${id}-${Date.now()}`);
  writeFileSync(temp, `${target ?? "deny"}\n${by}\n`);
  try {
    linkSync(temp, join(dir, `${id}.answer`));
    return "answered";
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "EEXIST") return "already answered";
    throw error;
  } finally {
    rmSync(temp, { force: true });
  }
}

/** Asks by leaving the question in `dir` until someone answers it or the timeout passes. */
export class QueueAsker implements Asker {
  readonly description: string;
  #next = 1;

  constructor(
    readonly dir: string,
    readonly timeoutMs = ASK_QUEUE_TIMEOUT_MS,
  ) {
    this.description = `whoever answers in ${dir} (qrx run's terminal, qrx lab answer)`;
    mkdirSync(dir, { recursive: true });
    // A restarted daemon goes on numbering where the last left off, so an id means one question.
    const ids = readdirSync(dir).map((name) => Number(/^(\d+)\./.exec(name)?.[1] ?? 0));
    this.#next = Math.max(0, ...ids) + 1;
  }

  async ask(question: AskQuestion): Promise<AskAnswer> {
    this.#sweep();
    const id = this.#post(question);
    const deadline = Date.now() + this.timeoutMs;
    const answerFile = join(this.dir, `${id}.answer`);
    const doneFile = join(this.dir, `${id}.done`);
    for (;;) {
      const text = readText(answerFile);
      if (text !== null) {
        renameSync(answerFile, doneFile);
        rmSync(join(this.dir, `${id}.ask`), { force: true });
        const outcome = parseOutcome(text);
        const who = outcome.by || "someone";
        const chosen = outcome.target === null ? "denied" : `${outcome.target} chosen`;
        const reason = `${chosen} by ${who}`;
        return { target: outcome.target, reason: `question ${id}: ${reason}` };
      }
      if (Date.now() > deadline) return this.#expire(id, doneFile);
      await Bun.sleep(POLL_MS);
    }
  }

  #expire(id: string, doneFile: string): AskAnswer {
    const why = `nobody answered within ${this.timeoutMs / 1000} s`;
    try {
      // An answer that arrives now loses: the question is gone first.
      rmSync(join(this.dir, `${id}.ask`), { force: true });
      writeFileSync(doneFile, `deny\n${why}\n`);
    } catch {
      // The directory is gone (the lab is going down): the answer is deny anyway.
    }
    return { target: null, reason: `question ${id}: ${why}` };
  }

  /** Writes ID.ask under the lowest free number: whole before anyone can see it. */
  #post(question: AskQuestion): string {
    const temp = join(this.dir, `.tmp-${process.pid}-${this.#next}`);
    for (;;) {
      const id = String(this.#next++);
      writeFileSync(temp, JSON.stringify({ id, asked_at: Date.now(), question }));
      try {
        linkSync(temp, join(this.dir, `${id}.ask`));
        return id;
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
      } finally {
        rmSync(temp, { force: true });
      }
    }
  }

  #sweep(): void {
    const now = Date.now();
    for (const name of readdirSync(this.dir)) {
      if (!name.endsWith(".done")) continue;
      try {
        const path = join(this.dir, name);
        if (now - statSync(path).mtimeMs > DONE_KEEP_MS) rmSync(path);
      } catch {
        // Removed meanwhile, by the answerer or another sweep.
      }
    }
  }
}
