// What qrexec-policy-exec does once its command line is parsed (by commander, or by its entry for
// the daemon's own form): one decision, answered on stdout, or the legacy form's connection.
import type { Answered } from "../policy/answer.ts";
import type { LegacyCall } from "../policy/legacy-exec.ts";
import type { PolicySnapshot } from "../policy/store.ts";
import { logger } from "./common.ts";
import { writeText } from "./output.ts";
import { askProgramFrom, policySourceFrom, type PolicyOptionValues } from "./policy-options.ts";

export const PROGRAM = "qrexec-policy-exec";
const EXIT_DENY = 126;

export type ExecOptions = PolicyOptionValues & {
  askProgram?: string;
  tty: boolean;
  assumeYesForAsk?: boolean;
  justEvaluate?: boolean;
};

/** SOURCE TARGET SERVICE+ARG, or the legacy DOMID SOURCE TARGET SERVICE+ARG IDENT. */
export function runPolicyExec(positional: string[], options: ExecOptions): Promise<void> {
  const [domainId = "", , , , ident = ""] = positional;
  const legacy: LegacyCall | null = positional.length === 5 ? { domainId, ident } : null;
  const request = legacy === null ? positional : positional.slice(1, 4);
  const [source, target, service] = request as [string, string, string];
  const log = logger(PROGRAM);
  const form = legacy === null ? "" : " (legacy form)";
  log.debug(`request: ${source} -> ${target || "@default"} ${service}${form}`);
  const policySource = policySourceFrom(options);

  /** The facts to decide with; none (a broken domains file, no qubesd) is a deny. */
  async function factsOrExit(snapshot: PolicySnapshot) {
    const { factsFor } = await import("../policy/store.ts");
    try {
      return await factsFor(policySource, snapshot);
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error);
      log.warn(`domain facts unavailable, denied: ${reason}`);
      if (legacy === null) writeText(1, "result=deny\n");
      process.exit(EXIT_DENY);
    }
  }

  /** The legacy form: nothing on stdout; an allowed call is connected here. */
  async function connectLegacy(call: LegacyCall, result: Answered): Promise<number> {
    if (result.decision.kind !== "allow") return EXIT_DENY;
    if (options.justEvaluate) return 0;
    const { connectLegacyCall, legacyClientArgs } = await import("../policy/legacy-exec.ts");
    const client = legacyClientArgs(result.decision, call);
    if ("error" in client) {
      log.warn(`cannot connect the call: ${client.error}`);
      return 125;
    }
    const status = await connectLegacyCall(client.args);
    if (status !== 0) log.warn(`qrexec-client ${client.args.join(" ")} exited with ${status}`);
    return status;
  }

  // The policy engine loads here, after parsing (--help and usage errors need only commander),
  // and no top-level await: the start-up bundle is CommonJS (docs/architecture.md, "Start-up").
  async function main(): Promise<void> {
    const { describeLoad, loadSnapshot } = await import("../policy/store.ts");
    const { chooseAsker } = await import("../policy/ask.ts");
    const { answerQuery } = await import("../policy/answer.ts");
    const snapshot = loadSnapshot(policySource);
    if (snapshot.errors.length > 0) for (const line of describeLoad(snapshot)) log(line);
    const asker = chooseAsker({
      askProgram: askProgramFrom(options.askProgram),
      terminal: options.tty,
    });
    const answered = await answerQuery(
      { source, requestedSource: null, intendedTarget: target, serviceAndArg: service },
      { assumeYesForAsk: options.assumeYesForAsk, justEvaluate: options.justEvaluate },
      { policy: snapshot.policy, facts: await factsOrExit(snapshot), asker, log },
    );
    if (legacy !== null) {
      process.exitCode = await connectLegacy(legacy, answered);
    } else {
      // Not process.stdout: building its stream cost ~5 ms of this program's run, which is on
      // every call of a daemon without a policy daemon.
      writeText(1, answered.text + "\n");
      process.exitCode = answered.decision.kind === "allow" ? 0 : EXIT_DENY;
    }
  }

  return main();
}
