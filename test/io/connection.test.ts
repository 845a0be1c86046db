// The unix-socket connection the qrexec tools use for small set-up messages holds what a peer
// sends and nobody read yet only up to a limit (issue 16 item 7): past it, the peer is cut off
// and reads fail, whatever it keeps sending.
import { afterAll, expect, test } from "bun:test";
import { join } from "node:path";
import type { Socket } from "bun";
import { Connection } from "../../src/io/connection.ts";
import { ProtocolError } from "../../src/protocol/codec.ts";
import { tempDir } from "../helpers/paths.ts";
import { waitFor } from "../helpers/system.ts";

const dir = tempDir("qrx-conn-");
afterAll(() => dir.remove());

/** A server that sends `chunk` over and over to whoever connects, as fast as it is taken. */
function flooder(path: string): { stop: () => void; sent: () => number } {
  let sent = 0;
  const chunk = new Uint8Array(64 << 10).fill(0x61);
  const pump = (socket: Socket<undefined>) => {
    for (;;) {
      const wrote = socket.write(chunk);
      sent += Math.max(wrote, 0);
      if (wrote < chunk.length) return;
    }
  };
  const listener = Bun.listen({ unix: path, socket: { open: pump, drain: pump, data() {} } });
  return { stop: () => listener.stop(true), sent: () => sent };
}

test("an answer that never ends is refused at its limit, not held to its end", async () => {
  const path = join(dir.path, "endless.sock");
  const server = flooder(path);
  try {
    const answer = Connection.exchange(path, "request", { bytesMax: 1 << 20 });
    const failure = await answer.catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(ProtocolError);
    expect((failure as Error).message).toMatch(/not read \(limit 1048577\)/);
    // Cut off near the limit: the peer was not read to its end.
    expect(server.sent()).toBeLessThan(64 << 20);
  } finally {
    server.stop();
  }
});

test("a peer that sends more than is asked of it is disconnected and the read fails", async () => {
  const path = join(dir.path, "listener.sock");
  const accepted: Connection[] = [];
  const accept = (connection: Connection) => accepted.push(connection);
  const listener = Connection.listen(path, accept, { inputBytesMax: 4096 });
  try {
    const client = await Connection.connect(path);
    client.write(new Uint8Array(8).fill(1));
    await waitFor(() => accepted.length > 0, "the connection to be accepted");
    const server = accepted[0]!;
    expect(await server.read(8)).toEqual(new Uint8Array(8).fill(1));
    // Within the limit, unread input waits for a reader.
    client.write(new Uint8Array(4096).fill(2));
    await waitFor(
      () => server.buffered === 4096,
      () => `4096 bytes buffered, not ${server.buffered}`,
    );
    client.write(new Uint8Array(1 << 20).fill(3));
    await server.closed;
    expect(server.buffered).toBe(0);
    const failure = await server.read(1).catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(ProtocolError);
    await client.closed;
  } finally {
    listener.stop(true);
  }
});
