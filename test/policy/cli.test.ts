// The policy programs as a user runs them: qrx policy lint|eval|explain|graph and
// qrexec-policy-exec.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { tempDir } from "../helpers/paths.ts";
import { BIN } from "../helpers/system.ts";

const dir = tempDir("qrx-pcli-");
const good = join(dir.path, "good");
const bad = join(dir.path, "bad");
const domains = join(dir.path, "domains.toml");
const adminDeny = join(dir.path, "admin-deny");
const compat = join(dir.path, "compat");
const r2Legacy = join(dir.path, "r2-legacy");

async function run(argv: string[], env: Record<string, string> = {}) {
  const child = Bun.spawn(argv, {
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
    env: { ...process.env, QRX_DOMAINS: "", QRX_POLICY_DIR: "", QRX_ASK_PROGRAM: "", ...env },
  });
  const [stdout, stderr, code] = await Promise.all([
    new Response(child.stdout).text(),
    new Response(child.stderr).text(),
    child.exited,
  ]);
  return { stdout, stderr, code };
}
const qrx = (...args: string[]) => run([join(BIN, "qrx"), "policy", ...args]);
const source = [
  "--policy-dir",
  good,
  "--domains",
  domains,
  "--legacy-dir",
  join(dir.path, "legacy"),
];

beforeAll(() => {
  mkdirSync(good);
  mkdirSync(bad);
  writeFileSync(
    domains,
    '[domains.work]\npower_state = "Running"\n[domains.vault]\npower_state = "Running"\n' +
      "[domains.personal]\n",
  );
  writeFileSync(
    join(good, "50-test.policy"),
    "test.Echo * work vault allow\ntest.Redir * work @anyvm allow target=vault\n" +
      "test.Ask * work @anyvm ask default_target=vault\n* * @anyvm @anyvm deny\n",
  );
  writeFileSync(join(bad, "10-a.policy"), "# fine\ntest.A * work vault allow\ntest.B * work\n");
  writeFileSync(join(bad, "20-b.policy"), "test.C * @nope vault allow\n!include missing.policy\n");
  mkdirSync(adminDeny);
  writeFileSync(
    join(adminDeny, "50-test.policy"),
    "test.Echo * @anyvm @type:AdminVM deny\ntest.Echo * @anyvm * allow\n",
  );
  mkdirSync(compat);
  mkdirSync(r2Legacy);
  writeFileSync(join(compat, "35-compat.policy"), "!compat-4.0\n");
  writeFileSync(
    join(r2Legacy, "test.Old"),
    "work $anyvm allow\nanyvm dispvm allow\nwork vault ask,default_target=dispvm\n",
  );
});
afterAll(() => dir.remove());

describe("qrx policy lint", () => {
  test("a good policy: exit 0", async () => {
    const result = await qrx("lint", good);
    expect(result.code).toBe(0);
    expect(result.stdout).toBe("ok: 4 rules from 1 files, no errors\n");
  });

  test("every error as file:line, exit 1", async () => {
    const result = await qrx("lint", bad);
    expect(result.code).toBe(1);
    const lines = result.stdout.trimEnd().split("\n");
    expect(lines.length).toBe(3);
    expect(lines[0]).toStartWith(`${join(bad, "10-a.policy")}:3: wrong number of fields`);
    expect(lines[1]).toStartWith(`${join(bad, "20-b.policy")}:1: `);
    expect(lines[2]).toStartWith(`${join(bad, "20-b.policy")}:2: cannot read included file`);
  });
});

test("qrx policy lint warns on each legacy bare anyvm/dispvm, and still passes", async () => {
  const result = await qrx("lint", compat, "--legacy-dir", r2Legacy);
  const file = join(r2Legacy, "test.Old");
  expect(result.stdout).toBe(
    `${file}:2: warning: bare 'anyvm' (write '$anyvm') and ` +
      `'dispvm' (write '$dispvm') read as the keyword here; ` +
      "upstream's 4.x compat parser reads it as a qube name\n" +
      `${file}:3: warning: bare 'dispvm' (write '$dispvm') read as the keyword here; ` +
      "upstream's 4.x compat parser reads it as a qube name\n" +
      "ok: 3 rules from 1 files, no errors, 2 warnings\n",
  );
  expect(result.code).toBe(0);
});

