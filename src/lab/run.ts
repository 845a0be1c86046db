// `qrx run DOMAIN -- COMMAND`: a command run as a process of a lab domain. A script pays this
// start for every command it runs in a domain, so nothing here loads node:fs (2-4 ms of a run,
// with what Bun does at exit) before the command is started, nor after it unless the command ran
// long enough for the ask queue's first look, or the policy log or the queue changed meanwhile.
// The admin service is asked only when running.json cannot vouch for the domain
// (running-domains.ts).
import type { AskWatcher } from "./ask-prompt.ts";
import { domainEnv } from "./environment.ts";
import { callAdmin, dirOption, LabError } from "./lab-dir.ts";
import { enterArgv } from "./enter.ts";
import type { LabLayout } from "./layout.ts";
import { knownRunning, type RunnableDomain, type RunnableLab } from "./running-domains.ts";

function domainNames(status: RunnableLab): string {
  return status.domains.map((candidate) => candidate.name).join(", ");
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * The ask watcher's first look comes this long after the spawn: a question needs a call, which
 * takes a round trip through the daemons first.
 */
const FIRST_ASK_LOOK_MS = 30;
/** How far a file's mtime may trail Date.now(): the file system's granularity (1 s on some). */
const MTIME_SLACK_MS = 2_000;

/**
 * Watches the ask queue for `domain`'s command, started at SINCE. ask-prompt.ts (node:fs) loads
 * at the first look, or at stop() when the queue's directory changed since the command started:
 * only then can it hold a question of the command.
 */
function watchAsks(layout: LabLayout, domain: string, since: number): { stop(): void } {
  let watcher: AskWatcher | undefined;
  const load = (): AskWatcher => {
    const { AskWatcher } = require("./ask-prompt.ts") as typeof import("./ask-prompt.ts");
    return (watcher = new AskWatcher(layout.asksDir, domain, dirOption(layout), since));
  };
  const firstLook = setTimeout(() => load().start(), FIRST_ASK_LOOK_MS);
  return {
    stop() {
      clearTimeout(firstLook);
      // A question asked since SINCE would have dated the directory SINCE or later (less the
      // slack); an older date says the last look has nothing to tell.
      const unchanged = Bun.file(layout.asksDir).lastModified < since - MTIME_SLACK_MS;
      if (watcher !== undefined || !unchanged) (watcher ?? load()).stop();
    },
  };
}

/** What the policy log says about `domain`'s calls since it was OFFSET bytes long. */
async function policyLogNotes(
  path: string,
  offset: number,
  domain: string,
  verbose: boolean,
): Promise<string[]> {
  // Nothing logged, nothing to read: policy-notes.ts brings node:fs.
  if (Bun.file(path).size <= offset) return [];
  const { PolicyLogReader } = await import("./policy-notes.ts");
  return new PolicyLogReader(path, offset).notes(domain, verbose);
}

/** `argv` entered into an isolated domain's namespaces (dom0 stays on the host), else as it is. */
function isolatedCommand(
  layout: LabLayout,
  status: RunnableLab,
  record: RunnableDomain,
  argv: string[],
  env: Record<string, string>,
): string[] {
  if (record.isolation !== "namespaces") return argv;
  // As unisolated: the domain's PATH names the same system and project directories it sees.
  if (
    argv[0] !== undefined &&
    !argv[0].includes("/") &&
    Bun.which(argv[0], { PATH: env.PATH ?? "" }) === null
  ) {
    throw new LabError(`cannot run ${argv[0]}: command not found`, 127);
  }
  // Loaded only when running.json did not name them: isolation.ts brings node:fs.
  const processesOf = (agentPid: number) =>
    (require("./isolation.ts") as typeof import("./isolation.ts")).domainProcesses(agentPid);
  const target = record.enter ?? (record.agentPid === null ? null : processesOf(record.agentPid));
  if (target === null)
    throw new LabError(
      `cannot find ${record.name}'s namespaces (its agent is restarting?): try again`,
    );
  env.TMPDIR = "/tmp";
  env.BUN_RUNTIME_TRANSPILER_CACHE_PATH = layout.bunCacheDir;
  // A trace file is on the host, out of the domain's reach: its client would only leave the
  // call to a Bun CLI that cannot write it. The domain's agent traces when the lab does.
  delete env.QRX_TRACE;
  return enterArgv(target, record.id, argv);
}

/** How to start `argv` as a process of `domain` in a running lab: the command line (entering its
 * namespaces when it is isolated) and its environment. */
export function domainCommand(
  layout: LabLayout,
  status: RunnableLab,
  domain: string,
  argv: string[],
): { argv: string[]; env: Record<string, string> } {
  const record = status.domains.find((candidate) => candidate.name === domain);
  if (!record)
    throw new LabError(`no domain '${domain}' in the lab (domains: ${domainNames(status)})`);
  const env = domainEnv(layout, record, status.transport === "socket" ? "socket" : "shm");
  return { argv: isolatedCommand(layout, status, record, argv, env), env };
}

/**
 * Runs `argv` as if inside `domain` of the lab: its environment, its home as HOME, bin/ on PATH.
 * Resolves with the command's exit status (128+signal when a signal ended it).
 */
export async function runInDomain(
  layout: LabLayout,
  domain: string,
  argv: string[],
  verbose = false,
): Promise<number> {
  // No pid check before the call (control.ts's adminCall reads the pid file): only a live admin
  // service listens on the socket.
  const status =
    (await knownRunning(layout, domain)) ??
    (JSON.parse(await callAdmin(layout, "qrx.lab.Status")) as RunnableLab);
  const record = status.domains.find((candidate) => candidate.name === domain);
  if (!record)
    throw new LabError(`no domain '${domain}' in the lab (domains: ${domainNames(status)})`);
  if (record.state !== "Running")
    throw new LabError(`${domain} is not running (${record.state}): run qrx vm start ${domain}`);
  if (argv.length === 0)
    throw new LabError("no command given: qrx run DOMAIN -- COMMAND [ARGS...]", 2);
  const command = domainCommand(layout, status, domain, argv);
  // Where the policy log and the questions stand before the command can make a call (a call is
  // refused or asked about in milliseconds, before the lines after the spawn run).
  const policyLogPath = layout.log("policy");
  const policyLogOffset = Bun.file(policyLogPath).size;
  const since = Date.now();
  let child;
  try {
    child = Bun.spawn(command.argv, { env: command.env, stdio: ["inherit", "inherit", "inherit"] });
  } catch (error) {
    const code = (error as { code?: string }).code;
    throw new LabError(
      `cannot run ${argv[0]}: ${code === "ENOENT" ? "command not found" : describe(error)}`,
      code === "ENOENT" ? 127 : 126,
    );
  }
  // The terminal's ^C reaches the command; its status is what we report.
  const ignore = () => {};
  process.on("SIGINT", ignore);
  process.on("SIGTERM", () => child.kill("SIGTERM"));
  const asks = watchAsks(layout, domain, since);
  const code = await child.exited;
  asks.stop();
  for (const note of await policyLogNotes(policyLogPath, policyLogOffset, domain, verbose)) {
    process.stderr.write(`${note}\n`);
  }
  process.off("SIGINT", ignore);
  if (child.signalCode !== null) {
    const number =
      (require("node:os") as typeof import("node:os")).constants.signals[
        child.signalCode as NodeJS.Signals
      ] ?? 0;
    return 128 + number;
  }
  return code;
}
