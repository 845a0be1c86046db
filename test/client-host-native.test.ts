// The client host's native side (zig/client_host/listener.zig) and its FFI face (ClientHost in
// src/native.ts), without an agent: a fake qrexec-client-vm front end in Python sends requests
// with SCM_RIGHTS to a socket this test process serves, and the test checks what ClientHost
// reports and what the front end reads back. The fake front end's stdout and stderr are pipes
// the test reads to their end, which comes only once every copy of them is closed: that is how
// each case checks that the host (or the request's receiver) closed the fds it was handed.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { closeSync, writeFileSync, writeSync } from "node:fs";
import { join } from "node:path";
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
magic, version = spec.get("magic", 0x48585251), spec.get("version", 1)
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
reply = b""
while len(reply) < 8:
    chunk = receive(8 - len(reply))
    if not chunk:
        break
    reply += chunk
rest = receive(1) if len(reply) == 8 else b""
answer = list(struct.unpack("<Ii", reply)) if len(reply) == 8 else None
result = {"reply": answer, "eof": rest == b""}
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
}

interface FrontEndResult {
  code: number;
  stdout: string;
  reply: [number, number] | null;
  /** The host closed the connection after its reply (or without one). */
  eof: boolean;
}

type HostEvent =
  | { type: "request"; request: ClientRequest }
  | { type: "signal"; connection: number }
  | { type: "gone"; connection: number };

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
    during?: () => Promise<void>,
  ): Promise<FrontEndResult> {
    const child = Bun.spawn(["python3", script, socketPath, JSON.stringify(spec)], {
      stdin: "pipe",
      stdout: "pipe",
      stderr: "pipe",
    });
    const outputs = Promise.all([
      new Response(child.stdout).text(),
      new Response(child.stderr).text(),
      child.exited,
    ]);
    if (during) await during();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error("the front end's stdio did not end: an fd copy was not closed")),
        5000,
      );
    });
    try {
      const [stdout, stderr, code] = await Promise.race([outputs, timeout]);
      let parsed: { reply: [number, number] | null; eof: boolean } = { reply: null, eof: false };
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
        host.reply(request.connection, 42);
        // Answered: the host closes the connection and reports nothing more for it.
        host.reply(request.connection, 1);
        host.fallback(request.connection);
      },
    );
    expect(result).toEqual({ code: 0, stdout: "through fd 1\n", reply: [1, 42], eof: true });
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
        result: { code: 0, stdout: "", reply: null, eof: true },
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

  test("a front end of another version is told to fall back", async () => {
    const result = await frontEnd({ argv: ["vault", "x"], env: [], version: 99 });
    expect(result).toEqual({ code: 0, stdout: "", reply: [2, 0], eof: true });
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
        result: { code: 0, stdout: "", reply: [2, 0], eof: true },
      });
    }
    expect(events).toEqual([]);
  });
});
