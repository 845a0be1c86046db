// A compiled policy: immutable once built, so the daemon can build the next one off to the side
// and swap a single reference on reload; calls in flight keep the one they started with.

import type { Decision } from "./decision.ts";
import type { DomainFacts } from "./domains.ts";
import type { PolicyError } from "./errors.ts";
import { evaluate, explain, type Explanation } from "./evaluate.ts";
import type { PolicyQuery } from "./request.ts";
import { RuleIndex } from "./rule-index.ts";
import type { Rule } from "./rule.ts";

/** What the loader read: the input of a CompiledPolicy. */
export interface ReadPolicy {
  rules: Rule[];
  errors: PolicyError[];
  /** Lines that load but that upstream reads differently: lint shows them, evaluation does not. */
  warnings?: PolicyError[];
  /** Every file and directory read, so a watcher knows what a reload depends on. */
  paths: string[];
}

export class CompiledPolicy {
  /** Every rule in evaluation order. */
  readonly rules: readonly Rule[];
  /** Load problems; when there is any, every call is denied. */
  readonly errors: readonly PolicyError[];
  /** Lines upstream would read differently (see ReadPolicy); they never change a decision. */
  readonly warnings: readonly PolicyError[];
  /** Files and directories it was read from (what a reload watcher should watch). */
  readonly paths: readonly string[];
  readonly index: RuleIndex;

  constructor(read: ReadPolicy) {
    this.rules = Object.freeze([...read.rules]);
    this.errors = Object.freeze([...read.errors]);
    this.warnings = Object.freeze([...(read.warnings ?? [])]);
    this.paths = Object.freeze([...read.paths]);
    this.index = new RuleIndex(this.rules);
    Object.freeze(this);
  }

  /** False when the policy failed to load; it then denies everything, naming the first error. */
  get ok(): boolean {
    return this.errors.length === 0;
  }

  evaluate(query: PolicyQuery, facts: DomainFacts): Decision {
    return evaluate(this, query, facts);
  }

  /** The decision plus every rule's verdict; for explain tools, not for the daemon's hot path. */
  explain(query: PolicyQuery, facts: DomainFacts): Explanation {
    return explain(this, query, facts);
  }
}
