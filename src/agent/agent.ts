// The VM side of qrexec (§5): the control vchan server toward dom0, the trigger socket for
// qrexec-client-vm, and the service side of every call into this domain. One process serves all
// calls: each call is a stream in the Zig pump, its service a child process or a socket.

import { chmodSync, rmSync } from "node:fs";
import { Connection } from "../io/connection.ts";
import { NativeError, PumpEventKind, StreamKind, Vchan, type Stream } from "../native.ts";
import { parseCommand } from "../protocol/cmdline.ts";
import { QREXEC_EXIT_PROBLEM } from "../protocol/exit.ts";
import {
  decodeExecCommand,
  decodeServiceConnect,
  decodeServiceParams,
  decodeTrigger4,
  encodeConnectionTerminated,
  encodeExecParams,
  fieldText,
  readFrame,
  withIdent,
  type ExecParams,
  type Header,
} from "../protocol/codec.ts";
import {
  HEADER_BYTES,
  MAX_SERVICE_NAME_LEN,
  MSG_CONNECTION_TERMINATED,
  MSG_EXEC_CMDLINE,
  MSG_JUST_EXEC,
  MSG_SERVICE_CONNECT,
  MSG_SERVICE_REFUSED,
  MSG_TRIGGER_SERVICE4,
  TRIGGER4_FIXED_BYTES,
  VCHAN_BASE_PORT,
} from "../protocol/constants.ts";
import {
  prepareService,
  serviceStreamFlags,
  pumpSpawn,
  logSpawnFailure,
  startService,
  type ServiceContext,
} from "../services/start.ts";
import { ClientVmHost } from "./client-host.ts";
import { InProcessTrigger, type TriggerPeer } from "./in-process-trigger.ts";
import { FdShortage, fdErrorCode } from "./fd-shortage.ts";
import { peerProfile, type PeerProfile } from "../protocol/peer-profile.ts";
import { SessionGate } from "./session.ts";
import { untrusted } from "../io/log-text.ts";
import type { CallStatusFile } from "./call-status.ts";
import { portKey, traceCall, traceKeyed, tracing, triggerKey, type CallTrace } from "../trace.ts";

/** Data vchan connect timeout on the VM side (§13.16). */
const DATA_CONNECT_TIMEOUT_MS = 120_000;
/** The longest trigger a caller may send (header and TRIGGER4). */
const TRIGGER_INPUT_BYTES_MAX = HEADER_BYTES + TRIGGER4_FIXED_BYTES + MAX_SERVICE_NAME_LEN;
/** How soon a data vchan that failed for want of fds is tried again. */
const FD_RETRY_MS = 100;

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

export interface AgentOptions {
  /** Our domain id (VCHAN_DOMAIN). */
  domain: number;
  agentSocket: string;
  servicePath: string;
  configPath: string;
  env: Record<string, string | undefined>;
  log: (message: string) => void;
  /** How we behave on the wire (src/protocol/peer-profile.ts); the default profile if absent. */
  profile?: PeerProfile;
  /** Keeps the running calls for `qrx lab top` (src/agent/call-status.ts); none if absent. */
  statusFile?: CallStatusFile;
}

/** A qrexec-client-vm connection waiting for the daemon's answer, or running its call. */
interface TriggerClient {
  id: number;
  connection: TriggerPeer;
  /** Set once SERVICE_CONNECT arrived: the call's data vchan, reported as terminated on close. */
  params: ExecParams | null;
  /** The control stream its trigger went out on; only that daemon can answer it. */
  sentOn: Stream | null;
}

export class Agent {
  readonly #options: AgentOptions;
  readonly #profile: PeerProfile;
  readonly #context: ServiceContext;
  #control: Stream | null = null;
  #version = 0;
  /** Resolves when a daemon is connected and the version is known. */
  #ready!: Promise<void>;
  #resolveReady: (() => void) | null = null;
  #listener: ReturnType<typeof Connection.listen> | null = null;
  #clientHost: ClientVmHost | null = null;
  #nextClientId = 1;
  readonly #clients = new Map<number, TriggerClient>();
  /** Control messages queued while no daemon is connected. */
  #outbox: Array<{ type: number; body: Uint8Array }> = [];
  readonly #calls = new Set<Stream>();
  readonly #session: SessionGate;
  readonly #shortage: FdShortage;
  #stopping = false;

