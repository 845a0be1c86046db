// `qrx bench policy`: policy decisions on a generated policy of `rules` rules (default 10,000) over
// `domains` domains (default 500), written to a temporary policy.d (10 files) and domains.toml.
//
// - in-process: CompiledPolicy.evaluate for a fixed, seeded mix of requests (most hit a rule
//   naming the source, some fall through to tag, @anyvm and `*` rules, some end in the final deny;
//   a few are asks, which expand their targets over all domains), each timed alone.
// - socket: the same requests, one connection each, to a real bin/qrexec-policy-daemon (request
//   written, answer read to EOF), sequentially; the time is the client's round trip.
// - reload: loading the policy.d and domains file from disk into a new snapshot (what the daemon
//   does on a change), repeated.
//
// Rows: {name, rules, medianUs, p99Us, samples, decisionsPerSecond}. decisionsPerSecond is
// samples / total time (sequential); for reload it is loads per second.

import { Connection } from "../io/connection.ts";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { tmpdir } from "node:os";
import type { PolicyQuery } from "../policy/request.ts";
import { loadSnapshot, type PolicySnapshot, type PolicySource } from "../policy/store.ts";
import { BIN_DIR } from "../install-paths.ts";

export interface PolicyBenchRow {
  name: "in-process" | "socket" | "reload";
  rules: number;
  medianUs: number;
  p99Us: number;
  samples: number;
  decisionsPerSecond: number;
}

export interface PolicyBenchOptions {
  rules: number;
  domains: number;
  /** Decisions timed in process (the socket row times a tenth of them, at least 1000). */
  decisions: number;
  reloads: number;
  progress: boolean;
}

export const DEFAULT_POLICY_BENCH: PolicyBenchOptions = {
  rules: 10_000,
  domains: 500,
  decisions: 50_000,
  reloads: 30,
  progress: true,
};

const FILES = 10;
const SERVICES = 250;
const TAGS = 20;

/** A small deterministic PRNG (mulberry32), so every run measures the same policy and requests. */
function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const vm = (index: number) => `vm${String(index).padStart(3, "0")}`;

export interface GeneratedPolicy {
  dir: string;
  policyDir: string;
  domainsFile: string;
  queries: PolicyQuery[];
}

/** The domains file: every domain tagged, a third halted, one DisposableVM template. */
function writeDomains(dir: string, domains: number): string {
  const domainLines: string[] = [];
  for (let i = 0; i < domains; i++) {
    domainLines.push(
      `[domains.${vm(i)}]`,
      `tags = ["tag${i % TAGS}"]`,
      `default_dispvm = "dvm"`,
      `power_state = "${i % 3 === 0 ? "Halted" : "Running"}"`,
    );
  }
  domainLines.push(`[domains.dvm]`, `template_for_dispvms = true`);
  const domainsFile = join(dir, "domains.toml");
  writeFileSync(domainsFile, domainLines.join("\n") + "\n");
  return domainsFile;
}

/** `specific` rules naming services, sources and targets, then the tag / @anyvm / * ones. */
function ruleLines(specific: number, generic: number, domains: number, pick: Pick): string[] {
  const lines: string[] = [];
  for (let i = 0; i < specific; i++) {
    const action = i % 97 === 0 ? "ask" : i % 5 === 0 ? "deny" : "allow";
    const redirect = action === "allow" && i % 11 === 0 ? ` target=${vm(pick(domains))}` : "";
    const argument = i % 7 === 0 ? `+arg${i % 13}` : "*";
    const target = action === "ask" ? `@tag:tag${pick(TAGS)}` : vm(pick(domains));
    lines.push(
      `bench.S${pick(SERVICES)} ${argument} ${vm(pick(domains))} ${target} ${action}${redirect}`,
    );
  }
  for (let i = 0; i < generic; i++) {
    const source = i % 2 === 0 ? `@tag:tag${pick(TAGS)}` : "@anyvm";
    lines.push(
      `bench.S${pick(SERVICES)} * ${source} ` +
        `@tag:tag${pick(TAGS)} ${i % 3 === 0 ? "deny" : "allow"}`,
    );
  }
  lines.push("* * @anyvm @anyvm deny");
  return lines;
}

function writePolicyFiles(policyDir: string, lines: string[]): void {
  const perFile = Math.ceil(lines.length / FILES);
  for (let file = 0; file < FILES; file++) {
    const chunk = lines.slice(file * perFile, (file + 1) * perFile);
    writeFileSync(
      join(policyDir, `${String(file * 10).padStart(2, "0")}-bench.policy`),
      chunk.join("\n") + "\n",
    );
  }
}

