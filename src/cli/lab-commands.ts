// `qrx lab up|down|status|logs`, `qrx vm list|start|kill|create-disposable`, `qrx run`: the
// commander wiring; the work is in src/lab/control.ts. Modules load inside the actions so
// `qrx --help` stays fast.
import type { Command } from "commander";
import { resolve } from "../posix-path.ts";

const ISOLATION_HELP =
  "namespaces (each VM domain in its own Linux namespaces) or none; " +
  'default: the lab file\'s "isolation", else namespaces';

interface LabUpOptions {
  config?: string;
  dir?: string;
  ask?: string;
  allowBrokenPolicy?: boolean;
  trace?: string;
  isolation?: string;
}

const DIR_HELP =
  "lab state directory (default $QRX_DIR, else $XDG_RUNTIME_DIR/qrx, else ~/.local/state/qrx)";

/**
 * `--trace FILE`: FILE, made absolute, becomes QRX_TRACE for the programs qrx starts, once it is
 * known to be writable here (each program opens it for itself, and one that cannot traces
 * nothing, silently). Throws a LabError saying why it is not.
 */
export async function traceInto(file: string): Promise<void> {
  const { unwritable } = await import("./output-files.ts");
  const path = resolve(file);
  const why = unwritable(path);
  if (why !== null) {
    const { LabError } = await import("../lab/lab-dir.ts");
    throw new LabError(`cannot write the trace file ${path}: ${why}`, 1);
  }
  process.env.QRX_TRACE = path;
}

/** Runs an action; a LabError prints `qrx: message` and exits with its code. */
export async function guarded(action: () => Promise<number | void>): Promise<void> {
  const { LabError } = await import("../lab/lab-dir.ts");
  try {
    process.exitCode = (await action()) ?? 0;
  } catch (error) {
    if (!(error instanceof LabError)) throw error;
    process.stderr.write(`qrx: ${error.message}\n`);
    process.exitCode = error.exitCode;
  }
}

const ASK_HELP = `
Ask rules (--ask, or ask = "..." in the definition):
  tty          the question goes to the terminal of the qrx run that made the call (Enter
               takes the default); without a terminal, or from another one: qrx lab asks, then
               qrx lab answer ID TARGET|deny (unanswered after 5 minutes: denied)
  program:CMD  sh -c CMD answers (question as JSON on stdin; prints the target, or deny)
  deny         every ask is denied, as upstream without a GUI VM

Examples:
  qrx lab up
  qrx lab up --config lab.toml --dir /tmp/lab
  qrx lab up --ask 'program:jq -r .default_target'
  qrx lab up --isolation none
`;

export function addLabCommands(program: Command): void {
  const lab = program
    .command("lab")
    .description("a whole qrexec system on this machine: dom0, VMs and DisposableVMs as processes")
    .addHelpText(
      "after",
      `
Examples:
  qrx lab up                      # the default lab: dom0, work, vault, personal, default-dvm
  qrx lab up --config my-lab.toml --dir /tmp/lab2
  qrx lab status
  qrx run work -- qrexec-client-vm vault test.Add <<< '11 22'
  qrx lab logs vault -f
  qrx lab down
`,
    );

  addLabUp(lab);
  addLabAsks(lab);
  addLabDown(lab);
  addLabStatus(lab);
  addLabLogs(lab);
  // Required here, not imported: lab-top loads commander, which qrx run's fast path never does.
  const { addLabTopCommand } = require("./lab-top.ts") as typeof import("./lab-top.ts");
  addLabTopCommand(lab);
  addVmCommands(program);
  addRunCommand(program);
}

