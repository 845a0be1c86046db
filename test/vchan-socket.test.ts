// The vchan-socket-compatible backend through the FFI, and how a backend is chosen (QRX_VCHAN,
// VCHAN_SOCKET_DIR). Both ends live in this process; test/pump.test.ts runs the pump over it.
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { readdirSync } from "node:fs";
import { NativeError, Vchan, VchanState, defaultVchanDir, vchanBackend } from "../src/native.ts";
import { tempDir } from "./helpers/paths.ts";

let dir: ReturnType<typeof tempDir>;
let opened: Vchan[] = [];
let savedEnv: Record<string, string | undefined> = {};

beforeEach(() => {
  dir = tempDir();
  opened = [];
  savedEnv = { QRX_VCHAN: process.env.QRX_VCHAN, VCHAN_SOCKET_DIR: process.env.VCHAN_SOCKET_DIR };
});

afterEach(() => {
  for (const [name, value] of Object.entries(savedEnv)) {
    if (value === undefined) delete process.env[name];
    else process.env[name] = value;
  }
  for (const vchan of opened) vchan.close();
  dir.remove();
});

function errorOf(run: () => unknown): Error {
  try {
    run();
  } catch (error) {
    return error as Error;
  }
  throw new Error("expected an error");
}

describe("choosing the vchan backend", () => {
  test("QRX_VCHAN: shm by default, socket on request, else an error naming both", () => {
    expect(vchanBackend({})).toBe("shm");
    expect(vchanBackend({ QRX_VCHAN: "" })).toBe("shm");
    expect(vchanBackend({ QRX_VCHAN: "shm" })).toBe("shm");
    expect(vchanBackend({ QRX_VCHAN: "socket" })).toBe("socket");
    expect(() => vchanBackend({ QRX_VCHAN: "tcp" })).toThrow(
      'QRX_VCHAN must be "shm" or "socket", not "tcp"',
    );
  });

  test("default dirs: VCHAN_SOCKET_DIR or /var/run/vchan (socket), QRX_VCHAN_DIR (shm)", () => {
    expect(defaultVchanDir("socket", {})).toBe("/var/run/vchan");
    expect(defaultVchanDir("socket", { VCHAN_SOCKET_DIR: "/tmp/s", QRX_VCHAN_DIR: "/tmp/q" })).toBe(
      "/tmp/s",
    );
    expect(defaultVchanDir("shm", { VCHAN_SOCKET_DIR: "/tmp/s", QRX_VCHAN_DIR: "/tmp/q" })).toBe(
      "/tmp/q",
    );
  });

  test("QRX_VCHAN=socket: an endpoint without options is vchan-socket, in VCHAN_SOCKET_DIR", () => {
    process.env.QRX_VCHAN = "socket";
    process.env.VCHAN_SOCKET_DIR = dir.path;
    const server = Vchan.server({
      localDomain: 5,
      remoteDomain: 6,
      port: 700,
      readMin: 4096,
      writeMin: 4096,
    });
    opened.push(server);
    expect(readdirSync(dir.path)).toEqual(["vchan.5.6.700.sock"]);
    expect(server.info()).toMatchObject({
      backend: "socket",
      role: "server",
      state: VchanState.Waiting,
    });
    // An explicit backend wins over the environment.
    const shm = Vchan.server({
      backend: "shm",
      dir: dir.path,
      localDomain: 5,
      remoteDomain: 6,
      port: 701,
      readMin: 1024,
      writeMin: 1024,
    });
    opened.push(shm);
    expect(shm.info().backend).toBe("shm");
    expect(readdirSync(dir.path).sort()).toEqual(["shmvchan.5.6.701.sock", "vchan.5.6.700.sock"]);
  });

  test("a bad QRX_VCHAN fails the vchan before anything is created", () => {
    process.env.QRX_VCHAN = "xen";
    const error = errorOf(() =>
      Vchan.server({
        dir: dir.path,
        localDomain: 5,
        remoteDomain: 6,
        port: 702,
        readMin: 1024,
        writeMin: 1024,
      }),
    );
    expect(error).not.toBeInstanceOf(NativeError);
    expect(error.message).toContain("QRX_VCHAN");
    expect(error.message).toContain('"shm" or "socket"');
    expect(() =>
      Vchan.clientAsync({ dir: dir.path, localDomain: 6, remoteDomain: 5, port: 702 }),
    ).toThrow("QRX_VCHAN");
    expect(readdirSync(dir.path)).toEqual([]);
  });
});

describe("socket vchan through the FFI", () => {
  function pair(port: number): { server: Vchan; client: Vchan } {
    const server = Vchan.server({
      backend: "socket",
      dir: dir.path,
      localDomain: 0,
      remoteDomain: 9,
      port,
      readMin: 4096,
      writeMin: 8192,
    });
    const client = Vchan.clientAsync({
      backend: "socket",
      dir: dir.path,
      localDomain: 9,
      remoteDomain: 0,
      port,
    });
    opened.push(server, client);
    // The server listens already, so the client connects at once; the server accepts in wait().
    expect(client.finish()).toBe(true);
    server.wait();
    expect(server.isOpen()).toBe(VchanState.Connected);
    return { server, client };
  }

  test("the socket is vchan.<server>.<client>.<port>.sock and stays, as upstream's does", () => {
    pair(800);
    expect(readdirSync(dir.path)).toEqual(["vchan.0.9.800.sock"]);
  });

  test("moves bytes both ways and reports itself in info()", () => {
    const { server, client } = pair(801);
    expect(server.info()).toMatchObject({
      backend: "socket",
      role: "server",
      state: VchanState.Connected,
      readRingBytes: 4096,
      writeRingBytes: 8192,
      leftOrder: 0,
      rightOrder: 0,
      pages: 0,
      localDomain: 0,
      remoteDomain: 9,
      port: 801,
    });
    expect(client.info()).toMatchObject({
      backend: "socket",
      role: "client",
      readRingBytes: 65536,
      writeRingBytes: 65536,
    });
    const message = new TextEncoder().encode("11 22\n");
    expect(client.send(message)).toBe(message.length);
    const buffer = new Uint8Array(message.length);
    expect(server.recv(buffer)).toBe(message.length);
    expect(new TextDecoder().decode(buffer)).toBe("11 22\n");
    expect(server.write(new Uint8Array([3, 3]))).toBe(2);
    expect(client.read(new Uint8Array(8))).toBe(2);
  });

  test("the shm-only test hook is refused with EOPNOTSUPP", () => {
    const { server } = pair(802);
    const error = errorOf(() => server.debugPoke(0, 1));
    expect(error).toBeInstanceOf(NativeError);
    expect((error as NativeError).errno).toBe(95);
    expect(error.message).toContain("socket vchan");
  });

  test("a closed peer's last bytes still arrive, then DISCONNECTED and EPIPE", () => {
    const { server, client } = pair(803);
    client.write(new Uint8Array([1, 2, 3]));
    client.close();
    const buffer = new Uint8Array(8);
    expect(server.read(buffer)).toBe(3);
    expect(server.isOpen()).toBe(VchanState.Disconnected);
    expect((errorOf(() => server.read(buffer)) as NativeError).code).toBe("EPIPE");
  });
});
