// `qrx lab asks` and `qrx lab answer`: the lab's policy questions (ask = "tty") seen and answered
// from any terminal, as the policy daemon left them in D/asks (src/policy/ask-queue.ts).

import { answerQueued, pendingAsks, type PendingAsk } from "../policy/ask-queue.ts";
import { parseChoice } from "./ask-prompt.ts";
import { adminPid, dirOption, formatDuration, formatTable, LabError } from "./control.ts";
import type { LabLayout } from "./layout.ts";

function requireLab(layout: LabLayout): void {
  if (adminPid(layout) !== null) return;
  throw new LabError(`no lab running in ${layout.dir}: run qrx lab up${dirOption(layout)}`);
}

export function listAsks(layout: LabLayout): PendingAsk[] {
  requireLab(layout);
  return pendingAsks(layout.asksDir);
}

export function formatAsks(asks: PendingAsk[], layout: LabLayout, now = Date.now()): string {
  if (asks.length === 0) return "no policy questions waiting";
  const rows = asks.map(({ id, askedAt, question }) => [
    id,
    question.source,
    `${question.service}${question.argument === "+" ? "" : question.argument}`,
    question.intendedTarget,
    question.targets
      .map((target) => (target === question.defaultTarget ? `${target}*` : target))
      .join(),
    formatDuration(now - askedAt),
    question.rule,
  ]);
  const header = ["ID", "SOURCE", "SERVICE", "ASKED FOR", "CHOICES (*default)", "WAITING", "RULE"];
  const how = `answer with: qrx lab answer${dirOption(layout)} ID TARGET|deny`;
  return `${formatTable(header, rows)}\n\n${how}`;
}

/** Answers question `id` with a target among its choices (or its number), or `deny`. */
export function answerAsk(layout: LabLayout, id: string, answer: string): string {
  requireLab(layout);
  const pending = pendingAsks(layout.asksDir).find((ask) => ask.id === id);
  if (pending === undefined) {
    const result = answerQueued(layout.asksDir, id, null, "qrx lab answer");
    const why = result === "already answered" ? "was already answered" : "is not waiting";
    const list = `qrx lab asks${dirOption(layout)}`;
    throw new LabError(`policy question ${id} ${why} (${list} lists those that are)`);
  }
  const { question } = pending;
  const choice = answer === "" ? undefined : parseChoice(answer, question);
  if (choice === undefined) {
    const choices = question.targets.join(", ");
    throw new LabError(
      `'${answer}' is not a choice for question ${id}: give one of ${choices}, or deny`,
      2,
    );
  }
  const result = answerQueued(layout.asksDir, id, choice, "qrx lab answer");
  if (result !== "answered") throw new LabError(`policy question ${id}: ${result}`);
  return choice === null ? `question ${id}: denied` : `question ${id}: ${choice} allowed`;
}
