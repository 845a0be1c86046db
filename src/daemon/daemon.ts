// qrexec-daemon (§7): dom0's end of one VM. The control vchan client of that VM's agent; the
// daemon socket `qrexec.<domid>` for qrexec-client and for other daemons; the policy query for
// every call the VM asks for, and the set-up of allowed calls, all in this one process.

import { rmSync, symlinkSync } from "node:fs";
import { Connection } from "../io/connection.ts";
import { RefusalLog, untrusted } from "../io/log-text.ts";
import { PumpEventKind, StreamKind, Vchan, type Stream } from "../native.ts";
import { substituteDefaultUser } from "../protocol/cmdline.ts";
import {
  decodeExecParams,
  decodeHello,
  encodeExecParams,
  encodeServiceConnect,
  encodeServiceParams,
  fieldText,
  frame,
  helloMessage,
  type ExecParams,
  type FixedField,
  type Header,
} from "../protocol/codec.ts";
import {
  DEFAULT_USER_PREFIX,
  EXEC_PARAMS_FIXED_BYTES,
  HEADER_BYTES,
  IDENT_BYTES,
  MAX_CLIENTS,
  MAX_QREXEC_CMD_LEN,
  MSG_EXEC_CMDLINE,
  MSG_JUST_EXEC,
  MSG_SERVICE_CONNECT,
  MSG_SERVICE_REFUSED,
  PEER_INFO_BYTES,
  QREXEC_CLIENT_PROTOCOL_VERSION,
  QREXEC_PROTOCOL_VERSION,
  VCHAN_BASE_PORT,
} from "../protocol/constants.ts";
import { isDataPort, PortAllocator } from "../protocol/ports.ts";
import { validateAgentMessage } from "../protocol/validate.ts";
import type { ServiceContext } from "../services/start.ts";
import { connectDaemon, daemonSocketPath } from "./daemon-client.ts";
import { DISPVM_PREFIX } from "../policy/tokens.ts";
import { CallStats } from "./call-stats.ts";
import {
  adminServiceAt,
  executeDispvm,
  executeVm,
  runToDom0,
  type AdminService,
} from "./execute.ts";
import { SpareConnections } from "./spare-connections.ts";
import { policyConnection, queryPolicy, type PolicyEndpoints } from "./policy-query.ts";
import type { PolicyResponse } from "../protocol/policy-response.ts";
import { portKey, traceCall, traceKeyed, tracing, triggerKey, type CallTrace } from "../trace.ts";

/** What a qrexec-client sends at most: its HELLO, then one request. */
const CLIENT_INPUT_BYTES_MAX = 2 * HEADER_BYTES + PEER_INFO_BYTES + MAX_QREXEC_CMD_LEN;

export interface DaemonOptions {
  domain: number;
  name: string;
  uuid: string | null;
  defaultUser: string;
  socketDir: string;
  policy: Omit<PolicyEndpoints, "log">;
  /** Milliseconds to wait for the agent (negative: forever). */
  startupTimeoutMs: number;
  /** dom0's own services, for calls into dom0. */
  dom0Services: ServiceContext;
  /** qubesd's socket, for DisposableVMs and autostart (§7.6); null: neither is possible. */
  qubesdSocket: string | null;
  /** Where to keep call counts (qrx extension), or null. */
  statsFile: string | null;
  log: (message: string) => void;
}

type PendingState = "pending" | "allowed";

/** A VM's MSG_TRIGGER_SERVICE*, decoded. */
interface Trigger {
  source: string | null;
  target: string;
  service: string;
  ident: Uint8Array;
}

type AllowedCall = Extract<PolicyResponse, { kind: "allow" }>;

/** A request the VM made, between its trigger and the answer (§13.9: one answer per request). */
interface PendingRequest {
  ident: Uint8Array;
  state: PendingState;
}

