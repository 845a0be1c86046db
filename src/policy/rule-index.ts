// Finds the rules that can match a call without scanning the whole policy. Rules are grouped by
// service and argument (a `*` rule joins every group, in its place), and each group is split by
// source name; walking two lists that are both in policy order keeps first-match-wins exact.

import { sourceMatches, targetMatches } from "./match.ts";
import type { MatchContext } from "./request.ts";
import type { Rule } from "./rule.ts";
import { ADMIN_VM_NAME } from "./domains.ts";

/** The candidates for one (service, argument), all in policy order. */
export interface Bucket {
  /** Every candidate; ask's target collection walks these. */
  readonly all: readonly Rule[];
  /** Rules whose SOURCE is one domain, by that domain's name. */
  readonly bySource: ReadonlyMap<string, readonly Rule[]>;
  /** Rules whose SOURCE needs the facts (wildcards, tags, types, uuids). */
  readonly general: readonly Rule[];
}

interface ServiceRules {
  byArgument: Map<string, Rule[]>;
  anyArgument: Rule[];
}

const NO_RULES: readonly Rule[] = Object.freeze([]);

function mergeInOrder(lists: readonly (readonly Rule[])[]): Rule[] {
  const merged = lists.flat();
  // Each list is already ordered, so this sort sees long runs; lists are short next to a scan.
  return merged.sort((a, b) => a.order - b.order);
}

function bucketOf(rules: Rule[]): Bucket {
  const bySource = new Map<string, Rule[]>();
  const general: Rule[] = [];
  for (const rule of rules) {
    const kind = rule.source.kind;
    if (kind === "name" || kind === "adminvm") {
      const name = kind === "name" ? rule.source.value : ADMIN_VM_NAME;
      const list = bySource.get(name);
      if (list === undefined) bySource.set(name, [rule]);
      else list.push(rule);
    } else if (kind !== "dispvm-template" && kind !== "dispvm-tag") {
      // (those two never match a source, so they are left out of matching)
      general.push(rule);
    }
  }
  return { all: rules, bySource, general };
}

export class RuleIndex {
  readonly #byService = new Map<string, ServiceRules>();
  readonly #anyService: Rule[] = [];
  readonly #anyServiceBucket: Bucket;
  /**
   * Merged buckets, built on first use. Keys come only from the policy's own services and
   * arguments (an argument no rule names shares its service's bucket), so callers cannot grow it.
   */
  readonly #buckets = new Map<string, Bucket>();

  constructor(rules: readonly Rule[]) {
    for (const rule of rules) {
      if (rule.service === null) {
        this.#anyService.push(rule);
        continue;
      }
      let service = this.#byService.get(rule.service);
      if (service === undefined) {
        service = { byArgument: new Map(), anyArgument: [] };
        this.#byService.set(rule.service, service);
      }
      if (rule.argument === null) service.anyArgument.push(rule);
      else {
        const list = service.byArgument.get(rule.argument);
        if (list === undefined) service.byArgument.set(rule.argument, [rule]);
        else list.push(rule);
      }
    }
    this.#anyServiceBucket = bucketOf(this.#anyService);
  }

  bucketFor(service: string, argument: string): Bucket {
    const rules = this.#byService.get(service);
    if (rules === undefined) return this.#anyServiceBucket;
    const exact = rules.byArgument.get(argument);
    // Service names have no '+', arguments start with one: the two key forms cannot collide.
    const key = exact === undefined ? service : service + argument;
    let bucket = this.#buckets.get(key);
    if (bucket === undefined) {
      bucket = bucketOf(mergeInOrder([exact ?? NO_RULES, rules.anyArgument, this.#anyService]));
      this.#buckets.set(key, bucket);
    }
    return bucket;
  }
}

/** The first rule in policy order matching the request, or null. */
export function firstMatch(bucket: Bucket, context: MatchContext): Rule | null {
  const named = bucket.bySource.get(context.source) ?? NO_RULES;
  const general = bucket.general;
  let i = 0;
  let j = 0;
  while (i < named.length || j < general.length) {
    if (j === general.length || (i < named.length && named[i]!.order < general[j]!.order)) {
      const rule = named[i++]!;
      if (targetMatches(rule.target, context)) return rule;
    } else {
      const rule = general[j++]!;
      if (sourceMatches(rule.source, context) && targetMatches(rule.target, context)) return rule;
    }
  }
  return null;
}

/** Every rule matching service, argument and source (not target), in policy order: ask's walk. */
export function* sourceMatchesInOrder(bucket: Bucket, context: MatchContext): Generator<Rule> {
  for (const rule of bucket.all) {
    if (sourceMatches(rule.source, context)) yield rule;
  }
}
