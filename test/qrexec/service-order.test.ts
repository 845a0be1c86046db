// The service side's message order when it has no stderr fd (a socket service): the empty
// MSG_DATA_STDERR is the first data message, sent as soon as the fds are set, before remote input
// is handled and before any stdout data or EOF (§6.2 step 1, §9 "`-c` in detail"). A raw-frame
// peer plays dom0 against a real qrexec-agent over the socket transport.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { Connection } from "../../src/io/connection.ts";
import { encodeExecCommand } from "../../src/protocol/codec.ts";
import * as C from "../../src/protocol/constants.ts";
import { summarize } from "../../src/conformance/wire.ts";
import { FramePeer, type RawMessage } from "../helpers/frame-peer.ts";
import { tempDir } from "../helpers/paths.ts";
import { BIN } from "../helpers/system.ts";

const AGENT_DOMAIN = 6;
let dir: ReturnType<typeof tempDir>;
let agent: Subprocess;
const agentLog: string[] = [];
let control: FramePeer;
let nextPort = 640;
const listeners: Array<{ stop: (closeActive?: boolean) => void }> = [];

const bytes = (value: string) => new TextEncoder().encode(value);

/** Runs `command` as dom0 would; `stdin` goes out right after the HELLO exchange. */
async function exec(command: string, stdin: string[]): Promise<RawMessage[]> {
  const port = nextPort++;
  const listener = FramePeer.listenVchan(dir.path, 0, AGENT_DOMAIN, port);
  const request = encodeExecCommand({ connectDomain: 0, connectPort: port }, command);
  control.send(C.MSG_EXEC_CMDLINE, request);
  const data = await listener.accepted;
  listener.stop();
  expect(await data.receiveHello()).toBe(4);
  data.sendHello(4);
  for (const chunk of stdin) data.send(C.MSG_DATA_STDIN, bytes(chunk));
  const messages = await data.messagesUntilClose();
  expect((await control.receive())?.type).toBe(C.MSG_CONNECTION_TERMINATED);
  return messages;
}

/** A socket service at rpc/NAME; `greeting` is written to each connection at once, then EOF. */
function socketService(name: string, greeting: string | null): void {
  const listener = Connection.listen(join(dir.path, "rpc", name), (connection) => {
    if (greeting === null) return;
    connection.write(bytes(greeting));
    connection.shutdownWrite();
  });
  listeners.push(listener);
}

beforeAll(async () => {
  dir = tempDir("qrx-order-");
  for (const sub of ["rpc", "config"]) mkdirSync(join(dir.path, sub));
  socketService("test.EofExit", null);
  writeFileSync(join(dir.path, "config", "test.EofExit"), "exit-on-client-eof = true\n");
  socketService("test.Greet", "hello\n");
  writeFileSync(join(dir.path, "config", "test.Greet"), "exit-on-service-eof = true\n");
  agent = Bun.spawn([join(BIN, "qrexec-agent"), `--agent-socket=${join(dir.path, "agent.sock")}`], {
    env: {
      ...process.env,
      VCHAN_DOMAIN: String(AGENT_DOMAIN),
      QRX_VCHAN: "socket",
      VCHAN_SOCKET_DIR: dir.path,
      QREXEC_SERVICE_PATH: join(dir.path, "rpc"),
      QUBES_RPC_CONFIG_PATH: join(dir.path, "config"),
    },
    stdio: ["ignore", "ignore", "pipe"],
  });
  void (async () => {
    for await (const chunk of agent.stderr as ReadableStream<Uint8Array>) {
      agentLog.push(new TextDecoder().decode(chunk));
    }
  })();
  control = await FramePeer.connectVchan(dir.path, AGENT_DOMAIN, 0, C.VCHAN_BASE_PORT);
  expect(await control.receiveHello()).toBe(4);
  control.sendHello(4);
});

afterAll(async () => {
  agent.kill("SIGTERM");
  await agent.exited;
  for (const listener of listeners) listener.stop(true);
  dir.remove();
});

describe("a service side without a stderr fd", () => {
  test("exit-on-client-eof, the EOF already there: STDERR, STDOUT, EXIT_CODE", async () => {
    const messages = await exec("user:QUBESRPC test.EofExit dom0", [""]);
    expect(summarize(messages), agentLog.join("")).toBe("STDERR EOF, STDOUT EOF, EXIT_CODE 0");
  });

  test("the empty STDERR comes before the socket service's first output", async () => {
    const messages = await exec("user:QUBESRPC test.Greet dom0", []);
    const expected = 'STDERR EOF, STDOUT "hello\\n", STDOUT EOF, EXIT_CODE 0';
    expect(summarize(messages), agentLog.join("")).toBe(expected);
  });
});
