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

import { Connection } from "../src/io/connection.ts";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { tmpdir } from "node:os";
import type { PolicyQuery } from "../src/policy/request.ts";
import { loadSnapshot, type PolicySource } from "../src/policy/store.ts";
import { BIN_DIR } from "../src/install-paths.ts";

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

/** Writes the policy and domains file under a new temporary directory. */
export function generatePolicy(rules: number, domains: number): GeneratedPolicy {
  const dir = mkdtempSync(join(tmpdir(), "qrx-bench-policy-"));
  const policyDir = join(dir, "policy.d");
  mkdirSync(policyDir);
  const next = random(42);
  const pick = (n: number) => Math.floor(next() * n);

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

  const lines: string[] = [];
  // tag / @anyvm / * rules, after the specific ones
  const generic = Math.max(1, Math.floor(rules / 100));
  for (let i = 0; i < rules - generic - 1; i++) {
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
  const perFile = Math.ceil(lines.length / FILES);
  for (let file = 0; file < FILES; file++) {
    const chunk = lines.slice(file * perFile, (file + 1) * perFile);
    writeFileSync(
      join(policyDir, `${String(file * 10).padStart(2, "0")}-bench.policy`),
      chunk.join("\n") + "\n",
    );
  }

  // Requests: 70% copy a specific rule's service/source/target, 30% random triples.
  const queries: PolicyQuery[] = [];
  for (let i = 0; i < 4096; i++) {
    if (next() < 0.7) {
      const [service, argument, source, target] = lines[pick(rules - generic - 1)]!.split(" ") as [
        string,
        string,
        string,
        string,
      ];
      // An @tag:tagN target (the ask rules): a domain that has the tag, so the ask is reached.
      const tag = /^@tag:tag(\d+)$/.exec(target);
      const intended = tag ? vm(Number(tag[1]) + TAGS * pick(Math.floor(domains / TAGS))) : target;
      queries.push({
        source,
        intendedTarget: intended,
        serviceAndArg: argument === "*" ? service : `${service}${argument}`,
        requestedSource: null,
      });
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

export async function runPolicyBench(options: PolicyBenchOptions): Promise<PolicyBenchRow[]> {
  const say = (text: string) => options.progress && process.stderr.write(`${text}\n`);
  const generated = generatePolicy(options.rules, options.domains);
  const source: PolicySource = {
    dirs: [generated.policyDir],
    legacyDir: join(generated.dir, "no-legacy"),
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
    const kinds = { allow: 0, deny: 0, ask: 0 };
    for (const query of queries) kinds[policy.evaluate(query, facts).kind]++;
    say(
      `policy: ${policy.rules.length} rules, ${options.domains} domains; request mix: ` +
        `${kinds.allow} allow, ${kinds.deny} deny, ${kinds.ask} ask of ${queries.length}`,
    );

    // in-process
    // warm-up (JIT)
    for (let i = 0; i < 20_000; i++) policy.evaluate(queries[i % queries.length]!, facts);
    const inProcess: number[] = new Array(options.decisions);
    const started = Bun.nanoseconds();
    for (let i = 0; i < options.decisions; i++) {
      const t0 = Bun.nanoseconds();
      policy.evaluate(queries[i % queries.length]!, facts);
      inProcess[i] = (Bun.nanoseconds() - t0) / 1000;
    }
    rows.push(
      row("in-process", policy.rules.length, inProcess, (Bun.nanoseconds() - started) / 1000),
    );
    say(`in-process: median ${rows.at(-1)!.medianUs} us, p99 ${rows.at(-1)!.p99Us} us`);

    // socket, through the real daemon
    const socketPath = join(generated.dir, "policy.sock");
    daemon = Bun.spawn(
      [
        join(BIN_DIR, "qrexec-policy-daemon"),
        ...["--socket", socketPath, "--policy-dir", generated.policyDir],
        ...["--legacy-dir", source.legacyDir!, "--domains", generated.domainsFile, "--no-tty"],
      ],
      { stdio: ["ignore", "ignore", "ignore"] },
    );
    const deadline = Date.now() + 30_000;
    while (!existsSync(socketPath)) {
      if (Date.now() > deadline || daemon.exitCode !== null)
        throw new Error("the policy daemon did not start");
      await Bun.sleep(10);
    }
    const socketCount = Math.max(1000, Math.floor(options.decisions / 10));
    for (let i = 0; i < 500; i++)
      await askSocket(socketPath, requestText(queries[i % queries.length]!)); // warm-up
    const overSocket: number[] = new Array(socketCount);
    const socketStarted = Bun.nanoseconds();
    for (let i = 0; i < socketCount; i++) {
      const query = queries[i % queries.length]!;
      const t0 = Bun.nanoseconds();
      const answer = await askSocket(socketPath, requestText(query));
      overSocket[i] = (Bun.nanoseconds() - t0) / 1000;
      if (!answer.includes("result="))
        throw new Error(
          `no answer from the policy daemon for ${JSON.stringify(query)}: '${answer}'`,
        );
    }
    rows.push(
      row("socket", policy.rules.length, overSocket, (Bun.nanoseconds() - socketStarted) / 1000),
    );
    say(`socket: median ${rows.at(-1)!.medianUs} us, p99 ${rows.at(-1)!.p99Us} us`);

    // reload
    loadSnapshot(source);
    const reloads: number[] = [];
    const reloadStarted = Bun.nanoseconds();
    for (let i = 0; i < options.reloads; i++) {
      const t0 = Bun.nanoseconds();
      loadSnapshot(source);
      reloads.push((Bun.nanoseconds() - t0) / 1000);
    }
    rows.push(
      row("reload", policy.rules.length, reloads, (Bun.nanoseconds() - reloadStarted) / 1000),
    );
    say(
      `reload: median ${(rows.at(-1)!.medianUs / 1000).toFixed(1)} ` +
        `ms, p99 ${(rows.at(-1)!.p99Us / 1000).toFixed(1)} ms`,
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
