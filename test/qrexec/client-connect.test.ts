// `qrexec-client -c REQID,SRC,SRCID` (§9 "`-c` in detail"), driven the way upstream's tests drive
// it: raw daemons on the daemon sockets and a raw caller on the data vchan (socket transport), so
// the exact messages, their order and the client's exit status are checked.
//   -d dom0 CMD: CMD runs here as given (a QUBESRPC service with its own tokens, or bash -c);
//   failures before it starts send STDERR EOF, STDOUT EOF, EXIT_CODE 125|127, which is also the
//   exit status; wait-for-session; the requested target as the service sees it.
//   -d VM CMD: CMD forwarded byte for byte, CONNECT to the source daemon, exit 0 at once (-W
//   waits).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  decodeExecCommand,
  decodeServiceConnect,
  encodeExecParams,
  fieldText,
} from "../../src/protocol/codec.ts";
import * as C from "../../src/protocol/constants.ts";
import { RawPeer, summarize } from "../../src/conformance/wire.ts";
import { FramePeer } from "../helpers/frame-peer.ts";
import { tempDir } from "../helpers/paths.ts";
import { BIN } from "../helpers/system.ts";

const SOURCE_ID = 42;
const TARGET_ID = 43;
let dir: ReturnType<typeof tempDir>;
let runDir: string;
let rpcDir: string;
let configDir: string;
let sessionLog: string;
let nextPort = 700;
const listeners: Array<{ stop: () => void }> = [];

const bytes = (value: string) => new TextEncoder().encode(value);

interface DaemonRequest {
  type: number;
  payload: Uint8Array;
  peer: RawPeer;
}

/**
 * A raw daemon on run/qrexec.NAME: HELLO both ways, then one request per connection, answered by
 * `reply` (a port for port-0 requests); the connection is left open, as a daemon leaves it.
 */
function rawDaemon(
  name: string,
  reply: (request: DaemonRequest) => number | null,
): { requests: DaemonRequest[]; next: () => Promise<DaemonRequest> } {
  const domain = name === "vault" ? TARGET_ID : SOURCE_ID;
  const listener = RawPeer.listen(join(runDir, `qrexec.${name}`));
  listeners.push(listener);
  const requests: DaemonRequest[] = [];
  const waiting: Array<(request: DaemonRequest) => void> = [];
  void (async () => {
    for (;;) {
      const peer = await listener.next();
      peer.sendHello(3);
      await peer.receiveHello();
      const message = await peer.receive();
      if (!message) continue;
      const request = { ...message, peer };
      const port = reply(request);
      if (port !== null) {
        peer.send(message.type, encodeExecParams({ connectDomain: domain, connectPort: port }));
      }
      requests.push(request);
      waiting.shift()?.(request);
    }
  })();
  const next = () => new Promise<DaemonRequest>((resolve) => waiting.push(resolve));
  return { requests, next };
}

function clientEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (value !== undefined && !key.startsWith("QREXEC")) env[key] = value;
  }
  return {
    ...env,
    VCHAN_DOMAIN: "0",
    QRX_VCHAN: "socket",
    VCHAN_SOCKET_DIR: dir.path,
    QREXEC_SERVICE_PATH: rpcDir,
    QUBES_RPC_CONFIG_PATH: configDir,
  };
}

function spawnClient(args: string[]) {
  const argv = [join(BIN, "qrexec-client"), `--socket-dir=${runDir}`, ...args];
  return Bun.spawn(argv, { env: clientEnv(), stdin: "ignore", stdout: "pipe", stderr: "pipe" });
}

let sourcePorts: number[] = [];

/** `qrexec-client -c` into dom0 with a raw caller; `stdin` goes out right after HELLO. */
async function callDom0(command: string, stdin: string[] = [""], extra: string[] = []) {
  const port = nextPort++;
  sourcePorts.push(port);
  const caller = FramePeer.listenVchan(dir.path, SOURCE_ID, 0, port);
  const request = `SOCKET${port},work,${SOURCE_ID}`;
  const client = spawnClient([...extra, "-d", "dom0", "-c", request, command]);
  const stderr = new Response(client.stderr).text();
  const gone = client.exited.then(async (code) => `exited ${code}: ${await stderr}`);
  const connected = await Promise.race([caller.accepted, gone]);
  caller.stop();
  if (typeof connected === "string") throw new Error(`no data vchan from the client: ${connected}`);
  connected.sendHello(4);
  expect(await connected.receiveHello()).toBe(4);
  for (const chunk of stdin) connected.send(C.MSG_DATA_STDIN, bytes(chunk));
  const messages = await connected.messagesUntilClose();
  return { order: summarize(messages), code: await client.exited, stderr: await stderr };
}

