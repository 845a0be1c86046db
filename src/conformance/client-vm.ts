// Role "client-vm": the program under test is qrexec-client-vm. The kit is the VM's agent on the
// trigger socket (it reads the TRIGGER_SERVICE4, then refuses or hands over exec_params) and the
// service side of the data vchan (the client is the vchan server, the kit connects as the target
// domain). Each case starts the client with its own arguments and stdin.

import { existsSync } from "node:fs";
import { join } from "node:path";
import { decodeTrigger4, encodeExecParams, encodeExitCode, fieldText } from "../protocol/codec.ts";
import * as C from "../protocol/constants.ts";
import { BaseFixture, within } from "./fixture.ts";
import {
  baseEnvironment,
  expandPlaceholders,
  hasPlaceholder,
  ProgramUnderTest,
} from "./program.ts";
import type { RoleDriver } from "./runner.ts";
import { CaseFailure, check, type Case, type CaseContext } from "./types.ts";
import { header, RawPeer, summarize, text, typeName, vchanPath, type RawMessage } from "./wire.ts";

/** The client's own domain (VCHAN_DOMAIN) and the target the kit plays. */
export const CLIENT_DOMAIN = 7;
const TARGET_DOMAIN = 9;
const DATA_PORT = 600;

export class ClientVmFixture extends BaseFixture {
  readonly agentSocket = join(this.dir, "agent.sock");
  command = "";
  triggers: ReturnType<typeof RawPeer.listen> | null = null;

  constructor() {
    super("qrx-conf-cvm-");
  }
}

export function clientVmDriver(command: string): RoleDriver<ClientVmFixture> {
  return {
    role: "client-vm",
    cases: CLIENT_VM_CASES,
    create: () => new ClientVmFixture(),
    async start(f, signal) {
      f.signal = signal;
      f.command = command;
      f.triggers = RawPeer.listen(f.agentSocket);
      f.ownListener(f.triggers.stop);
    },
    teardown: (f) => f.teardown(),
    diagnose: (f) => f.diagnose(),
  };
}

interface Launch {
  /** Options before TARGET (the kit adds --agent-socket unless the command has {AGENT_SOCKET}). */
  options?: string[];
  target?: string;
  service?: string;
  /** LOCAL_PROGRAM and its arguments. */
  local?: string[];
  stdin?: Uint8Array | "pipe";
  stdoutDelayMs?: number;
}

/** Starts the client and accepts its trigger connection; returns the trigger message. */
async function launch(
  f: ClientVmFixture,
  context: CaseContext,
  launch: Launch = {},
): Promise<{ trigger: RawPeer; message: RawMessage }> {
  const env = {
    ...baseEnvironment(),
    QRX_VCHAN: "socket",
    VCHAN_SOCKET_DIR: f.vchanDir,
    VCHAN_DOMAIN: String(CLIENT_DOMAIN),
    QRX_AGENT_SOCKET: f.agentSocket,
  };
  const values = {
    AGENT_SOCKET: f.agentSocket,
    VCHAN_SOCKET_DIR: f.vchanDir,
    DOMAIN: String(CLIENT_DOMAIN),
    DIR: f.dir,
  };
  const append = [
    ...(hasPlaceholder(f.command, "AGENT_SOCKET") ? [] : [`--agent-socket=${f.agentSocket}`]),
    ...(launch.options ?? []),
    launch.target ?? "vault",
    launch.service ?? "test.Service",
    ...(launch.local ?? []),
  ];
  f.program = new ProgramUnderTest({
    command: expandPlaceholders(f.command, values),
    append,
    env,
    cwd: f.dir,
    stdin: launch.stdin ?? new Uint8Array(0),
    stdout: "pipe",
    stdoutDelayMs: launch.stdoutDelayMs,
  });
  context.step("waiting for the client to connect to the agent's trigger socket");
  const accepted = f.triggers!.next();
  let trigger: RawPeer | "timeout" = "timeout";
  while (trigger === "timeout") {
    trigger = await within(50, accepted);
    if (trigger === "timeout" && !f.prog.running)
      throw new CaseFailure(
        `the client ${f.prog.status()} without connecting to the ` +
          `agent socket; stderr: ${f.prog.log().trim().slice(-300)}`,
      );
  }
  f.own(trigger);
  context.step("waiting for the client's trigger message");
  const message = await trigger
    .receive(C.TRIGGER4_FIXED_BYTES + C.MAX_SERVICE_NAME_LEN + 1)
    .catch((error: Error) => {
      throw new CaseFailure(`trigger socket: ${error.message}`);
    });
  check(message !== null, "the client closed the trigger socket without sending a trigger");
  return { trigger, message };
}

