// Reads a QRX_TRACE file (src/trace.ts) back into calls: joins each process's events by their
// keys, then renders a per-call waterfall, a summary (median per stage over all calls) and an SVG.

import { untrusted } from "./io/log-text.ts";
import { median } from "./stats.ts";
import type { TraceEvent } from "./trace.ts";

export interface TracedEvent extends TraceEvent {
  /** Who reached the stage for the call: "client", "service", or the program's name. */
  side: string;
}

export interface TracedCall {
  /** 1-based, in order of each call's first event. */
  number: number;
  title: string;
  start: number;
  durationMs: number;
  events: TracedEvent[];
}

export interface ParsedTrace {
  events: TraceEvent[];
  /** Lines that were not trace events (a torn or foreign line): skipped, counted. */
  badLines: number;
}

/**
 * The trace file is written by every process of a call, some inside domains that may be hostile:
 * a line is an event only when each field the report reads has its exact type, so nothing past
 * this point has to doubt them. Strings and key lists are bounded (ours are far shorter) so that
 * one line cannot swell the report.
 */
export const TRACE_TEXT_MAX = 4096;
export const TRACE_KEYS_MAX = 64;
/** Optional string fields the report reads (the title takes service, target and command). */
const TEXT_FIELDS = ["prog", "call", "fresh", "side", "service", "target", "command"] as const;

function isText(value: unknown): value is string {
  return typeof value === "string" && value.length <= TRACE_TEXT_MAX;
}

/** pids and domain ids: whole, not negative, exact as numbers. */
function isId(value: unknown): value is number {
  return Number.isSafeInteger(value) && (value as number) >= 0;
}

/** t is milliseconds since the epoch: bounded so that differences between events stay finite. */
function isTime(value: unknown): value is number {
  return typeof value === "number" && value >= 0 && value <= Number.MAX_SAFE_INTEGER;
}

function isKeys(value: unknown): value is string[] {
  return Array.isArray(value) && value.length <= TRACE_KEYS_MAX && value.every(isText);
}

function isTraceEvent(value: unknown): value is TraceEvent {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return false;
  const event = value as Record<string, unknown>;
  if (!isTime(event.t) || !isText(event.stage) || !isId(event.pid)) return false;
  if (event.dom !== undefined && !isId(event.dom)) return false;
  if (event.keys !== undefined && !isKeys(event.keys)) return false;
  return TEXT_FIELDS.every((name) => event[name] === undefined || isText(event[name]));
}

export function parseTrace(text: string): ParsedTrace {
  const events: TraceEvent[] = [];
  let badLines = 0;
  for (const line of text.split("\n")) {
    if (line.trim() === "") continue;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch {
      // A torn line (two processes' writes cut short) or one that is not JSON: counted below.
      value = undefined;
    }
    if (isTraceEvent(value)) events.push(value);
    else badLines++;
  }
  return { events, badLines };
}

/**
 * The call of one process: its pid alone is not enough, since isolated domains each have their
 * own PID namespace (two domains' agents can both be pid 56 and both name a call "56.1").
 */
function processCallId(event: TraceEvent): string {
  return `${event.dom}:${event.pid}:${event.call}`;
}

/** Union-find over calls: an event's local id and keys name the call it belongs to. */
class Joiner {
  readonly #parent: number[] = [];
  readonly #byId = new Map<string, number>();
  readonly #byKey = new Map<string, number>();

  find(node: number): number {
    const parent = this.#parent;
    while (parent[node] !== node) node = parent[node] = parent[parent[node]!]!;
    return node;
  }