function identKey(ident: Uint8Array): string {
  return Buffer.from(ident).toString("hex");
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

export class Daemon {
  readonly #options: DaemonOptions;
  readonly #ports: PortAllocator;
  #control: Stream | null = null;
  #version = 0;
  #listener: ReturnType<typeof Connection.listen> | null = null;
  readonly #clients = new Set<Connection>();
  /** Clients to close when their port is released (qrexec-client -W, DispVM clean-up). */
  readonly #portWatchers = new Map<number, Connection>();
  readonly #pending = new Map<string, PendingRequest>();
  #stopping = false;
  #onFatal: (reason: string) => void = () => {};
  readonly #admin: AdminService | null;
  readonly #stats: CallStats;
  /** Refusals are free for the VM to cause: their lines are rate-limited. */
  readonly #refusals: RefusalLog;
  /** Connections to the daemons of VMs we called, greeted ahead of the next call. */
  readonly #spares: SpareConnections;
  /** The next call's connection to the policy daemon, made ahead of it. */
  readonly #policySpare: SpareConnections;

  constructor(options: DaemonOptions) {
    this.#options = options;
    this.#ports = new PortAllocator(options.domain);
    this.#admin = options.qubesdSocket ? adminServiceAt(options.qubesdSocket) : null;
    this.#stats = new CallStats(options.statsFile);
    this.#refusals = new RefusalLog(options.log);
    this.#spares = new SpareConnections((target) => connectDaemon(options.socketDir, target));
    this.#policySpare = new SpareConnections(policyConnection);
  }

  /** Connects to the agent and opens the daemon socket; rejects when the agent never comes. */
  async start(onFatal: (reason: string) => void): Promise<number> {
    this.#onFatal = onFatal;
    await this.#connectAgent();
    this.#listen();
    return this.#version;
  }

  stop(): void {
    this.#stopping = true;
    this.#spares.stop();
    this.#policySpare.stop();
    this.#stats.flush();
    this.#unlisten();
    this.#control?.close();
  }

  get version(): number {
    return this.#version;
  }

  // ---------------------------------------------------------------- agent

  async #connectAgent(): Promise<void> {
    const vchan = Vchan.clientAsync({
      localDomain: 0,
      remoteDomain: this.#options.domain,
      port: VCHAN_BASE_PORT,
    });
    const control = vchan.attach({
      kind: StreamKind.Control,
      version: QREXEC_PROTOCOL_VERSION,
      sendFirst: false,
      connectTimeoutMs: this.#options.startupTimeoutMs,
    });
    this.#control = control;
    control.onEvent((event) => {
      if (this.#control !== control) return;
      // The version is needed by the first message, which may come in the same batch.
      if (event.kind === PumpEventKind.Connected) this.#version = event.value;
      if (event.kind === PumpEventKind.Message) this.#onAgentMessage(event.value, event.payload);
    });
    this.#version = await Promise.race([control.connected, control.finished.then(() => 0)]);
    if (this.#version === 0) throw new Error("agent closed the control vchan during the handshake");
    control.finished.then(
      () => this.#agentLost(control, "closed"),
      (error: Error) => this.#agentLost(control, error.message),
    );
  }

  /** The agent restart procedure (§7.1): drop everything tied to the old agent, reconnect. */
  #agentLost(control: Stream, reason: string): void {
    if (this.#control !== control) return;
    control.close();
    this.#control = null;
    if (this.#stopping) return;
    this.#options.log(`agent connection lost (${reason}); waiting for the agent to come back`);
    this.#unlisten();
    this.#pending.clear();
    this.#connectAgent().then(
      () => {
        this.#options.log(`agent reconnected, protocol ${this.#version}`);
        this.#listen();
      },
      (error) => this.#onFatal(`agent did not come back: ${describe(error)}`),
    );
  }

  /** Drops the agent's connection after a fatal protocol error; the restart procedure follows. */
  #dropAgent(reason: string): void {
    this.#options.log(`protocol error from the agent: ${reason}; disconnecting it`);
    const control = this.#control;
    if (control) this.#agentLost(control, reason);
  }

  #sendToAgent(type: number, body: Uint8Array): boolean {
    return this.#trySendToAgent(type, body) === null;
  }

  /**
   * Queues a control message for the agent; null when done, else why not (logged). A message
   * must fit the agent's ring whole (§15.3): the pump refuses one that cannot (EMSGSIZE), before
   * anything is sent, from the ring sizes the vchan really has (1 KiB toward a MirageOS agent).
   */
  #trySendToAgent(type: number, body: Uint8Array): string | null {
    try {
      if (!this.#control) throw new Error("agent is not connected");
      this.#control.send(type, body);
      return null;
    } catch (error) {
      const reason =
        (error as { code?: string }).code === "EMSGSIZE"
          ? `too long for the agent of ${this.#options.name}: ${describe(error)}`
          : describe(error);
      this.#options.log(`cannot send message 0x${type.toString(16)} to the agent: ${reason}`);
      return reason;
    }
  }

  #refuse(ident: Uint8Array): void {
    this.#sendToAgent(MSG_SERVICE_REFUSED, encodeServiceParams(ident));
  }

  #onAgentMessage(type: number, payload: Uint8Array): void {
    const header: Header = { type, len: payload.length };
    const verdict = validateAgentMessage(header, payload, this.#version);
    switch (verdict.kind) {
      case "fatal":
        return this.#dropAgent(verdict.reason);
      case "refused":
        this.#refusals.log(this.#options.name, `request refused: ${untrusted(verdict.reason)}`);
        return this.#refuse(verdict.ident);
      case "connection-terminated":
        return this.#onConnectionTerminated(verdict.connectDomain, verdict.connectPort);
      case "ok":
        return void this.#handleTrigger(verdict);
    }
  }

  #onConnectionTerminated(connectDomain: number, port: number): void {
    if (!isDataPort(port)) return this.#dropAgent(`MSG_CONNECTION_TERMINATED for port ${port}`);
    if (!this.#ports.release(connectDomain, port)) return;
    const watcher = this.#portWatchers.get(port);
    this.#portWatchers.delete(port);
    watcher?.close();
  }

  /** An allowed call: into dom0, into a new DisposableVM, or into a VM. */
  async #runAllowed(
    trigger: Trigger,
    decision: AllowedCall,
    refuse: (why: string) => void,
  ): Promise<void> {
    const service = decision.service ?? trigger.service;
    const source = decision.policySource ?? this.#options.name;
    this.#options.log(`${source} -> ${decision.target} ${untrusted(service)}: allowed`);
    if (decision.target === "dom0") {
      this.#stats.count("toDom0");
      const status = await runToDom0({
        socketDir: this.#options.socketDir,
        sourceDomain: this.#options.domain,
        sourceName: source,
        ident: trigger.ident,
        service,
        requestedTarget: decision.requestedTarget,
        context: this.#options.dom0Services,
        source: this.#asSource,
      });
      this.#options.log(`dom0 service ${untrusted(service)} for ${source} exited with ${status}`);
    } else if (decision.target.startsWith(DISPVM_PREFIX)) {
      // §7.6: a DispVM needs autostart (it is never running yet) and qubesd to create it.
      if (!decision.autostart) return refuse(`${decision.target} needs autostart`);
      if (this.#admin === null)
        return refuse(
          `${decision.target}: no admin service (qubesd socket) to create a DisposableVM`,
        );
      const template = (decision.targetUuid ?? decision.target).slice(DISPVM_PREFIX.length);
      const dispvm = await executeDispvm({
        socketDir: this.#options.socketDir,
        sourceDomain: this.#options.domain,
        sourceName: source,
        ident: trigger.ident,
        user: decision.user,
        service,
        source: this.#asSource,
        template,
        admin: this.#admin,
        log: this.#options.log,
      });
      const call = `${source} -> ${dispvm} (DisposableVM of ${template})`;
      this.#options.log(`${call} ${untrusted(service)}: started`);
    } else {
      await executeVm({
        socketDir: this.#options.socketDir,
        sourceDomain: this.#options.domain,
        sourceName: source,
        ident: trigger.ident,
        target: decision.targetUuid ?? decision.target,
        user: decision.user,
        service,
        source: this.#asSource,
        autostart: decision.autostart && this.#admin !== null ? { admin: this.#admin } : null,
        spares: this.#spares,
      });
    }
  }

  async #handleTrigger(trigger: Trigger): Promise<void> {
    const key = identKey(trigger.ident);
    if (this.#pending.size >= MAX_CLIENTS || this.#pending.has(key)) {
      const ident = untrusted(fieldText(trigger.ident));
      const why = "too many pending or duplicate ident";
      this.#refusals.log(this.#options.name, `request '${ident}' refused: ${why}`);
      return this.#refuse(trigger.ident);
    }
    const entry: PendingRequest = { ident: trigger.ident, state: "pending" };
    this.#pending.set(key, entry);
    const control = this.#control;
    const refuseIfPending = (why: string) => {
      const target = untrusted(trigger.target);
      const call = `${this.#options.name} -> ${target} ${untrusted(trigger.service)}`;
      this.#refusals.log(this.#options.name, `${call}: ${untrusted(why, 512)}`);
      if (
        this.#pending.get(key) === entry &&
        entry.state === "pending" &&
        this.#control === control
      )
        this.#refuse(trigger.ident);
    };
    const trace = this.#traceTrigger(trigger);
    try {
      trace?.stage("policy-asked");
      const decision = await queryPolicy(
        {
          source: this.#options.name,
          requestedSource: trigger.source,
          intendedTarget: trigger.target,
          serviceAndArg: trigger.service,
        },
        { ...this.#options.policy, log: this.#options.log, spare: this.#policySpare },
      );
      trace?.stage("policy-answered", {
        answer: decision.kind === "allow" ? decision.target : "no",
      });
      if (decision.kind !== "allow")
        return refuseIfPending(decision.kind === "deny" ? "denied by policy" : decision.reason);
      for (const unknown of decision.unknownKeys) {
        this.#options.log(`policy response: unknown key '${untrusted(unknown)}' ignored`);
      }
      await this.#runAllowed(trigger, decision, refuseIfPending);
    } catch (error) {
      refuseIfPending(`call failed: ${describe(error)}`);
    } finally {
      if (this.#pending.get(key) === entry) this.#pending.delete(key);
    }
  }

  // ---------------------------------------------------------------- daemon socket

  #socketPaths(): { main: string; links: string[] } {
    const main = daemonSocketPath(this.#options.socketDir, String(this.#options.domain));
    const links = [daemonSocketPath(this.#options.socketDir, this.#options.name)];
    if (this.#options.uuid)
      links.push(daemonSocketPath(this.#options.socketDir, `uuid:${this.#options.uuid}`));
    return { main, links };
  }

  #listen(): void {
    const { main, links } = this.#socketPaths();
    rmSync(main, { force: true });
    const limits = { inputBytesMax: CLIENT_INPUT_BYTES_MAX };
    const serve = (connection: Connection) => void this.#serveClient(connection);
    this.#listener = Connection.listen(main, serve, limits);
    for (const link of links) {
      rmSync(link, { force: true });
      // Relative, as upstream: the directory can move without breaking the links.
      symlinkSync(`qrexec.${this.#options.domain}`, link);
    }
  }

  #unlisten(): void {
    this.#listener?.stop(true);
    this.#listener = null;
    const { main, links } = this.#socketPaths();
    for (const path of [main, ...links]) rmSync(path, { force: true });
    for (const client of this.#clients) client.close();
    this.#clients.clear();
    this.#portWatchers.clear();
  }

  async #serveClient(connection: Connection): Promise<void> {
    this.#clients.add(connection);
    connection.onClose(() => this.#clients.delete(connection));
    try {
      connection.write(helloMessage(QREXEC_CLIENT_PROTOCOL_VERSION));
      const hello = await connection.readMessage(PEER_INFO_BYTES);
      if (hello === null) return connection.close();
      const version = decodeHello(hello.header, hello.payload);
      if (version < QREXEC_CLIENT_PROTOCOL_VERSION)
        throw new Error(`client speaks protocol ${version}, at least 3 is needed`);
      const message = await connection.readMessage(MAX_QREXEC_CMD_LEN);
      if (message === null) return connection.close();
      if (!this.#handleClientMessage(connection, message.header, message.payload)) {
        // Nothing to report back later: closing says the request was taken.
        return connection.end();
      }
      // RUNNING: a client has nothing more to say (§7.2).
      const extra = await connection.read(1);
      if (extra !== null) this.#options.log("client sent data after its request; closing it");
      connection.close();
    } catch (error) {
      this.#options.log(`daemon socket client: ${describe(error)}`);
      connection.close();
    }
  }

  /**
   * This daemon as the source daemon of its own VM's allowed calls, without a socket round trip.
   */
  readonly #asSource = {
    serviceConnect: async (params: ExecParams, ident: FixedField): Promise<ExecParams | null> => {
      const payload = encodeServiceConnect(params, ident);
      return this.#accept(MSG_SERVICE_CONNECT, decodeExecParams(payload), null);
    },
  };

  /** Whether the client stays registered (until its port is released). */
  #handleClientMessage(connection: Connection, header: Header, payload: Uint8Array): boolean {
    const { type } = header;
    if (type !== MSG_EXEC_CMDLINE && type !== MSG_JUST_EXEC && type !== MSG_SERVICE_CONNECT) {
      throw new Error(`unexpected message type 0x${type.toString(16)} from client`);
    }
    if (payload.length <= EXEC_PARAMS_FIXED_BYTES || payload[payload.length - 1] !== 0) {
      throw new Error(`malformed request (len ${payload.length}, must be > 8 and NUL-terminated)`);
    }
    const allocated = this.#accept(type, decodeExecParams(payload), connection);
    // The reply first: the caller waits on it, nobody waits on the count.
    if (allocated) connection.write(frame(type, encodeExecParams(allocated)));
    if (type !== MSG_SERVICE_CONNECT) this.#stats.count("served");
    return allocated !== null;
  }

  /**
   * A request from a client (or from ourselves): check it, allocate the port when it has none,
   * and forward it to the agent (§7.2). Returns the allocated `{our domain, port}`, or null when
   * the request named its port. Throws when the request must be dropped.
   */
  #accept(
    type: number,
    params: ExecParams & { tail: Uint8Array },
    watcher: Connection | null,
  ): ExecParams | null {
    let tail = params.tail;
    const ident = new Uint8Array(IDENT_BYTES);
    if (type === MSG_SERVICE_CONNECT) {
      ident.set(tail.subarray(0, IDENT_BYTES));
      const entry = this.#pending.get(identKey(ident));
      if (!entry || entry.state !== "pending")
        throw new Error(
          `SERVICE_CONNECT for ${JSON.stringify(fieldText(ident))}, which is not pending`,
        );
      entry.state = "allowed";
    } else {
      const command = new TextDecoder().decode(tail.subarray(0, tail.length - 1));
      if (command.startsWith(DEFAULT_USER_PREFIX)) {
        tail = new TextEncoder().encode(
          `${substituteDefaultUser(command, this.#options.defaultUser)}\0`,
        );
      }
    }
    let port = params.connectPort;
    let allocated: ExecParams | null = null;
    if (port === 0) {
      const free = this.#ports.allocate(params.connectDomain);
      if (free === null) throw new Error("no free data port");
      port = free;
      if (watcher) this.#portWatchers.set(port, watcher);
      allocated = { connectDomain: this.#options.domain, connectPort: port };
    } else if (!isDataPort(port)) {
      throw new Error(`port ${port} is outside the data port range`);
    } else if (type !== MSG_SERVICE_CONNECT) {
      this.#options.log(`client asked for port ${port} itself; allowed, as upstream`);
    }
    const body = new Uint8Array(EXEC_PARAMS_FIXED_BYTES + tail.length);
    body.set(encodeExecParams({ connectDomain: params.connectDomain, connectPort: port }));
    body.set(tail, EXEC_PARAMS_FIXED_BYTES);
    // Before the send: the agent's own event for this port may otherwise come first.
    if (tracing) this.#traceForward(type, params.connectDomain, port, ident, allocated !== null);
    const problem = this.#trySendToAgent(type, body);
    if (problem !== null) {
      if (allocated) this.#ports.release(params.connectDomain, port);
      throw new Error(`request refused, not forwarded to the agent: ${problem}`);
    }
    return allocated;
  }

  #traceTrigger(trigger: { target: string; service: string; ident: Uint8Array }): CallTrace | null {
    const trace = traceCall(0)?.link(triggerKey(this.#options.domain, fieldText(trigger.ident)));
    const asked = { vm: this.#options.name, target: trigger.target, service: trigger.service };
    return trace?.stage("daemon-received", asked) ?? null;
  }

  #traceForward(type: number, peer: number, port: number, ident: Uint8Array, fresh: boolean): void {
    const keys = [portKey(this.#options.domain, peer, port)];
    if (type === MSG_SERVICE_CONNECT) keys.push(triggerKey(this.#options.domain, fieldText(ident)));
    const stage = type === MSG_SERVICE_CONNECT ? "service-connect-sent" : "exec-request-sent";
    traceKeyed(0, stage, keys, { vm: this.#options.name }, fresh ? keys[0] : undefined);
  }
}
