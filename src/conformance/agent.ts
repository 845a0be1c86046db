// Role "agent": the program under test is a VM's qrexec-agent. The kit is dom0 (the daemon side:
// vchan client of port 512 toward the agent's domain), the caller's side of each data vchan (the
// vchan server, as dom0's qrexec-client is), and qrexec-client-vm on the agent's trigger socket.

import { join } from "node:path";
import { Connection } from "../io/connection.ts";
import {
  decodeExecParams,
  decodeTrigger3,
  decodeTrigger4,
  decodeTriggerV2,
  encodeExecCommand,
  encodeServiceConnect,
  encodeServiceParams,
  encodeTrigger3,
  encodeTrigger4,
  fieldText,
  frame,
} from "../protocol/codec.ts";
import * as C from "../protocol/constants.ts";
import { BaseFixture, Inbox, within } from "./fixture.ts";
import {
  baseEnvironment,
  expandPlaceholders,
  hasPlaceholder,
  ProgramUnderTest,
} from "./program.ts";
import type { RoleDriver } from "./runner.ts";
import { checkServiceStream, describeCheck, type ServiceStreamExpectation } from "./streams.ts";
import { CaseFailure, check, type Case, type CaseContext } from "./types.ts";
import {
  describe,
  header,
  RawPeer,
  summarize,
  typeName,
  vchanPath,
  type RawMessage,
} from "./wire.ts";

/** The agent's domain id in the kit's world (VCHAN_DOMAIN of the program under test). */
export const AGENT_DOMAIN = 5;
const IDENT_CHARS = /^[0-9A-Za-z_. -]*$/;

export class AgentFixture extends BaseFixture {
  readonly rpcDir = join(this.dir, "rpc");
  readonly configDir = join(this.dir, "rpc-config");
  readonly agentSocket = join(this.dir, "agent.sock");
  control: RawPeer | null = null;
  inbox: Inbox | null = null;
  /** The version in the agent's control HELLO, or why there was none. */
  agentHello: number | null = null;
  helloError = "";
  controlVersion = 0;
  nextPort = 600;

  constructor() {
    super("qrx-conf-agent-");
  }

  get ctl(): RawPeer {
    if (!this.control) throw new Error("no control connection");
    return this.control;
  }

  get messages(): Inbox {
    if (!this.inbox) throw new Error("the control handshake was not done");
    return this.inbox;
  }
}

/** Services the cases call (the agent's QREXEC_SERVICE_PATH). */
const SERVICES: Record<string, string | { body: string; mode: number }> = {
  "test.Add": "read a b; echo $((a+b))",
  "test.Fail": "echo oops >&2; exit 3",
  "test.Order": "echo out; exec 1>&-; sleep 0.3; echo late >&2; exit 4",
  "test.Quick": "exit 0",
  "test.Count": "sleep 1; wc -c",
  "test.Zero": "head -c 8388608 /dev/zero",
  "test.Burst": "dd if=/dev/zero bs=200000 count=1 2>/dev/null",
  "test.Big": "head -c 20000 /dev/zero | tr '\\0' x",
  "test.Cat": "cat",
  "test.Hold": "cat >/dev/null",
  "test.NotExecutable": { body: "exit 0", mode: 0o644 },
};

export function agentDriver(command: string): RoleDriver<AgentFixture> {
  return {
    role: "agent",
    cases: AGENT_CASES,
    create: () => new AgentFixture(),
    async start(f, signal) {
      f.signal = signal;
      f.writeScripts(f.rpcDir, SERVICES);
      const env = {
        ...baseEnvironment(),
        QRX_VCHAN: "socket",
        VCHAN_SOCKET_DIR: f.vchanDir,
        VCHAN_DOMAIN: String(AGENT_DOMAIN),
        QREXEC_SERVICE_PATH: f.rpcDir,
        QUBES_RPC_CONFIG_PATH: f.configDir,
        QRX_AGENT_SOCKET: f.agentSocket,
      };
      const values = {
        AGENT_SOCKET: f.agentSocket,
        VCHAN_SOCKET_DIR: f.vchanDir,
        DOMAIN: String(AGENT_DOMAIN),
        SERVICE_PATH: f.rpcDir,
        DIR: f.dir,
      };
      const append = hasPlaceholder(command, "AGENT_SOCKET")
        ? []
        : [`--agent-socket=${f.agentSocket}`];
      f.program = new ProgramUnderTest({
        command: expandPlaceholders(command, values),
        append,
        env,
        cwd: f.dir,
      });
      f.control = f.own(
        await RawPeer.connect(
          vchanPath(f.vchanDir, AGENT_DOMAIN, 0, C.VCHAN_BASE_PORT),
          15_000,
          f.alive,
        ),
      );
      try {
        f.agentHello = await f.control.receiveHello();
      } catch (error) {
        f.helloError = (error as Error).message;
      }
    },
    teardown: (f) => f.teardown(),
    diagnose: (f) => f.diagnose(),
  };
}

