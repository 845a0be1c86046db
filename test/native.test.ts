// The Vchan handle class against the real library, both ends in this process.
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { existsSync, readdirSync } from "node:fs";
import { NativeError, Vchan, VchanState, configure } from "../src/native.ts";
import { tempDir } from "./helpers/paths.ts";

let dir: ReturnType<typeof tempDir>;
let opened: Vchan[] = [];

beforeEach(() => {
  dir = tempDir();
  opened = [];
});

afterEach(() => {
  for (const vchan of opened) vchan.close();
  configure({ pagesMax: 0 });
  dir.remove();
});

function pair(readMin = 1024, writeMin = 1024, port = 600): { server: Vchan; client: Vchan } {
  const server = Vchan.server({
    dir: dir.path,
    localDomain: 0,
    remoteDomain: 9,
    port,
    readMin,
    writeMin,
  });
  const client = Vchan.clientAsync({ dir: dir.path, localDomain: 9, remoteDomain: 0, port });
  opened.push(server, client);
  // One thread plays both ends: the client says hello, the server answers in wait().
  expect(client.finish()).toBe(false);
  server.wait();
  expect(client.finish()).toBe(true);
  return { server, client };
}

function errorOf(run: () => unknown): NativeError {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(NativeError);
    return error as NativeError;
  }
  throw new Error("expected a NativeError");
}

