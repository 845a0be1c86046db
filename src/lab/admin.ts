// The lab's admin service: qubesd's role (§1, §7.6) for domains that are processes. It owns the
// registry, starts and kills domains (an agent and its dom0 daemon each), creates and destroys
// DisposableVMs, runs the policy daemon, answers internal.GetSystemInfo for the policy, and
// restarts whatever crashes. One process; its API is qubesd's socket protocol plus qrx.lab.*.

import {
  cpSync,
  existsSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  rmSync,
  writeFileSync,
  copyFileSync,
  chmodSync,
} from "node:fs";
import { join } from "node:path";
import type { SocketListener } from "bun";
import {
  decodeRequest,
  encodeError,
  encodeSuccess,
  QUBESD_MESSAGE_MAX,
  QubesdError,
  type QubesdRequest,
} from "../admin/qubesd.ts";
import type { CallCounts } from "../daemon/call-stats.ts";
import { Connection } from "../io/connection.ts";
import type { LabConfig, ServiceFile } from "./config.ts";
import { BIN_DIR, domainEnv } from "./environment.ts";
import type { LabLayout } from "./layout.ts";
import { DispvmPool } from "./preload.ts";
import { domainProcesses } from "./isolation.ts";
import { Isolator } from "./isolator.ts";
import { Registry, type DomainRecord } from "./registry.ts";
import { writeRunning } from "./running-domains.ts";
import { Supervised } from "./supervisor.ts";
import { SystemInfoPublisher } from "./system-info-publisher.ts";

/** A domain's daemon must be listening this soon after its processes start. */
const START_TIMEOUT_MS = 30_000;
const READY_POLL_MS = 5;

interface Running {
  agent: Supervised;
  daemon: Supervised;
}

/** What `qrx lab status` shows of one domain. */
export interface DomainStatus {
  name: string;
  id: number;
  klass: string;
  templateForDispvms: boolean;
  state: string;
  template: string | null;
  agentPid: number | null;
  daemonPid: number | null;
  runningSince: number;
  calls: number;
  restarts: number;
  /** A preloaded DispVM no call has taken yet. */
  preloaded: boolean;
  /** "namespaces" or "none"; dom0 is always "host". */
  isolation: string;
}

export interface LabStatus {
  dir: string;
  config: string;
  transport: string;
  isolation: string;
  adminPid: number;
  policyPid: number | null;
  startedAt: number;
  /** Every domain `lab up` starts is running. */
  ready: boolean;
  domains: DomainStatus[];
  disposablesCreated: number;
}

