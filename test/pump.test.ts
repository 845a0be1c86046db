// The pump driven from TypeScript: both ends of a call in this process, a real service spawned
// with the pump's fds, files standing in for the caller's terminal; every case on both vchan
// backends, the shm one and the vchan-socket-compatible one.
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { createHash, randomBytes } from "node:crypto";
import { closeSync, openSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { PumpEventKind, StreamKind } from "../src/constants.ts";
import { spawnSpec, StreamError, Vchan, type Stream } from "../src/native.ts";
import { tempDir } from "./helpers/paths.ts";
import { waitFor, type Transport } from "./helpers/system.ts";

const TRANSPORTS: Transport[] = ["shm", "socket"];

let dir: ReturnType<typeof tempDir>;
let streams: Stream[] = [];
let port = 2000;

beforeEach(() => {
  dir = tempDir();
  streams = [];
});

afterEach(() => {
  for (const stream of streams) stream.close();
  dir.remove();
});

/** Runs `script` as a service for a caller whose input is `input`; returns output and statuses. */
async function call(
  backend: Transport,
  script: string,
  input: string | Uint8Array,
  ringBytes: number,
) {
  port++;
  const caller = Vchan.server({
    backend,
    dir: dir.path,
    localDomain: 2,
    remoteDomain: 3,
    port,
    readMin: ringBytes,
    writeMin: ringBytes,
  });
  const target = Vchan.clientAsync({
    backend,
    dir: dir.path,
    localDomain: 3,
    remoteDomain: 2,
    port,
  });
  const client = caller.attach({
    kind: StreamKind.DataClient,
    version: 4,
    sendFirst: true,
    connectTimeoutMs: 5000,
  });
  const service = target.attach({
    kind: StreamKind.DataService,
    version: 4,
    sendFirst: true,
    connectTimeoutMs: 5000,
  });
  streams.push(client, service);
  const inputPath = join(dir.path, "input");
  const outputPath = join(dir.path, "output");
  writeFileSync(inputPath, input);
  client.setStdio(openSync(outputPath, "w"), openSync(inputPath, "r"), -1, false);
  expect(await service.connected).toBe(4);
  expect(await client.connected).toBe(4);
  const [childStdin, childStdout, childStderr] = service.makeServiceStdio();
  const child = Bun.spawn(["sh", "-c", script], {
    stdio: [childStdin, childStdout, childStderr],
    cwd: dir.path,
  });
  for (const fd of [childStdin, childStdout, childStderr]) closeSync(fd);
  void child.exited.then(() =>
    service.localExit(
      child.signalCode ? 128 + signalNumber(String(child.signalCode)) : child.exitCode!,
    ),
  );
  const [clientStatus, serviceStatus] = await Promise.all([client.finished, service.finished]);
  return { output: new Uint8Array(readFileSync(outputPath)), clientStatus, serviceStatus };
}

function signalNumber(name: string): number {
  return (require("node:os").constants.signals as Record<string, number>)[name]!;
}

const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);

function sha256(data: Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}

