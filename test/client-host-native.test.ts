// The client host's native side (zig/client_host/listener.zig) and its FFI face (ClientHost in
// src/native.ts), without an agent: a fake qrexec-client-vm front end in Python sends requests
// with SCM_RIGHTS to a socket this test process serves, and the test checks what ClientHost
// reports and what the front end reads back. The fake front end's stdout and stderr are pipes
// the test reads to their end, which comes only once every copy of them is closed: that is how
// each case checks that the host (or the request's receiver) closed the fds it was handed.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { closeSync, writeFileSync, writeSync } from "node:fs";
import { join } from "node:path";
import { CLIENT_HOST_VERSION } from "../src/abi.generated.ts";
import { ClientHost, type ClientRequest } from "../src/native.ts";
import { tempDir } from "./helpers/paths.ts";

const FAKE_FRONT_END = String.raw`
import json, os, socket, struct, sys
path, spec = sys.argv[1], json.loads(sys.argv[2])
# Lone surrogates in the JSON stand for raw bytes (invalid UTF-8 on purpose).
encode = lambda text: text.encode("utf-8", "surrogateescape") + b"\0"
strings = spec["argv"] + spec["env"]
if "raw" in spec:
    payload = bytes.fromhex(spec["raw"])
else:
    payload = b"".join(encode(text) for text in strings)
magic, version = spec.get("magic", 0x48585251), spec["version"]
header = struct.pack("<5I", magic, version, len(spec["argv"]), len(spec["env"]), len(payload))
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(path)
fds = list(range(spec.get("fds", 3)))
if fds:
    socket.send_fds(s, [header], fds)
else:
    s.sendall(header)
try:
    s.sendall(payload + b"U" * spec.get("signals", 0))
except (BrokenPipeError, ConnectionResetError):
    pass  # dropped already after the header
if spec.get("then") == "exit":
    sys.exit(0)
def receive(count):
    # The host closes with our unread bytes in its buffer (a payload it did not read): the kernel
    # reports that as ECONNRESET once the queued reply is read. The real front end takes both
    # for the end of the connection.
    try:
        return s.recv(count)
    except ConnectionResetError:
        return b""
def exactly(count):
    got = b""
    while len(got) < count:
        chunk = receive(count - len(got))
        if not chunk:
            break
        got += chunk
    return got
result = {"messages": []}
def reply():
    # Kind 6 (message) carries that many bytes of text: kept, and the next reply read.
    while True:
        got = exactly(8)
        if len(got) < 8:
            return None
        kind, value = struct.unpack("<Ii", got)
        if kind != 6:
            return [kind, value]
        result["messages"].append(exactly(value).decode())
if "local" in spec:
    # A local program's records: "S" (our pid as the program's) goes with two copies of our
    # stdout as its fds, anything else is hex; after start_local when "waitStart" says so.
    if spec.get("waitStart"):
        result["start"] = reply()
    for record in spec["local"]:
        try:
            if record == "S":
                socket.send_fds(s, [b"S" + struct.pack("<i", os.getpid())], [1, 1])
            else:
                s.sendall(bytes.fromhex(record))
        except (BrokenPipeError, ConnectionResetError):
            break
answer = reply()
rest = receive(1) if answer is not None else b""
result.update({"reply": answer, "eof": rest == b""})
sys.stdout.close()
os.write(2, json.dumps(result).encode())
`;

interface FrontEndSpec {
  argv: string[];
  env: string[];
  magic?: number;
  version?: number;
  fds?: number;
  signals?: number;
  /** Payload bytes (hex) instead of the strings; argc and envc still count the strings. */
  raw?: string;
  /** "exit": hang up right after the request instead of waiting for a reply. */
  then?: "exit";
  /** Local program records to send after the request: "S" (with fds), else hex bytes. */
  local?: string[];
  /** Read the host's `start_local` (`start` in the result) before sending `local`. */
  waitStart?: boolean;
}

interface FrontEndResult {
  code: number;
  stdout: string;
  reply: [number, number] | null;
  /** The host closed the connection after its reply (or without one). */
  eof: boolean;
  start?: [number, number] | null;
  /** The text of `message` replies, in order. */
  messages?: string[];
}

type HostEvent =
  | { type: "request"; request: ClientRequest }
  | { type: "signal"; connection: number }
  | { type: "gone"; connection: number }
  | { type: "localStarted"; connection: number; fds: [number, number]; pid: number }
  | { type: "localFailed"; connection: number; errno: number }
  | { type: "localExit"; connection: number; status: number };