/** The policy daemon's options for the lab's `ask` mode (tty, program:CMD or deny). */
function askOptions(ask: string | undefined, layout: LabLayout): string[] {
  if (ask === undefined || ask === "tty") return [`--ask-queue=${layout.asksDir}`, "--no-tty"];
  if (ask.startsWith("program:")) return [`--ask-program=${ask.slice("program:".length)}`];
  return ["--no-tty"];
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

export class LabAdmin {
  readonly registry: Registry;
  readonly #isolator: Isolator;
  readonly #running = new Map<string, Running>();
  /** Start or kill in progress, per domain: the next one waits for it. */
  readonly #busy = new Map<string, Promise<void>>();
  #policy: Supervised | null = null;
  #listener: SocketListener<Connection> | null = null;
  #ready = false;
  #shuttingDown: Promise<void> | null = null;
  readonly #startedAt = Date.now();
  #disposablesCreated = 0;
  /** Calls DispVMs served before they were destroyed (their stats files go with them). */
  #disposedCalls = 0;
  onShutdown: () => void = () => {};
  readonly #pool: DispvmPool;
  readonly #publishSystemInfo: () => void;

  constructor(
    readonly layout: LabLayout,
    readonly config: LabConfig,
    readonly log: (message: string) => void,
  ) {
    this.registry = new Registry(config);
    const publisher = new SystemInfoPublisher(layout.systemInfoFile, log);
    this.#publishSystemInfo = () => publisher.publish(this.registry.systemInfo());
    this.registry.onChange(this.#publishSystemInfo);
    const sizes = new Map(config.domains.map((domain) => [domain.name, domain.preloadDispvm]));
    this.#pool = new DispvmPool(sizes, {
      create: (template) => this.createDisposable(template),
      start: (record) => this.start(record),
      warmUp: (record) => this.#warmUp(record),
      kill: (record) => this.kill(record),
      stopping: () => this.#shuttingDown !== null,
      setPreloaded: (record, preloaded) => this.registry.setPreloaded(record, preloaded),
      log: this.log,
    });
    // Labs brought up before isolation existed have no such key: they ran unisolated.
    this.#isolator = new Isolator(layout, config.isolation ?? "none", log);
  }

  // ---------------------------------------------------------------- bring-up

  async up(): Promise<void> {
    this.#prepareDirs();
    this.#listen();
    this.#startPolicy();
    await this.#isolator.warm(
      domainEnv(this.layout, { name: "dom0", id: 0 }, this.config.transport),
    );
    const initial = this.registry.all().filter((record) => record.id !== 0 && record.autostartAtUp);
    await Promise.all(initial.map((record) => this.start(record)));
    this.#ready = true;
    this.log(
      `lab ready: ${initial.map((record) => record.name).join(", ") || "no domains"} running`,
    );
    // After the lab is ready, so `lab up` does not wait for them.
    const templates = this.registry.all().filter((record) => record.templateForDispvms);
    for (const template of templates) void this.#pool.fill(template);
  }

  #prepareDirs(): void {
    const { layout } = this;
    for (const dir of [layout.socketDir, layout.vchanDir, layout.logDir, layout.domainsDir])
      mkdirSync(dir, { recursive: true });
    // Whatever a crashed lab left: sockets, rendezvous files, DisposableVMs.
    for (const dir of [layout.socketDir, layout.vchanDir])
      for (const entry of readdirSync(dir))
        rmSync(join(dir, entry), { recursive: true, force: true });
    rmSync(layout.asksDir, { recursive: true, force: true }); // questions of a lab that is gone
    for (const path of [layout.adminSocket, layout.policySocket]) rmSync(path, { force: true });
    for (const entry of readdirSync(layout.domainsDir)) {
      if (/^disp\d+$/.test(entry) && !this.registry.find(entry))
        rmSync(layout.domainDir(entry), { recursive: true, force: true });
    }
    this.#prepareDomain("dom0", this.config.dom0Services);
    for (const domain of this.config.domains) this.#prepareDomain(domain.name, domain.services);
    mkdirSync(layout.policyDir, { recursive: true });
    if (this.config.policy !== null)
      writeFileSync(join(layout.policyDir, "50-lab.policy"), this.config.policy);
    this.#isolator.prepare();
    this.#publishSystemInfo();
  }

  #prepareDomain(name: string, services: ServiceFile[]): void {
    const { layout } = this;
    for (const dir of [layout.home(name), layout.rpcDir(name), layout.rpcConfigDir(name)])
      mkdirSync(dir, { recursive: true });
    for (const service of services) {
      const target = join(layout.rpcDir(name), service.name);
      copyFileSync(service.path, target);
      chmodSync(target, 0o755);
    }
    this.#removeAgentSockets(name);
  }

  #startPolicy(): void {
    const { layout } = this;
    this.#policy = new Supervised(
      {
        label: "policy daemon",
        argv: [
          join(BIN_DIR, "qrexec-policy-daemon"),
          `--socket=${layout.policySocket}`,
          `--policy-dir=${layout.policyDir}`,
          `--system-info-file=${layout.systemInfoFile}`,
          ...askOptions(this.config.ask, layout),
        ],
        env: domainEnv(layout, { name: "dom0", id: 0 }, this.config.transport),
        cwd: layout.home("dom0"),
        logFile: layout.log("policy"),
      },
      this.log,
    );
    this.#policy.start();
  }

  // ---------------------------------------------------------------- domains

  #serialized(record: DomainRecord, work: () => Promise<void>): Promise<void> {
    const previous = this.#busy.get(record.name) ?? Promise.resolve();
    // The previous step's failure went to its own caller; this one runs regardless.
    const next = previous.catch(() => {}).then(work);
    this.#busy.set(record.name, next);
    const clear = () => {
      if (this.#busy.get(record.name) === next) this.#busy.delete(record.name);
    };
    next.then(clear, clear);
    return next;
  }

  /** The domain's qrexec-agent, inside its isolation. */
  #agentProcess(record: DomainRecord): Supervised {
    const { layout } = this;
    const env = this.#isolator.domainEnv(domainEnv(layout, record, this.config.transport));
    const agentArgv = [
      join(BIN_DIR, "qrexec-agent"),
      `--agent-socket=${layout.agentSocket(record.name)}`,
      `--status-file=${layout.callStatusFile(record.name)}`,
    ];
    return new Supervised(
      {
        label: `agent of ${record.name}`,
        argv: this.#isolator.starting(record, agentArgv),
        env,
        cwd: layout.home(record.name),
        logFile: layout.log(`${record.name}.agent`),
      },
      this.log,
    );
  }

  /** The domain's qrexec-daemon, in dom0. */
  #daemonProcess(record: DomainRecord): Supervised {
    const { layout } = this;
    const dom0Env = domainEnv(layout, { name: "dom0", id: 0 }, this.config.transport);
    return new Supervised(
      {
        label: `daemon of ${record.name}`,
        argv: [
          join(BIN_DIR, "qrexec-daemon"),
          "--direct",
          `--socket-dir=${layout.socketDir}`,
          `--policy-socket=${layout.policySocket}`,
          `--policy-program=${join(BIN_DIR, "qrexec-policy-exec")}`,
          `--qubesd-socket=${layout.adminSocket}`,
          `--stats-file=${layout.statsFile(record.name)}`,
          `--uuid=${record.uuid}`,
          String(record.id),
          record.name,
          record.defaultUser,
        ],
        env: dom0Env,
        cwd: layout.home("dom0"),
        logFile: layout.log(`${record.name}.daemon`),
      },
      this.log,
    );
  }

  /**
   * Starts `record` (its agent, then waits for its daemon's socket); a running one is left alone.
   */
  start(record: DomainRecord): Promise<void> {
    if (record.id === 0) return Promise.resolve();
    return this.#serialized(record, async () => {
      if (record.state === "Running") return;
      if (this.#shuttingDown) throw new QubesdError("QubesException", "the lab is shutting down");
      const started = performance.now();
      this.registry.setState(record, "Starting");
      const { layout } = this;
      this.#removeSockets(record);
      rmSync(layout.statsFile(record.name), { force: true }); // counts are per run
      const agent = this.#agentProcess(record);
      const daemon = this.#daemonProcess(record);
      this.#running.set(record.name, { agent, daemon });
      agent.start();
      daemon.start();
      // The daemon links qrexec.uuid:<uuid> last; callers of a DispVM come through that one.
      const socket = join(layout.socketDir, `qrexec.uuid:${record.uuid}`);
      const deadline = Date.now() + START_TIMEOUT_MS;
      while (!existsSync(socket)) {
        if (Date.now() > deadline || this.#shuttingDown) {
          await this.#stopProcesses(record);
          this.registry.setState(record, "Halted");
          throw new QubesdError(
            "QubesException",
            `${record.name} did not start within ${START_TIMEOUT_MS / 1000} s; see ` +
              `${layout.log(`${record.name}.agent`)} and ` +
              `${layout.log(`${record.name}.daemon`)}`,
          );
        }
        await Bun.sleep(READY_POLL_MS);
      }
      this.registry.setState(record, "Running");
      writeRunning(layout, this.status(), domainProcesses);
      this.log(
        `${record.name} (domain ${record.id}) started in ` +
          `${(performance.now() - started).toFixed(0)} ms: ` +
          `agent pid ${agent.pid}, daemon pid ${daemon.pid}`,
      );
    });
  }

  /** `qrexec-client -d NAME DEFAULT:true` from dom0; throws unless it exits 0. */
  async #warmUp(record: DomainRecord): Promise<void> {
    const { layout } = this;
    const client = join(BIN_DIR, "qrexec-client");
    const argv = [client, `--socket-dir=${layout.socketDir}`, "-d", record.name, "DEFAULT:true"];
    const env = domainEnv(layout, { name: "dom0", id: 0 }, this.config.transport);
    const cwd = layout.home("dom0");
    const child = Bun.spawn(argv, { env, cwd, stdin: "ignore", stdout: "ignore", stderr: "pipe" });
    const [code, stderr] = await Promise.all([child.exited, new Response(child.stderr).text()]);
    if (code !== 0) {
      throw new Error(`the first call to ${record.name} exited ${code}: ${stderr.trim()}`);
    }
  }

  /** Stops `record`'s processes; a DisposableVM is destroyed with them (its dirs and id go). */
  kill(record: DomainRecord): Promise<void> {
    if (record.id === 0)
      return Promise.reject(new QubesdError("QubesException", "dom0 cannot be killed"));
    return this.#serialized(record, async () => {
      if (record.state !== "Halted") {
        this.registry.setState(record, "Stopping");
        await this.#stopProcesses(record);
        this.registry.setState(record, "Halted");
        writeRunning(this.layout, this.status(), domainProcesses);
        this.log(`${record.name} killed`);
      }
      if (record.klass === "DispVM") this.#destroy(record);
    });
  }

  async #stopProcesses(record: DomainRecord): Promise<void> {
    const running = this.#running.get(record.name);
    this.#running.delete(record.name);
    if (running) this.#isolator.stopping(running.agent.pid);
    if (running) await Promise.all([running.daemon.stop(), running.agent.stop()]);
    this.#isolator.stopped(record);
    this.#removeSockets(record);
  }

  #removeSockets(record: DomainRecord): void {
    for (const name of [String(record.id), record.name, `uuid:${record.uuid}`])
      rmSync(join(this.layout.socketDir, `qrexec.${name}`), { force: true });
    this.#removeAgentSockets(record.name);
  }

  /**
   * The sockets an agent of `name` listens on: an agent that did not get to remove its own (an
   * isolated domain's, killed with its namespace; any, killed) leaves them behind.
   */
  #removeAgentSockets(name: string): void {
    rmSync(this.layout.agentSocket(name), { force: true });
    rmSync(this.layout.clientHostSocket(name), { force: true });
  }

  /** A Halted DispVM of `template`, its dirs cloned from the template's. */
  createDisposable(template: DomainRecord): DomainRecord {
    if (!template.templateForDispvms)
      throw new QubesdError("QubesException", `${template.name} is not a DisposableVM template`);
    if (this.#shuttingDown) throw new QubesdError("QubesException", "the lab is shutting down");
    const started = performance.now();
    const record = this.registry.addDisposable(template);
    const { layout } = this;
    try {
      mkdirSync(layout.domainDir(record.name), { recursive: true });
      for (const [from, to] of [
        [layout.home(template.name), layout.home(record.name)],
        [layout.rpcDir(template.name), layout.rpcDir(record.name)],
        [layout.rpcConfigDir(template.name), layout.rpcConfigDir(record.name)],
      ] as const) {
        cpSync(from, to, { recursive: true, preserveTimestamps: true });
      }
    } catch (error) {
      this.#destroy(record);
      throw new QubesdError(
        "QubesException",
        `cannot create a DisposableVM of ${template.name}: ${describe(error)}`,
      );
    }
    this.#disposablesCreated++;
    this.log(
      `${record.name} (domain ${record.id}) created from ` +
        `${template.name} in ${(performance.now() - started).toFixed(1)} ms`,
    );
    return record;
  }

  #destroy(record: DomainRecord): void {
    this.#disposedCalls += this.#callCounts(record.name).served;
    rmSync(this.layout.domainDir(record.name), { recursive: true, force: true });
    this.registry.remove(record);
    this.log(`${record.name} destroyed (domain id ${record.id} free again)`);
    const template = record.template === null ? undefined : this.registry.find(record.template);
    if (template && !record.preloaded) this.#pool.released(template);
  }

  #callCounts(name: string): CallCounts {
    try {
      return JSON.parse(readFileSync(this.layout.statsFile(name), "utf8")) as CallCounts;
    } catch {
      return { served: 0, toDom0: 0 };
    }
  }

  status(): LabStatus {
    const counts = new Map(
      this.registry.all().map((record) => [record.name, this.#callCounts(record.name)]),
    );
    const toDom0 = [...counts.values()].reduce((sum, count) => sum + count.toDom0, 0);
    return {
      dir: this.layout.dir,
      config: this.config.file,
      transport: this.config.transport,
      isolation: this.#isolator.mode,
      adminPid: process.pid,
      policyPid: this.#policy?.pid ?? null,
      startedAt: this.#startedAt,
      ready: this.#ready,
      disposablesCreated: this.#disposablesCreated,
      domains: this.registry.all().map((record) => {
        const running = this.#running.get(record.name);
        return {
          name: record.name,
          id: record.id,
          klass: record.klass,
          templateForDispvms: record.templateForDispvms,
          state: record.state,
          template: record.template,
          agentPid: running?.agent.pid ?? null,
          daemonPid: running?.daemon.pid ?? null,
          runningSince: record.id === 0 ? this.#startedAt : record.runningSince,
          calls: record.id === 0 ? toDom0 : counts.get(record.name)!.served,
          restarts: (running?.agent.restarts ?? 0) + (running?.daemon.restarts ?? 0),
          preloaded: record.preloaded === true,
          isolation: record.id === 0 ? "host" : this.#isolator.mode,
        };
      }),
    };
  }

  // ---------------------------------------------------------------- API

  #listen(): void {
    const options = { halfOpen: true, inputBytesMax: QUBESD_MESSAGE_MAX + 1 };
    const serve = (connection: Connection) => void this.#serve(connection);
    this.#listener = Connection.listen(this.layout.adminSocket, serve, options);
    chmodSync(this.layout.adminSocket, 0o600);
  }

  async #serve(connection: Connection): Promise<void> {
    let reply: Uint8Array;
    let request: QubesdRequest | null = null;
    try {
      request = decodeRequest(await connection.readToEnd(QUBESD_MESSAGE_MAX));
      reply = encodeSuccess(await this.#call(request));
    } catch (error) {
      if (error instanceof QubesdError) reply = encodeError(error.type, error.message);
      else reply = encodeError("QubesException", describe(error));
      if (request) this.log(`${request.method} ${request.dest}: ${describe(error)}`);
    }
    connection.write(reply);
    connection.end();
    if (request?.method === "qrx.lab.Shutdown") void this.shutdown();
  }

  #domain(ref: string): DomainRecord {
    const record = this.registry.find(ref);
    if (!record) throw new QubesdError("QubesVMNotFoundError", `no such domain: '${ref}'`);
    return record;
  }

  async #call(request: QubesdRequest): Promise<string> {
    switch (request.method) {
      case "admin.vm.List":
        return this.registry.listLines();
      case "admin.vm.Start":
        await this.start(this.#domain(request.dest));
        return "";
      case "admin.vm.Kill": {
        const record = this.#domain(request.dest);
        if (record.state === "Halted" && record.klass !== "DispVM")
          throw new QubesdError("QubesVMNotStartedError", `domain ${record.name} is not running`);
        await this.kill(record);
        return "";
      }
      case "admin.vm.CreateDisposable": {
        // `@dispvm` (keyword dispvm) is dom0's default DisposableVM template.
        const templateName = request.dest === "@dispvm" ? this.config.defaultDispvm : request.dest;
        if (templateName === null)
          throw new QubesdError("QubesException", "the lab has no default_dispvm");
        const template = this.#domain(templateName);
        const record = this.#pool.take(template) ?? this.createDisposable(template);
        return new TextDecoder().decode(request.payload) === "uuid"
          ? `uuid:${record.uuid}`
          : record.name;
      }
      case "internal.GetSystemInfo":
        return JSON.stringify(this.registry.systemInfo());
      case "qrx.lab.Status":
        return JSON.stringify(this.status());
      case "qrx.lab.Shutdown":
        return "";
      default:
        throw new QubesdError("ProtocolError", `unknown method '${request.method}'`);
    }
  }

  // ---------------------------------------------------------------- shutdown

  /** Whether D/admin.pid still names this process: the directory is still this lab's. */
  ownsLabDir(): boolean {
    try {
      return readFileSync(this.layout.pidFile, "utf8").trim() === String(process.pid);
    } catch {
      return false;
    }
  }

  /**
   * Ends this lab's processes at once, files untouched: for a lab whose directory is no longer
   * its own (every path in it may be another lab's). The admin leads its process group (`lab up`
   * starts it detached), which holds the domains' agents and daemons and the policy daemon.
   */
  abandon(): never {
    this.log(
      `${this.layout.pidFile} no longer names this process (the lab directory was removed or ` +
        `taken over): stopping this lab's processes, leaving the directory alone`,
    );
    try {
      process.kill(-process.pid, "SIGKILL");
    } catch (error) {
      this.log(`cannot end the process group: ${describe(error)}`);
    }
    process.exit(1);
  }

  /** Stops every domain and the policy daemon, removes sockets and DispVMs; then onShutdown. */
  shutdown(): Promise<void> {
    if (!this.ownsLabDir()) this.abandon();
    this.#shuttingDown ??= (async () => {
      this.log("shutting down");
      const domains = this.registry.all().filter((record) => record.id !== 0);
      await Promise.all(
        domains.map((record) =>
          this.kill(record).catch((error: unknown) =>
            this.log(`stopping ${record.name}: ${describe(error)}`),
          ),
        ),
      );
      await this.#policy?.stop();
      this.#listener?.stop(true);
      this.#isolator.close();
      const { layout } = this;
      for (const path of [layout.adminSocket, layout.policySocket]) rmSync(path, { force: true });
      for (const dir of [layout.socketDir, layout.vchanDir, layout.asksDir])
        rmSync(dir, { recursive: true, force: true });
      this.log("lab down");
      this.onShutdown();
    })();
    return this.#shuttingDown;
  }
}
