// Role "daemon": the program under test is dom0's qrexec-daemon for one VM. The kit is that VM's
// agent (the vchan server on port 512), clients on the daemon's socket, the policy (a policy
// socket and a policy program, both answering from the case's table), another VM's daemon (for
// VM → VM calls) and the VM's side of data vchans.

import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Connection } from "../io/connection.ts";
import {
  decodeExecParams,
  decodeServiceConnect,
  encodeConnectionTerminated,
  encodeExecCommand,
  encodeExecParams,
  encodeServiceConnect,
  encodeTrigger3,
  encodeTrigger4,
  encodeTriggerV2,
  fieldText,
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
import { checkServiceStream, describeCheck } from "./streams.ts";
import { CaseFailure, check, type Case, type CaseContext } from "./types.ts";
import {
  describe,
  header,
  RawPeer,
  summarize,
  text,
  typeName,
  vchanPath,
  type RawMessage,
} from "./wire.ts";

export const VM_DOMAIN = 42;
export const VM_NAME = "testvm";
export const VM_UUID = "0b8e6f0e-0000-4000-8000-000000000042";
export const DEFAULT_USER = "user";
/** The other VM of a VM → VM call (the kit plays its daemon). */
const OTHER_DOMAIN = 43;
const OTHER_NAME = "othervm";

const ALLOW_DOM0 =
  "result=allow\nuser=DEFAULT\ntarget=dom0\nautostart=False\nrequested_target=dom0\n";
const ALLOW_OTHER =
  `result=allow\nuser=DEFAULT\ntarget=${OTHER_NAME}\nautostart=False\n` +
  `requested_target=${OTHER_NAME}\n`;

/** service_and_arg → the policy's answer; anything else is denied. */
const POLICY: Record<string, string> = {
  "test.Echo": ALLOW_DOM0,
  "test.Missing": ALLOW_DOM0,
  "test.Status": ALLOW_DOM0,
  "test.Add": ALLOW_OTHER,
};

const DOM0_SERVICES = {
  "test.Echo": 'echo "from dom0: $QREXEC_REMOTE_DOMAIN"; cat',
  "test.Status": "cat >/dev/null; exit 5",
};

const POLICY_PROGRAM = `#!/bin/sh
# The conformance kit's policy program (\`-- SOURCE TARGET SERVICE\`): the answer for SERVICE is the
# file policy/SERVICE next to this script; no file denies.
[ "$1" = "--" ] && shift
here=\${0%/*}
echo "program $1 $2 $3" >> "$here/policy.log"
case $3 in */*|.*) printf 'result=deny\\n'; exit 0 ;; esac
if [ -f "$here/policy/$3" ]; then cat "$here/policy/$3"; else printf 'result=deny\\n'; fi
`;

export class DaemonFixture extends BaseFixture {
  readonly socketDir = join(this.dir, "run");
  readonly rpcDir = join(this.dir, "dom0-rpc");
  readonly policyProgram = join(this.dir, "policy-exec");
  readonly policySocket = join(this.dir, "policy.sock");
  readonly policyLog = join(this.dir, "policy.log");
  readonly policyQueries: string[] = [];
  control: RawPeer | null = null;
  controlListener: ReturnType<typeof RawPeer.listen> | null = null;
  inbox: Inbox | null = null;

  constructor() {
    super("qrx-conf-daemon-");
  }

  get ctl(): RawPeer {
    if (!this.control) throw new Error("the daemon did not connect");
    return this.control;
  }

  get messages(): Inbox {
    if (!this.inbox) throw new Error("the control handshake was not done");
    return this.inbox;
  }

  /** Every policy question seen (socket and program), as "SOURCE TARGET SERVICE". */
  queries(): string[] {
    const fromProgram = existsSync(this.policyLog)
      ? readFileSync(this.policyLog, "utf8").split("\n").filter(Boolean)
      : [];
    return [...this.policyQueries, ...fromProgram.map((line) => line.replace(/^program /, ""))];
  }
}

function answerFor(service: string): string {
  return POLICY[service] ?? "result=deny\n";
}

/** The policy daemon's socket protocol (§7.4), answering from POLICY. */
function servePolicySocket(f: DaemonFixture): () => void {
  const listener = Connection.listen(f.policySocket, (connection) => {
    void (async () => {
      let request = "";
      while (!request.includes("\n\n")) {
        const chunk = await connection.read(1).catch(() => null);
        if (chunk === null) return connection.close();
        request += text(chunk);
        if (request.length > 70_000) return connection.close();
      }
      const fields = Object.fromEntries(
        request
          .split("\n")
          .filter((line) => line.includes("="))
          .map((line) => [line.slice(0, line.indexOf("=")), line.slice(line.indexOf("=") + 1)]),
      );
      f.policyQueries.push(
        `${fields.source ?? ""} ${fields.intended_target ?? ""} ${fields.service_and_arg ?? ""}`,
      );
      connection.write(new TextEncoder().encode(answerFor(fields.service_and_arg ?? "")));
      connection.end();
    })();
  });
  return () => listener.stop(true);
}

export function daemonDriver(command: string): RoleDriver<DaemonFixture> {
  return {
    role: "daemon",
    cases: DAEMON_CASES,
    create: () => new DaemonFixture(),
    async start(f, signal) {
      f.signal = signal;
      mkdirSync(f.socketDir);
      f.writeScripts(f.rpcDir, DOM0_SERVICES);
      writeFileSync(f.policyProgram, POLICY_PROGRAM, { mode: 0o755 });
      mkdirSync(join(f.dir, "policy"));
      for (const [service, answer] of Object.entries(POLICY))
        writeFileSync(join(f.dir, "policy", service), answer);
      f.ownListener(servePolicySocket(f));
      f.controlListener = RawPeer.listen(vchanPath(f.vchanDir, VM_DOMAIN, 0, C.VCHAN_BASE_PORT));
      f.ownListener(f.controlListener.stop);
      const env = {
        ...baseEnvironment(),
        QRX_VCHAN: "socket",
        VCHAN_SOCKET_DIR: f.vchanDir,
        VCHAN_DOMAIN: "0",
        QREXEC_SERVICE_PATH: f.rpcDir,
        QREXEC_POLICY_SOCKET: f.policySocket,
        QRX_QUBESD_SOCKET: "",
        QREXEC_STARTUP_TIMEOUT: "20",
        QREXEC_LOG_DIR: join(f.dir, "log"),
      };
      const values = {
        SOCKET_DIR: f.socketDir,
        POLICY_PROGRAM: f.policyProgram,
        POLICY_SOCKET: f.policySocket,
        DOMID: String(VM_DOMAIN),
        NAME: VM_NAME,
        UUID: VM_UUID,
        VCHAN_SOCKET_DIR: f.vchanDir,
        SERVICE_PATH: f.rpcDir,
        DIR: f.dir,
      };
      const append = hasPlaceholder(command, "DOMID")
        ? []
        : [
            "--direct",
            `--socket-dir=${f.socketDir}`,
            `--policy-program=${f.policyProgram}`,
            "-u",
            VM_UUID,
            String(VM_DOMAIN),
            VM_NAME,
            DEFAULT_USER,
          ];
      f.program = new ProgramUnderTest({
        command: expandPlaceholders(command, values),
        append,
        env,
        cwd: f.dir,
      });
      const accepted = f.controlListener.next();
      for (;;) {
        const peer = await within(50, accepted);
        if (peer !== "timeout") {
          f.control = f.own(peer);
          return;
        }
        if (!f.alive())
          throw new Error(`the daemon ${f.prog.status()} before connecting to the agent's vchan`);
      }
    },
    teardown: (f) => f.teardown(),
    diagnose: (f) => f.diagnose(),
  };
}

/** The agent's side of the control HELLO: ours first (we are the server), then the daemon's. */
async function handshake(
  f: DaemonFixture,
  context: CaseContext,
  version = C.QREXEC_PROTOCOL_VERSION,
): Promise<number> {
  f.ctl.sendHello(version);
  context.step("waiting for the daemon's HELLO on the control vchan");
  let reply: number;
  try {
    reply = await f.ctl.receiveHello();
  } catch (error) {
    throw new CaseFailure(`control vchan: ${(error as Error).message}`);
  }
  f.inbox = new Inbox(f.ctl);
  return reply;
}

async function waitForSocket(f: DaemonFixture, context: CaseContext): Promise<string> {
  const path = join(f.socketDir, `qrexec.${VM_DOMAIN}`);
  context.step(`waiting for the daemon's socket ${path}`);
  while (!existsSync(path)) {
    check(f.prog.running, `the daemon ${f.prog.status()} without creating ${path}`);
    await Bun.sleep(10);
  }
  return path;
}

/** A daemon-socket client after the HELLO exchange (the daemon's HELLO 3 first, §4.2). */
async function daemonClient(
  f: DaemonFixture,
  context: CaseContext,
  version = C.QREXEC_CLIENT_PROTOCOL_VERSION,
): Promise<RawPeer> {
  const path = await waitForSocket(f, context);
  const client = f.own(await RawPeer.connect(path, 5000, f.alive));
  context.step("waiting for the daemon's HELLO on its socket");
  let hello: number;
  try {
    hello = await client.receiveHello();
  } catch (error) {
    throw new CaseFailure(`daemon socket: ${(error as Error).message}`);
  }
  check(
    hello === C.QREXEC_CLIENT_PROTOCOL_VERSION,
    `the daemon's socket HELLO carries version ${hello}, expected 3`,
  );
  client.sendHello(version);
  return client;
}

const bytes = (value: string) => new TextEncoder().encode(value);

/** A TRIGGER_SERVICE4 payload; `service`/`ident` may be raw bytes. */
function trigger4(
  service: string | Uint8Array,
  ident: string | Uint8Array = "SOCKET9",
  target = "dom0",
): Uint8Array {
  return encodeTrigger4({ source: "", target, ident, service });
}

/** The daemon's next control message for a trigger (skipping nothing). */
async function answer(f: DaemonFixture, context: CaseContext, what: string): Promise<RawMessage> {
  context.step(`waiting for the daemon's answer to ${what}`);
  const message = await f.messages.take();
  check(message !== null, `the daemon closed the control vchan instead of answering ${what}`);
  return message;
}

async function expectRefused(
  f: DaemonFixture,
  context: CaseContext,
  what: string,
  rawIdent: Uint8Array,
): Promise<string> {
  const message = await answer(f, context, what);
  check(
    message.type === C.MSG_SERVICE_REFUSED,
    `${describe(message)} for ${what}; expected SERVICE_REFUSED`,
  );
  check(
    message.payload.length === C.IDENT_BYTES,
    `SERVICE_REFUSED of ${message.payload.length} bytes (expected 32)`,
  );
  check(
    message.payload.every((b, i) => b === rawIdent[i]),
    `SERVICE_REFUSED carries ident ` +
      `${JSON.stringify(fieldText(message.payload))}, not the raw 32 bytes sent`,
  );
  return `SERVICE_REFUSED with the raw ident for ${what}`;
}

/**
 * The daemon closes the control vchan after something hostile: then exits cleanly or reconnects.
 */
async function dropsAgent(f: DaemonFixture, context: CaseContext, what: string): Promise<string> {
  context.step(`waiting for the daemon to drop the agent after ${what}`);
  const ended = await within(5000, f.messages.whenEnded());
  check(
    ended !== "timeout",
    `the daemon kept the control vchan open 5 s after ` +
      `${what} (received: ${summarize(f.messages.all)})`,
  );
  return `${what}: control vchan closed; ${await reconnectsOrExits(f, context)}`;
}

/** After losing its agent: a clean exit, or a reconnect (fresh HELLO) that serves a trigger. */
async function reconnectsOrExits(f: DaemonFixture, context: CaseContext): Promise<string> {
  context.step("waiting for the daemon to reconnect or exit");
  const next = f.controlListener!.next();
  for (let waited = 0; waited < 10_000; waited += 50) {
    const peer = await within(50, next);
    if (peer !== "timeout") {
      f.control = f.own(peer);
      const version = await handshake(f, context);
      const ident = encodeTrigger4({
        source: "",
        target: "dom0",
        ident: "SOCKET77",
        service: "test.Denied",
      });
      f.ctl.send(C.MSG_TRIGGER_SERVICE4, ident);
      await expectRefused(f, context, "a trigger after the reconnect", ident.subarray(128, 160));
      return `the daemon reconnected (HELLO ${version}) and serves`;
    }
    if (!f.prog.running) {
      check(!f.prog.signal, `the daemon was ${f.prog.status()}`);
      return `the daemon exited (${f.prog.status()})`;
    }
  }
  throw new CaseFailure(
    `the daemon neither reconnected nor exited within 10 s (${f.prog.status()})`,
  );
}

/** The client's EXEC/JUST_EXEC: the port reply and what the agent receives. */
async function clientExec(
  f: DaemonFixture,
  context: CaseContext,
  type: number,
  peer: number,
  command: string,
): Promise<{ client: RawPeer; port: number; forwarded: RawMessage }> {
  const client = await daemonClient(f, context);
  client.send(type, encodeExecCommand({ connectDomain: peer, connectPort: 0 }, command));
  context.step("waiting for the daemon's port reply");
  const reply = await client.receive(64).catch((error: Error) => {
    throw new CaseFailure(`daemon socket: ${error.message}`);
  });
  check(reply !== null, "the daemon closed the client instead of replying with a port");
  check(
    reply.type === type && reply.payload.length === 8,
    `${describe(reply)}; expected ${typeName(type)} with 8 bytes of exec_params`,
  );
  const params = decodeExecParams(reply.payload);
  check(
    params.connectDomain === VM_DOMAIN,
    `reply {${params.connectDomain}, ${params.connectPort}}: ` +
      `the domain must be the VM's (${VM_DOMAIN})`,
  );
  check(
    params.connectPort >= C.DATA_PORT_MIN && params.connectPort <= C.DATA_PORT_MAX,
    `port ${params.connectPort} outside 513…768`,
  );
  const forwarded = await answer(f, context, `the client's ${typeName(type)}`);
  return { client, port: params.connectPort, forwarded };
}

/** VM → dom0 data: the kit is qrexec-client-vm (the vchan server for dom0 on `port`). */
async function dom0Call(
  f: DaemonFixture,
  context: CaseContext,
  service: string,
  stdin: Uint8Array[],
  expected: { stdout?: string; exitCode: number },
): Promise<string> {
  await handshake(f, context);
  await waitForSocket(f, context);
  const payload = trigger4(service, "SOCKET12");
  f.ctl.send(C.MSG_TRIGGER_SERVICE4, payload);
  const connect = await answer(f, context, `a trigger for ${service}`);
  check(
    connect.type === C.MSG_SERVICE_CONNECT,
    `${describe(connect)}; expected SERVICE_CONNECT (the policy allows ${service} to dom0)`,
  );
  const { connectDomain, connectPort, ident } = decodeServiceConnect(connect.payload, "terminate");
  check(
    connectDomain === 0,
    `SERVICE_CONNECT{${connectDomain}, …}: a call into dom0 connects to domain 0`,
  );
  check(
    fieldText(ident) === "SOCKET12",
    `SERVICE_CONNECT ident ${JSON.stringify(fieldText(ident))}, expected "SOCKET12"`,
  );
  check(
    connectPort >= C.DATA_PORT_MIN && connectPort <= C.DATA_PORT_MAX,
    `port ${connectPort} outside 513…768`,
  );
  const listener = RawPeer.listen(vchanPath(f.vchanDir, VM_DOMAIN, 0, connectPort));
  f.ownListener(listener.stop);
  context.step(`waiting for dom0's service side to connect the data vchan (port ${connectPort})`);
  const data = f.own(await listener.next());
  listener.stop();
  data.sendHello(C.QREXEC_PROTOCOL_VERSION);
  const hello = await data.receiveHello().catch((error: Error) => {
    throw new CaseFailure(`data vchan: ${error.message}`);
  });
  for (const chunk of stdin) data.send(C.MSG_DATA_STDIN, chunk);
  context.step("reading dom0's service messages");
  const { messages, error } = await data.receiveAll();
  const result = checkServiceStream(messages, { ...expected, version: Math.min(hello, 4) }, error);
  check(result.problems.length === 0, describeCheck(result));
  f.ctl.send(
    C.MSG_CONNECTION_TERMINATED,
    encodeConnectionTerminated({ connectDomain: 0, connectPort }),
  );
  return `SERVICE_CONNECT{0, ${connectPort}}; ${result.summary}`;
}

export const DAEMON_CASES: Case<DaemonFixture>[] = [
  {
    name: "handshake-v4",
    role: "daemon",
    spec: "§4.2",
    checks:
      "The daemon (control vchan client) answers the " +
      "agent's HELLO 4 with HELLO 4 and creates its socket.",
    expected: "HELLO 4 after the agent's; the daemon socket qrexec.<domid> appears",
    async run(f, context) {
      const version = await handshake(f, context, 4);
      check(version === 4, `the daemon's HELLO carries version ${version}`);
      await waitForSocket(f, context);
      return `HELLO ${version}; socket qrexec.${VM_DOMAIN} created`;
    },
  },
  {
    name: "handshake-v3",
    role: "daemon",
    spec: "§4.2, §3.2, §15.2",
    checks: "With a v3 agent the daemon's HELLO is 3 (min rule) and TRIGGER_SERVICE3 is served.",
    expected: "HELLO 3; SERVICE_REFUSED for a denied TRIGGER_SERVICE3",
    async run(f, context) {
      const version = await handshake(f, context, 3);
      check(version === 3, `the daemon answered HELLO 3 with HELLO ${version}`);
      const payload = encodeTrigger3({ target: "dom0", ident: "SOCKET3", service: "test.Denied" });
      f.ctl.send(C.MSG_TRIGGER_SERVICE3, payload);
      const ident = payload.subarray(64, 96);
      return `HELLO 3; ${await expectRefused(f, context, "a denied TRIGGER_SERVICE3", ident)}`;
    },
  },
  {
    name: "handshake-v2",
    role: "daemon",
    spec: "§4.2, §3.2",
    checks: "With a v2 agent the daemon's HELLO is 2 and the 128-byte TRIGGER_SERVICE is served.",
    expected: "HELLO 2; SERVICE_REFUSED for a denied TRIGGER_SERVICE",
    async run(f, context) {
      const version = await handshake(f, context, 2);
      check(version === 2, `the daemon answered HELLO 2 with HELLO ${version}`);
      const payload = encodeTriggerV2({ service: "test.Denied", target: "dom0", ident: "SOCKET2" });
      f.ctl.send(C.MSG_TRIGGER_SERVICE, payload);
      const ident = payload.subarray(96, 128);
      return `HELLO 2; ${await expectRefused(f, context, "a denied TRIGGER_SERVICE", ident)}`;
    },
  },
  {
    name: "handshake-below-minimum",
    role: "daemon",
    spec: "§4.2",
    checks:
      "An agent HELLO 1 (below the minimum 2) is refused: the daemon " +
      "drops the control connection, then reconnects or exits, no crash.",
    expected: "control vchan closed; a reconnect or a clean exit",
    async run(f, context) {
      f.ctl.sendHello(1);
      context.step("waiting for the daemon to drop an agent that says HELLO 1");
      const inbox = new Inbox(f.ctl);
      const ended = await within(5000, inbox.whenEnded());
      check(
        ended !== "timeout",
        `the control vchan stayed open 5 s after HELLO 1 (received: ${summarize(inbox.all)})`,
      );
      check(
        !inbox.all.some((m) => m.type !== C.MSG_HELLO),
        `the daemon sent ${summarize(inbox.all)}`,
      );
      return `control vchan closed; ${await reconnectsOrExits(f, context)}`;
    },
  },
  {
    name: "client-handshake",
    role: "daemon",
    spec: "§4.2, §7.2",
    checks:
      "On the daemon socket the daemon sends HELLO 3 first; a client answering HELLO 2 is dropped.",
    expected: "HELLO 3 from the daemon; a HELLO 2 client closed",
    async run(f, context) {
      await handshake(f, context);
      const client = await daemonClient(f, context, 2);
      context.step("waiting for the daemon to drop a HELLO 2 client");
      const rest = await within(5000, client.receiveAll());
      check(rest !== "timeout", "a client that answered HELLO 2 was still connected after 5 s");
      return `HELLO 3 first; the HELLO 2 client was closed (${summarize(rest.messages)})`;
    },
  },
  {
    name: "client-exec",
    role: "daemon",
    spec: "§2.3, §7.2",
    checks:
      "A client's EXEC_CMDLINE{0,0}: reply {domid, P} with P in 513…768; " +
      "forwarded as EXEC_CMDLINE{0, P} with DEFAULT: replaced by the " +
      "default user; CONNECTION_TERMINATED for P closes the client.",
    expected:
      `reply {${VM_DOMAIN}, P}; agent gets EXEC_CMDLINE{0, P, ` +
      `"${DEFAULT_USER}:QUBESRPC test.X dom0"}; client closed on release`,
    async run(f, context) {
      await handshake(f, context);
      const { client, port, forwarded } = await clientExec(
        f,
        context,
        C.MSG_EXEC_CMDLINE,
        0,
        "DEFAULT:QUBESRPC test.X dom0",
      );
      check(forwarded.type === C.MSG_EXEC_CMDLINE, `the agent got ${describe(forwarded)}`);
      const params = decodeExecParams(forwarded.payload);
      const command = text(params.tail);
      check(
        params.connectDomain === 0 && params.connectPort === port,
        `forwarded exec_params {${params.connectDomain}, ` +
          `${params.connectPort}}, expected {0, ${port}}`,
      );
      check(
        command === `${DEFAULT_USER}:QUBESRPC test.X dom0\0`,
        `forwarded command ${JSON.stringify(command)}`,
      );
      f.ctl.send(
        C.MSG_CONNECTION_TERMINATED,
        encodeConnectionTerminated({ connectDomain: 0, connectPort: port }),
      );
      context.step("waiting for the daemon to close the client when the port is released");
      const rest = await within(5000, client.receiveAll());
      check(
        rest !== "timeout",
        "the client was still connected 5 s after CONNECTION_TERMINATED for its port",
      );
      return `port ${port}; forwarded ${JSON.stringify(command)}; client closed on release`;
    },
  },
  {
    name: "client-just-exec",
    role: "daemon",
    spec: "§2.3, §7.2",
    checks: "A client's JUST_EXEC is forwarded as JUST_EXEC with the allocated port.",
    expected: "JUST_EXEC{0, P} at the agent",
    async run(f, context) {
      await handshake(f, context);
      const { port, forwarded } = await clientExec(f, context, C.MSG_JUST_EXEC, 0, "DEFAULT:true");
      check(forwarded.type === C.MSG_JUST_EXEC, `the agent got ${describe(forwarded)}`);
      const params = decodeExecParams(forwarded.payload);
      check(
        params.connectPort === port,
        `forwarded port ${params.connectPort}, the client was told ${port}`,
      );
      check(
        text(params.tail) === `${DEFAULT_USER}:true\0`,
        `forwarded command ${JSON.stringify(text(params.tail))}`,
      );
      return `JUST_EXEC{0, ${port}}`;
    },
  },
  {
    name: "port-parity",
    role: "daemon",
    spec: "§7.5",
    checks:
      "Ports for a peer with a higher domain id are even, for a " +
      "lower one odd; the next one for a higher peer is higher.",
    expected: "peer 43: even P1; peer 44: even P2 > P1; peer 7: odd",
    async run(f, context) {
      await handshake(f, context);
      const ports: number[] = [];
      for (const peer of [43, 44, 7])
        ports.push((await clientExec(f, context, C.MSG_EXEC_CMDLINE, peer, "user:true")).port);
      const [a, b, c] = ports as [number, number, number];
      check(
        a % 2 === 0 && b % 2 === 0 && b > a && c % 2 === 1,
        `ports ${ports.join(", ")} for peers 43, 44, 7`,
      );
      return `ports ${ports.join(", ")} for peers 43, 44, 7`;
    },
  },
  {
    name: "refused-by-policy",
    role: "daemon",
    spec: "§2.1 steps 3-4, 9, §7.4",
    checks:
      "A trigger the policy denies is answered with SERVICE_REFUSED " +
      "carrying the request's ident, after asking the policy.",
    expected: "the policy asked (testvm dom0 test.Denied); SERVICE_REFUSED{SOCKET11}",
    async run(f, context) {
      await handshake(f, context);
      const payload = trigger4("test.Denied", "SOCKET11");
      f.ctl.send(C.MSG_TRIGGER_SERVICE4, payload);
      const seen = await expectRefused(f, context, "a denied call", payload.subarray(128, 160));
      const queries = f.queries();
      check(
        queries.some((q) => q.includes("test.Denied")),
        `the policy was not asked about test.Denied (asked: ${JSON.stringify(queries)})`,
      );
      return `${seen}; policy asked: ${queries.join(" | ")}`;
    },
  },
  {
    name: "refused-bad-ident",
    role: "daemon",
    spec: "§3.5, §7.3, §13.12",
    checks:
      "Invalid idents (a bad character; bytes after the NUL) are " +
      "refused with the raw 32 bytes and never reach the policy.",
    expected: "SERVICE_REFUSED with the unsanitized ident, twice; no policy query",
    async run(f, context) {
      await handshake(f, context);
      const idents = [
        bytes("bad!ident".padEnd(32, "\0")),
        new Uint8Array([65, 0, 66, ...new Array(29).fill(0)]),
      ];
      for (const ident of idents) {
        f.ctl.send(C.MSG_TRIGGER_SERVICE4, trigger4("test.Echo", ident));
        await expectRefused(
          f,
          context,
          `ident ${JSON.stringify(text(ident).replace(/\0+$/, ""))}`,
          ident,
        );
      }
      check(f.queries().length === 0, `the policy was asked: ${f.queries().join(" | ")}`);
      return "both refused with the raw ident; no policy query";
    },
  },
  {
    name: "refused-bad-service",
    role: "daemon",
    spec: "§7.3, §13.12",
    checks:
      "Service names that start with '+', contain a NUL " +
      "or are empty are refused without a policy query.",
    expected: 'SERVICE_REFUSED for each of "+arg", "a\\0b", ""; no policy query',
    async run(f, context) {
      await handshake(f, context);
      const names: Array<[string, Uint8Array]> = [
        ["+arg", bytes("+arg")],
        ["a\\0b", new Uint8Array([97, 0, 98])],
        ["(empty)", new Uint8Array(0)],
      ];
      for (const [label, name] of names) {
        // An empty name is the fixed part and its single NUL (the encoder refuses to build one).
        const payload =
          name.length > 0
            ? trigger4(name, "SOCKET5")
            : new Uint8Array([...trigger4("x", "SOCKET5").subarray(0, C.TRIGGER4_FIXED_BYTES), 0]);
        f.ctl.send(C.MSG_TRIGGER_SERVICE4, payload);
        await expectRefused(f, context, `service ${label}`, payload.subarray(128, 160));
      }
      check(f.queries().length === 0, `the policy was asked: ${f.queries().join(" | ")}`);
      return "all three refused; no policy query";
    },
  },
  {
    name: "call-to-dom0",
    role: "daemon",
    spec: "§2.2, §6.2 step 1, §6.3",
    checks:
      "An allowed call into dom0: SERVICE_CONNECT{0, P, ident}; the daemon's service " +
      "side connects to the VM's data vchan, gets the caller's HELLO first, and sends the " +
      "service's output, STDERR EOF (no stderr in dom0), STDOUT EOF, EXIT_CODE 0 last.",
    expected:
      'SERVICE_CONNECT{0, P, SOCKET12}; STDOUT "from ' +
      'dom0: testvm\\nping\\n", both EOFs, EXIT_CODE 0 last',
    run: (f, context) =>
      dom0Call(f, context, "test.Echo", [bytes("ping\n"), new Uint8Array(0)], {
        stdout: "from dom0: testvm\nping\n",
        exitCode: 0,
      }),
  },
  {
    name: "call-to-dom0-127",
    role: "daemon",
    spec: "§2.2 step 5, §8",
    checks:
      "An allowed call to a dom0 service that does not " +
      "exist: both EOFs and EXIT_CODE 127 on the data vchan.",
    expected: "SERVICE_CONNECT; STDOUT EOF, STDERR EOF, EXIT_CODE 127",
    run: (f, context) =>
      dom0Call(f, context, "test.Missing", [new Uint8Array(0)], { stdout: "", exitCode: 127 }),
  },
  {
    name: "call-to-dom0-status",
    role: "daemon",
    spec: "§6.2 step 3, §8",
    checks: "A dom0 service's own exit status (5) is the EXIT_CODE.",
    expected: "SERVICE_CONNECT; both EOFs, EXIT_CODE 5",
    run: (f, context) =>
      dom0Call(f, context, "test.Status", [new Uint8Array(0)], { stdout: "", exitCode: 5 }),
  },
  {
    name: "call-to-vm",
    role: "daemon",
    spec: "§2.1 step 4, §2.5",
    checks:
      "An allowed VM → VM call: the daemon asks the target's daemon (the " +
      'kit, HELLO 3) with EXEC_CMDLINE{source, 0, "DEFAULT:QUBESRPC svc+ ' +
      'source"}, then sends SERVICE_CONNECT{target, P, ident} to the agent.',
    expected:
      `target daemon gets EXEC_CMDLINE{${VM_DOMAIN}, 0, "DEFAULT:QUBESRPC test.Add+ ` +
      `${VM_NAME}"}; agent gets SERVICE_CONNECT{${OTHER_DOMAIN}, 516, SOCKET21}`,
    async run(f, context) {
      await handshake(f, context);
      await waitForSocket(f, context);
      const other = RawPeer.listen(join(f.socketDir, `qrexec.${OTHER_NAME}`));
      f.ownListener(other.stop);
      f.ctl.send(C.MSG_TRIGGER_SERVICE4, trigger4("test.Add", "SOCKET21", OTHER_NAME));
      context.step(`waiting for the daemon to connect to ${OTHER_NAME}'s daemon socket`);
      const target = f.own(await other.next());
      target.sendHello(C.QREXEC_CLIENT_PROTOCOL_VERSION);
      const hello = await target.receiveHello().catch((error: Error) => {
        throw new CaseFailure(`target daemon socket: ${error.message}`);
      });
      check(hello === 3, `the daemon's HELLO to the target daemon carries ${hello}, expected 3`);
      context.step("waiting for EXEC_CMDLINE at the target daemon");
      const exec = await target.receive(70_000);
      check(exec !== null, "the daemon closed the target-daemon connection without a command");
      check(exec.type === C.MSG_EXEC_CMDLINE, `the target daemon got ${describe(exec)}`);
      const params = decodeExecParams(exec.payload);
      const command = text(params.tail);
      check(
        params.connectDomain === VM_DOMAIN && params.connectPort === 0,
        `EXEC_CMDLINE{${params.connectDomain}, ${params.connectPort}}, expected {${VM_DOMAIN}, 0}`,
      );
      check(
        command === `DEFAULT:QUBESRPC test.Add+ ${VM_NAME}\0`,
        `the target daemon got ${JSON.stringify(command)}`,
      );
      target.send(
        C.MSG_EXEC_CMDLINE,
        encodeExecParams({ connectDomain: OTHER_DOMAIN, connectPort: 516 }),
      );
      const connect = await answer(f, context, "the allowed VM → VM call");
      check(
        connect.type === C.MSG_SERVICE_CONNECT,
        `${describe(connect)}; expected SERVICE_CONNECT`,
      );
      const sc = decodeServiceConnect(connect.payload, "terminate");
      check(
        sc.connectDomain === OTHER_DOMAIN &&
          sc.connectPort === 516 &&
          fieldText(sc.ident) === "SOCKET21",
        `SERVICE_CONNECT{${sc.connectDomain}, ${sc.connectPort}, ` +
          `${JSON.stringify(fieldText(sc.ident))}}`,
      );
      return (
        `target daemon got ${JSON.stringify(command)}; agent ` +
        `got SERVICE_CONNECT{${OTHER_DOMAIN}, 516, SOCKET21}`
      );
    },
  },
  {
    name: "unknown-connect-dropped",
    role: "daemon",
    spec: "§7.2, §13.9",
    checks:
      "A client's SERVICE_CONNECT whose ident matches no " +
      "pending request is dropped; the daemon serves on.",
    expected: "that client closed, nothing sent to the agent; a following EXEC served",
    async run(f, context) {
      await handshake(f, context);
      const client = await daemonClient(f, context);
      client.send(
        C.MSG_SERVICE_CONNECT,
        encodeServiceConnect({ connectDomain: 0, connectPort: 0 }, "NOPE"),
      );
      context.step("waiting for the daemon to drop the client");
      const rest = await within(5000, client.receiveAll());
      check(rest !== "timeout", "a client with an unknown ident was still connected after 5 s");
      const { port } = await clientExec(f, context, C.MSG_EXEC_CMDLINE, 0, "user:true");
      check(
        f.messages.pending().length === 0,
        `the agent also got ${summarize(f.messages.pending())}`,
      );
      return `dropped (${summarize(rest.messages)}); next EXEC got port ${port}`;
    },
  },
  {
    name: "oversize-client-message",
    role: "daemon",
    spec: "§7.2, §3.4",
    checks:
      "A client header announcing 2 GiB is rejected at once (client " +
      "dropped, no allocation, no wait); the daemon serves on.",
    expected: "that client closed; a following EXEC served",
    async run(f, context) {
      await handshake(f, context);
      const client = await daemonClient(f, context);
      client.sendRaw(header(C.MSG_EXEC_CMDLINE, 0x7fffffff));
      context.step("waiting for the daemon to drop the client");
      const rest = await within(5000, client.receiveAll());
      check(
        rest !== "timeout",
        "a client announcing a 2 GiB message was still connected after 5 s",
      );
      const { port } = await clientExec(f, context, C.MSG_EXEC_CMDLINE, 0, "user:true");
      return `dropped; next EXEC got port ${port}`;
    },
  },
  {
    name: "oversize-agent-message",
    role: "daemon",
    spec: "§7.3, §3.4",
    checks:
      "A TRIGGER_SERVICE4 header announcing 2 GiB from the agent " +
      "is a protocol error: the control vchan is dropped at once " +
      "(upstream exits; reconnecting is fine), no crash, no hang.",
    expected: "control vchan closed; a reconnect or a clean exit",
    async run(f, context) {
      await handshake(f, context);
      f.ctl.sendRaw(header(C.MSG_TRIGGER_SERVICE4, 0x7fffffff));
      return dropsAgent(f, context, "a 2 GiB trigger header");
    },
  },
  {
    name: "unknown-agent-message",
    role: "daemon",
    spec: "§7.3",
    checks:
      "An unknown message type from the agent is a protocol error: the " +
      "control vchan is dropped (upstream exits), no crash, no hang.",
    expected: "control vchan closed; a reconnect or a clean exit",
    async run(f, context) {
      await handshake(f, context);
      f.ctl.send(0x2ff, bytes("junk"));
      return dropsAgent(f, context, "an unknown message 0x2ff");
    },
  },
  {
    name: "agent-disconnect",
    role: "daemon",
    spec: "§7.1 agent restart, §6.9",
    checks:
      "The agent goes away: the daemon removes its socket, disconnects " +
      "its clients, and reconnects to a new agent (or exits cleanly).",
    expected: "the socket removed and a client dropped; a reconnect that serves, or a clean exit",
    async run(f, context) {
      await handshake(f, context);
      const client = await daemonClient(f, context);
      f.ctl.close();
      context.step("waiting for the daemon to drop its clients after the agent went away");
      const rest = await within(5000, client.receiveAll());
      check(
        rest !== "timeout",
        "a daemon client was still connected 5 s after the agent went away",
      );
      return `client dropped; ${await reconnectsOrExits(f, context)}`;
    },
  },
];
