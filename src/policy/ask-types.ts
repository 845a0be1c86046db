// What an ask rule asks and what comes back: the shapes every asker (program, terminal,
// queue) shares, apart from the askers themselves so that none of them imports another.

export interface AskQuestion {
  source: string;
  service: string;
  /** "+ARG"; "+" for none. */
  argument: string;
  /** The choices, never empty. */
  targets: string[];
  defaultTarget: string | null;
  /** What the caller asked for (normalized). */
  intendedTarget: string;
  /** file:line of the ask rule. */
  rule: string;
}

export interface AskAnswer {
  /** The chosen target, or null for deny. */
  target: string | null;
  /** Who answered or why nobody did, for the log. */
  reason: string;
}

export interface Asker {
  /** For the log: "ask program 'CMD'", "terminal", "nobody (why)". */
  readonly description: string;
  ask(question: AskQuestion): Promise<AskAnswer>;
}