/** A request that copies a specific rule's service, source and target. */
function queryFromRule(line: string, domains: number, pick: Pick): PolicyQuery {
  const [service = "", argument = "", source = "", target = ""] = line.split(" ");
  // An @tag:tagN target (the ask rules): a domain that has the tag, so the ask is reached.
  const tag = /^@tag:tag(\d+)$/.exec(target);
  const intended = tag ? vm(Number(tag[1]) + TAGS * pick(Math.floor(domains / TAGS))) : target;
  return {
    source,
    intendedTarget: intended,
    serviceAndArg: argument === "*" ? service : `${service}${argument}`,
    requestedSource: null,
  };
}

type Pick = (n: number) => number;

/** Writes the policy and domains file under a new temporary directory. */
export function generatePolicy(rules: number, domains: number): GeneratedPolicy {
  const dir = mkdtempSync(join(tmpdir(), "qrx-bench-policy-"));
  const policyDir = join(dir, "policy.d");
  mkdirSync(policyDir);
  const next = random(42);
  const pick = (n: number) => Math.floor(next() * n);
  const domainsFile = writeDomains(dir, domains);
  const generic = Math.max(1, Math.floor(rules / 100));
  const specific = rules - generic - 1;
  const lines = ruleLines(specific, generic, domains, pick);
  writePolicyFiles(policyDir, lines);

  // Requests: 70% copy a specific rule's service/source/target, 30% random triples.
  const queries: PolicyQuery[] = [];
  for (let i = 0; i < 4096; i++) {
    if (next() < 0.7) {
      queries.push(queryFromRule(lines[pick(specific)] ?? "", domains, pick));
    } else {
      queries.push({
        source: vm(pick(domains)),
        intendedTarget: vm(pick(domains)),
        serviceAndArg: `bench.S${pick(SERVICES)}`,
        requestedSource: null,
      });
    }
  }
  return { dir, policyDir, domainsFile, queries };
}

function percentile(sorted: number[], fraction: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * fraction))]!;
}

function row(
  name: PolicyBenchRow["name"],
  rules: number,
  samplesUs: number[],
  totalUs: number,
): PolicyBenchRow {
  const sorted = [...samplesUs].sort((a, b) => a - b);
  const round = (value: number) => Math.round(value * 100) / 100;
  return {
    name,
    rules,
    medianUs: round(percentile(sorted, 0.5)),
    p99Us: round(percentile(sorted, 0.99)),
    samples: sorted.length,
    decisionsPerSecond: Math.round(sorted.length / (totalUs / 1e6)),
  };
}

function requestText(query: PolicyQuery): string {
  return (
    `source=${query.source}\nintended_target=${query.intendedTarget}\n` +
    `service_and_arg=${query.serviceAndArg}\n\n`
  );
}

/** One request over a new connection; resolves with the answer text. */
async function askSocket(path: string, request: string): Promise<string> {
  return new TextDecoder().decode(await Connection.exchange(path, request));
}

/** Nanoseconds to microseconds since `started` (a Bun.nanoseconds() reading). */
function microsSince(started: number): number {
  return (Bun.nanoseconds() - started) / 1000;
}

function timeInProcess(snapshot: PolicySnapshot, queries: PolicyQuery[], decisions: number) {
  const { policy, facts } = snapshot;
  const query = (i: number) => queries[i % queries.length] ?? queries[0]!;
  // Warm-up (JIT).
  for (let i = 0; i < 20_000; i++) policy.evaluate(query(i), facts);
  const samples: number[] = new Array(decisions);
  const started = Bun.nanoseconds();
  for (let i = 0; i < decisions; i++) {
    const t0 = Bun.nanoseconds();
    policy.evaluate(query(i), facts);
    samples[i] = microsSince(t0);
  }
  return row("in-process", policy.rules.length, samples, microsSince(started));
}

/** The real qrexec-policy-daemon over the generated policy, once its socket is there. */
async function startPolicyDaemon(generated: GeneratedPolicy, socketPath: string) {
  const daemon = Bun.spawn(
    [
      join(BIN_DIR, "qrexec-policy-daemon"),
      ...["--socket", socketPath, "--policy-dir", generated.policyDir],
      ...["--legacy-dir", legacyDir(generated), "--domains", generated.domainsFile, "--no-tty"],
    ],
    { stdio: ["ignore", "ignore", "ignore"] },
  );
  const deadline = Date.now() + 30_000;
  while (!existsSync(socketPath)) {
    if (Date.now() > deadline || daemon.exitCode !== null) {
      daemon.kill("SIGTERM");
      throw new Error("the policy daemon did not start");
    }
    await Bun.sleep(10);
  }
  return daemon;
}