describe("qrx policy eval", () => {
  test("a deny for @type:AdminVM stops dom0 however the caller spells it", async () => {
    for (const target of ["dom0", "@adminvm", "uuid:00000000-0000-0000-0000-000000000000"]) {
      const result = await qrx(
        "eval",
        "--policy-dir",
        adminDeny,
        "--domains",
        domains,
        "work",
        target,
        "test.Echo",
      );
      expect([target, result.stdout, result.code]).toEqual([target, "result=deny\n", 126]);
      expect(result.stderr).toContain(`decided by ${join(adminDeny, "50-test.policy")}:1`);
    }
    const other = await qrx(
      "eval",
      "--policy-dir",
      adminDeny,
      "--domains",
      domains,
      "work",
      "vault",
      "test.Echo",
    );
    expect(other.code).toBe(0);
  });

  test("allow: the key=value text on stdout, the rule on stderr, exit 0", async () => {
    const result = await qrx("eval", ...source, "work", "personal", "test.Redir");
    expect(result.stdout).toBe(
      "user=DEFAULT\nresult=allow\ntarget=vault\nautostart=True\nrequested_target=personal\n",
    );
    expect(result.stderr).toContain(`decided by ${join(good, "50-test.policy")}:2`);
    expect(result.code).toBe(0);
  });

  test("deny: exit 126", async () => {
    const result = await qrx("eval", ...source, "work", "vault", "test.Other");
    expect(result.stdout).toBe("result=deny\n");
    expect(result.stderr).toContain(`decided by ${join(good, "50-test.policy")}:4`);
    expect(result.code).toBe(126);
  });

  test("ask: the ask program answers; --just-evaluate does not ask", async () => {
    const asked = await qrx(
      "eval",
      ...source,
      "--ask-program",
      "echo personal",
      "work",
      "vault",
      "test.Ask",
    );
    expect(asked.stdout).toContain("target=personal\n");
    const evaluated = await qrx(
      "eval",
      ...source,
      "--no-tty",
      "--just-evaluate",
      "--assume-yes-for-ask",
      "work",
      "vault",
      "test.Ask",
    );
    expect(evaluated.stdout).toBe("result=allow\n");
  });
});

test("qrx policy explain: every rule, its verdict and why, and the winner", async () => {
  const result = await qrx("explain", ...source, "work", "personal", "test.Redir");
  const file = join(good, "50-test.policy");
  expect(result.code).toBe(0);
  expect(result.stdout).toContain(`   ${file}:1  test.Echo * work vault allow\n`);
  expect(result.stdout).toContain("no match: service test.Redir is not test.Echo");
  expect(result.stdout).toContain(`=> ${file}:2  test.Redir * work @anyvm allow target=vault\n`);
  expect(result.stdout).toContain(
    "matched: service, argument, source work and target personal match: allow",
  );
  expect(result.stdout).toContain(` . ${file}:4  * * @anyvm @anyvm deny\n`);
  expect(result.stdout).toContain(`not reached: ${file}:2 decided first`);
  expect(result.stdout).toContain(`decided by: ${file}:2\n`);
  expect(result.stdout).toContain("response:\n  user=DEFAULT\n  result=allow\n  target=vault\n");
});

test("qrx policy explain and graph exit 1 when the policy has errors", async () => {
  const explained = await qrx(
    "explain",
    "--policy-dir",
    bad,
    "--domains",
    domains,
    "work",
    "vault",
    "test.A",
  );
  expect(explained.stdout).toContain(
    `policy error: ${join(bad, "10-a.policy")}:3: wrong number of fields`,
  );
  expect(explained.code).toBe(1);
  const graphed = await qrx("graph", "--policy-dir", bad, "--domains", domains);
  expect(graphed.stderr).toContain(`${join(bad, "10-a.policy")}:3: wrong number of fields`);
  expect(graphed.code).toBe(1);
});