interface Call {
  trigger: RawPeer;
  data: RawPeer;
  /** The client's data HELLO. */
  hello: number;
  version: number;
}

/**
 * Allows the call: exec_params on the trigger socket, then the kit connects the data vchan as the
 * target.
 */
async function allow(
  f: ClientVmFixture,
  context: CaseContext,
  launched: Launch = {},
  version = C.QREXEC_PROTOCOL_VERSION,
): Promise<Call> {
  const { trigger } = await launch(f, context, launched);
  trigger.sendRaw(encodeExecParams({ connectDomain: TARGET_DOMAIN, connectPort: DATA_PORT }));
  context.step(`waiting for the client to serve the data vchan (${TARGET_DOMAIN}, ${DATA_PORT})`);
  const data = f.own(
    await RawPeer.connect(
      vchanPath(f.vchanDir, CLIENT_DOMAIN, TARGET_DOMAIN, DATA_PORT),
      context.remainingMs(),
      f.alive,
    ),
  );
  context.step("waiting for the client's data HELLO (the vchan server sends first)");
  const hello = await data.receiveHello().catch((error: Error) => {
    throw new CaseFailure(`data vchan: ${error.message}`);
  });
  data.sendHello(version);
  return { trigger, data, hello, version: Math.min(hello, version) };
}

/** The client's exit within `ms`: "exit N" text for messages, and the code. */
async function exitOf(f: ClientVmFixture, context: CaseContext, ms = 5000): Promise<number> {
  context.step("waiting for the client to exit");
  const exited = await f.prog.waitExit(ms);
  check(exited, `the client was still running ${ms} ms after the call ended`);
  check(!f.prog.signal, `the client was ${f.prog.status()}`);
  return f.prog.exitCode!;
}

/** Every message the client sends until it closes (it is the caller: STDIN only). */
async function callerMessages(data: RawPeer): Promise<{
  messages: RawMessage[];
  stdin: string;
  eofs: number;
  foreign: RawMessage[];
  largest: number;
}> {
  const { messages } = await data.receiveAll();
  let stdin = "";
  let eofs = 0;
  let largest = 0;
  const foreign: RawMessage[] = [];
  for (const message of messages) {
    if (message.type !== C.MSG_DATA_STDIN) {
      foreign.push(message);
      continue;
    }
    largest = Math.max(largest, message.payload.length);
    if (message.payload.length === 0) eofs++;
    else stdin += text(message.payload);
  }
  return { messages, stdin, eofs, foreign, largest };
}

const bytes = (value: string) => new TextEncoder().encode(value);

/** The service side's normal ending: both EOFs and the exit code. */
function finish(call: Call, code: number, stdout = ""): void {
  if (stdout) call.data.send(C.MSG_DATA_STDOUT, bytes(stdout));
  call.data.send(C.MSG_DATA_STDOUT);
  call.data.send(C.MSG_DATA_STDERR);
  call.data.send(C.MSG_DATA_EXIT_CODE, encodeExitCode(code));
}

function exitCodeCase(
  name: string,
  code: number,
  spec: string,
  checks: string,
): Case<ClientVmFixture> {
  return {
    name,
    role: "client-vm",
    spec,
    checks,
    expected: `stdout "hello\\n", exit ${code}`,
    async run(f, context) {
      const call = await allow(f, context);
      finish(call, code, "hello\n");
      const exit = await exitOf(f, context);
      call.data.close();
      const stdout = text(await f.prog.stdout(true));
      check(
        exit === code && stdout === "hello\n",
        `exit ${exit}, stdout ${JSON.stringify(stdout)}`,
      );
      return `exit ${exit}, stdout ${JSON.stringify(stdout)}`;
    },
  };
}

/** A hostile service side: the client must end the call (exit `code`, or any clean non-zero). */
async function failsWith(
  f: ClientVmFixture,
  context: CaseContext,
  what: string,
  send: (call: Call) => void,
  code: number,
): Promise<string> {
  const call = await allow(f, context);
  send(call);
  const exit = await exitOf(f, context);
  check(exit === code, `exit ${exit} after ${what}; expected ${code}`);
  return `exit ${exit} after ${what}`;
}