  constructor(options: AgentOptions) {
    this.#options = options;
    this.#profile = options.profile ?? peerProfile("default");
    this.#context = {
      servicePath: options.servicePath,
      configPath: options.configPath,
      baseEnv: options.env,
      agentPid: process.pid,
      captureStderr: true,
      log: options.log,
    };
    this.#session = new SessionGate(this.#context);
    this.#shortage = new FdShortage(options.log);
  }

  get callsRunning(): number {
    return this.#calls.size;
  }

  /** Binds the trigger socket and offers the control vchan to dom0. */
  start(): void {
    rmSync(this.#options.agentSocket, { force: true });
    const previousUmask = process.umask(0);
    try {
      // A caller sends one trigger and then only EOF: nothing more is ever held for it.
      this.#listener = Connection.listen(
        this.#options.agentSocket,
        (connection) => void this.#serveTrigger(connection),
        { inputBytesMax: TRIGGER_INPUT_BYTES_MAX },
      );
    } finally {
      process.umask(previousUmask);
    }
    chmodSync(this.#options.agentSocket, 0o777);
    // Only a default-profile agent's process settings are a client's (a mirage one caps pages).
    if (this.#profile.name === "default") {
      const { agentSocket, env, log } = this.#options;
      const shortage = this.#shortage;
      const openTrigger = () => this.openLocalTrigger();
      const host = new ClientVmHost({ agentSocket, env, log, shortage, openTrigger });
      try {
        host.start();
        this.#clientHost = host;
      } catch (error) {
        // Front ends then find no host and run the Bun CLI: slower calls, nothing lost.
        this.#options.log(
          `no client host on ${host.socketPath}: ${error instanceof Error ? error.message : error}`,
        );
      }
    }
    this.#offerControl();
  }

  stop(): void {
    this.#stopping = true;
    this.#listener?.stop(true);
    rmSync(this.#options.agentSocket, { force: true });
    if (this.#clientHost) rmSync(this.#clientHost.socketPath, { force: true });
    this.#control?.close();
    for (const call of this.#calls) call.close();
  }

  // ---------------------------------------------------------------- control channel

  #offerControl(): void {
    // Triggers already waiting keep waiting on the same promise across a lost daemon.
    if (!this.#resolveReady) this.#ready = new Promise((resolve) => (this.#resolveReady = resolve));
    const vchan = Vchan.server({
      localDomain: this.#options.domain,
      remoteDomain: 0,
      port: VCHAN_BASE_PORT,
      readMin: this.#profile.controlRing.readMin,
      writeMin: this.#profile.controlRing.writeMin,
    });
    const control = vchan.attach({
      kind: StreamKind.Control,
      version: this.#profile.version,
      sendFirst: true,
      connectTimeoutMs: -1,
    });
    this.#control = control;
    void control.connected.then((version) => {
      this.#version = version;
      this.#options.log(`dom0 connected, protocol ${version}`);
      for (const message of this.#outbox.splice(0)) this.#notify(message.type, message.body);
      this.#resolveReady?.();
      this.#resolveReady = null;
    });
    control.onEvent((event) => {
      if (event.kind === PumpEventKind.Message) this.#onControlMessage(event.value, event.payload);
    });
    // Only for the channel in use: one dropped by `#sendControl` was replaced already.
    control.finished.then(
      () => this.#control === control && this.#controlLost("closed"),
      (error: Error) => this.#control === control && this.#controlLost(error.message),
    );
  }

  #controlLost(reason: string): void {
    const lost = this.#control;
    // A daemon that died with a trigger unanswered never will answer it, and a new one does not
    // know it: refused (the client says "Request refused"), rather than waiting forever. Sending
    // it again could run the service twice, if the old daemon had already started it.
    for (const client of [...this.#clients.values()]) {
      if (client.params !== null || client.sentOn === null || client.sentOn !== lost) continue;
      this.#options.log(
        `request ${client.connection.label} refused: the daemon went away before answering it`,
      );
      this.#clients.delete(client.id);
      client.connection.close();
    }
    this.#control?.close();
    this.#control = null;
    this.#version = 0;
    if (this.#stopping) return;
    if (!this.#resolveReady) this.#ready = new Promise((resolve) => (this.#resolveReady = resolve));
    // Upstream exits and relies on a restart; serving on keeps the calls that are running alive.
    this.#options.log(
      `control vchan to dom0 lost (${reason}); waiting for the daemon to reconnect`,
    );
    this.#offerControl();
  }

  #sendControl(type: number, body: Uint8Array): void {
    const control = this.#control;
    if (!control || this.#version === 0) {
      this.#outbox.push({ type, body });
      return;
    }
    try {
      control.send(type, body);
    } catch (error) {
      this.#options.log(`cannot send control message 0x${type.toString(16)}: ${describe(error)}`);
      // A daemon that leaves our messages unread up to the pump's limit is dropped at once:
      // later triggers wait for the next one instead of each being refused here.
      const slowPeer = error instanceof NativeError && error.code === "ENOBUFS";
      if (slowPeer) this.#controlLost(describe(error));
      throw error;
    }
  }

  /** For notifications nobody can act on when they fail (the log line says it). */
  #notify(type: number, body: Uint8Array): void {
    try {
      this.#sendControl(type, body);
    } catch {
      // #sendControl has logged it, and a notification has nobody to tell.
    }
  }

  #onControlMessage(type: number, payload: Uint8Array): void {
    try {
      switch (type) {
        case MSG_EXEC_CMDLINE:
        case MSG_JUST_EXEC:
          return this.#onExec(type === MSG_JUST_EXEC, payload);
        case MSG_SERVICE_CONNECT:
          return this.#onServiceConnect(payload);
        case MSG_SERVICE_REFUSED:
          return this.#onServiceRefused(payload);
        default:
          // Upstream exits here; a message we do not know cannot hurt the calls we serve.
          this.#options.log(
            `ignoring control message of unknown type ` +
              `0x${type.toString(16)} (${payload.length} bytes)`,
          );
      }
    } catch (error) {
      const reason = untrusted(String(error instanceof Error ? error.message : error), 512);
      this.#options.log(`bad control message 0x${type.toString(16)}: ${reason}`);
    }
  }

  #onServiceConnect(payload: Uint8Array): void {
    const { connectDomain, connectPort, ident } = decodeServiceConnect(payload, "terminate");
    const client = this.#clientByIdent(ident);
    if (!client || client.connection.isClosed) {
      // A CONNECT for a client that left (or a second one, §13.9): nothing to tell.
      const waiting = untrusted(fieldText(ident));
      this.#options.log(`SERVICE_CONNECT for '${waiting}', which is not waiting: ignored`);
      return;
    }
    if (client.params) {
      this.#options.log(`second SERVICE_CONNECT for '${untrusted(fieldText(ident))}': ignored`);
      return;
    }
    client.params = { connectDomain, connectPort };
    if (tracing) {
      const domain = this.#options.domain;
      const data = portKey(domain, connectDomain, connectPort);
      const keys = [triggerKey(domain, fieldText(ident)), data];
      traceKeyed(domain, "agent-service-connect", keys);
    }
    client.connection.write(encodeExecParams(client.params));
  }

  #onServiceRefused(payload: Uint8Array): void {
    const client = this.#clientByIdent(decodeServiceParams(payload));
    if (!client) return;
    this.#clients.delete(client.id);
    client.connection.close();
  }

  #clientByIdent(ident: Uint8Array): TriggerClient | undefined {
    const id = this.#profile.identCounter(fieldText(ident));
    return id === null ? undefined : this.#clients.get(id);
  }

  // ---------------------------------------------------------------- incoming calls

  #onExec(justExec: boolean, payload: Uint8Array): void {
    const request = decodeExecCommand(payload, "terminate");
    const parsed = parseCommand(request.command, { stripUser: true });
    const prepared = prepareService(parsed, this.#context);
    const params = { connectDomain: request.connectDomain, connectPort: request.connectPort };
    const domain = this.#options.domain;
    const { connectDomain, connectPort } = params;
    const trace = traceCall(domain)?.link(portKey(domain, connectDomain, connectPort)) ?? null;
    trace?.stage("exec-request", { command: request.command.slice(0, 80) });
    const run = () => this.#runCall(params, prepared, justExec, trace);
    const waits =
      prepared.kind === "rpc" &&
      prepared.config.waitForSession &&
      parsed.kind === "rpc" &&
      !parsed.nogui;
    if (waits)
      this.#session.whenReady(
        parsed.kind === "rpc" ? (parsed.user ?? "") : "",
        parsed.kind === "rpc" ? parsed.source : "",
        run,
      );
    else run();
  }

  /** The service of a connected call; a failure to start it ends that call only. */
  #startService(
    stream: Stream,
    prepared: ReturnType<typeof prepareService>,
    justExec: boolean,
    port: number,
    trace: CallTrace | null,
  ): void {
    try {
      const pid = startService(stream, prepared, justExec, this.#context);
      trace?.stage("service-spawned", { child: pid });
      // A SIGUSR1 from this service (or its children) switches this call only (§6.6).
      if (pid !== null) stream.setChild(pid);
    } catch (error) {
      // Never an unhandled rejection: that would end the agent and every call it serves.
      this.#options.log(`call on port ${port}: cannot start the service: ${describe(error)}`);
      try {
        stream.finishWith(QREXEC_EXIT_PROBLEM, !justExec);
      } catch {
        stream.close();
      }
    }
  }

  #runCall(
    params: ExecParams,
    prepared: ReturnType<typeof prepareService>,
    justExec: boolean,
    trace: CallTrace | null,
    deadline = Date.now() + DATA_CONNECT_TIMEOUT_MS,
  ): void {
    const where = `data vchan to domain ${params.connectDomain} port ${params.connectPort}`;
    // Out of fds, the data vchan is tried again until the caller's connect timeout, rather
    // than leaving the caller to wait that long for a vchan that will never come.
    const retry = (error: unknown): boolean => {
      const code = fdErrorCode(error);
      if (code === null || Date.now() + FD_RETRY_MS >= deadline || this.#stopping) return false;
      this.#shortage.refused(code, `${where}: ${describe(error)} (trying again)`);
      setTimeout(() => this.#runCall(params, prepared, justExec, trace, deadline), FD_RETRY_MS);
      return true;
    };
    // Started by the pump itself the moment the vchan connects, where it can (§5.2's order).
    const spawn = pumpSpawn(prepared, justExec, this.#context);
    let stream: Stream;
    try {
      const vchan = Vchan.clientAsync({
        localDomain: this.#options.domain,
        remoteDomain: params.connectDomain,
        port: params.connectPort,
      });
      stream = vchan.attach({
        kind: StreamKind.DataService,
        version: this.#profile.version,
        sendFirst: this.#profile.dataHelloFirst,
        connectTimeoutMs: Math.max(deadline - Date.now(), 1),
        ...serviceStreamFlags(prepared),
        ...this.#profile.serviceFlags,
        ...(spawn && { spawn }),
      });
    } catch (error) {
      if (retry(error)) return;
      this.#options.log(`cannot open ${where}: ${describe(error)}`);
      this.#notify(MSG_CONNECTION_TERMINATED, encodeConnectionTerminated(params));
      return;
    }
    this.#calls.add(stream);
    if (prepared.kind === "rpc") {
      const { source, serviceName, argument } = prepared.command;
      const service = argument ? `${serviceName}+${argument}` : serviceName;
      this.#options.statusFile?.add(stream, source, service);
    }
    const byPump = spawn !== null;
    if (spawn) {
      logSpawnFailure(stream, spawn, this.#context);
      void stream.spawned.then((pid) => {
        if (pid > 0) trace?.stage("service-spawned", { child: pid }, stream.spawnedAt);
      });
    }
    let connected = false;
    void stream.connected.then(() => {
      connected = true;
      this.#shortage.recovered();
      trace?.stage("data-connected", {}, stream.connectedAt);
      if (!byPump) this.#startService(stream, prepared, justExec, params.connectPort, trace);
    });
    const done = (error: Error | null) => {
      trace?.pumpStages(stream.pumpMarks);
      trace?.stage("teardown", error ? { problem: error.message } : {});
      this.#calls.delete(stream);
      this.#options.statusFile?.remove(stream);
      stream.close();
      if (error && !connected && retry(error)) return;
      if (error) this.#options.log(`call on port ${params.connectPort}: ${error.message}`);
      this.#notify(MSG_CONNECTION_TERMINATED, encodeConnectionTerminated(params));
    };
    stream.finished.then(
      () => done(null),
      (error: Error) => done(error),
    );
  }

  // ---------------------------------------------------------------- trigger socket

  async #serveTrigger(connection: Connection): Promise<void> {
    const client = this.#addClient(connection);
    try {
      const message = await connection.readMessage(TRIGGER4_FIXED_BYTES + MAX_SERVICE_NAME_LEN);
      if (message === null) return;
      await this.#acceptTrigger(client, message.header, message.payload);
    } catch (error) {
      this.#refuseTrigger(client, error);
    }
  }

  /**
   * A trigger connection inside this process, for a call the client host runs: the same as one
   * through the trigger socket, without its connect, accept and reads.
   */
  openLocalTrigger(): InProcessTrigger {
    const link: InProcessTrigger = new InProcessTrigger((message) => {
      try {
        const frame = readFrame(message, MAX_SERVICE_NAME_LEN + TRIGGER4_FIXED_BYTES);
        if (frame === null || frame.consumed !== message.length)
          throw new Error(`a trigger of ${message.length} bytes is not one whole message`);
        this.#acceptTrigger(client, frame.header, frame.payload).catch((error: unknown) =>
          this.#refuseTrigger(client, error),
        );
      } catch (error) {
        this.#refuseTrigger(client, error);
      }
    });
    const client = this.#addClient(link);
    return link;
  }

  #addClient(connection: TriggerPeer): TriggerClient {
    const client: TriggerClient = {
      id: this.#nextClientId++,
      connection,
      params: null,
      sentOn: null,
    };
    connection.label = this.#profile.ident(client.id);
    this.#clients.set(client.id, client);
    connection.onClose(() => {
      this.#clients.delete(client.id);
      // The caller's end of a call it was told about: the agent reports it (§2.1 step 8).
      if (client.params)
        this.#notify(MSG_CONNECTION_TERMINATED, encodeConnectionTerminated(client.params));
    });
    return client;
  }

  /** Checks a caller's trigger and sends it to dom0; throws what refuses it. */
  async #acceptTrigger(client: TriggerClient, header: Header, payload: Uint8Array): Promise<void> {
    if (header.type !== MSG_TRIGGER_SERVICE4 || header.len <= TRIGGER4_FIXED_BYTES) {
      throw new Error(
        `expected MSG_TRIGGER_SERVICE4 with more than ${TRIGGER4_FIXED_BYTES} ` +
          `bytes, got type 0x${header.type.toString(16)} len ${header.len}`,
      );
    }
    const trigger = withIdent(decodeTrigger4(payload), this.#profile.ident(client.id));
    const domain = this.#options.domain;
    const trace = traceCall(domain)?.link(triggerKey(domain, this.#profile.ident(client.id)));
    const asked = { target: fieldText(trigger.target), service: fieldText(trigger.service) };
    trace?.stage("agent-trigger", asked);
    await this.#ready;
    const { type, payload: body } = this.#profile.encodeTrigger(trigger, this.#version);
    this.#sendControl(type, body);
    client.sentOn = this.#control;
  }

  #refuseTrigger(client: TriggerClient, error: unknown): void {
    const reason = untrusted(String(error instanceof Error ? error.message : error), 512);
    this.#options.log(`trigger from ${client.connection.label} refused: ${reason}`);
    this.#clients.delete(client.id);
    client.connection.close();
  }
}