test("qrx policy lint rejects an empty target= or default_target=, as upstream", async () => {
  const emptyTargets = join(dir.path, "empty-targets");
  mkdirSync(emptyTargets);
  writeFileSync(
    join(emptyTargets, "50-e.policy"),
    "test.A * work @anyvm allow target=\ntest.B * work @anyvm ask default_target=\n",
  );
  const result = await qrx("lint", emptyTargets);
  expect(result.stdout).toBe(
    `${join(emptyTargets, "50-e.policy")}:1: target= ` +
      `is empty: it must name a domain or a keyword\n` +
      `${join(emptyTargets, "50-e.policy")}:2: default_target= ` +
      `is empty: it must name a domain or a keyword\n`,
  );
  expect(result.code).toBe(1);
});

test("qrx policy graph: upstream qrexec-policy-graph's options", async () => {
  // Without --include-ask, as upstream, ask edges are left out.
  const plain = await qrx("graph", ...source);
  expect(plain.stdout).not.toContain("work -> personal ask");
  const limited = await qrx(
    "graph",
    ...source,
    "--include-ask",
    "--source",
    "work",
    "--target",
    "vault",
    "personal",
    "--service",
    "test.Ask",
  );
  expect(limited.stdout).toBe(
    `test.Ask:\n  work -> personal ask  [${join(good, "50-test.policy")}:3]\n` +
      `  work -> vault ask  [${join(good, "50-test.policy")}:3]\n`,
  );
  const output = join(dir.path, "graph.dot");
  const written = await qrx(
    "graph",
    ...source,
    "--include-ask",
    "--skip-labels",
    "--service",
    "test.Ask",
    "test.Echo",
    "--output",
    output,
  );
  expect([written.code, written.stdout]).toEqual([0, ""]);
  const dot = await Bun.file(output).text();
  expect(dot).toStartWith("digraph policy {");
  expect(dot).not.toContain("label=");
  // test.Echo allows work -> vault and test.Ask offers it: one edge when labels are skipped.
  expect(dot.split("\n").filter((line) => line.includes('"work" -> "vault"'))).toEqual([
    '  "work" -> "vault";',
  ]);
  const systemInfo = join(dir.path, "system-info.json");
  writeFileSync(systemInfo, JSON.stringify({ domains: { work: {}, vault: {} } }));
  const fromSystemInfo = await qrx(
    "graph",
    "--policy-dir",
    good,
    "--system-info",
    systemInfo,
    "--service",
    "test.Echo",
  );
  expect(fromSystemInfo.stdout).toBe(
    `test.Echo:\n  work -> vault allow  [${join(good, "50-test.policy")}:1]\n`,
  );
});

test("qrx policy graph: text and DOT", async () => {
  const text = await qrx("graph", ...source, "--include-ask");
  expect(text.stdout).toContain("test.Echo:\n  work -> vault allow");
  expect(text.stdout).toContain("test.Redir:\n  work -> vault allow (redirected)");
  expect(text.stdout).toContain("  work -> personal ask");
  const dot = await qrx("graph", ...source, "--dot", "--include-ask");
  expect(dot.stdout).toStartWith("digraph policy {");
  expect(dot.stdout).toContain('"work" -> "vault" [label="test.Echo"];');
  expect(dot.stdout).toContain('"work" -> "personal" [label="test.Ask", style=dashed];');
});

