import { describe, expect, test } from "bun:test";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { answerQueued, askOutcome, pendingAsks, QueueAsker } from "../../src/policy/ask-queue.ts";
import type { AskQuestion } from "../../src/policy/ask.ts";
import { tempDir } from "../helpers/paths.ts";
import { waitFor } from "../helpers/system.ts";

const QUESTION: AskQuestion = {
  source: "work",
  service: "test.Add",
  argument: "+",
  targets: ["vault", "other"],
  defaultTarget: "vault",
  intendedTarget: "@default",
  rule: "/p/50-lab.policy:1",
};

describe("the ask queue", () => {
  test("the first answer wins; the outcome stays readable after the daemon took it", async () => {
    const dir = tempDir();
    try {
      const asker = new QueueAsker(dir.path);
      const answer = asker.ask(QUESTION);
      await waitFor(() => pendingAsks(dir.path).length === 1, "the question");
      const [pending] = pendingAsks(dir.path);
      expect(pending!.question).toEqual(QUESTION);
      expect(answerQueued(dir.path, pending!.id, "other", "test")).toBe("answered");
      expect(answerQueued(dir.path, pending!.id, null, "late")).toBe("already answered");
      expect(await answer).toEqual({
        target: "other",
        reason: `question ${pending!.id}: other chosen by test`,
      });
      expect(pendingAsks(dir.path)).toEqual([]);
      expect(askOutcome(dir.path, pending!.id)).toEqual({ target: "other", by: "test" });
      expect(answerQueued(dir.path, "99", null, "x")).toBe("no such question");
      // A restarted daemon does not reuse the id.
      const next = new QueueAsker(dir.path, 50).ask(QUESTION);
      await waitFor(() => pendingAsks(dir.path).length === 1, "the second question");
      expect(Number(pendingAsks(dir.path)[0]!.id)).toBeGreaterThan(Number(pending!.id));
      await next;
    } finally {
      dir.remove();
    }
  });

  test("nobody answering within the timeout denies; a late answer finds no question", async () => {
    const dir = tempDir();
    try {
      const result = await new QueueAsker(dir.path, 100).ask(QUESTION);
      expect(result).toEqual({ target: null, reason: "question 1: nobody answered within 0.1 s" });
      expect(askOutcome(dir.path, "1")).toEqual({
        target: null,
        by: "nobody answered within 0.1 s",
      });
      expect(answerQueued(dir.path, "1", "vault", "late")).toBe("already answered");
      expect(existsSync(join(dir.path, "1.ask"))).toBe(false);
      expect(readdirSync(dir.path).filter((name) => name.startsWith(".tmp"))).toEqual([]);
    } finally {
      dir.remove();
    }
  });
});