function addLabUp(lab: Command): void {
  lab
    .command("up")
    .description(
      "bring a lab up: its admin service, policy daemon, and an agent and daemon per domain",
    )
    .option(
      "--config <file>",
      "lab definition (TOML; default: the built-in lab, src/lab/default-lab.toml)",
    )
    .option("--dir <dir>", DIR_HELP)
    .option(
      "--ask <mode>",
      "who answers the policy's ask rules: tty (default), program:CMD or deny",
    )
    .option(
      "--allow-broken-policy",
      "come up even if the policy has errors (it then denies every call)",
    )
    .option("--trace <file>", "its programs write a timing trace of every call to FILE (qrx trace)")
    .option("--isolation <mode>", ISOLATION_HELP)
    .addHelpText("after", ASK_HELP)
    .action((options: LabUpOptions) =>
      guarded(async () => {
        const { labLayout, labUp, formatStatus, LabError } = await import("../lab/control.ts");
        const { ISOLATION_MODES } = await import("../lab/isolation.ts");
        const isolation = options.isolation as (typeof ISOLATION_MODES)[number] | undefined;
        if (isolation !== undefined && !ISOLATION_MODES.includes(isolation)) {
          throw new LabError(
            `--isolation must be namespaces or none, not '${options.isolation}'`,
            2,
          );
        }
        if (options.trace) await traceInto(options.trace);
        const layout = labLayout(options.dir);
        const onProgress = (message: string) => process.stderr.write(`qrx: ${message}\n`);
        const { config, ask, allowBrokenPolicy } = options;
        const settings = { config, ask, allowBrokenPolicy, isolation, onProgress };
        const status = await labUp(layout, settings);
        process.stdout.write(`${formatStatus(status)}\n`);
      }),
    );
}

/** `qrx lab asks` and `qrx lab answer`: the policy's questions, from any terminal. */
function addLabAsks(lab: Command): void {
  lab
    .command("asks")
    .description("the policy's questions (ask rules) waiting for an answer")
    .option("--dir <dir>", DIR_HELP)
    .option("--json", "print them as JSON")
    .addHelpText("after", "\nExamples:\n  qrx lab asks\n  qrx lab answer 1 vault\n")
    .action((options: { dir?: string; json?: boolean }) =>
      guarded(async () => {
        const { labLayout } = await import("../lab/control.ts");
        const { listAsks, formatAsks } = await import("../lab/asks.ts");
        const layout = labLayout(options.dir);
        const asks = listAsks(layout);
        process.stdout.write(
          options.json ? `${JSON.stringify(asks, null, 2)}\n` : `${formatAsks(asks, layout)}\n`,
        );
      }),
    );

  lab
    .command("answer")
    .description(
      "answer a policy question: allow the call to a target among its choices, or deny it",
    )
    .argument("<id>", "the question (qrx lab asks lists them)")
    .argument("<target>", "a target among the choices, its number, or deny")
    .option("--dir <dir>", DIR_HELP)
    .addHelpText("after", "\nExamples:\n  qrx lab answer 1 vault\n  qrx lab answer 2 deny\n")
    .action((id: string, target: string, options: { dir?: string }) =>
      guarded(async () => {
        const { labLayout } = await import("../lab/control.ts");
        const { answerAsk } = await import("../lab/asks.ts");
        process.stdout.write(`${answerAsk(labLayout(options.dir), id, target)}\n`);
      }),
    );
}

function addLabDown(lab: Command): void {
  lab
    .command("down")
    .description(
      "stop every process of the lab and remove its " +
        "sockets and DisposableVMs (homes and logs stay)",
    )
    .option("--dir <dir>", DIR_HELP)
    .addHelpText("after", "\nExamples:\n  qrx lab down\n  qrx lab down --dir /tmp/lab\n")
    .action((options: { dir?: string }) =>
      guarded(async () => {
        const { labLayout, labDown } = await import("../lab/control.ts");
        const layout = labLayout(options.dir);
        await labDown(layout);
        process.stdout.write(`lab in ${layout.dir} is down\n`);
      }),
    );
}

