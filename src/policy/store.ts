// The policy a server answers with: compiled policy + domain facts, loaded together into an
// immutable snapshot, and (for the policy daemon) reloaded when a file it was read from changes.
// A reload builds the whole next snapshot first and then swaps one reference, so a request sees
// either the old policy or the new one, never a half-read one. A broken policy or domains file
// still gives a snapshot: one that denies everything, naming the file:line problems.

import { existsSync, watch, type FSWatcher } from "node:fs";
import { resolve } from "node:path";
import { TableDomainFacts, type DomainFacts } from "./domains.ts";
import { DomainsFileError, loadDomainsFile } from "./domains-file.ts";
import { fetchSystemInfo, SystemInfoFile } from "./system-info.ts";
import { formatPolicyError, type PolicyError } from "./errors.ts";
import { loadPolicy } from "./loader.ts";
import { CompiledPolicy } from "./policy.ts";

export interface PolicySource {
  /** Policy directories, earlier ones hiding same-named files in later ones. */
  dirs: string[];
  /** Where `!compat-4.0` reads legacy files. */
  legacyDir?: string;
  /** The domains file, or null: only dom0 is known. */
  domainsFile: string | null;
  /** qubesd's socket: facts come from internal.GetSystemInfo per request instead of the file. */
  systemInfoSocket?: string | null;
  /** A system-info file kept current by its writer (SystemInfoFile); before the socket. */
  systemInfoFile?: string | null;
}

/** Whether facts are read per request (socket or system-info file), not from the domains file. */
function liveFacts(source: PolicySource): boolean {
  return Boolean(source.systemInfoFile || source.systemInfoSocket);
}

export interface PolicySnapshot {
  /** Denies everything when `errors` is not empty. */
  readonly policy: CompiledPolicy;
  readonly facts: DomainFacts;
  /** Policy and domains file problems together. */
  readonly errors: readonly PolicyError[];
  /** Everything a change of which should trigger a reload. */
  readonly watched: readonly string[];
  readonly loadMs: number;
}

export function loadSnapshot(source: PolicySource): PolicySnapshot {
  const started = performance.now();
  const { policy } = loadPolicy(source.dirs, { legacyDir: source.legacyDir });
  let facts: DomainFacts = new TableDomainFacts([]);
  const domainErrors: PolicyError[] = [];
  if (source.domainsFile !== null && !liveFacts(source)) {
    try {
      facts = loadDomainsFile(source.domainsFile);
    } catch (error) {
      const problem =
        error instanceof DomainsFileError
          ? error
          : new DomainsFileError(source.domainsFile, String(error));
      domainErrors.push({ file: problem.file, line: 0, message: problem.detail });
    }
  }
  const errors = [...policy.errors, ...domainErrors];
  const watched = new Set(policy.paths);
  for (const dir of source.dirs) watched.add(resolve(dir));
  if (source.domainsFile !== null && !liveFacts(source)) watched.add(resolve(source.domainsFile));
  // A broken domains file must deny too: fold its error into the policy the engine evaluates.
  const served =
    domainErrors.length === 0
      ? policy
      : new CompiledPolicy({
          rules: [...policy.rules],
          errors,
          warnings: [...policy.warnings],
          paths: [...policy.paths],
        });
  return Object.freeze({
    policy: served,
    facts,
    errors,
    watched: [...watched],
    loadMs: performance.now() - started,
  });
}

/**
 * The facts a request is evaluated with: live from the system-info file or socket when there is
 * one (a failure there throws, and the request is denied), else the snapshot's. `file` keeps a
 * reader's cache across requests.
 */
export async function factsFor(
  source: PolicySource,
  snapshot: PolicySnapshot,
  file = source.systemInfoFile ? new SystemInfoFile(source.systemInfoFile) : null,
): Promise<DomainFacts> {
  if (file !== null) return file.current();
  if (source.systemInfoSocket) return fetchSystemInfo(source.systemInfoSocket);
  return snapshot.facts;
}

/** One log line per problem, or a summary of a good load. */
export function describeLoad(snapshot: PolicySnapshot, what = "policy loaded"): string[] {
  if (snapshot.errors.length === 0) {
    return [`${what}: ${snapshot.policy.rules.length} rules in ${snapshot.loadMs.toFixed(1)} ms`];
  }
  return [
    `${what} WITH ${snapshot.errors.length} ERROR(S): every call is denied until they are fixed`,
    ...snapshot.errors.map((error) => `policy error: ${formatPolicyError(error)}`),
  ];
}

export interface StoreOptions {
  log: (message: string) => void;
  /** Quiet time after the last change before reloading (editors write in several steps). */
  debounceMs?: number;
}

export class PolicyStore {
  #current: PolicySnapshot;
  #watchers: FSWatcher[] = [];
  #timer: ReturnType<typeof setTimeout> | null = null;
  #watching = false;
  #reloads = 0;
  readonly #systemInfoFile: SystemInfoFile | null;

  constructor(
    readonly source: PolicySource,
    readonly options: StoreOptions,
  ) {
    this.#current = loadSnapshot(source);
    this.#systemInfoFile = source.systemInfoFile ? new SystemInfoFile(source.systemInfoFile) : null;
    for (const line of describeLoad(this.#current)) options.log(line);
  }

  get current(): PolicySnapshot {
    return this.#current;
  }

  /** The facts to evaluate a request against `snapshot` with (see factsFor). */
  facts(snapshot: PolicySnapshot): Promise<DomainFacts> {
    return factsFor(this.source, snapshot, this.#systemInfoFile);
  }

  /** How many reloads have completed (tests wait on it). */
  get reloads(): number {
    return this.#reloads;
  }

  /** Builds the next snapshot completely, then swaps it in. */
  reload(): PolicySnapshot {
    const next = loadSnapshot(this.source);
    this.#current = next;
    this.#reloads++;
    for (const line of describeLoad(next, "policy reloaded")) this.options.log(line);
    if (this.#watching) this.#rewatch();
    return next;
  }

  /** Watches every directory and file the policy was read from; reloads after changes settle. */
  watch(): void {
    this.#watching = true;
    this.#rewatch();
  }

  #schedule = (): void => {
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      this.#timer = null;
      this.reload();
    }, this.options.debounceMs ?? 100);
  };

  #rewatch(): void {
    for (const watcher of this.#watchers) watcher.close();
    this.#watchers = [];
    for (const path of this.#current.watched) {
      if (!existsSync(path)) continue;
      try {
        const watcher = watch(path, { persistent: false }, this.#schedule);
        watcher.on("error", () => this.#schedule());
        this.#watchers.push(watcher);
      } catch (error) {
        this.options.log(
          `cannot watch ${path}: ${error instanceof Error ? error.message : String(error)}`,
        );
      }
    }
  }

  close(): void {
    this.#watching = false;
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    for (const watcher of this.#watchers) watcher.close();
    this.#watchers = [];
  }
}
