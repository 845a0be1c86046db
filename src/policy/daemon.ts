// The policy daemon: upstream's policy socket (/run/qubes/policy.sock, §7.4, §11.3), answered from
// a PolicyStore that reloads when files change. Per connection: `key=value` lines up to an empty
// line (or EOF); the keys are source, intended_target, service_and_arg (required),
// requested_source, assume_yes_for_ask and just_evaluate (optional). A line without '=', a
// non-ASCII byte, a missing required key or any other key drops the connection with no answer
// (that is what makes old daemons fall back to the policy program). The answer is the key=value
// text, then the connection is closed.

import { chmodSync, lstatSync, unlinkSync } from "node:fs";
import type { Socket, TCPSocketListener, UnixSocketListener } from "bun";
import type { Asker } from "./ask.ts";
import { answerQuery } from "./answer.ts";
import { EvalServiceServer } from "./eval-services.ts";
import type { PolicyQuery } from "./request.ts";
import type { SocketOptions } from "./response.ts";
import type { PolicyStore } from "./store.ts";

/** More than any real request; a client sending more is dropped. */
export const REQUEST_BYTES_MAX = 65536;

const REQUIRED = ["source", "intended_target", "service_and_arg"] as const;
const OPTIONAL = ["requested_source", "assume_yes_for_ask", "just_evaluate"] as const;
const KNOWN: ReadonlySet<string> = new Set<string>([...REQUIRED, ...OPTIONAL]);

export type ParsedRequest = { ok: true; query: PolicyQuery; options: SocketOptions } | { ok: false; reason: string };

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
    options: { assumeYesForAsk: values.get("assume_yes_for_ask") === "yes", justEvaluate: values.get("just_evaluate") === "yes" },
  };
}

interface ClientState {
  chunks: Buffer[];
  bytes: number;
  /** Set once the request is complete: further input is ignored. */
  handled: boolean;
  closed: boolean;
  pending: Buffer | null;
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
  #listener: UnixSocketListener<ClientState> | TCPSocketListener<ClientState> | null = null;
  #served = 0;
  #evalServers: EvalServiceServer[] = [];

  constructor(readonly options: PolicyDaemonOptions) {}

  /** Requests answered so far. */
  get served(): number {
    return this.#served;
  }

  start(): void {
    const { socketPath } = this.options;
    try {
      if (lstatSync(socketPath).isSocket()) unlinkSync(socketPath); // a stale socket from an earlier run
    } catch {
      // no such file
    }
    const daemon = this;
    const { store, log, evalSimpleSocket, evalGuiSocket } = this.options;
    for (const [kind, path] of [["simple", evalSimpleSocket], ["gui", evalGuiSocket]] as const) {
      if (path == null) continue;
      const server = new EvalServiceServer({ kind, socketPath: path, store, log });
      server.start();
      this.#evalServers.push(server);
    }
    this.#listener = Bun.listen<ClientState>({
      unix: socketPath,
      socket: {
        open(socket) {
          socket.data = { chunks: [], bytes: 0, handled: false, closed: false, pending: null };
        },
        data(socket, chunk) {
          daemon.#receive(socket, chunk, false);
        },
        end(socket) {
          daemon.#receive(socket, Buffer.alloc(0), true);
        },
        drain(socket) {
          daemon.#flush(socket);
        },
        close(socket) {
          socket.data.closed = true;
        },
        error(socket, error) {
          socket.data.closed = true;
          daemon.options.log(`policy socket client: ${error.message}`);
        },
      },
    });
    try {
      chmodSync(socketPath, 0o660); // upstream's policy.sock: owner and group (qubes)
    } catch {
      // best effort
    }
  }

  #receive(socket: Socket<ClientState>, chunk: Buffer, eof: boolean): void {
    const state = socket.data;
    if (state.handled) return;
    state.chunks.push(chunk);
    state.bytes += chunk.length;
    const all = Buffer.concat(state.chunks);
    state.chunks = [all];
    const text = all.toString("latin1");
    const end = text.startsWith("\n") ? 0 : text.indexOf("\n\n");
    if (end === -1 && !eof) {
      if (state.bytes > REQUEST_BYTES_MAX) {
        state.handled = true;
        this.options.log(`policy request over ${REQUEST_BYTES_MAX} bytes: dropped without an answer`);
        socket.end();
      }
      return;
    }
    state.handled = true;
    const parsed = parseSocketRequest(end === -1 ? text : text.slice(0, end + 1));
    if (!parsed.ok) {
      this.options.log(`policy request dropped without an answer: ${parsed.reason}`);
      socket.end();
      return;
    }
    void this.#answer(socket, parsed.query, parsed.options);
  }

  async #answer(socket: Socket<ClientState>, query: PolicyQuery, options: SocketOptions): Promise<void> {
    const { store, asker, log } = this.options;
    const snapshot = store.current; // this request keeps this snapshot, whatever reloads meanwhile
    let text: string;
    try {
      const facts = await store.facts(snapshot);
      text = (await answerQuery(query, options, { policy: snapshot.policy, facts, asker, log })).text;
    } catch (error) {
      log(`policy request failed, denied: ${error instanceof Error ? error.message : String(error)}`);
      text = "result=deny";
    }
    this.#served++;
    if (socket.data.closed) return;
    socket.data.pending = Buffer.from(text + "\n");
    this.#flush(socket);
  }

  #flush(socket: Socket<ClientState>): void {
    const pending = socket.data.pending;
    if (pending === null) return;
    const written = socket.write(pending);
    if (written < pending.length) {
      socket.data.pending = pending.subarray(Math.max(written, 0));
      return;
    }
    socket.data.pending = null;
    socket.end();
  }

  stop(): void {
    for (const server of this.#evalServers) server.stop();
    this.#evalServers = [];
    this.#listener?.stop(true);
    this.#listener = null;
    try {
      unlinkSync(this.options.socketPath);
    } catch {
      // already gone
    }
  }
}
