// `qrx policy lint|eval|explain|graph`: the commander wiring; the work is in src/policy/tools.ts.
// Modules are imported inside the actions so `qrx --help` stays fast.
import type { Command } from "commander";
import type { PolicySnapshot } from "../policy/store.ts";
import {
  addPolicySourceOptions,
  askProgramFrom,
  DOMAINS_FILE_HELP,
  policySourceFrom,
  type PolicyOptionValues,
} from "./policy-options.ts";
import { printRows } from "../bench/table.ts";

const EXIT_DENY = 126;

/**
 * The policy with the facts it would be evaluated with now (asked live with --system-info-socket).
 */
async function snapshotFor(options: PolicyOptionValues) {
  const { loadSnapshot, factsFor } = await import("../policy/store.ts");
  const source = policySourceFrom(options);
  const snapshot = loadSnapshot(source);
  return { ...snapshot, facts: await factsFor(source, snapshot) };
}

function queryOf(source: string, target: string, service: string) {
  return { source, requestedSource: null, intendedTarget: target, serviceAndArg: service };
}

/** `qrx policy ...`, and `qrx bench policy` under `bench` when given. */
export function addPolicyCommands(program: Command, bench?: Command): void {
  if (bench) addPolicyBenchCommand(bench);
  const policy = program
    .command("policy")
    .description("check, evaluate and explain qrexec policy (policy.d and legacy formats)")
    .addHelpText("after", `${DOMAINS_FILE_HELP}\n`);
  addLintCommand(policy);
  addEvalCommand(policy);
  addExplainCommand(policy);
  addGraphCommand(policy);
}

function addPolicyBenchCommand(bench: Command): void {
  bench
    .command("policy")
    .description(
      "policy decisions on a generated 10,000-rule policy over 500 domains: " +
        "in process, through the policy daemon's socket, and reload time",
    )
    .option("--json", "print JSON rows {name, rules, medianUs, p99Us, samples, decisionsPerSecond}")
    .option("--rules <n>", "rules in the generated policy", (text) => Number(text), 10_000)
    .option("--domains <n>", "domains", (text) => Number(text), 500)
    .option(
      "--decisions <n>",
      "decisions timed in process (the socket row times a tenth, at least 1000)",
      (text) => Number(text),
      50_000,
    )
    .addHelpText(
      "after",
      "\nTargets: in-process median <= 20 us, socket median <= 200 us, reload <= 100 ms.\n\n" +
        "Examples:\n  qrx bench policy\n  qrx bench policy --json\n",
    )
    .action(
      async (options: { json?: boolean; rules: number; domains: number; decisions: number }) => {
        const { runPolicyBench, printPolicyBench, DEFAULT_POLICY_BENCH } =
          await import("../bench/policy.ts");
        const rows = await runPolicyBench({
          ...DEFAULT_POLICY_BENCH,
          rules: options.rules,
          domains: options.domains,
          decisions: options.decisions,
          progress: !options.json,
        });
        printRows(rows, options.json, printPolicyBench);
      },
    );
}

function addLintCommand(policy: Command): void {
  addPolicySourceOptions(
    policy
      .command("lint")
      .description("read the policy and print every error as file:line: message (exit 1 if any)")
      .argument("[dir]", "policy directory (default: --policy-dir)"),
  )
    .addHelpText(
      "after",
      "\nExamples:\n  qrx policy lint /etc/qubes/policy.d\n" +
        "  qrx policy lint --policy-dir " +
        "/run/qubes/policy.d:/etc/qubes/policy.d --domains domains.toml\n",
    )
    .action(async (dir: string | undefined, options: PolicyOptionValues) => {
      const { lintReport } = await import("../policy/tools.ts");
      const report = lintReport(
        await snapshotFor(dir === undefined ? options : { ...options, policyDir: [dir] }),
      );
      for (const line of report.lines) process.stdout.write(`${line}\n`);
      process.exitCode = report.ok ? 0 : 1;
    });
}

interface EvalOptions extends PolicyOptionValues {
  askProgram?: string;
  tty: boolean;
  assumeYesForAsk?: boolean;
  justEvaluate?: boolean;
}

function addEvalCommand(policy: Command): void {
  addPolicySourceOptions(
    policy
      .command("eval")
      .description(
        "the answer qrexec-daemon would get for a call: " +
          "key=value lines on stdout, the deciding rule on stderr",
      )
      .argument("<source>", "calling domain")
      .argument("<target>", "intended target ('' or @default: let the policy choose)")
      .argument("<service>", "SERVICE or SERVICE+ARG"),
  )
    .option("--ask-program <cmd>", "answers ask rules (see qrexec-policy-daemon --help)")
    .option("--no-tty", "never prompt on the terminal for ask rules")
    .option("--assume-yes-for-ask", "answer ask rules with the intended target, if it is a choice")
    .option("--just-evaluate", "print only result=allow or result=deny; never ask")
    .addHelpText(
      "after",
      "\nExit status: 0 allow, 126 deny.\n\nExamples:\n" +
        "  qrx policy eval work vault qubes.Filecopy\n" +
        "  qrx policy eval --domains domains.toml " +
        "--just-evaluate work @default qubes.OpenURL+https\n",
    )
    .action(evaluateCall);
}