describe("ClientHost (native listener, fake front end)", () => {
  let dir: { path: string; remove: () => void };
  let socketPath: string;
  let script: string;
  let host: ClientHost;
  const events: HostEvent[] = [];
  let wake: (() => void) | null = null;

  function push(event: HostEvent): void {
    events.push(event);
    wake?.();
  }

  async function next(): Promise<HostEvent> {
    const deadline = Date.now() + 5000;
    while (events.length === 0) {
      if (Date.now() > deadline) throw new Error("no client host event within 5 s");
      await new Promise<void>((resolve) => {
        wake = resolve;
        setTimeout(resolve, 100);
      });
      wake = null;
    }
    return events.shift()!;
  }

  /** Runs the fake front end; `during` sees its process while the test serves it. */
  async function frontEnd(
    spec: FrontEndSpec,
    during?: (pid: number) => Promise<void>,
  ): Promise<FrontEndResult> {
    const versioned = { version: CLIENT_HOST_VERSION, ...spec };
    const child = Bun.spawn(["python3", script, socketPath, JSON.stringify(versioned)], {
      stdin: "pipe",
      stdout: "pipe",
      stderr: "pipe",
    });
    const outputs = Promise.all([
      new Response(child.stdout).text(),
      new Response(child.stderr).text(),
      child.exited,
    ]);
    if (during) await during(child.pid);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error("the front end's stdio did not end: an fd copy was not closed")),
        5000,
      );
    });
    try {
      const [stdout, stderr, code] = await Promise.race([outputs, timeout]);
      let parsed: Pick<FrontEndResult, "reply" | "eof" | "start" | "messages"> = {
        reply: null,
        eof: false,
      };
      if (stderr.startsWith("{")) parsed = JSON.parse(stderr);
      else if (spec.then !== "exit")
        throw new Error(`fake front end failed (exit ${code}): ${stderr}`);
      return { code, stdout, ...parsed };
    } finally {
      clearTimeout(timer);
    }
  }

  beforeAll(() => {
    dir = tempDir("qrx-host-");
    socketPath = join(dir.path, "agent.clients");
    script = join(dir.path, "front.py");
    writeFileSync(script, FAKE_FRONT_END);
    // A stale socket file from an earlier agent is replaced.
    writeFileSync(socketPath, "stale");
    host = ClientHost.listen(socketPath, {
      request: (request) => push({ type: "request", request }),
      signal: (connection) => push({ type: "signal", connection }),
      gone: (connection) => push({ type: "gone", connection }),
      localStarted: (connection, fds, pid) => push({ type: "localStarted", connection, fds, pid }),
      localFailed: (connection, errno) => push({ type: "localFailed", connection, errno }),
      localExit: (connection, status) => push({ type: "localExit", connection, status }),
    });
  });

  afterAll(() => {
    dir.remove();
  });

  test("a second listen in the same process is refused", () => {
    expect(() =>
      ClientHost.listen(join(dir.path, "other"), { request() {}, signal() {}, gone() {} }),
    ).toThrow();
  });

  test("a request arrives with usable fds; 'U' is a signal; reply(42) reaches it", async () => {
    const result = await frontEnd(
      { argv: ["vault", "test.Echo+arg", "ünï"], env: ["A=1", "B=x=y", "EMPTY="], signals: 1 },
      async () => {
        const event = await next();
        if (event.type !== "request") throw new Error(`expected a request, got ${event.type}`);
        const { request } = event;
        expect(request.argv).toEqual(["vault", "test.Echo+arg", "ünï"]);
        expect(request.env).toEqual({ A: "1", B: "x=y", EMPTY: "" });
        expect(request.fds.every((fd) => fd > 2)).toBe(true);
        writeSync(request.fds[1], "through fd 1\n");
        for (const fd of request.fds) closeSync(fd);
        expect(await next()).toEqual({ type: "signal", connection: request.connection });
        // What the agent says once the call's stream holds the front end's stderr.
        host.message(request.connection, "said by the agent\n");
        host.reply(request.connection, 42);
        // Answered: the host closes the connection and reports nothing more for it.
        host.reply(request.connection, 1);
        host.fallback(request.connection);
      },
    );
    expect(result).toEqual({
      code: 0,
      stdout: "through fd 1\n",
      messages: ["said by the agent\n"],
      reply: [1, 42],
      eof: true,
    });
    await Bun.sleep(100);
    expect(events).toEqual([]);
  });

  test("a front end gone after its request is reported; answering it is harmless", async () => {
    let connection = -1;
    await frontEnd({ argv: ["vault", "test.Hold"], env: [], then: "exit" }, async () => {
      const event = await next();
      if (event.type !== "request") throw new Error(`expected a request, got ${event.type}`);
      connection = event.request.connection;
      for (const fd of event.request.fds) closeSync(fd);
    });
    expect(await next()).toEqual({ type: "gone", connection });
    expect(() => host.reply(connection, 0)).not.toThrow();
    expect(() => host.fallback(connection)).not.toThrow();
  });

  test("bad magic, wrong fd counts and bad payloads are dropped, their fds closed", async () => {
    const drops: FrontEndSpec[] = [
      { argv: ["vault", "x"], env: [], magic: 0x12345678 },
      { argv: ["vault", "x"], env: [], fds: 2 },
      { argv: ["vault", "x"], env: [], fds: 0 },
      { argv: ["vault", "x"], env: [], fds: 4 },
      // Two strings announced, the last one not NUL-terminated.
      { argv: ["vault", "x"], env: [], raw: Buffer.from("vault\0x").toString("hex") },
      // Two strings announced, three sent.
      { argv: ["vault", "x"], env: [], raw: Buffer.from("vault\0x\0y\0").toString("hex") },
    ];
    for (const spec of drops) {
      const result = await frontEnd(spec);
      expect({ spec, result }).toEqual({
        spec,
        result: { code: 0, stdout: "", messages: [], reply: null, eof: true },
      });
    }
    expect(events).toEqual([]);
    // The host serves on.
    const result = await frontEnd({ argv: ["vault", "after"], env: [] }, async () => {
      const event = await next();
      if (event.type !== "request") throw new Error(`expected a request, got ${event.type}`);
      expect(event.request.argv).toEqual(["vault", "after"]);
      for (const fd of event.request.fds) closeSync(fd);
      host.reply(event.request.connection, 0);
    });
    expect(result.reply).toEqual([1, 0]);
  });

  /** The next event, which must be a request: its fds closed. */
  async function nextRequest(): Promise<ClientRequest> {
    const event = await next();
    if (event.type !== "request") throw new Error(`expected a request, got ${event.type}`);
    for (const fd of event.request.fds) closeSync(fd);
    return event.request;
  }

  test("a local program: start_local, its fds and its status come through, in turn", async () => {
    const exited = "588f000000"; // 'X', 143
    const spec = { argv: ["vault", "x", "prog"], env: [], local: ["S", exited], waitStart: true };
    const result = await frontEnd(spec, async (pid) => {
      const { connection } = await nextRequest();
      expect(host.startLocal(connection, 2)).toBe(true);
      const started = await next();
      if (started.type !== "localStarted") throw new Error(`got ${started.type}`);
      expect(started.connection).toBe(connection);
      expect(started.pid).toBe(pid);
      writeSync(started.fds[0], "via the program's fd\n");
      for (const fd of started.fds) closeSync(fd);
      expect(await next()).toEqual({ type: "localExit", connection, status: 143 });
      host.reply(connection, 7);
    });
    expect(result).toEqual({
      code: 0,
      stdout: "via the program's fd\n",
      messages: [],
      start: [5, 2],
      reply: [1, 7],
      eof: true,
    });
    const failed = await frontEnd({ ...spec, local: ["460d000000"] }, async () => {
      const { connection } = await nextRequest();
      host.startLocal(connection, 2);
      expect(await next()).toEqual({ type: "localFailed", connection, errno: 13 });
      host.reply(connection, 1);
    });
    expect(failed.reply).toEqual([1, 1]);
  });

  test("local program records out of turn hang the front end up, its fds closed", async () => {
    const cases: Array<[string[], boolean]> = [
      [["S"], false], // not asked to start anything
      [["5800000000"], true], // an exit before a start
      [["S", "S"], true], // started twice
      [["S", "5800010000"], true], // a status over 255
      [["4600000000"], true], // errno 0
      [["5a"], true], // no such record
    ];
    for (const [local, waitStart] of cases) {
      const result = await frontEnd(
        { argv: ["vault", "x", "p"], env: [], local, waitStart },
        async () => {
          const { connection } = await nextRequest();
          if (waitStart) host.startLocal(connection, 2);
          // A start that came before the hang-up was reported: its fds are the test's to close.
          let event = await next();
          if (event.type === "localStarted") {
            for (const fd of event.fds) closeSync(fd);
            event = await next();
          }
          expect({ local, event }).toEqual({ local, event: { type: "gone", connection } });
        },
      );
      expect({ local, reply: result.reply, eof: result.eof }).toEqual({
        local,
        reply: null,
        eof: true,
      });
    }
  });

  test("a front end of another version is told to fall back", async () => {
    const result = await frontEnd({ argv: ["vault", "x"], env: [], version: 99 });
    expect(result).toEqual({ code: 0, stdout: "", messages: [], reply: [2, 0], eof: true });
    expect(events).toEqual([]);
  });

  test("strings that are not UTF-8, or an env entry without '=', fall back", async () => {
    for (const spec of [
      { argv: ["vault", "bad\udcff"], env: [] },
      { argv: ["vault", "x"], env: ["A=\udcfe"] },
      { argv: ["vault", "x"], env: ["NOEQUALS"] },
    ]) {
      const result = await frontEnd(spec);
      expect({ spec, result }).toEqual({
        spec,
        result: { code: 0, stdout: "", messages: [], reply: [2, 0], eof: true },
      });
    }
    expect(events).toEqual([]);
  });
});
