// The daemon's spare connections to other daemons (src/daemon/spare-connections.ts), against a
// stand-in daemon socket that greets as a daemon does and records what each connection sends.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { Connection } from "../../src/io/connection.ts";
import { SpareConnections } from "../../src/daemon/spare-connections.ts";
import { connectDaemon, daemonSocketPath } from "../../src/daemon/daemon-client.ts";
import { decodeHello, helloMessage } from "../../src/protocol/codec.ts";
import { PEER_INFO_BYTES, QREXEC_CLIENT_PROTOCOL_VERSION } from "../../src/protocol/constants.ts";
import { tempDir } from "../helpers/paths.ts";
import { waitFor } from "../helpers/system.ts";

/** A target daemon: HELLO first, then it waits for the client's HELLO and one more message. */
class StandInDaemon {
  readonly accepted: Connection[] = [];
  /** The client HELLO's version, per connection, once it came. */
  readonly greeted: number[] = [];
  readonly requests: string[] = [];
  readonly #listener: ReturnType<typeof Connection.listen>;

  constructor(path: string) {
    this.#listener = Connection.listen(path, (connection) => void this.#serve(connection));
  }

  async #serve(connection: Connection): Promise<void> {
    this.accepted.push(connection);
    connection.write(helloMessage(QREXEC_CLIENT_PROTOCOL_VERSION));
    const hello = await connection.readMessage(PEER_INFO_BYTES);
    if (hello === null) return;
    this.greeted.push(decodeHello(hello.header, hello.payload));
    const request = await connection.readMessage(1024).catch(() => null);
    if (request !== null) this.requests.push(new TextDecoder().decode(request.payload));
  }

  stop(): void {
    this.#listener.stop(true);
  }
}

function daemonSpares(socketDir: string): SpareConnections {
  return new SpareConnections((target) => connectDaemon(socketDir, target));
}

describe("spare daemon connections", () => {
  let dir: { path: string; remove: () => void };
  let daemon: StandInDaemon;

  beforeAll(() => {
    dir = tempDir("qrx-spares-");
    daemon = new StandInDaemon(daemonSocketPath(dir.path, "vault"));
  });

  afterAll(() => {
    daemon.stop();
    dir.remove();
  });

  test("none before a call; one greeted spare after, made once however often asked", async () => {
    const spares = daemonSpares(dir.path);
    expect(spares.take("vault")).toBeNull();
    spares.refill("vault");
    spares.refill("vault");
    await waitFor(() => daemon.greeted.length === 1, "the spare's HELLO");
    let spare: Connection | null = null;
    await waitFor(() => (spare = spares.take("vault")) !== null, "the spare to be kept");
    expect(daemon.accepted.length).toBe(1);
    expect(daemon.greeted).toEqual([QREXEC_CLIENT_PROTOCOL_VERSION]);
    // Its request reaches the daemon on the connection made ahead.
    spare!.write(new Uint8Array([1, 0, 0, 0, 4, 0, 0, 0, ...new TextEncoder().encode("exec")]));
    await waitFor(() => daemon.requests.length === 1, "the request");
    expect(daemon.requests).toEqual(["exec"]);
    expect(spares.take("vault")).toBeNull();
    spare!.close();
    spares.stop();
  });

  test("a spare the target's daemon closed is dropped; none is made after stop", async () => {
    const spares = daemonSpares(dir.path);
    const before = daemon.accepted.length;
    spares.refill("vault");
    await waitFor(() => daemon.accepted.length === before + 1, "the spare's connection");
    daemon.accepted.at(-1)!.close();
    await Bun.sleep(100);
    expect(spares.take("vault")).toBeNull();
    spares.stop();
    spares.refill("vault");
    await Bun.sleep(100);
    expect(daemon.accepted.length).toBe(before + 1);
  });

  test("stop closes the spares it keeps", async () => {
    const spares = daemonSpares(dir.path);
    const before = daemon.accepted.length;
    spares.refill("vault");
    await waitFor(() => daemon.greeted.length === before + 1, "the spare's HELLO");
    const served = daemon.accepted.at(-1)!;
    await Bun.sleep(50);
    spares.stop();
    await waitFor(() => served.isClosed, "the spare to be closed");
  });

  test("a target whose daemon is not there: no spare, no error", async () => {
    const spares = daemonSpares(join(dir.path, "nowhere"));
    spares.refill("vault");
    await Bun.sleep(100);
    expect(spares.take("vault")).toBeNull();
  });
});