describe.each(TRANSPORTS)("the pump over a %s vchan", (backend) => {
  test("a spawn given at attach: exactly its argv and environment, a NUL refused", async () => {
    port++;
    const endpoint = { backend, dir: dir.path, port };
    const rings = { readMin: 1024, writeMin: 1024 };
    const caller = Vchan.server({ ...endpoint, ...rings, localDomain: 2, remoteDomain: 3 });
    const target = Vchan.clientAsync({ ...endpoint, localDomain: 3, remoteDomain: 2 });
    const flags = { version: 4, sendFirst: true, connectTimeoutMs: 5000 };
    const stdio = { stderrPipe: false, stdoutPipe: false };
    const env = { A: "1", B: "two words", C: "x=y" };
    expect(() => spawnSpec(["/usr/bin/env"], { D: "a\0b" }, stdio)).toThrow(/contains a NUL/);
    expect(() => spawnSpec(["/usr/bin/env\0"], env, stdio)).toThrow(/contains a NUL/);
    const spawn = spawnSpec(["/usr/bin/env"], env, stdio);
    const client = caller.attach({ kind: StreamKind.DataClient, ...flags });
    const service = target.attach({ kind: StreamKind.DataService, ...flags, spawn });
    streams.push(client, service);
    const outputPath = join(dir.path, "output");
    client.setStdio(openSync(outputPath, "w"), openSync("/dev/null", "r"), -1, false);
    expect(await Promise.all([client.finished, service.finished])).toEqual([0, 0]);
    expect(await service.spawned).toBeGreaterThan(0);
    expect(readFileSync(outputPath, "utf8")).toBe("A=1\nB=two words\nC=x=y\n");
  });

  test("test.Add: 11 22 -> 33, exit 0", async () => {
    const result = await call(backend, "read a b; echo $((a+b))", "11 22\n", 65536);
    expect({ ...result, output: text(result.output) }).toEqual({
      output: "33\n",
      clientStatus: 0,
      serviceStatus: 0,
    });
  });

  test("the service's exit status reaches the caller", async () => {
    const result = await call(backend, "cat; exit 42", "echo me\n", 65536);
    expect({ ...result, output: text(result.output) }).toEqual({
      output: "echo me\n",
      clientStatus: 42,
      serviceStatus: 42,
    });
  });

  test("a service killed by SIGKILL is 137 at the caller", async () => {
    const result = await call(backend, "kill -9 $$", "", 65536);
    expect(result.clientStatus).toBe(137);
  });

  test("8 MiB through a 1 KiB ring arrives whole", async () => {
    const result = await call(backend, "head -c 8388608 /dev/zero | tr '\\0' x", "", 1024);
    expect(result.output.length).toBe(8 << 20);
    expect(text(result.output)).toMatch(/^x+$/);
    expect(result.clientStatus).toBe(0);
  });

  test("4 MiB there and back through 4 KiB rings, checksummed, with the exit code", async () => {
    const input = new Uint8Array(randomBytes(4 << 20));
    const result = await call(backend, "cat; exit 7", input, 4096);
    expect(result.output.length).toBe(input.length);
    expect(sha256(result.output)).toBe(sha256(input));
    expect(result.clientStatus).toBe(7);
    expect(result.serviceStatus).toBe(7);
  });

  test("3 MB made by the service arrive as the service wrote them", async () => {
    // The service keeps its own copy, so the check does not trust anything on the way.
    const script = "head -c 3000000 /dev/urandom | tee sent.bin";
    const result = await call(backend, script, new Uint8Array(0), 65536);
    const sent = new Uint8Array(readFileSync(join(dir.path, "sent.bin")));
    expect(sent.length).toBe(3_000_000);
    expect(sha256(result.output)).toBe(sha256(sent));
    expect(result).toMatchObject({ clientStatus: 0, serviceStatus: 0 });
  });

  test("events that come before a stream's first listener are handed to it, in order", async () => {
    // The daemon's reconnect after a protocol error lost the agent's first message this way: the
    // pump had the HELLO and that message queued before `attach` returned and the daemon's
    // listener was attached (daemon-wire.test.ts). Here the listener comes late on purpose.
    port++;
    const server = Vchan.server({
      backend,
      dir: dir.path,
      localDomain: 0,
      remoteDomain: 5,
      port,
      readMin: 4096,
      writeMin: 4096,
    });
    const client = Vchan.clientAsync({
      backend,
      dir: dir.path,
      localDomain: 5,
      remoteDomain: 0,
      port,
    });
    const agent = server.attach({
      kind: StreamKind.Control,
      version: 4,
      sendFirst: true,
      connectTimeoutMs: 5000,
    });
    const daemon = client.attach({
      kind: StreamKind.Control,
      version: 3,
      sendFirst: false,
      connectTimeoutMs: 5000,
    });
    streams.push(agent, daemon);
    expect(await agent.connected).toBe(3);
    agent.send(0x213, new TextEncoder().encode("first"));
    agent.send(0x213, new TextEncoder().encode("second"));
    expect(await daemon.connected).toBe(3);
    // Not a gate: it only gives the pump time to queue both messages before anyone listens.
    await Bun.sleep(200);
    const seen: string[] = [];
    // A connection's payload is its time (8 bytes), a message's its body.
    const payloadOf = (event: { kind: number; payload: Uint8Array }) =>
      event.kind === PumpEventKind.Connected
        ? `${event.payload.length} bytes`
        : new TextDecoder().decode(event.payload);
    daemon.onEvent((event) => seen.push(`${event.kind}:${event.value}:${payloadOf(event)}`));
    await waitFor(() => seen.length >= 3, "the connection and both queued messages");
    expect(seen).toEqual([
      `${PumpEventKind.Connected}:3:8 bytes`,
      `${PumpEventKind.Message}:531:first`,
      `${PumpEventKind.Message}:531:second`,
    ]);
    agent.send(0x213, new TextEncoder().encode("third"));
    await waitFor(() => seen.length >= 4, "the third message");
    expect(seen[3]).toBe(`${PumpEventKind.Message}:531:third`);
  });

  test("a peer that never connects fails the stream with ETIMEDOUT", async () => {
    const lonely = Vchan.server({
      backend,
      dir: dir.path,
      localDomain: 2,
      remoteDomain: 9,
      port: 1999,
      readMin: 1024,
      writeMin: 1024,
    });
    const stream = lonely.attach({
      kind: StreamKind.DataClient,
      version: 4,
      sendFirst: true,
      connectTimeoutMs: 100,
    });
    streams.push(stream);
    const error = await stream.finished.then(
      () => null,
      (e: StreamError) => e,
    );
    expect(error).toBeInstanceOf(StreamError);
    expect(error!.code).toBe("ETIMEDOUT");
    expect(lonely.closed).toBe(true);
  });
});
