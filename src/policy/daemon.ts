// The policy daemon: upstream's policy socket (/run/qubes/policy.sock, §7.4, §11.3), answered from
// a PolicyStore that reloads when files change. Per connection: `key=value` lines up to an empty
// line (or EOF); the keys are source, intended_target, service_and_arg (required),
// requested_source, assume_yes_for_ask and just_evaluate (optional). A line without '=', a
// non-ASCII byte, a missing required key or any other key drops the connection with no answer
// (that is what makes old daemons fall back to the policy program). The answer is the key=value
// text, then the connection is closed.

import { RequestServer, type Parsed } from "../io/request-server.ts";
import type { Asker } from "./ask.ts";
import { answerQuery } from "./answer.ts";
import { EvalServiceServer } from "./eval-services.ts";
import type { PolicyQuery } from "./request.ts";
import type { SocketOptions } from "./response.ts";
import type { PolicyStore } from "./store.ts";
import { RefusalLog, untrusted } from "../io/log-text.ts";

/** More than any real request; a client sending more is dropped. */
export const REQUEST_BYTES_MAX = 65536;

const REQUIRED = ["source", "intended_target", "service_and_arg"] as const;
const OPTIONAL = ["requested_source", "assume_yes_for_ask", "just_evaluate"] as const;
const KNOWN: ReadonlySet<string> = new Set<string>([...REQUIRED, ...OPTIONAL]);

export type ParsedRequest =
  { ok: true; query: PolicyQuery; options: SocketOptions } | { ok: false; reason: string };

/** The request text up to (not including) the empty line. */
export function parseSocketRequest(text: string): ParsedRequest {
  if (!/^[\x00-\x7f]*$/.test(text)) return { ok: false, reason: "non-ASCII request" };
  const values = new Map<string, string>();
  for (const line of text.split("\n")) {
    if (line === "") break;
    const equals = line.indexOf("=");
    if (equals === -1) return { ok: false, reason: `line without '=': '${line}'` };
    const key = line.slice(0, equals);
    if (!KNOWN.has(key)) return { ok: false, reason: `unknown key '${key}'` };
    values.set(key, line.slice(equals + 1)); // a repeated key: the last wins, as upstream's dict
  }
  for (const key of REQUIRED) if (!values.has(key)) return { ok: false, reason: `missing ${key}` };
  return {
    ok: true,
    query: {
      source: values.get("source")!,
      requestedSource: values.get("requested_source") ?? null,
      intendedTarget: values.get("intended_target")!,
      serviceAndArg: values.get("service_and_arg")!,
    },
    options: {
      assumeYesForAsk: values.get("assume_yes_for_ask") === "yes",
      justEvaluate: values.get("just_evaluate") === "yes",
    },
  };
}

export interface PolicyDaemonOptions {
  socketPath: string;
  store: PolicyStore;
  asker: Asker;
  log: (message: string) => void;
  /** Also serve dom0's socket service policy.EvalSimple / policy.EvalGUI here (§11.3). */
  evalSimpleSocket?: string | null;
  evalGuiSocket?: string | null;
}

export class PolicyDaemon {
  #server: RequestServer<ParsedQuery> | null = null;
  #served = 0;
  #evalServers: EvalServiceServer[] = [];

  /** Denials per calling domain are rate-limited: a VM causes them for free. */
  readonly #refusals: RefusalLog;

  constructor(readonly options: PolicyDaemonOptions) {
    this.#refusals = new RefusalLog(options.log);
  }

  /** Requests answered so far. */
  get served(): number {
    return this.#served;
  }

  start(): void {
    const { socketPath, store, log, evalSimpleSocket, evalGuiSocket } = this.options;
    for (const [kind, path] of [
      ["simple", evalSimpleSocket],
      ["gui", evalGuiSocket],
    ] as const) {
      if (path == null) continue;
      const server = new EvalServiceServer({ kind, socketPath: path, store, log });
      server.start();
      this.#evalServers.push(server);
    }
    this.#server = new RequestServer<ParsedQuery>({
      socketPath,
      mode: 0o660, // upstream's policy.sock: owner and group (qubes)
      log,
      parse: parseQueryBytes,
      answer: (request) => this.#answer(request),
    });
    this.#server.start();
  }

  async #answer({ query, options }: ParsedQuery): Promise<Uint8Array> {
    const { store, asker, log } = this.options;
    const snapshot = store.current; // this request keeps this snapshot, whatever reloads meanwhile
    let text: string;
    try {
      const facts = await store.facts(snapshot);
      const logRefusal = (line: string) => this.#refusals.log(query.source, line);
      const context = { policy: snapshot.policy, facts, asker, log, logRefusal };
      text = (await answerQuery(query, options, context)).text;
    } catch (error) {
      const reason = untrusted(error instanceof Error ? error.message : String(error), 512);
      log(`policy request failed, denied: ${reason}`);
      text = "result=deny";
    }
    this.#served++;
    return Buffer.from(text + "\n");
  }

  stop(): void {
    for (const server of this.#evalServers) server.stop();
    this.#evalServers = [];
    this.#server?.stop();
    this.#server = null;
  }
}

type ParsedQuery = { query: PolicyQuery; options: SocketOptions };

/** A request is whole at its empty line, or at EOF. */
function parseQueryBytes(received: Buffer, eof: boolean): Parsed<ParsedQuery> {
  const text = received.toString("latin1");
  const end = text.startsWith("\n") ? 0 : text.indexOf("\n\n");
  if (end === -1 && !eof) {
    if (received.length > REQUEST_BYTES_MAX)
      return {
        kind: "drop",
        reason: `policy request over ${REQUEST_BYTES_MAX} bytes: dropped without an answer`,
      };
    return { kind: "more" };
  }
  const parsed = parseSocketRequest(end === -1 ? text : text.slice(0, end + 1));
  if (!parsed.ok) {
    const reason = untrusted(parsed.reason, 512);
    return { kind: "drop", reason: `policy request dropped without an answer: ${reason}` };
  }
  return { kind: "request", request: { query: parsed.query, options: parsed.options } };
}