describe("Vchan", () => {
  test("connects, reports its layout and moves bytes both ways", () => {
    const { server, client } = pair(65536, 65536);
    expect(server.isOpen()).toBe(VchanState.Connected);
    expect(client.isOpen()).toBe(VchanState.Connected);
    const info = server.info();
    expect(info).toMatchObject({
      role: "server",
      leftOrder: 16,
      rightOrder: 16,
      pages: 33,
      readRingBytes: 65536,
    });
    expect(client.info()).toMatchObject({
      role: "client",
      readRingBytes: 65536,
      writeRingBytes: 65536,
    });
    const message = new TextEncoder().encode("11 22\n");
    expect(client.write(message)).toBe(message.length);
    expect(server.dataReady()).toBe(message.length);
    const buffer = new Uint8Array(64);
    expect(server.read(buffer)).toBe(message.length);
    expect(new TextDecoder().decode(buffer.subarray(0, message.length))).toBe("11 22\n");
    expect(server.send(new Uint8Array([3, 3]))).toBe(2);
    expect(client.recv(buffer.subarray(0, 2))).toBe(2);
    expect(client.bufferSpace()).toBe(65536);
  });

  test("the rendezvous socket is removed once the client came", () => {
    const server = Vchan.server({
      dir: dir.path,
      localDomain: 0,
      remoteDomain: 9,
      port: 601,
      readMin: 1024,
      writeMin: 1024,
    });
    opened.push(server);
    expect(readdirSync(dir.path)).toEqual(["shmvchan.0.9.601.sock"]);
    const client = Vchan.clientAsync({ dir: dir.path, localDomain: 9, remoteDomain: 0, port: 601 });
    opened.push(client);
    client.finish();
    server.wait();
    client.finish();
    expect(readdirSync(dir.path)).toEqual([]);
  });

  test("send and recv larger than the ring fail cleanly and leave the vchan usable", () => {
    const { server, client } = pair(1024, 1024);
    const error = errorOf(() => client.send(new Uint8Array(1025)));
    expect(error.code).toBe("EMSGSIZE");
    expect(error.message).toContain("the write ring holds 1024");
    expect(errorOf(() => server.recv(new Uint8Array(1025))).code).toBe("EMSGSIZE");
    expect(client.send(new Uint8Array(1024).fill(1))).toBe(1024);
    expect(server.recv(new Uint8Array(1024))).toBe(1024);
  });

  test("non-blocking read of an empty ring is 0; blocking write over the ring is partial", () => {
    const { server, client } = pair(1024, 1024);
    server.setBlocking(false);
    expect(server.read(new Uint8Array(10))).toBe(0);
    client.setBlocking(false);
    expect(client.write(new Uint8Array(5000))).toBe(1024);
    expect(client.write(new Uint8Array(10))).toBe(0);
  });

  test("fd_for_select is one fd from init to close", () => {
    const server = Vchan.server({
      dir: dir.path,
      localDomain: 0,
      remoteDomain: 9,
      port: 602,
      readMin: 1024,
      writeMin: 1024,
    });
    const client = Vchan.clientAsync({ dir: dir.path, localDomain: 9, remoteDomain: 0, port: 602 });
    opened.push(server, client);
    const serverFd = server.fd;
    const clientFd = client.fd;
    expect(server.isOpen()).toBe(VchanState.Waiting);
    expect(client.isOpen()).toBe(VchanState.Waiting);
    client.finish();
    server.wait();
    client.finish();
    expect(server.isOpen()).toBe(VchanState.Connected);
    expect(server.fd).toBe(serverFd);
    expect(client.fd).toBe(clientFd);
  });

  test("closing one end: the other drains what is left, then sees DISCONNECTED and EPIPE", () => {
    const { server, client } = pair();
    client.write(new Uint8Array([1, 2, 3]));
    client.close();
    expect(server.isOpen()).toBe(VchanState.Disconnected);
    expect(server.reason()).toContain("closed");
    const buffer = new Uint8Array(8);
    expect(server.read(buffer)).toBe(3);
    expect(errorOf(() => server.read(buffer)).code).toBe("EPIPE");
    expect(errorOf(() => server.write(buffer)).code).toBe("EPIPE");
  });

  test("a closed handle refuses every use, and close is idempotent", () => {
    const { client } = pair();
    client.close();
    client.close();
    expect(client.closed).toBe(true);
    expect(() => client.read(new Uint8Array(1))).toThrow(/is closed/);
    expect(() => client.info()).toThrow(/is closed/);
  });

  test("the page cap refuses a big ring and says which size fits", () => {
    configure({ pagesMax: 128 });
    const error = errorOf(() =>
      Vchan.server({
        dir: dir.path,
        localDomain: 0,
        remoteDomain: 9,
        port: 603,
        readMin: 1 << 20,
        writeMin: 1 << 20,
      }),
    );
    expect(error.code).toBe("EFBIG");
    expect(error.message).toContain("131072 bytes in each direction fit");
    // The Mirage-sized ring fits the cap.
    const small = Vchan.server({
      dir: dir.path,
      localDomain: 0,
      remoteDomain: 9,
      port: 604,
      readMin: 1024,
      writeMin: 1024,
    });
    opened.push(small);
    expect(errorOf(() => configure({ spinNs: -1 })).code).toBe("EINVAL");
  });

  test("rings above 1 MiB are refused", () => {
    const error = errorOf(() =>
      Vchan.server({
        dir: dir.path,
        localDomain: 0,
        remoteDomain: 9,
        port: 605,
        readMin: (1 << 20) + 1,
        writeMin: 1024,
      }),
    );
    expect(error.code).toBe("EMSGSIZE");
  });

  test("a client with no server times out with a message naming the socket", () => {
    const started = performance.now();
    const error = errorOf(() =>
      Vchan.client({ dir: dir.path, localDomain: 9, remoteDomain: 0, port: 606, timeoutMs: 200 }),
    );
    const elapsed = performance.now() - started;
    expect(error.code).toBe("ETIMEDOUT");
    expect(error.message).toContain("shmvchan.0.9.606.sock");
    expect(elapsed).toBeGreaterThanOrEqual(190);
    expect(elapsed).toBeLessThan(2000);
  });

  test("a loopback vchan and an over-long directory are refused", () => {
    expect(
      errorOf(() => Vchan.clientAsync({ dir: dir.path, localDomain: 4, remoteDomain: 4, port: 1 }))
        .code,
    ).toBe("EINVAL");
    const long = `${dir.path}/${"x".repeat(120)}`;
    const error = errorOf(() =>
      Vchan.server({
        dir: long,
        localDomain: 0,
        remoteDomain: 4,
        port: 1,
        readMin: 1,
        writeMin: 1,
      }),
    );
    expect(error.code).toBe("ENAMETOOLONG");
    expect(existsSync(long)).toBe(false);
  });
});
