// dom0's socket services policy.EvalSimple and policy.EvalGUI (§11.3), served by the policy
// daemon. A connection starts with the service descriptor qrexec writes into a socket service
// (§5.3): `policy.EvalX+<svc+arg> <caller> ...\0`; then at most 96 bytes `source\0target`, read
// until the caller's EOF (or 96 bytes). Source 1-31 bytes, target 1-63, both only
// [A-Za-z0-9@_.-] (so `@dispvm:...` is refused). EvalGUI also needs the tag `guivm-<caller>` on
// both the source and the target qube. Anything wrong: the connection is closed with no answer.
// The answer is `result=allow\n` or `result=deny\n`, with assume_yes_for_ask and just_evaluate.

import { RequestServer } from "../io/request-server.ts";
import type { Asker } from "./ask.ts";
import { answerQuery } from "./answer.ts";
import type { DomainFacts } from "./domains.ts";
import type { PolicyStore } from "./store.ts";
import { untrusted } from "../io/log-text.ts";

export type EvalKind = "simple" | "gui";

/** The source\0target part is read up to this many bytes (upstream's read(96)). */
export const EVAL_BODY_BYTES_MAX = 96;
/** A descriptor longer than this (no NUL yet) is dropped. */
export const EVAL_DESCRIPTOR_BYTES_MAX = 65536;

const NAME = /^[A-Za-z0-9@_.-]+$/;

export type Parsed<T> = ({ ok: true } & T) | { ok: false; reason: string };

/** The descriptor text without its NUL: the queried service+arg and the calling qube. */
export function parseEvalDescriptor(
  text: string,
): Parsed<{ serviceAndArg: string; caller: string }> {
  if (!/^[\x21-\x7e ]*$/.test(text))
    return { ok: false, reason: "bad byte in the service descriptor" };
  const [invoked = "", caller = ""] = text.split(" ");
  const plus = invoked.indexOf("+");
  if (plus === -1) return { ok: false, reason: `no queried service in '${invoked}'` };
  const serviceAndArg = invoked.slice(plus + 1);
  if (serviceAndArg === "" || serviceAndArg.startsWith("+"))
    return { ok: false, reason: `no queried service in '${invoked}'` };
  if (caller === "") return { ok: false, reason: "no caller in the service descriptor" };
  return { ok: true, serviceAndArg, caller };
}

/** The `source\0target` bytes (at most 96). */
export function parseEvalNames(body: Buffer): Parsed<{ source: string; target: string }> {
  const parts = body.toString("latin1").split("\0");
  if (parts.length !== 2) return { ok: false, reason: "not exactly source\\0target" };
  const [source, target] = parts as [string, string];
  if (source.length < 1 || source.length > 31)
    return { ok: false, reason: `source of ${source.length} bytes` };
  if (target.length < 1 || target.length > 63)
    return { ok: false, reason: `target of ${target.length} bytes` };
  if (!NAME.test(source)) return { ok: false, reason: "bad character in source" };
  if (!NAME.test(target)) return { ok: false, reason: "bad character in target" };
  return { ok: true, source, target };
}

/** EvalGUI: the caller must be the GUI VM of both qubes. */
export function guiTagProblem(
  facts: DomainFacts,
  caller: string,
  source: string,
  target: string,
): string | null {
  const tag = `guivm-${caller}`;
  for (const name of [source, target]) {
    if (!(facts.get(name)?.tags.has(tag) ?? false)) return `${name} has no tag ${tag}`;
  }
  return null;
}

/** Never asked (just_evaluate settles every ask), but answerQuery wants one. */
const NOBODY: Asker = {
  description: "nobody (policy.Eval*)",
  ask: async () => ({ target: null, reason: "policy.Eval* never asks" }),
};

/** The answer text for one complete connection, or null: close with no answer. */
export async function evalServiceAnswer(
  kind: EvalKind,
  descriptor: string,
  body: Buffer,
  store: PolicyStore,
  log: (message: string) => void,
): Promise<string | null> {
  const what = kind === "gui" ? "policy.EvalGUI" : "policy.EvalSimple";
  const head = parseEvalDescriptor(descriptor);
  if (!head.ok) {
    log(`${what}: no answer: ${untrusted(head.reason, 512)}`);
    return null;
  }
  const names = parseEvalNames(body);
  if (!names.ok) {
    log(`${what} from ${untrusted(head.caller)}: no answer: ${untrusted(names.reason, 512)}`);
    return null;
  }
  const snapshot = store.current;
  let facts;
  try {
    facts = await store.facts(snapshot);
  } catch (error) {
    log(
      `${what} from ${head.caller}: no answer: domain facts unavailable: ` +
        `${error instanceof Error ? error.message : String(error)}`,
    );
    return null;
  }
  if (kind === "gui") {
    const problem = guiTagProblem(facts, head.caller, names.source, names.target);
    if (problem !== null) {
      log(`${what} from ${untrusted(head.caller)}: no answer: ${untrusted(problem, 512)}`);
      return null;
    }
  }
  try {
    const answered = await answerQuery(
      {
        source: names.source,
        requestedSource: null,
        intendedTarget: names.target,
        serviceAndArg: head.serviceAndArg,
      },
      { assumeYesForAsk: true, justEvaluate: true },
      {
        policy: snapshot.policy,
        facts,
        asker: NOBODY,
        log: (line) => log(`${what} from ${head.caller}: ${line}`),
      },
    );
    return answered.decision.kind === "allow" ? "result=allow\n" : "result=deny\n";
  } catch (error) {
    log(
      `${what} from ${head.caller}: failed, denied: ` +
        `${error instanceof Error ? error.message : String(error)}`,
    );
    return "result=deny\n";
  }
}

export interface EvalServiceOptions {
  kind: EvalKind;
  socketPath: string;
  store: PolicyStore;
  log: (message: string) => void;
}

/** One listening socket service (EvalSimple or EvalGUI). */
export class EvalServiceServer {
  readonly #server: RequestServer<{ descriptor: string; body: Buffer }>;

  constructor(readonly options: EvalServiceOptions) {
    const { kind, socketPath, store, log } = options;
    const name = kind === "gui" ? "policy.EvalGUI" : "policy.EvalSimple";
    this.#server = new RequestServer<{ descriptor: string; body: Buffer }>({
      socketPath,
      mode: 0o660,
      log,
      parse: (received, eof) => {
        const nul = received.indexOf(0);
        if (nul === -1) {
          if (eof || received.length > EVAL_DESCRIPTOR_BYTES_MAX)
            return {
              kind: "drop",
              reason:
                `${name}: no answer: ` +
                `${eof ? "EOF inside the service descriptor" : "service descriptor too long"}`,
            };
          return { kind: "more" };
        }
        const body = received.subarray(nul + 1);
        if (!eof && body.length < EVAL_BODY_BYTES_MAX) return { kind: "more" };
        return {
          kind: "request",
          request: {
            descriptor: received.subarray(0, nul).toString("latin1"),
            body: Buffer.from(body.subarray(0, EVAL_BODY_BYTES_MAX)),
          },
        };
      },
      answer: async ({ descriptor, body }) => {
        const text = await evalServiceAnswer(kind, descriptor, body, store, log);
        return text === null ? null : Buffer.from(text);
      },
    });
  }

  start(): void {
    this.#server.start();
  }

  stop(): void {
    this.#server.stop();
  }
}