/** The control HELLO exchange with `version` as dom0's; the agent's own must have come first. */
async function handshake(f: AgentFixture, version = C.QREXEC_PROTOCOL_VERSION): Promise<number> {
  check(f.agentHello !== null, `no HELLO from the agent on the control vchan: ${f.helloError}`);
  f.ctl.sendHello(version);
  f.controlVersion = Math.min(version, f.agentHello);
  f.inbox = new Inbox(f.ctl);
  return f.agentHello;
}

interface Call {
  data: RawPeer;
  port: number;
  /** The agent's data HELLO. */
  hello: number;
  version: number;
}

/** dom0 → VM: EXEC_CMDLINE (or JUST_EXEC) for `command`; the kit is the data vchan's server. */
async function openCall(
  f: AgentFixture,
  context: CaseContext,
  command: string,
  options: { type?: number; version?: number } = {},
): Promise<Call> {
  const port = f.nextPort++;
  const listener = RawPeer.listen(vchanPath(f.vchanDir, 0, AGENT_DOMAIN, port));
  f.ownListener(listener.stop);
  f.ctl.send(
    options.type ?? C.MSG_EXEC_CMDLINE,
    encodeExecCommand({ connectDomain: 0, connectPort: port }, command),
  );
  context.step(
    `waiting for the agent to connect the data vchan (port ${port}) for ${JSON.stringify(command)}`,
  );
  const data = f.own(await f.whileAlive(listener.next(), "dom0 waited for the data vchan"));
  listener.stop();
  const version = options.version ?? C.QREXEC_PROTOCOL_VERSION;
  // The vchan server sends its HELLO at once (§4.2); a Mirage peer waits for it.
  data.sendHello(version);
  context.step("waiting for the agent's data HELLO");
  let hello: number;
  try {
    hello = await data.receiveHello();
  } catch (error) {
    throw new CaseFailure(`data vchan: ${(error as Error).message}`);
  }
  return { data, port, hello, version: Math.min(hello, version) };
}

async function terminated(f: AgentFixture, context: CaseContext, port: number): Promise<void> {
  context.step(`waiting for CONNECTION_TERMINATED for port ${port}`);
  const message = await f.messages.take(
    (m) =>
      m.type === C.MSG_CONNECTION_TERMINATED &&
      m.payload.length >= 8 &&
      decodeExecParams(m.payload).connectPort === port,
  );
  check(message !== null, `the control vchan closed before CONNECTION_TERMINATED for port ${port}`);
  check(
    message.payload.length === 8,
    `CONNECTION_TERMINATED with a ${message.payload.length}-byte payload (expected 8)`,
  );
  const params = decodeExecParams(message.payload);
  check(
    params.connectDomain === 0,
    `CONNECTION_TERMINATED{${params.connectDomain}, ${port}}, expected domain 0`,
  );
}

/** A whole call: the messages checked against §6.3 and `expected`, then CONNECTION_TERMINATED. */
async function serviceCall(
  f: AgentFixture,
  context: CaseContext,
  command: string,
  stdin: Uint8Array[],
  expected: Omit<ServiceStreamExpectation, "version">,
  options: { type?: number; version?: number; resultOnly?: boolean } = {},
): Promise<string> {
  const call = await openCall(f, context, command, options);
  for (const chunk of stdin) call.data.send(C.MSG_DATA_STDIN, chunk);
  context.step("reading the service's messages until the agent closes the data vchan");
  const { messages, error } = await call.data.receiveAll();
  const result = checkServiceStream(messages, { ...expected, version: call.version }, error);
  // A follow-up call that only shows the agent still serves checks the output and status alone.
  if (options.resultOnly)
    result.problems = result.problems.filter((problem) =>
      /^(stdout|exit code|no EXIT_CODE)/.test(problem),
    );
  check(result.problems.length === 0, describeCheck(result));
  await terminated(f, context, call.port);
  return `${result.summary}; CONNECTION_TERMINATED{0, ${call.port}}`;
}