function addLabStatus(lab: Command): void {
  lab
    .command("status")
    .description("domains, their pids, uptime, calls served and restarts")
    .option("--dir <dir>", DIR_HELP)
    .option("--json", "print the status as JSON")
    .addHelpText(
      "after",
      "\nExamples:\n  qrx lab status\n  qrx lab status --json | jq '.domains[].name'\n",
    )
    .action((options: { dir?: string; json?: boolean }) =>
      guarded(async () => {
        const { labLayout, labStatus, formatStatus } = await import("../lab/control.ts");
        const status = await labStatus(labLayout(options.dir));
        process.stdout.write(
          options.json ? `${JSON.stringify(status, null, 2)}\n` : `${formatStatus(status)}\n`,
        );
      }),
    );
}

function addLabLogs(lab: Command): void {
  lab
    .command("logs")
    .description(
      "print the logs of a domain (its agent and daemon; " +
        "dom0: admin service and policy daemon), or all",
    )
    .argument("[domain]", "domain whose logs to print")
    .option("--dir <dir>", DIR_HELP)
    .option("-f, --follow", "keep printing what is appended")
    .addHelpText(
      "after",
      "\nExamples:\n  qrx lab logs\n  qrx lab logs work -f\n  qrx lab logs dom0\n",
    )
    .action((domain: string | undefined, options: { dir?: string; follow?: boolean }) =>
      guarded(async () => {
        const { labLayout, logFiles, printLogs } = await import("../lab/control.ts");
        await printLogs(logFiles(labLayout(options.dir), domain), options.follow ?? false);
      }),
    );
}

function addVmCommands(program: Command): void {
  const vm = program
    .command("vm")
    .description("the lab's domains: list, start, kill, and create DisposableVMs")
    .addHelpText(
      "after",
      "\nExamples:\n  qrx vm list\n  qrx vm start personal\n" +
        "  qrx vm create-disposable default-dvm\n  qrx vm kill disp1234\n",
    );

  addVmList(vm);
  addVmStart(vm);
  addVmKill(vm);
  addVmCreateDisposable(vm);
}

function addVmList(vm: Command): void {
  vm.command("list")
    .description("every domain with its id, type and state")
    .option("--dir <dir>", DIR_HELP)
    .addHelpText("after", "\nExamples:\n  qrx vm list\n  qrx vm list --dir /tmp/lab\n")
    .action((options: { dir?: string }) =>
      guarded(async () => {
        const { labLayout, labStatus, formatTable } = await import("../lab/control.ts");
        const status = await labStatus(labLayout(options.dir));
        const rows = status.domains.map((domain) => [
          domain.name,
          String(domain.id),
          domain.klass,
          domain.state,
          domain.template ?? "-",
        ]);
        process.stdout.write(
          `${formatTable(["NAME", "ID", "CLASS", "STATE", "TEMPLATE"], rows)}\n`,
        );
      }),
    );
}

function addVmStart(vm: Command): void {
  vm.command("start")
    .description("start a halted domain (its agent and daemon)")
    .argument("<name>", "domain to start")
    .option("--dir <dir>", DIR_HELP)
    .addHelpText(
      "after",
      "\nExamples:\n  qrx vm start personal\n  qrx vm start personal --dir /tmp/lab\n",
    )
    .action((name: string, options: { dir?: string }) =>
      guarded(async () => {
        const { labLayout, labStatus, adminCall } = await import("../lab/control.ts");
        const layout = labLayout(options.dir);
        const before = (await labStatus(layout)).domains.find((domain) => domain.name === name);
        if (before?.state === "Running") {
          process.stdout.write(`${name} is already running\n`);
          return;
        }
        await adminCall(layout, "admin.vm.Start", name);
        process.stdout.write(`started ${name}\n`);
      }),
    );
}

function addVmKill(vm: Command): void {
  vm.command("kill")
    .description("stop a domain at once; a DisposableVM is destroyed")
    .argument("<name>", "domain to kill")
    .option("--dir <dir>", DIR_HELP)
    .addHelpText("after", "\nExamples:\n  qrx vm kill work\n  qrx vm kill disp1234\n")
    .action((name: string, options: { dir?: string }) =>
      guarded(async () => {
        const { labLayout, adminCall } = await import("../lab/control.ts");
        await adminCall(labLayout(options.dir), "admin.vm.Kill", name);
        process.stdout.write(`killed ${name}\n`);
      }),
    );
}