describe("qrexec-policy-exec", () => {
  test("options or environment; exit 0 allow, 126 deny", async () => {
    const allowed = await run([
      join(BIN, "qrexec-policy-exec"),
      ...source,
      "--",
      "work",
      "vault",
      "test.Echo",
    ]);
    expect(allowed.code).toBe(0);
    expect(allowed.stdout).toBe(
      "user=DEFAULT\nresult=allow\ntarget=vault\nautostart=True\nrequested_target=vault\n",
    );
    expect(allowed.stderr).toContain(`allow to vault by ${join(good, "50-test.policy")}:1`);
    const denied = await run(
      [join(BIN, "qrexec-policy-exec"), "--", "work", "vault", "test.Nope"],
      { QRX_POLICY_DIR: good, QRX_DOMAINS: domains },
    );
    expect(denied.code).toBe(126);
    expect(denied.stdout).toBe("result=deny\n");
  });

  test("--path is upstream's name for the policy directory", async () => {
    const argv = [
      join(BIN, "qrexec-policy-exec"),
      "--path",
      good,
      "--domains",
      domains,
      "--",
      "work",
      "vault",
      "test.Echo",
    ];
    const allowed = await run(argv);
    expect([allowed.code, allowed.stdout]).toEqual([
      0,
      "user=DEFAULT\nresult=allow\ntarget=vault\nautostart=True\nrequested_target=vault\n",
    ]);
    const denied = await run([
      join(BIN, "qrexec-policy-exec"),
      "--path",
      bad,
      "--domains",
      domains,
      "--",
      "work",
      "vault",
      "test.A",
    ]);
    expect([denied.code, denied.stdout]).toEqual([126, "result=deny\n"]);
  });

  test("the daemon's command line: commander's answer, without loading commander", async () => {
    const env = { QRX_POLICY_DIR: good, QRX_DOMAINS: domains };
    const program = join(BIN, "qrexec-policy-exec");
    // A default option's value sends the same request through commander.
    const viaCommander = ["--legacy-dir", "/etc/qubes-rpc/policy"];
    const requests = [
      ["work", "vault", "test.Echo"],
      ["work", "", "test.Redir"],
      ["work", "vault", "test.Nope"],
      ["2", "work", "vault", "test.Nope", "SOCKET7"],
    ];
    for (const request of requests) {
      const fast = await run([program, "--", ...request], env);
      const parsed = await run([program, ...viaCommander, "--", ...request], env);
      expect([fast.code, fast.stdout]).toEqual([parsed.code, parsed.stdout]);
    }
    const hook = join(dir.path, "report-commander.ts");
    const count =
      "Object.keys(require.cache).filter((name) => /node_modules.commander/.test(name))";
    writeFileSync(
      hook,
      `process.on("exit", () => console.error("commander modules: " + ${count}.length));\n`,
    );
    const entry = join(BIN, "..", "src", "cli", "qrexec-policy-exec.ts");
    const bun = [process.execPath, "--preload", hook, entry];
    const daemonForm = await run([...bun, "work", "vault", "test.Echo"], env);
    expect([daemonForm.code, daemonForm.stderr]).toEqual([
      0,
      expect.stringContaining("commander modules: 0"),
    ]);
    const optionForm = await run(
      [...bun, ...viaCommander, "--", "work", "vault", "test.Echo"],
      env,
    );
    expect(optionForm.stderr).not.toContain("commander modules: 0");
    expect(optionForm.stderr).toContain("commander modules: ");
  });

  test("a SERVICE+ARG starting with '-' after the daemon's `--` is the service", async () => {
    const dashed = join(dir.path, "dashed");
    mkdirSync(dashed);
    writeFileSync(join(dashed, "50-dash.policy"), "-dash * work vault allow\n");
    const env = { QRX_POLICY_DIR: dashed, QRX_DOMAINS: domains };
    const program = join(BIN, "qrexec-policy-exec");
    const allow =
      "user=DEFAULT\nresult=allow\ntarget=vault\nautostart=True\nrequested_target=vault\n";
    // Bun drops a `--` that comes first, so the first form needs the program to find it again.
    for (const before of [[], ["--legacy-dir", "/etc/qubes-rpc/policy"]]) {
      const result = await run([program, ...before, "--", "work", "vault", "-dash"], env);
      expect([result.code, result.stdout]).toEqual([0, allow]);
    }
    // Without a `--` it is an option, as upstream's argparse reads it.
    const bare = await run([program, "work", "vault", "-dash"], env);
    expect([bare.code, bare.stderr]).toEqual([
      1,
      expect.stringContaining("unknown option '-dash'"),
    ]);
  });

  test("a broken policy denies and names file:line", async () => {
    const result = await run([
      join(BIN, "qrexec-policy-exec"),
      "--policy-dir",
      bad,
      "--domains",
      domains,
      "--",
      "work",
      "vault",
      "test.A",
    ]);
    expect(result.code).toBe(126);
    expect(result.stdout).toBe("result=deny\n");
    expect(result.stderr).toContain(`${join(bad, "10-a.policy")}:3: wrong number of fields`);
  });
});
