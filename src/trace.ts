// The per-stage timing trace (QRX_TRACE=FILE): every process of a call appends one JSON line per
// stage it reaches. Several processes share the file, so each line is one write to an O_APPEND
// fd (the kernel keeps such writes whole). Unset, every entry point is one null check: call
// sites hold a `CallTrace | null` and use `?.`.
//
// A call has no id that every process knows without changing the wire protocol, so events carry
// keys the reader (src/trace-report.ts) joins: a process-local id, the trigger's ident as the
// source domain's agent and daemon know it, and the data vchan (domains and port) that every
// process of the call learns. Ports are reused, so the daemon that allocates one marks its key
// fresh: from then on that key means the new call.

import { closeSync, openSync, writeSync } from "node:fs";
import { PUMP_MARKS } from "./constants.ts";

/** Where each stage's time was taken, the clock shared by every process (ms, µs precision). */
function traceNow(): number {
  return performance.timeOrigin + performance.now();
}

const file = process.env.QRX_TRACE || null;
const inherited = takeInheritedFd();
/** Whether this process records a trace (for call sites that would compute keys first). */
export const tracing = file !== null || inherited >= 0;
let fd = inherited;
let nextCall = 1;
const program = programName(process.argv[1] ?? process.argv[0] ?? "bun");

function programName(path: string): string {
  const base = path.slice(path.lastIndexOf("/") + 1);
  // A program runs from its source (.ts) or its start-up bundle (.js): the same name either way.
  return base.replace(/\.(ts|js)$/, "");
}

export interface TraceEvent {
  /** Milliseconds on the shared clock. */
  t: number;
  stage: string;
  pid: number;
  prog: string;
  /** The domain the process runs in (its daemons run in dom0: 0). */
  dom: number;
  /** Process-local call id. */
  call?: string;
  keys?: string[];
  /** A key this event starts anew (the port it was just allocated). */
  fresh?: string;
  [extra: string]: unknown;
}

/**
 * An isolated lab domain's processes get the trace as an open fd (`QRX_TRACE_FD`, from
 * libexec/qrx-domain-ns): the file is on the host. The variable leaves the environment here, so
 * that no child takes an fd of its own with that number for the trace, and the fd is moved to a
 * close-on-exec copy, so that no child (a service) inherits the file either.
 */
function takeInheritedFd(): number {
  const text = process.env.QRX_TRACE_FD;
  if (text === undefined) return -1;
  delete process.env.QRX_TRACE_FD;
  if (!/^\d{1,4}$/.test(text) || Number(text) < 3) return -1;
  const inherited = Number(text);
  try {
    // Only a traced domain's processes load the native library for this (the agent has it).
    const { dupFd } = require("./native.ts") as typeof import("./native.ts");
    const copy = dupFd(inherited);
    closeSync(inherited);
    return copy;
  } catch {
    // Not open, or no native library: no trace, rather than writes into whatever this process
    // opens later under that number.
    return -1;
  }
}

function append(event: TraceEvent): void {
  if (!tracing) return;
  try {
    if (fd < 0) fd = openSync(file!, "a");
    writeSync(fd, `${JSON.stringify(event)}\n`);
  } catch {
    // A trace must never break a call: a file that cannot be written just stays incomplete.
  }
}

/** The data vchan between domains `a` and `b` on `port`, as both ends and their daemons name it. */
export function portKey(a: number, b: number, port: number): string {
  return `port:${Math.min(a, b)}:${Math.max(a, b)}:${port}`;
}

/** A trigger as the source domain's agent and daemon know it (the agent's ident for it). */
export function triggerKey(sourceDomain: number, ident: string): string {
  return `trig:${sourceDomain}:${ident}`;
}

/** The stages one process reaches for one call. */
export class CallTrace {
  readonly #dom: number;
  readonly #id = `${process.pid}.${nextCall++}`;
  #keys: string[] = [];
  #fresh: string | undefined;

  constructor(dom: number) {
    this.#dom = dom;
  }

  /** The next event also carries `key` (`fresh`: this process just allocated it). */
  link(key: string, fresh = false): this {
    this.#keys.push(key);
    if (fresh) this.#fresh = key;
    return this;
  }

  stage(stage: string, extra: Record<string, unknown> = {}, t = traceNow()): this {
    const event: TraceEvent = { t, stage, pid: process.pid, prog: program, dom: this.#dom };
    Object.assign(event, { call: this.#id }, extra);
    if (this.#keys.length > 0) event.keys = this.#keys;
    if (this.#fresh) event.fresh = this.#fresh;
    this.#keys = [];
    this.#fresh = undefined;
    append(event);
    return this;
  }

  /** The stages the pump reached in Zig (a data stream's DONE record; see `pumpStages`). */
  pumpStages(marks: Uint8Array | null): this {
    for (const { stage, t } of pumpStages(marks)) this.stage(stage, {}, t);
    return this;
  }
}

/** A trace for one call in this process, or null when it records none. */
export function traceCall(dom: number): CallTrace | null {
  return tracing ? new CallTrace(dom) : null;
}

/** One event joined to a call by its keys alone (no process-local state to keep). */
export function traceKeyed(
  dom: number,
  stage: string,
  keys: string[],
  extra: Record<string, unknown> = {},
  fresh?: string,
): void {
  if (!tracing) return;
  const trace = new CallTrace(dom);
  for (const key of keys) trace.link(key, key === fresh);
  trace.stage(stage, extra);
}

let processTrace: CallTrace | null | undefined;

/**
 * The call of a program that makes one call (qrexec-client-vm, qrexec-client). Its first use
 * records when the process started (Bun's time origin) and now, when our code runs: the
 * difference is what starting Bun and loading our modules cost.
 */
export function processCall(dom: number): CallTrace | null {
  if (processTrace !== undefined) return processTrace;
  processTrace = traceCall(dom);
  processTrace?.stage("process-start", {}, performance.timeOrigin);
  processTrace?.stage("client-start");
  return processTrace;
}

/** The stages the pump reached (u64 CLOCK_REALTIME ns each, 0 = not reached), in ms. */
export function pumpStages(marks: Uint8Array | null): Array<{ stage: string; t: number }> {
  if (!marks || marks.length < PUMP_MARKS.length * 8) return [];
  const view = new DataView(marks.buffer, marks.byteOffset, marks.byteLength);
  const stages = [];
  for (const [index, stage] of PUMP_MARKS.entries()) {
    const ns = view.getBigUint64(index * 8, true);
    if (ns !== 0n) stages.push({ stage, t: Number(ns / 1000n) / 1000 });
  }
  return stages;
}