const bytes = (value: string) => new TextEncoder().encode(value);
const EOF = new Uint8Array(0);

/** The agent still serves: a test.Add call works. */
async function stillServes(f: AgentFixture, context: CaseContext): Promise<string> {
  context.step("checking that the agent still serves a call");
  return serviceCall(
    f,
    context,
    "user:QUBESRPC test.Add dom0",
    [bytes("2 3\n"), EOF],
    { stdout: "5\n", exitCode: 0 },
    { resultOnly: true },
  );
}

/**
 * How an agent answered the loss of its control vchan within `ms`: it exited (not by a signal), or
 * it offered a new control vchan with a HELLO; null while it did neither.
 */
async function disconnectOutcome(f: AgentFixture, ms: number): Promise<string | null> {
  const path = vchanPath(f.vchanDir, AGENT_DOMAIN, 0, C.VCHAN_BASE_PORT);
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (!f.prog.running) {
      check(!f.prog.signal, `the agent was ${f.prog.status()}`);
      return `the agent exited (${f.prog.status()})`;
    }
    try {
      const again = f.own(new RawPeer(await Connection.connect(path)));
      const hello = await within(2000, again.receiveHello());
      check(hello !== "timeout", "a new control connection was accepted but no HELLO came");
      return `the agent offered a new control vchan (HELLO ${hello})`;
    } catch (error) {
      if (error instanceof CaseFailure) throw error;
    }
    await Bun.sleep(20);
  }
  return null;
}

/** Sends a trigger on the agent's socket as qrexec-client-vm does. */
async function triggerClient(
  f: AgentFixture,
  context: CaseContext,
  service = "test.Add",
  target = "vault",
): Promise<Connection> {
  context.step("connecting to the agent's trigger socket");
  const client = (await RawPeer.connect(f.agentSocket, 5000, f.alive)).connection;
  f.own(new RawPeer(client));
  client.write(
    frame(C.MSG_TRIGGER_SERVICE4, encodeTrigger4({ source: "", target, ident: "SOCKET", service })),
  );
  return client;
}

interface ForwardedTrigger {
  type: number;
  target: string;
  service: string;
  ident: Uint8Array;
  source?: string;
}

function decodeForwarded(message: RawMessage): ForwardedTrigger {
  if (message.type === C.MSG_TRIGGER_SERVICE4) {
    const t = decodeTrigger4(message.payload);
    return {
      type: message.type,
      target: fieldText(t.target),
      service: fieldText(t.service),
      ident: t.ident,
      source: fieldText(t.source),
    };
  }
  if (message.type === C.MSG_TRIGGER_SERVICE3) {
    const t = decodeTrigger3(message.payload);
    return {
      type: message.type,
      target: fieldText(t.target),
      service: fieldText(t.service),
      ident: t.ident,
    };
  }
  if (message.type === C.MSG_TRIGGER_SERVICE) {
    check(
      message.payload.length === C.TRIGGER_V2_BYTES,
      `TRIGGER_SERVICE of ${message.payload.length} bytes (expected 128)`,
    );
    const t = decodeTriggerV2(message.payload);
    return {
      type: message.type,
      target: fieldText(t.target),
      service: fieldText(t.service),
      ident: t.ident,
    };
  }
  throw new CaseFailure(`${describe(message)} where a trigger was expected`);
}

function triggerTypeFor(version: number): number {
  return version >= 4
    ? C.MSG_TRIGGER_SERVICE4
    : version === 3
      ? C.MSG_TRIGGER_SERVICE3
      : C.MSG_TRIGGER_SERVICE;
}

function identProblem(ident: Uint8Array): string | null {
  const end = ident.indexOf(0);
  if (end === -1) return "ident without a NUL in its 32 bytes";
  if (ident.subarray(end).some((b) => b !== 0)) return "ident with bytes after its NUL";
  const value = new TextDecoder().decode(ident.subarray(0, end));
  if (!IDENT_CHARS.test(value))
    return `ident ${JSON.stringify(value)} has characters outside [0-9A-Za-z_.- ]`;
  return null;
}