/** `qrx policy eval`: the answer on stdout, the deciding rule on stderr, 126 when denied. */
async function evaluateCall(
  source: string,
  target: string,
  service: string,
  options: EvalOptions,
): Promise<void> {
  const [{ answerQuery }, { chooseAsker }, { decidedBy }, { describeLoad }] = await Promise.all([
    import("../policy/answer.ts"),
    import("../policy/ask.ts"),
    import("../policy/decision.ts"),
    import("../policy/store.ts"),
  ]);
  const snapshot = await snapshotFor(options);
  const log = (line: string) => process.stderr.write(`${line}\n`);
  if (snapshot.errors.length > 0) for (const line of describeLoad(snapshot)) log(line);
  const answered = await answerQuery(
    queryOf(source, target, service),
    { assumeYesForAsk: options.assumeYesForAsk, justEvaluate: options.justEvaluate },
    {
      policy: snapshot.policy,
      facts: snapshot.facts,
      asker: chooseAsker({
        askProgram: askProgramFrom(options.askProgram),
        terminal: options.tty,
      }),
      log,
    },
  );
  process.stdout.write(`${answered.text}\n`);
  log(`decided by ${decidedBy(answered.decision)}`);
  process.exitCode = answered.decision.kind === "allow" ? 0 : EXIT_DENY;
}

function addExplainCommand(policy: Command): void {
  addPolicySourceOptions(
    policy
      .command("explain")
      .description(
        "every rule considered for a call, matched or not and why, and which file:line decided",
      )
      .argument("<source>", "calling domain")
      .argument("<target>", "intended target")
      .argument("<service>", "SERVICE or SERVICE+ARG"),
  )
    .addHelpText(
      "after",
      "\nLines: '=>' the rule that decided, '  ' a rule that did not match," +
        " ' .' a rule after the winner.\n" +
        "Exit status: 0, or 1 when the policy has errors (every call is then denied).\n" +
        "\nExample:\n" +
        "  qrx policy explain --domains domains.toml work vault qubes.Filecopy\n",
    )
    .action(
      async (source: string, target: string, service: string, options: PolicyOptionValues) => {
        const { explainText } = await import("../policy/tools.ts");
        const snapshot = await snapshotFor(options);
        process.stdout.write(`${explainText(snapshot, queryOf(source, target, service))}\n`);
        process.exitCode = snapshot.errors.length > 0 ? 1 : 0;
      },
    );
}

/** `qrx policy graph`, with upstream qrexec-policy-graph's options. */
function addGraphCommand(policy: Command): void {
  addPolicySourceOptions(
    policy
      .command("graph")
      .description("who may call what: edges source -> target per service over the known domains")
      .option("--dot", "print Graphviz DOT (ask edges dashed) instead of text")
      .option("--include-ask", "include what ask rules could allow (left out by default)")
      .option("--source <domain...>", "only calls from these domains")
      .option("--target <domain...>", "only calls to these domains")
      .option("--service <service...>", "only these services (SERVICE or SERVICE+ARG)")
      .option("--output <file>", "write to FILE instead of stdout; DOT when it ends in .dot")
      .option("--skip-labels", "no service names; each source -> target once")
      .option("--system-info <file>", "domain facts from this JSON file (upstream's --domains)"),
  )
    .addHelpText(
      "after",
      "\nExit status: 0, or 1 when the policy has errors (the graph then shows what the engine\n" +
        "would allow: nothing).\n\nExamples:\n  qrx policy graph --domains domains.toml\n" +
        "  qrx policy graph --domains domains.toml --include-ask --output policy.dot\n",
    )
    .action(async (options: GraphOptionValues) => {
      const { policyGraph, graphText, graphDot } = await import("../policy/tools.ts");
      const domains = options.domains ?? options.systemInfo;
      const snapshot = await snapshotFor({ ...options, domains });
      await reportLoadErrors(snapshot);
      const edges = policyGraph(snapshot, {
        includeAsk: options.includeAsk,
        sources: options.source,
        targets: options.target,
        services: options.service,
      });
      const dot = options.dot || (options.output?.endsWith(".dot") ?? false);
      const skip = options.skipLabels;
      const text = `${dot ? graphDot(edges, skip) : graphText(edges, skip)}\n`;
      if (options.output === undefined) process.stdout.write(text);
      else await Bun.write(options.output, text);
      process.exitCode = snapshot.errors.length > 0 ? 1 : 0;
    });
}

interface GraphOptionValues extends PolicyOptionValues {
  dot?: boolean;
  includeAsk?: boolean;
  source?: string[];
  target?: string[];
  service?: string[];
  output?: string;
  skipLabels?: boolean;
  systemInfo?: string;
}

/** The load errors on stderr: the tools still show what the (all-denying) policy does. */
async function reportLoadErrors(snapshot: PolicySnapshot): Promise<void> {
  if (snapshot.errors.length === 0) return;
  const { describeLoad } = await import("../policy/store.ts");
  for (const line of describeLoad(snapshot)) process.stderr.write(`${line}\n`);
}