function service(name: string, script: string): void {
  writeFileSync(join(rpcDir, name), `#!/bin/sh\n${script}\n`, { mode: 0o755 });
}

let source: ReturnType<typeof rawDaemon>;

beforeAll(() => {
  dir = tempDir("qrx-client-c-");
  runDir = join(dir.path, "run");
  rpcDir = join(dir.path, "rpc");
  configDir = join(dir.path, "config");
  sessionLog = join(dir.path, "session.log");
  for (const sub of [runDir, rpcDir, configDir]) mkdirSync(sub);
  service("test.Echo", "cat");
  service("test.Exit", 'exit "$1"');
  const requested = "$QREXEC_REQUESTED_TARGET_TYPE|$QREXEC_REQUESTED_TARGET";
  service("test.Env", `echo "$QREXEC_REMOTE_DOMAIN|${requested}|$QREXEC_REQUESTED_TARGET_KEYWORD"`);
  service("test.Session", `cat "${sessionLog}" 2>/dev/null; rm -f "${sessionLog}"`);
  service(
    "qubes.WaitForSession",
    [
      `if read line; then echo "stdin: $line" >>"${sessionLog}"; fi`,
      `echo "waited for $QREXEC_REMOTE_DOMAIN" >>"${sessionLog}"`,
      `exit "$(cat "${sessionLog}.status" 2>/dev/null || echo 0)"`,
    ].join("\n"),
  );
  writeFileSync(join(configDir, "test.Session+"), "wait-for-session = 1\n");
  writeFileSync(join(configDir, "test.Exit+bad"), "wait-for-session = +1\n");
  // The source daemon: a port for the CONNECT into dom0, nothing for a forwarded one.
  source = rawDaemon(String(SOURCE_ID), (request) => {
    const { connectPort } = decodeServiceConnect(request.payload);
    return connectPort === 0 ? sourcePorts.shift()! : null;
  });
});

afterAll(() => {
  for (const listener of listeners) listener.stop();
  dir.remove();
});