export const CLIENT_VM_CASES: Case<ClientVmFixture>[] = [
  {
    name: "trigger4",
    role: "client-vm",
    spec: "§2.1 step 1, §3.3, §10",
    checks:
      "The client sends TRIGGER_SERVICE4 with len = 160 + name + 1: empty source, the " +
      "target with '$' turned into '@', request_id \"SOCKET\", the service and one NUL.",
    expected: 'TRIGGER_SERVICE4 {source "", target "@dispvm", ident "SOCKET", "test.Add+arg\\0"}',
    async run(f, context) {
      const { trigger, message } = await launch(f, context, {
        target: "$dispvm",
        service: "test.Add+arg",
      });
      check(
        message.type === C.MSG_TRIGGER_SERVICE4,
        `${typeName(message.type)} on the trigger socket`,
      );
      check(
        message.payload.length === C.TRIGGER4_FIXED_BYTES + "test.Add+arg".length + 1,
        `payload of ${message.payload.length} bytes`,
      );
      const t = decodeTrigger4(message.payload);
      const seen =
        `source ${JSON.stringify(fieldText(t.source))}, target ` +
        `${JSON.stringify(fieldText(t.target))}, ident ` +
        `${JSON.stringify(fieldText(t.ident))}, service ${JSON.stringify(text(t.service))}`;
      check(
        fieldText(t.source) === "" &&
          fieldText(t.target) === "@dispvm" &&
          fieldText(t.ident) === "SOCKET" &&
          text(t.service) === "test.Add+arg\0",
        seen,
      );
      trigger.close();
      await exitOf(f, context);
      return seen;
    },
  },
  {
    name: "refused-126",
    role: "client-vm",
    spec: "§2.1 step 9, §8, §10 step 2-3",
    checks:
      'The agent closes the trigger socket without a reply: "Request ' +
      'refused" on stderr, exit 126, and the local program never starts.',
    expected: 'exit 126, stderr "Request refused", the local program not run',
    async run(f, context) {
      const marker = join(f.dir, "local-program-ran");
      const { trigger } = await launch(f, context, { local: ["/bin/sh", "-c", `touch ${marker}`] });
      trigger.close();
      const exit = await exitOf(f, context);
      const stderr = f.prog.log();
      const ran = existsSync(marker) ? ", the local program ran" : "";
      const seen = `exit ${exit}, stderr ${JSON.stringify(stderr.trim().slice(-80))}${ran}`;
      check(exit === 126 && /Request refused/.test(stderr) && !existsSync(marker), seen);
      return seen;
    },
  },
  {
    name: "handshake-v4",
    role: "client-vm",
    spec: "§4.2, §10 step 4",
    checks:
      "Once allowed the client serves the data vchan and, as its server, sends HELLO 4 at once.",
    expected: "HELLO 4 from the client before the kit's; exit 0 after EXIT_CODE 0",
    async run(f, context) {
      const call = await allow(f, context);
      check(call.hello === 4, `the client's data HELLO carries version ${call.hello}`);
      finish(call, 0);
      const exit = await exitOf(f, context);
      check(exit === 0, `exit ${exit}`);
      return `HELLO ${call.hello}; exit 0`;
    },
  },
  {
    name: "handshake-v2",
    role: "client-vm",
    spec: "§4.2, §3.4",
    checks:
      "With a service side that says HELLO 2, 20000 bytes " +
      "of stdin go out in STDIN chunks of at most 4096 bytes.",
    expected: "20000 bytes of STDIN in chunks of ≤ 4096, one STDIN EOF",
    async run(f, context) {
      const call = await allow(f, context, { stdin: bytes("y".repeat(20000)) }, 2);
      context.step("reading the client's STDIN until its EOF");
      const received: RawMessage[] = [];
      for (;;) {
        const message = await call.data.receive();
        check(message !== null, `the client closed the data vchan after ${summarize(received)}`);
        received.push(message);
        if (message.type === C.MSG_DATA_STDIN && message.payload.length === 0) break;
      }
      const largest = Math.max(...received.map((m) => m.payload.length));
      const total = received.reduce((sum, m) => sum + m.payload.length, 0);
      finish(call, 0);
      await exitOf(f, context);
      check(
        largest <= C.MAX_DATA_CHUNK_V2 && total === 20000,
        `${summarize(received)}; largest chunk ${largest}`,
      );
      return `${summarize(received)}; largest chunk ${largest}`;
    },
  },
  {
    name: "stdin-and-eof",
    role: "client-vm",
    spec: "§6.1, §6.2 step 9, §13.8",
    checks:
      "The client's stdin goes out as STDIN data and one STDIN " +
      "EOF; a caller never sends STDOUT, STDERR or EXIT_CODE.",
    expected: 'STDIN "abc", STDIN EOF and nothing else; exit 0',
    async run(f, context) {
      const call = await allow(f, context, { stdin: bytes("abc") });
      context.step("reading the client's STDIN until its EOF");
      const received: RawMessage[] = [];
      for (;;) {
        const message = await call.data.receive();
        if (message === null) break;
        received.push(message);
        if (message.type === C.MSG_DATA_STDIN && message.payload.length === 0) break;
      }
      finish(call, 0);
      const exit = await exitOf(f, context);
      const rest = await within(1000, callerMessages(call.data));
      const all = [...received, ...(rest === "timeout" ? [] : rest.messages)];
      const stdin = all.filter((m) => m.type === C.MSG_DATA_STDIN);
      const seen = `${summarize(all)}; exit ${exit}`;
      check(
        all.every((m) => m.type === C.MSG_DATA_STDIN),
        seen,
      );
      check(
        stdin.filter((m) => m.payload.length === 0).length === 1 &&
          stdin.map((m) => text(m.payload)).join("") === "abc",
        seen,
      );
      check(exit === 0, seen);
      return seen;
    },
  },
  {
    name: "prefix-data",
    role: "client-vm",
    spec: "§6.7, §13.7",
    checks: "--prefix-data goes out as the first STDIN bytes, before the client's stdin.",
    expected: 'STDIN "prefix data\\nrest", then STDIN EOF',
    async run(f, context) {
      const call = await allow(f, context, {
        options: ["--prefix-data=prefix data\n"],
        stdin: bytes("rest"),
      });
      context.step("reading the client's STDIN until its EOF");
      let stdin = "";
      const received: RawMessage[] = [];
      for (;;) {
        const message = await call.data.receive();
        check(message !== null, `the client closed the data vchan after ${summarize(received)}`);
        received.push(message);
        if (message.type !== C.MSG_DATA_STDIN) continue;
        if (message.payload.length === 0) break;
        stdin += text(message.payload);
      }
      finish(call, 0);
      await exitOf(f, context);
      check(stdin === "prefix data\nrest", `${summarize(received)} (${JSON.stringify(stdin)})`);
      return summarize(received);
    },
  },
  exitCodeCase(
    "exit-code-0",
    0,
    "§8",
    "A remote EXIT_CODE 0 (and stdout data) gives exit 0 and the data on stdout.",
  ),
  exitCodeCase(
    "exit-code-125",
    125,
    "§8",
    "A remote EXIT_CODE 125 (service cannot run) is the client's exit status.",
  ),
  exitCodeCase(
    "exit-code-127",
    127,
    "§8",
    "A remote EXIT_CODE 127 (service not found) is the client's exit status.",
  ),
  exitCodeCase(
    "exit-code-service-status",
    42,
    "§8",
    "The remote service's own status (42) is the client's exit status.",
  ),
  {
    name: "local-program-status",
    role: "client-vm",
    spec: "§8, §13.2",
    checks:
      "With a local program: remote 0 and the local program exiting 3 " +
      "gives exit 3 (a failed local program must not look like success).",
    expected: "exit 3",
    async run(f, context) {
      const call = await allow(f, context, { local: ["/bin/sh", "-c", "cat >/dev/null; exit 3"] });
      call.data.send(C.MSG_DATA_STDOUT, bytes("to the local program\n"));
      finish(call, 0);
      const exit = await exitOf(f, context);
      check(exit === 3, `exit ${exit}`);
      return `exit ${exit}`;
    },
  },
  {
    name: "remote-exit-ends-call",
    role: "client-vm",
    spec: "§6.2 step 8.3, §6.3",
    checks:
      "EXIT_CODE from the service ends the call although the client's stdin " +
      "is still open: the client sends its STDIN EOF and exits with the code.",
    expected: "STDIN EOF sent after EXIT_CODE; exit 6",
    async run(f, context) {
      const call = await allow(f, context, { stdin: "pipe" });
      finish(call, 6);
      const exit = await exitOf(f, context);
      const rest = await within(1000, callerMessages(call.data));
      const seen =
        `${rest === "timeout" ? "data vchan still open" : summarize(rest.messages)}; ` +
        `exit ${exit}`;
      check(exit === 6 && rest !== "timeout" && rest.eofs === 1, seen);
      return seen;
    },
  },
  {
    name: "stdout-slow-reader",
    role: "client-vm",
    spec: "§6.2 step 8, §6.8",
    checks:
      "8 MiB of STDOUT while whoever reads the client's stdout waits 1 s: " +
      "the client buffers or throttles, loses nothing and exits with the code.",
    expected: "8388608 bytes on stdout, exit 0",
    async run(f, context) {
      const call = await allow(f, context, { stdoutDelayMs: 1000 });
      const chunk = new Uint8Array(C.MAX_DATA_CHUNK_V3).fill(122);
      for (let i = 0; i < 128; i++) call.data.send(C.MSG_DATA_STDOUT, chunk);
      finish(call, 0);
      const exit = await exitOf(f, context, 15_000);
      const stdout = await f.prog.stdout(true);
      check(
        exit === 0 && stdout.length === 8388608,
        `exit ${exit}, ${stdout.length} bytes on stdout`,
      );
      return `exit 0, ${stdout.length} bytes on stdout`;
    },
    timeoutMs: 30_000,
  },
  {
    name: "no-stderr-eof-needed",
    role: "client-vm",
    spec: "§14, §6.2 step 3",
    checks:
      "A service side that never sends STDERR EOF (mirage-qubes) " +
      "and keeps the vchan open: the client still ends at EXIT_CODE.",
    expected: "exit 0 within 5 s without a STDERR EOF",
    async run(f, context) {
      const call = await allow(f, context);
      call.data.send(C.MSG_DATA_STDOUT, bytes("x"));
      call.data.send(C.MSG_DATA_STDOUT);
      call.data.send(C.MSG_DATA_EXIT_CODE, encodeExitCode(0));
      const exit = await exitOf(f, context);
      check(exit === 0, `exit ${exit}`);
      return "exit 0";
    },
  },
  {
    name: "no-exit-code-255",
    role: "client-vm",
    spec: "§6.9, §8",
    checks:
      "The service side closes the data vchan after both EOFs but before EXIT_CODE: exit 255.",
    expected: "exit 255",
    run: (f, context) =>
      failsWith(
        f,
        context,
        "both EOFs and a close without EXIT_CODE",
        (call) => {
          call.data.send(C.MSG_DATA_STDOUT);
          call.data.send(C.MSG_DATA_STDERR);
          call.data.connection.end();
        },
        255,
      ),
  },
  {
    name: "short-exit-code-255",
    role: "client-vm",
    spec: "§3.3, §8",
    checks: "An EXIT_CODE whose payload is shorter than 4 bytes means status 255.",
    expected: "exit 255",
    run: (f, context) =>
      failsWith(
        f,
        context,
        "a 2-byte EXIT_CODE",
        (call) => {
          call.data.send(C.MSG_DATA_STDOUT);
          call.data.send(C.MSG_DATA_STDERR);
          call.data.send(C.MSG_DATA_EXIT_CODE, new Uint8Array(2));
          call.data.connection.end();
        },
        255,
      ),
  },
  {
    name: "data-peer-disconnect",
    role: "client-vm",
    spec: "§6.9",
    checks:
      "The service side vanishes right after the HELLO " +
      "exchange: the client notices and exits 255 (no status).",
    expected: "exit 255",
    run: (f, context) =>
      failsWith(
        f,
        context,
        "the service side closing the data vchan",
        (call) => call.data.close(),
        255,
      ),
  },
  {
    name: "oversize-data-chunk",
    role: "client-vm",
    spec: "§3.4, §6.2 step 8.2",
    checks:
      "A STDOUT header announcing 65537 bytes is fatal: " +
      "the client exits 1 at once (no hang, no crash).",
    expected: "exit 1",
    run: (f, context) =>
      failsWith(
        f,
        context,
        "a 65537-byte STDOUT header",
        (call) => {
          call.data.sendRaw(header(C.MSG_DATA_STDOUT, C.MAX_DATA_CHUNK_V3 + 1));
          call.data.sendRaw(new Uint8Array(C.MAX_DATA_CHUNK_V3 + 1));
        },
        1,
      ),
  },
  {
    name: "unknown-data-message",
    role: "client-vm",
    spec: "§6.2 step 8.2",
    checks: "An unknown message type on the data vchan is fatal: exit 1.",
    expected: "exit 1",
    run: (f, context) =>
      failsWith(
        f,
        context,
        "a message of type 0x1ff",
        (call) => call.data.send(0x1ff, bytes("junk")),
        1,
      ),
  },
];