  /** The call of `event` (events must come in time order: a fresh key starts a new call). */
  add(event: TraceEvent): number {
    const found: number[] = [];
    const id = event.call === undefined ? undefined : processCallId(event);
    if (id !== undefined && this.#byId.has(id)) found.push(this.find(this.#byId.get(id)!));
    for (const key of event.keys ?? []) {
      if (key !== event.fresh && this.#byKey.has(key)) found.push(this.find(this.#byKey.get(key)!));
    }
    let node = found[0];
    if (node === undefined) {
      node = this.#parent.length;
      this.#parent.push(node);
    }
    for (const other of found) this.#parent[this.find(other)] = node;
    if (id !== undefined) this.#byId.set(id, node);
    for (const key of event.keys ?? []) this.#byKey.set(key, node);
    return node;
  }
}

/** Which side of the call each process-local id is, from the stages it reached. */
function sides(events: TraceEvent[]): Map<string, string> {
  const side = new Map<string, string>();
  for (const event of events) {
    const id = processCallId(event);
    if (event.stage === "exec-request") side.set(id, "service");
    if (event.stage === "client-start" || event.stage === "call-allowed") side.set(id, "client");
  }
  return side;
}

/** Service names and commands come from the calling domain: escaped before a terminal sees them. */
function titleOf(events: TracedEvent[]): string {
  return untrusted(rawTitle(events), 200);
}

function rawTitle(events: TracedEvent[]): string {
  const asked = events.find((e) => typeof e.service === "string" && typeof e.target === "string");
  const client = events.find((event) => event.side === "client");
  const from = client ? domainName(client.dom) : "?";
  if (asked) return `${from} -> ${asked.target} ${asked.service}`;
  const exec = events.find((e) => e.stage === "exec-request" && typeof e.command === "string");
  const named = events.find((event) => event.side === "client" && typeof event.target === "string");
  const target = named ? String(named.target) : exec ? domainName(exec.dom) : "?";
  return exec ? `${from} -> ${target}: ${exec.command}` : `${from} -> ${target}`;
}

function domainName(dom: number): string {
  return `dom${dom}`;
}

/** The calls in `events`, each with its events in time order. */
export function groupCalls(events: TraceEvent[]): TracedCall[] {
  const ordered = [...events].sort((a, b) => a.t - b.t);
  const joiner = new Joiner();
  // Every event joins before any is looked up: a later event can link two earlier calls.
  const added = ordered.map((event) => ({ event, node: joiner.add(event) }));
  const side = sides(ordered);
  const byCall = new Map<number, TracedEvent[]>();
  added.forEach(({ event, node }) => {
    const root = joiner.find(node);
    const sideOf = side.get(processCallId(event)) ?? event.prog ?? "?";
    const traced: TracedEvent = { ...event, side: sideOf };
    const list = byCall.get(root);
    if (list) list.push(traced);
    else byCall.set(root, [traced]);
  });
  return [...byCall.values()].map((list, index) => {
    const start = list[0]!.t;
    const durationMs = list.at(-1)!.t - start;
    return { number: index + 1, title: titleOf(list), start, durationMs, events: list };
  });
}

/** Characters of a stage, side or program name shown: ours are a few dozen at most. */
const NAME_MAX = 64;

/**
 * A name from the trace as shown: any process of a call, a hostile one too, wrote it, so it is
 * cut short and stripped of control characters before a terminal (or, XML-escaped, the SVG)
 * gets it.
 */
export function shownName(name: string | undefined): string {
  return name === undefined ? "?" : untrusted(name, NAME_MAX);
}

/** "stage [side]": how the summary tells apart both ends reaching the same stage. */
export function stageLabel(event: TracedEvent): string {
  return `${shownName(event.stage)} [${shownName(event.side)}]`;
}

const BAR_WIDTH = 40;

/** One call as text: offset, the step since the previous stage, who, and a bar for that step. */
export function waterfallText(call: TracedCall): string[] {
  const lines = [`call ${call.number}: ${call.title}  (${call.durationMs.toFixed(2)} ms)`];
  const scale = BAR_WIDTH / Math.max(call.durationMs, 0.001);
  let previous = call.start;
  for (const event of call.events) {
    const offset = event.t - call.start;
    const from = Math.floor((previous - call.start) * scale);
    const to = Math.max(from + 1, Math.round(offset * scale));
    const bar = " ".repeat(from) + "#".repeat(Math.min(to, BAR_WIDTH) - from);
    const who = `${shownName(event.prog)}[${event.pid}] dom${event.dom}`;
    const step = (event.t - previous).toFixed(2);
    const times = `${offset.toFixed(2).padStart(8)} ${`+${step}`.padStart(8)}`;
    const what = `${stageLabel(event).padEnd(34)} ${who.padEnd(28)}`;
    lines.push(`  ${times}  ${what} |${bar.padEnd(BAR_WIDTH)}|`);
    previous = Math.max(previous, event.t);
  }
  return lines;
}

export interface StageSummary {
  label: string;
  /** Calls that reached it. */
  calls: number;
  medianMs: number;
}

/** Median offset of each stage from its call's start, over every call that reached it. */
export function summarize(calls: TracedCall[]): { stages: StageSummary[]; medianCallMs: number } {
  const offsets = new Map<string, number[]>();
  for (const call of calls) {
    const seen = new Set<string>();
    for (const event of call.events) {
      const label = stageLabel(event);
      if (seen.has(label)) continue;
      seen.add(label);
      // Pushed, not copied: a trace of many calls must not cost their square.
      const values = offsets.get(label);
      if (values) values.push(event.t - call.start);
      else offsets.set(label, [event.t - call.start]);
    }
  }
  const stages = [...offsets].map(([label, values]) => {
    return { label, calls: values.length, medianMs: median(values) };
  });
  stages.sort((a, b) => a.medianMs - b.medianMs);
  const medianCallMs = calls.length === 0 ? 0 : median(calls.map((call) => call.durationMs));
  return { stages, medianCallMs };
}

/** A summary per kind of call (its title): medians over different paths would mean nothing. */
export function summaryText(calls: TracedCall[]): string[] {
  const kinds = new Map<string, TracedCall[]>();
  for (const call of calls) {
    const group = kinds.get(call.title);
    if (group) group.push(call);
    else kinds.set(call.title, [call]);
  }
  const blocks = [...kinds].map(([title, group]) => kindSummary(title, group));
  return blocks.flatMap((block, index) => (index > 0 ? ["", ...block] : block));
}

function kindSummary(title: string, calls: TracedCall[]): string[] {
  const { stages, medianCallMs } = summarize(calls);
  const count = `${calls.length} call${calls.length === 1 ? "" : "s"}`;
  const typical = medianCallMs.toFixed(2);
  const lines = [`summary of ${title}: ${count}, median ${typical} ms from first to last stage`];
  const heading = `${"median ms".padStart(10)} ${"step".padStart(8)}  ${"stage [side]".padEnd(34)}`;
  lines.push(`  ${heading} calls`);
  let previous = 0;
  for (const stage of stages) {
    const step = (stage.medianMs - previous).toFixed(2);
    const times = `${stage.medianMs.toFixed(2).padStart(10)} ${`+${step}`.padStart(8)}`;
    lines.push(`  ${times}  ${stage.label.padEnd(34)} ${stage.calls}`);
    previous = stage.medianMs;
  }
  return lines;
}