/** A trigger from a client, forwarded at the control version `version` (§2.1 step 2, §15.1). */
async function forwardedTrigger(
  f: AgentFixture,
  context: CaseContext,
  version: number,
  service = "test.Add",
): Promise<{ client: Connection; trigger: ForwardedTrigger }> {
  const client = await triggerClient(f, context, service);
  context.step("waiting for the agent to forward the trigger on the control vchan");
  const message = await f.messages.take((m) => m.type !== C.MSG_CONNECTION_TERMINATED);
  check(message !== null, "the control vchan closed instead of a forwarded trigger");
  const trigger = decodeForwarded(message);
  const want = triggerTypeFor(version);
  check(
    trigger.type === want,
    `${typeName(trigger.type)} forwarded at control version ${version}; ` +
      `a daemon at that version accepts only ${typeName(want)} (§3.2)`,
  );
  check(
    trigger.target === "vault" && trigger.service === service,
    `forwarded target ${JSON.stringify(trigger.target)}, service ` +
      `${JSON.stringify(trigger.service)}; the client sent "vault", ${JSON.stringify(service)}`,
  );
  const problem = identProblem(trigger.ident);
  check(problem === null, `${problem} (§3.5)`);
  return { client, trigger };
}

async function versionCase(
  f: AgentFixture,
  context: CaseContext,
  version: number,
): Promise<string> {
  const agentVersion = await handshake(f, version);
  const { client, trigger } = await forwardedTrigger(f, context, Math.min(agentVersion, version));
  f.ctl.send(C.MSG_SERVICE_REFUSED, encodeServiceParams(trigger.ident));
  context.step("waiting for the client's connection to close after SERVICE_REFUSED");
  const reply = await client.read(1).catch(() => null);
  check(
    reply === null,
    `the client got ${reply?.length} byte(s) after SERVICE_REFUSED instead of EOF`,
  );
  return (
    `agent HELLO ${agentVersion}, dom0 HELLO ${version}: trigger ` +
    `forwarded as ${typeName(trigger.type)}; REFUSED closed the client`
  );
}

/** The agent dropped something hostile: it either goes on serving, or exits cleanly (no signal). */
async function survivesOrExits(
  f: AgentFixture,
  context: CaseContext,
  what: string,
): Promise<string> {
  context.step(`watching the agent after ${what}`);
  const ended = await within(1000, f.messages.whenEnded());
  if (ended !== "timeout" || f.messages.ended) {
    const exited = await f.prog.waitExit(3000);
    check(exited, `the agent closed the control vchan after ${what} but did not exit`);
    check(!f.prog.signal, `the agent was ${f.prog.status()} after ${what}`);
    return `${what}: the agent closed the control vchan and exited (${f.prog.status()})`;
  }
  check(
    f.prog.running,
    `the agent ${f.prog.status()} after ${what} without closing the control vchan first`,
  );
  const served = await stillServes(f, context);
  return `${what}: ignored; the agent serves on (${served})`;
}