describe("qrexec-client -c … -d dom0 CMD", () => {
  test("no stderr fd: the empty STDERR first; the exit status is the service's", async () => {
    const echo = await callDom0("QUBESRPC test.Echo work name dom0", ["hi\n", ""]);
    expect(echo.order, echo.stderr).toBe('STDERR EOF, STDOUT "hi\\n", STDOUT EOF, EXIT_CODE 0');
    expect(echo.code).toBe(0);
    const exit = await callDom0("QUBESRPC test.Exit+3 work name dom0");
    expect(exit.order, exit.stderr).toBe("STDERR EOF, STDOUT EOF, EXIT_CODE 3");
    expect(exit.code).toBe(3);
    const connect = decodeServiceConnect(source.requests.at(-1)!.payload);
    expect(fieldText(connect.ident)).toMatch(/^SOCKET\d+$/);
  });

  test.each([
    ["no such service", "QUBESRPC test.Nothing work name dom0", 127],
    ["3 tokens (never rebuilt)", "QUBESRPC test.Echo work name", 125],
    ["5 tokens", "QUBESRPC test.Echo work name dom0 extra", 125],
    ["a bad config value (wait-for-session = +1)", "QUBESRPC test.Exit+bad work name dom0", 125],
    ["QUBESRPC without its space", "QUBESRPCtest.Echo work name dom0", 125],
  ])("%s: STDERR EOF, STDOUT EOF, EXIT_CODE, the same exit status", async (_, command, status) => {
    const result = await callDom0(command);
    expect(result.order, result.stderr).toBe(`STDERR EOF, STDOUT EOF, EXIT_CODE ${status}`);
    expect(result.code).toBe(status);
  });

  test("-E: exit 0 only when the service ran", async () => {
    const ran = await callDom0("QUBESRPC test.Exit+5 work name dom0", [""], ["-E"]);
    expect(ran.order, ran.stderr).toBe("STDERR EOF, STDOUT EOF, EXIT_CODE 5");
    expect(ran.code).toBe(0);
    const missing = await callDom0("QUBESRPC test.Nothing work name dom0", [""], ["-E"]);
    expect(missing.code, missing.stderr).toBe(127);
  });

  test("a command without QUBESRPC runs through /bin/bash -c, its stderr left local", async () => {
    const script = 'echo "$QREXEC_REMOTE_DOMAIN ${BASH_VERSION:+bash}"; echo to-log >&2; exit 4';
    const result = await callDom0(script);
    const expected = 'STDERR EOF, STDOUT "work bash\\n", STDOUT EOF, EXIT_CODE 4';
    expect(result.order, result.stderr).toBe(expected);
    expect(result.stderr).toContain("to-log");
    expect(result.code).toBe(4);
  });

  const waitedOrder = 'STDERR EOF, STDOUT "waited for work\\n", STDOUT EOF, EXIT_CODE 0';

  test("wait-for-session: qubes.WaitForSession first, stdin closed, for the source", async () => {
    const waited = await callDom0("QUBESRPC test.Session work name dom0");
    expect(waited.order, waited.stderr).toBe(waitedOrder);
    const nogui = await callDom0("nogui:QUBESRPC test.Session work name dom0");
    expect(nogui.order, nogui.stderr).toBe("STDERR EOF, STDOUT EOF, EXIT_CODE 0");
  });

  test("wait-for-session: a failing qubes.WaitForSession is only logged", async () => {
    writeFileSync(`${sessionLog}.status`, "3\n");
    const result = await callDom0("QUBESRPC test.Session work name dom0");
    expect(result.order, result.stderr).toBe(waitedOrder);
    expect(result.stderr).toMatch(/qubes\.WaitForSession exited with 3/);
    expect(result.code).toBe(0);
  });

  test("the requested target: dom0 by name, @adminvm as the keyword", async () => {
    const byName = await callDom0("QUBESRPC test.Env work name dom0");
    const order = (line: string) => `STDERR EOF, STDOUT "${line}\\n", STDOUT EOF, EXIT_CODE 0`;
    expect(byName.order, byName.stderr).toBe(order("work|name|dom0|"));
    const byKeyword = await callDom0("QUBESRPC test.Env work keyword adminvm");
    expect(byKeyword.order, byKeyword.stderr).toBe(order("work|keyword||adminvm"));
  });
});

describe("qrexec-client -c … -d VM CMD", () => {
  let target: ReturnType<typeof rawDaemon>;
  beforeAll(() => {
    target = rawDaemon("vault", () => 650);
  });

  test("CMD byte for byte; CONNECT to the source daemon, never closed by it; exit 0", async () => {
    const command = "user:echo 'any  shell'; exit 3";
    const forwarded = source.next();
    const client = spawnClient(["-d", "vault", "-c", "SOCKET5,work,42", command]);
    const code = await client.exited;
    expect(code, await new Response(client.stderr).text()).toBe(0);
    const request = target.requests.at(-1)!;
    expect(request.type).toBe(C.MSG_EXEC_CMDLINE);
    const exec = decodeExecCommand(request.payload, "strict");
    expect(exec).toMatchObject({ connectDomain: SOURCE_ID, connectPort: 0, command });
    const connect = await forwarded;
    expect(connect.type).toBe(C.MSG_SERVICE_CONNECT);
    const params = decodeServiceConnect(connect.payload);
    expect(params).toMatchObject({ connectDomain: TARGET_ID, connectPort: 650 });
    expect(fieldText(params.ident)).toBe("SOCKET5");
  });

  test("a command longer than a message can carry is refused with 137, nothing sent", async () => {
    const before = target.requests.length;
    const client = spawnClient([
      "-d",
      "vault",
      "-c",
      "SOCKET7,work,42",
      `user:${"x".repeat(65530)}`,
    ]);
    const stderr = await new Response(client.stderr).text();
    expect(await client.exited).toBe(137);
    expect(stderr).toMatch(/at most 65526 fit a message/);
    expect(target.requests.length).toBe(before);
  });

  test("-W waits until the target daemon closes the connection", async () => {
    const forwarded = source.next();
    const request = target.next();
    const command = "DEFAULT:QUBESRPC test.Echo work";
    const client = spawnClient(["-W", "-d", "vault", "-c", "SOCKET6,work,42", command]);
    await forwarded;
    // Still waiting after the CONNECT went out (a missing wait would have exited by now).
    await Bun.sleep(300);
    expect(client.exitCode).toBeNull();
    (await request).peer.close();
    expect(await client.exited).toBe(0);
  });
});