async function timeSocket(
  socketPath: string,
  queries: PolicyQuery[],
  count: number,
  rules: number,
) {
  const query = (i: number) => queries[i % queries.length] ?? queries[0]!;
  // Warm-up.
  for (let i = 0; i < 500; i++) await askSocket(socketPath, requestText(query(i)));
  const samples: number[] = new Array(count);
  const started = Bun.nanoseconds();
  for (let i = 0; i < count; i++) {
    const t0 = Bun.nanoseconds();
    const answer = await askSocket(socketPath, requestText(query(i)));
    samples[i] = microsSince(t0);
    if (!answer.includes("result="))
      throw new Error(
        `no answer from the policy daemon for ${JSON.stringify(query(i))}: '${answer}'`,
      );
  }
  return row("socket", rules, samples, microsSince(started));
}

function timeReload(source: PolicySource, reloads: number, rules: number): PolicyBenchRow {
  loadSnapshot(source);
  const samples: number[] = [];
  const started = Bun.nanoseconds();
  for (let i = 0; i < reloads; i++) {
    const t0 = Bun.nanoseconds();
    loadSnapshot(source);
    samples.push(microsSince(t0));
  }
  return row("reload", rules, samples, microsSince(started));
}

function legacyDir(generated: GeneratedPolicy): string {
  return join(generated.dir, "no-legacy");
}

export async function runPolicyBench(options: PolicyBenchOptions): Promise<PolicyBenchRow[]> {
  const say = (text: string) => options.progress && process.stderr.write(`${text}\n`);
  const generated = generatePolicy(options.rules, options.domains);
  const source: PolicySource = {
    dirs: [generated.policyDir],
    legacyDir: legacyDir(generated),
    domainsFile: generated.domainsFile,
  };
  const rows: PolicyBenchRow[] = [];
  let daemon: ReturnType<typeof Bun.spawn> | null = null;
  try {
    const snapshot = loadSnapshot(source);
    if (snapshot.errors.length > 0)
      throw new Error(
        `generated policy has errors: ${JSON.stringify(snapshot.errors.slice(0, 3))}`,
      );
    const { policy, facts } = snapshot;
    const queries = generated.queries;
    const rules = policy.rules.length;
    const kinds = { allow: 0, deny: 0, ask: 0 };
    for (const query of queries) kinds[policy.evaluate(query, facts).kind]++;
    say(
      `policy: ${rules} rules, ${options.domains} domains; request mix: ` +
        `${kinds.allow} allow, ${kinds.deny} deny, ${kinds.ask} ask of ${queries.length}`,
    );
    const inProcess = timeInProcess(snapshot, queries, options.decisions);
    rows.push(inProcess);
    say(`in-process: median ${inProcess.medianUs} us, p99 ${inProcess.p99Us} us`);

    const socketPath = join(generated.dir, "policy.sock");
    daemon = await startPolicyDaemon(generated, socketPath);
    const socketCount = Math.max(1000, Math.floor(options.decisions / 10));
    const socket = await timeSocket(socketPath, queries, socketCount, rules);
    rows.push(socket);
    say(`socket: median ${socket.medianUs} us, p99 ${socket.p99Us} us`);

    const reload = timeReload(source, options.reloads, rules);
    rows.push(reload);
    say(
      `reload: median ${(reload.medianUs / 1000).toFixed(1)} ` +
        `ms, p99 ${(reload.p99Us / 1000).toFixed(1)} ms`,
    );
  } finally {
    if (daemon !== null) {
      daemon.kill("SIGTERM");
      await daemon.exited;
    }
    rmSync(generated.dir, { recursive: true, force: true });
  }
  return rows;
}

export function printPolicyBench(rows: PolicyBenchRow[]): void {
  const targets: Record<PolicyBenchRow["name"], number> = {
    "in-process": 20,
    socket: 200,
    reload: 100_000,
  };
  console.log("row         rules   median      p99         per second  target");
  for (const r of rows) {
    const unit = (us: number) =>
      r.name === "reload" ? `${(us / 1000).toFixed(1)} ms` : `${us.toFixed(1)} us`;
    const met = r.medianUs <= targets[r.name] ? "met" : "MISSED";
    console.log(
      `${r.name.padEnd(11)} ${String(r.rules).padEnd(7)} ` +
        `${unit(r.medianUs).padEnd(11)} ${unit(r.p99Us).padEnd(11)} ` +
        `${String(r.decisionsPerSecond).padEnd(11)} median <= ${unit(targets[r.name])}: ${met}`,
    );
  }
}