export const AGENT_CASES: Case<AgentFixture>[] = [
  {
    name: "handshake-v4",
    role: "agent",
    spec: "§4.2",
    checks:
      "The agent, as the control vchan server, sends HELLO " +
      "at once with version 4, and serves at the negotiated 4.",
    expected:
      "HELLO 4 from the agent before dom0 sends anything; a call served after dom0's HELLO 4",
    async run(f, context) {
      const version = await handshake(f, 4);
      check(version === 4, `the agent's HELLO carries version ${version}`);
      return `HELLO ${version}; ${await stillServes(f, context)}`;
    },
  },
  {
    name: "handshake-v3",
    role: "agent",
    spec: "§4.2, §3.2, §15.1",
    checks:
      "With a v3 daemon (min rule: 3), a client's trigger reaches " +
      "dom0 as TRIGGER_SERVICE3, the only trigger a v3 daemon accepts.",
    expected:
      "TRIGGER_SERVICE3 with the client's target and " +
      "service, a valid ident; REFUSED closes the client",
    run: (f, context) => versionCase(f, context, 3),
  },
  {
    name: "handshake-v2",
    role: "agent",
    spec: "§4.2, §3.2, §15.1",
    checks: "With a v2 daemon, a client's trigger reaches dom0 as the 128-byte TRIGGER_SERVICE.",
    expected:
      "TRIGGER_SERVICE (128 bytes) with the client's target and service; REFUSED closes the client",
    run: (f, context) => versionCase(f, context, 2),
  },
  {
    name: "handshake-v2-data",
    role: "agent",
    spec: "§4.2, §3.4",
    checks:
      "A data vchan whose caller says HELLO 2 gets data " +
      "chunks of at most 4096 bytes (MAX_DATA_CHUNK_V2).",
    expected: "20000 bytes of stdout in chunks of ≤ 4096, both EOFs, EXIT_CODE 0 last",
    async run(f, context) {
      await handshake(f);
      return serviceCall(
        f,
        context,
        "user:QUBESRPC test.Big dom0",
        [EOF],
        { stdout: "x".repeat(20000), exitCode: 0 },
        { version: 2 },
      );
    },
  },
  {
    name: "handshake-below-minimum",
    role: "agent",
    spec: "§4.2",
    checks:
      "A daemon HELLO with version 1 (below the minimum 2) is fatal for the control connection.",
    expected:
      "the agent closes the control vchan (and exits, " +
      "or offers a new one) without serving, no crash",
    async run(f, context) {
      check(f.agentHello !== null, `no HELLO from the agent: ${f.helloError}`);
      f.ctl.sendHello(1);
      context.step("waiting for the agent to close the control vchan after HELLO 1");
      const inbox = new Inbox(f.ctl);
      const ended = await within(5000, inbox.whenEnded());
      check(
        ended !== "timeout",
        `the control vchan stayed open 5 s after HELLO 1 (received: ${summarize(inbox.all)})`,
      );
      check(!f.prog.signal, `the agent was ${f.prog.status()}`);
      return `control vchan closed after HELLO 1 (agent ${f.prog.status()})`;
    },
  },
  {
    name: "exec-service",
    role: "agent",
    spec: "§2.3, §6.3",
    checks:
      "EXEC_CMDLINE runs the service with the caller's stdin; stdout data, one EOF per " +
      "stream, EXIT_CODE 0 last; CONNECTION_TERMINATED{0, port} on the control vchan.",
    expected:
      'STDOUT "33\\n", STDOUT EOF, STDERR EOF, EXIT_CODE 0 last; CONNECTION_TERMINATED{0, port}',
    async run(f, context) {
      await handshake(f);
      return serviceCall(f, context, "user:QUBESRPC test.Add dom0", [bytes("11 22\n"), EOF], {
        stdout: "33\n",
        exitCode: 0,
      });
    },
  },
  {
    name: "exit-code-service-status",
    role: "agent",
    spec: "§6.2 step 3, §8",
    checks:
      "The service's own exit status (3) is the EXIT_CODE; its stderr is sent as STDERR data.",
    expected: 'STDERR "oops\\n", both EOFs, EXIT_CODE 3 last',
    async run(f, context) {
      await handshake(f);
      return serviceCall(f, context, "user:QUBESRPC test.Fail dom0", [EOF], {
        stderr: "oops\n",
        exitCode: 3,
      });
    },
  },
  {
    name: "exit-code-127",
    role: "agent",
    spec: "§5.3, §5.9, §8",
    checks: "A service that is not in QREXEC_SERVICE_PATH gives both EOFs and EXIT_CODE 127.",
    expected: "STDOUT EOF, STDERR EOF, EXIT_CODE 127",
    async run(f, context) {
      await handshake(f);
      return serviceCall(f, context, "user:QUBESRPC test.Nothing dom0", [EOF], {
        stdout: "",
        exitCode: 127,
      });
    },
  },
  {
    name: "exit-code-125",
    role: "agent",
    spec: "§3.6, §5.2, §8",
    checks:
      "A command that does not parse (QUBESRPC without " +
      "its space) gives both EOFs and EXIT_CODE 125.",
    expected: "STDOUT EOF, STDERR EOF, EXIT_CODE 125",
    async run(f, context) {
      await handshake(f);
      return serviceCall(f, context, "user:QUBESRPCtest.Add dom0", [EOF], {
        stdout: "",
        exitCode: 125,
      });
    },
  },
  {
    name: "exit-code-125-not-executable",
    role: "agent",
    spec: "§5.3, §8",
    checks:
      "A service file that exists but is not executable " +
      "gives EXIT_CODE 125 (exists, cannot be run).",
    expected: "STDOUT EOF, STDERR EOF, EXIT_CODE 125",
    async run(f, context) {
      await handshake(f);
      return serviceCall(f, context, "user:QUBESRPC test.NotExecutable dom0", [EOF], {
        stdout: "",
        exitCode: 125,
      });
    },
  },
  {
    name: "just-exec",
    role: "agent",
    spec: "§5.8",
    checks:
      "JUST_EXEC connects the data vchan, does the HELLO exchange and sends only EXIT_CODE 0.",
    expected: "EXIT_CODE 0 and nothing else; CONNECTION_TERMINATED",
    async run(f, context) {
      await handshake(f);
      return serviceCall(
        f,
        context,
        "user:QUBESRPC test.Quick dom0",
        [],
        { exitCode: 0, exitCodeOnly: true },
        { type: C.MSG_JUST_EXEC },
      );
    },
  },
  {
    name: "just-exec-not-found",
    role: "agent",
    spec: "§5.8",
    checks: "JUST_EXEC of a missing service sends only EXIT_CODE 127.",
    expected: "EXIT_CODE 127 and nothing else",
    async run(f, context) {
      await handshake(f);
      return serviceCall(
        f,
        context,
        "user:QUBESRPC test.Nothing dom0",
        [],
        { exitCode: 127, exitCodeOnly: true },
        { type: C.MSG_JUST_EXEC },
      );
    },
  },
  {
    name: "eof-and-exit-order",
    role: "agent",
    spec: "§6.3, §13.3",
    checks:
      "A service that closes stdout early, writes stderr later and exits 4: STDOUT " +
      "EOF once, stderr data, STDERR EOF once, EXIT_CODE 4 only after both EOFs.",
    expected: 'STDOUT "out\\n", STDOUT EOF, STDERR "late\\n", STDERR EOF, EXIT_CODE 4 last',
    async run(f, context) {
      await handshake(f);
      return serviceCall(f, context, "user:QUBESRPC test.Order dom0", [EOF], {
        stdout: "out\n",
        stderr: "late\n",
        exitCode: 4,
      });
    },
  },
  {
    name: "exit-without-stdin-eof",
    role: "agent",
    spec: "§6.3",
    checks:
      "The service side does not wait for stdin EOF: a service that exits " +
      "at once gets its EXIT_CODE out while the caller never closes stdin.",
    expected: "STDOUT EOF, STDERR EOF, EXIT_CODE 0 with no STDIN EOF sent",
    async run(f, context) {
      await handshake(f);
      return serviceCall(f, context, "user:QUBESRPC test.Quick dom0", [bytes("unread\n")], {
        stdout: "",
        exitCode: 0,
      });
    },
  },
  {
    name: "stdin-slow-service",
    role: "agent",
    spec: "§6.2 step 8, §6.8",
    checks:
      "4 MiB of stdin to a service that reads nothing for 1 s: the agent buffers " +
      "or throttles (never drops, never dies) and the service counts every byte.",
    expected: 'STDOUT "4194304\\n", both EOFs, EXIT_CODE 0',
    async run(f, context) {
      await handshake(f);
      const chunk = new Uint8Array(C.MAX_DATA_CHUNK_V3);
      const stdin = [...Array.from({ length: 64 }, () => chunk), EOF];
      return serviceCall(f, context, "user:QUBESRPC test.Count dom0", stdin, {
        stdout: (out) => out.trim() === "4194304",
        exitCode: 0,
      });
    },
  },
  {
    name: "stdout-slow-caller",
    role: "agent",
    spec: "§6.2 step 9, §6.8",
    checks:
      "8 MiB of stdout while the caller reads nothing for 1 s: chunks " +
      "sized by buffer space, within the v3 limit, nothing lost.",
    expected: "8388608 bytes of STDOUT in chunks of ≤ 65536, both EOFs, EXIT_CODE 0",
    async run(f, context) {
      await handshake(f);
      const call = await openCall(f, context, "user:QUBESRPC test.Zero dom0");
      call.data.send(C.MSG_DATA_STDIN, EOF);
      await Bun.sleep(1000);
      context.step("reading 8 MiB of stdout");
      const { messages, error } = await call.data.receiveAll();
      const result = checkServiceStream(
        messages,
        { version: call.version, exitCode: 0, stdout: (out) => out.length === 8388608 },
        error,
      );
      check(result.problems.length === 0, describeCheck(result));
      await terminated(f, context, call.port);
      return result.summary;
    },
  },
  {
    name: "chunk-size-v3",
    role: "agent",
    spec: "§3.4, §6.2 step 9, §14 bug 1",
    checks:
      "A service's single 200000-byte write goes out as several " +
      "chunks, each header carrying its own length ≤ 65536.",
    expected: "200000 bytes of STDOUT in chunks of ≤ 65536, both EOFs, EXIT_CODE 0",
    async run(f, context) {
      await handshake(f);
      return serviceCall(f, context, "user:QUBESRPC test.Burst dom0", [EOF], {
        stdout: (out) => out.length === 200000,
        exitCode: 0,
      });
    },
  },
  {
    name: "oversize-data-chunk",
    role: "agent",
    spec: "§3.4, §6.2 step 8.2",
    checks:
      "A STDIN header announcing 65537 bytes (> MAX_DATA_CHUNK_V3) is fatal for that " +
      "call: the data vchan closes, CONNECTION_TERMINATED follows, the agent serves on.",
    expected: "data vchan closed without hanging; CONNECTION_TERMINATED; a following call served",
    async run(f, context) {
      await handshake(f);
      const call = await openCall(f, context, "user:QUBESRPC test.Hold dom0");
      call.data.sendRaw(header(C.MSG_DATA_STDIN, C.MAX_DATA_CHUNK_V3 + 1));
      call.data.sendRaw(new Uint8Array(C.MAX_DATA_CHUNK_V3 + 1));
      context.step("waiting for the agent to close the data vchan after an oversize chunk");
      const { messages } = await call.data.receiveAll();
      await terminated(f, context, call.port);
      return `data vchan closed (${summarize(messages)}); ${await stillServes(f, context)}`;
    },
  },
  {
    name: "unknown-data-message",
    role: "agent",
    spec: "§6.2 step 8.2",
    checks: "An unknown message type on a data vchan is fatal for that call only.",
    expected: "data vchan closed without hanging; CONNECTION_TERMINATED; a following call served",
    async run(f, context) {
      await handshake(f);
      const call = await openCall(f, context, "user:QUBESRPC test.Hold dom0");
      call.data.send(0x1ff, bytes("junk"));
      context.step("waiting for the agent to close the data vchan after an unknown message");
      const { messages } = await call.data.receiveAll();
      await terminated(f, context, call.port);
      return `data vchan closed (${summarize(messages)}); ${await stillServes(f, context)}`;
    },
  },
  {
    name: "unknown-control-message",
    role: "agent",
    spec: "§5.1, §14",
    checks:
      "An unknown control message type is rejected: upstream exits(1), " +
      "Mirage ignores it; either is fine, a hang or a crash is not.",
    expected: "the message ignored and calls served, or the control vchan closed and a clean exit",
    async run(f, context) {
      await handshake(f);
      f.ctl.send(0x2ff, bytes("junk"));
      return survivesOrExits(f, context, "an unknown control message 0x2ff");
    },
  },
  {
    name: "malformed-exec",
    role: "agent",
    spec: "§5.1, §3.3",
    checks:
      "An EXEC_CMDLINE of 4 bytes (shorter than " +
      "exec_params) is rejected without a crash or a hang.",
    expected: "the message dropped and calls served, or the control vchan closed and a clean exit",
    async run(f, context) {
      await handshake(f);
      f.ctl.send(C.MSG_EXEC_CMDLINE, new Uint8Array(4));
      return survivesOrExits(f, context, "a 4-byte EXEC_CMDLINE");
    },
  },
  {
    name: "trigger-forward",
    role: "agent",
    spec: "§2.1 steps 1-2, §3.5, §15.1",
    checks:
      "A client's TRIGGER_SERVICE4 is forwarded (at the negotiated " +
      "version) with its target and service, a valid ident of the " +
      "agent's choosing; SERVICE_REFUSED closes the client with no bytes.",
    expected:
      "TRIGGER_SERVICE4 {target vault, service test.Add, " +
      "valid ident}; client reads EOF after REFUSED",
    async run(f, context) {
      return versionCase(f, context, 4);
    },
  },
  {
    name: "service-connect",
    role: "agent",
    spec: "§2.1 step 5, §5.1",
    checks:
      "SERVICE_CONNECT for a waiting client hands it the raw 8-byte exec_params; " +
      "when the client closes, CONNECTION_TERMINATED{domain, port} goes to dom0.",
    expected:
      "client reads exec_params {7, 700}; CONNECTION_TERMINATED{7, 700} after the client closes",
    async run(f, context) {
      const version = await handshake(f);
      const { client, trigger } = await forwardedTrigger(f, context, Math.min(version, 4));
      f.ctl.send(
        C.MSG_SERVICE_CONNECT,
        encodeServiceConnect({ connectDomain: 7, connectPort: 700 }, trigger.ident),
      );
      context.step("waiting for the client to receive exec_params");
      const raw = await client.read(8).catch(() => null);
      check(raw !== null, "the client's connection closed instead of receiving exec_params");
      const params = decodeExecParams(raw);
      check(
        params.connectDomain === 7 && params.connectPort === 700,
        `the client received {${params.connectDomain}, ${params.connectPort}}`,
      );
      client.close();
      context.step("waiting for CONNECTION_TERMINATED{7, 700}");
      const message = await f.messages.take((m) => m.type === C.MSG_CONNECTION_TERMINATED);
      check(message !== null, "the control vchan closed instead of CONNECTION_TERMINATED");
      const done = decodeExecParams(message.payload);
      check(
        done.connectDomain === 7 && done.connectPort === 700,
        `CONNECTION_TERMINATED{${done.connectDomain}, ${done.connectPort}}`,
      );
      return "client got {7, 700}; CONNECTION_TERMINATED{7, 700} after it closed";
    },
  },
  {
    name: "bad-trigger",
    role: "agent",
    spec: "§2.1 step 2",
    checks:
      "A client that sends a TRIGGER_SERVICE3 (not 4) on the trigger socket " +
      "is closed and nothing is forwarded; a good client after it is forwarded.",
    expected: "the bad client closed, nothing forwarded for it; the next trigger forwarded",
    async run(f, context) {
      const version = await handshake(f);
      const bad = (await RawPeer.connect(f.agentSocket, 5000, f.alive)).connection;
      f.own(new RawPeer(bad));
      bad.write(
        frame(
          C.MSG_TRIGGER_SERVICE3,
          encodeTrigger3({ target: "vault", ident: "SOCKET", service: "test.Bad" }),
        ),
      );
      context.step("waiting for the agent to close the bad client");
      const reply = await bad.read(1).catch(() => null);
      check(reply === null, "the bad client received bytes");
      const { trigger } = await forwardedTrigger(f, context, Math.min(version, 4));
      check(trigger.service !== "test.Bad", "the bad trigger was forwarded");
      return "bad client closed; the next trigger forwarded";
    },
  },
  {
    name: "data-peer-disconnect",
    role: "agent",
    spec: "§6.9",
    checks:
      "The caller closes the data vchan mid-call: the agent ends the " +
      "call (the service sees EOF) and reports CONNECTION_TERMINATED.",
    expected: "CONNECTION_TERMINATED{0, port} after the caller vanished; a following call served",
    async run(f, context) {
      await handshake(f);
      const call = await openCall(f, context, "user:QUBESRPC test.Hold dom0");
      call.data.send(C.MSG_DATA_STDIN, bytes("partial"));
      call.data.close();
      await terminated(f, context, call.port);
      return `CONNECTION_TERMINATED{0, ${call.port}}; ${await stillServes(f, context)}`;
    },
  },
  {
    name: "control-disconnect",
    role: "agent",
    spec: "§6.9",
    checks:
      "dom0 closes the control vchan: the agent exits cleanly, at once or (as upstream) with " +
      "status 1 at its next write, here a client's trigger; or it offers a new control vchan " +
      "to a reconnecting daemon.",
    expected:
      "a clean exit (at once or on the next trigger), or a fresh HELLO on a new control connection",
    async run(f, context) {
      await handshake(f);
      f.ctl.close();
      context.step("waiting for the agent to exit or offer a new control vchan");
      const early = await disconnectOutcome(f, 500);
      if (early !== null) return early;
      // Upstream's agent only learns of the close when it next writes to the control vchan.
      const client = await triggerClient(f, context).catch(() => null);
      context.step("a client's trigger sent: waiting for the agent to exit or offer a new vchan");
      const late = await disconnectOutcome(f, 5000);
      if (late !== null) return `${late}${client === null ? "" : " after a client's trigger"}`;
      const status = f.prog.status();
      const what = "the agent neither exited nor offered a new control vchan";
      throw new CaseFailure(`${what}, even after a client's trigger (${status})`);
    },
  },
];
