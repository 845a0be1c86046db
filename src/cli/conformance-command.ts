// `qrx conformance`: runs the conformance kit's catalogue against a program under test, playing the
// other side with raw frames over the socket vchan transport (docs/conformance.md).
import { Command, InvalidArgumentError, Option } from "commander";

const EXAMPLES = `
Examples:
  qrx conformance --role agent --cmd "qrexec-agent"
  qrx conformance --role daemon --cmd "qrexec-daemon" --json
  qrx conformance --role client-vm --cmd "qrexec-client-vm" --case refused-126 exit-code-remote
  qrx conformance --role agent --cmd "qrexec-agent --peer-profile=mirage" --profile mirage
  qrx conformance --role agent --list

Placeholders in --cmd ({AGENT_SOCKET}, {SOCKET_DIR}, {POLICY_PROGRAM}, {DOMID}, {NAME}, {UUID},
{VCHAN_SOCKET_DIR}, {DIR}) are replaced per case; see docs/conformance.md. Exit status: 0 when no
case failed (deviations and skips do not fail), 1 otherwise, 2 on a usage error.
`;

export function addConformanceCommand(program: Command): Command {
  return (
    program
      .command("conformance")
      .description(
        "run the qrexec conformance catalogue against an agent, a daemon or a qrexec-client-vm",
      )
      .addOption(
        new Option("--role <role>", "which program is under test").choices([
          "agent",
          "daemon",
          "client-vm",
        ]),
      )
      .option("--cmd <command>", "the program under test with its arguments (run by /bin/sh)")
      .addOption(
        new Option("--transport <transport>", "vchan transport toward the program")
          .choices(["socket"])
          .default("socket"),
      )
      .option("--json", "print JSON rows {case, role, result, expected, seen, ms, spec, note?}")
      .option("--case <names...>", "run only these cases")
      .addOption(
        new Option("--profile <name>", "documented deviations to report as such")
          .choices(["strict", "mirage"])
          .default("strict"),
      )
      .option(
        "--timeout-scale <factor>",
        "multiply every case's timeout (a slow machine)",
        (text: string) => {
          const value = Number(text);
          if (!Number.isFinite(value) || value <= 0)
            throw new InvalidArgumentError(`"${text}" is not a positive number`);
          return value;
        },
        1,
      )
      .option("--list", "list the role's cases (or every role's) and exit")
      .option("-v, --verbose", "add the program's log tail to every failure")
      .addHelpText("after", EXAMPLES)
      // commander exits 1 on a bad option; the help promises 2 for a usage error.
      .exitOverride((error) => process.exit(error.exitCode === 0 ? 0 : 2))
      .action(runConformanceCommand)
  );
}

interface ConformanceOptions {
  role?: "agent" | "daemon" | "client-vm";
  cmd?: string;
  transport: string;
  json?: boolean;
  case?: string[];
  profile: string;
  timeoutScale: number;
  list?: boolean;
  verbose?: boolean;
}

async function runConformanceCommand(options: ConformanceOptions): Promise<void> {
  const { PROFILES, runConformance } = await import("../conformance/catalogue.ts");
  const { formatRow, formatSummary } = await import("../conformance/runner.ts");
  if (options.list) return listCases(options);
  const role = options.role ?? usage("--role is required (agent, daemon or client-vm)");
  const command = options.cmd?.trim()
    ? options.cmd
    : usage('--cmd is required: the program under test, e.g. --cmd "qrexec-agent"');
  const rows = await runConformance({
    role,
    command,
    cases: options.case,
    profile: PROFILES[options.profile],
    timeoutScale: options.timeoutScale,
    verboseFailures: options.verbose,
    onRow: options.json ? undefined : (row) => console.log(formatRow(row)),
  }).catch((error: Error) => usage(error.message));
  if (options.json) console.log(JSON.stringify(rows, null, 2));
  else console.log(`\n${formatSummary(rows)}`);
  process.exit(rows.some((row) => row.result === "fail") ? 1 : 0);
}

/** --list: the role's cases, or every role's. */
async function listCases(options: ConformanceOptions): Promise<void> {
  const { CATALOGUE } = await import("../conformance/catalogue.ts");
  const roles = options.role
    ? [options.role]
    : (Object.keys(CATALOGUE) as Array<keyof typeof CATALOGUE>);
  const rows = roles.flatMap((role) =>
    CATALOGUE[role].map((c) => ({
      role,
      case: c.name,
      spec: c.spec,
      checks: c.checks,
      expected: c.expected,
    })),
  );
  if (options.json) console.log(JSON.stringify(rows, null, 2));
  else
    for (const row of rows)
      console.log(
        `${row.role.padEnd(9)} ${row.case.padEnd(30)} ${row.spec}\n          ${row.checks}`,
      );
}

function usage(message: string): never {
  process.stderr.write(`qrx conformance: ${message}\n`);
  process.exit(2);
}