function addVmCreateDisposable(vm: Command): void {
  vm.command("create-disposable")
    .description(
      "create a DisposableVM from a template (default: the " +
        "lab's default_dispvm) and start it; prints its name",
    )
    .argument("[template]", "DisposableVM template")
    .option("--dir <dir>", DIR_HELP)
    .option("--no-start", "only create it (halted)")
    .addHelpText(
      "after",
      "\nExamples:\n  qrx vm create-disposable\n  name=$(qrx vm create-disposable " +
        "default-dvm) && qrx run $name -- sh -c 'echo $QRX_DOMAIN_NAME'\n",
    )
    .action((template: string | undefined, options: { dir?: string; start: boolean }) =>
      guarded(async () => {
        const { labLayout, adminCall } = await import("../lab/control.ts");
        const layout = labLayout(options.dir);
        const name = await adminCall(layout, "admin.vm.CreateDisposable", template ?? "@dispvm");
        if (options.start) await adminCall(layout, "admin.vm.Start", name);
        process.stdout.write(`${name}\n`);
      }),
    );
}

function addRunCommand(program: Command): void {
  program
    .command("run")
    .description(
      "run a command as if inside a domain of the lab " +
        "(its qrexec-client-vm talks to that domain's agent)",
    )
    .usage("[--dir DIR] [-v] [--trace FILE] DOMAIN -- COMMAND [ARGS...]")
    .argument("<domain>", "domain to run in (dom0 too)")
    .argument("<command...>", "the command and its arguments (after --)")
    .option("--dir <dir>", DIR_HELP)
    .option(
      "-v, --verbose",
      "after the command, say why the policy refused " +
        "a call it made (the rule, and how to explain it)",
    )
    .option("--trace <file>", "the command's own qrx programs write a timing trace to FILE")
    .passThroughOptions()
    .addHelpText(
      "after",
      `
The command gets the domain's environment: VCHAN_DOMAIN, its agent socket, HOME in its state
directory, and qrx's bin/ first on PATH. Its exit status is passed through. A policy question
(ask) about one of its calls is asked on this terminal. Options go before the command's --
(before or after DOMAIN).

Examples:
  qrx run work -- qrexec-client-vm vault test.Add <<< '11 22'
  qrx run work -- qrexec-client-vm '$dispvm' test.Whoami
  qrx run -v vault -- qrexec-client-vm work test.Add         # refused: which rule, and why
  qrx run dom0 -- qrexec-client -d vault user:'echo hello from vault'
  qrx run dom0 -- qvm-run -p work 'echo hello from work'
`,
    )
    .action((domain: string, command: string[], options: RunOptions) =>
      runInLab(domain, command, options),
    );
}

/** `qrx run`'s options given before DOMAIN (more may follow it, before `--`). */
export interface RunOptions {
  dir?: string;
  verbose?: boolean;
  trace?: string;
}

/** `qrx run`'s work, for commander and for the fast path that skips it (src/cli/qrx.ts). */
export function runInLab(domain: string, command: string[], options: RunOptions): Promise<void> {
  return guarded(async () => {
    const { labLayout, LabError } = await import("../lab/lab-dir.ts");
    const { runInDomain } = await import("../lab/run.ts");
    const { splitRunArguments } = await import("../lab/run-arguments.ts");
    const split = splitRunArguments(command);
    if (typeof split === "string") throw new LabError(split, 2);
    const trace = split.trace ?? options.trace;
    if (trace) await traceInto(trace);
    const dir = split.dir ?? options.dir;
    const verbose = split.verbose || options.verbose === true;
    return runInDomain(labLayout(dir), domain, split.argv, verbose);
  });
}
