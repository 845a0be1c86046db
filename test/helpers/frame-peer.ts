// A raw-frame qrexec peer over the socket vchan transport, as upstream's Python tests drive the C
// programs: the socket `vchan.<server>.<client>.<port>.sock` carries the bare message stream, so
// a test can play dom0 (or a caller) frame by frame and check exactly what our programs send.

import { existsSync, rmSync } from "node:fs";
import { join } from "node:path";
import { Connection } from "../../src/io/connection.ts";
import { decodeHeader, frame, helloMessage } from "../../src/protocol/codec.ts";
import { HEADER_BYTES, MSG_HELLO } from "../../src/protocol/constants.ts";

export interface RawMessage {
  type: number;
  payload: Uint8Array;
}

export class FramePeer {
  constructor(readonly connection: Connection) {}

  /** Connects as the vchan client of (server, client=us, port); retries while the server is not up. */
  static async connect(dir: string, server: number, client: number, port: number, timeoutMs = 10_000): Promise<FramePeer> {
    const path = join(dir, `vchan.${server}.${client}.${port}.sock`);
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        return new FramePeer(await Connection.connect(path));
      } catch (error) {
        if (Date.now() > deadline) throw error;
        await Bun.sleep(5);
      }
    }
  }

  /**
   * Listens as the vchan server (us, client, port). `accepted` is the first connection, `next()`
   * each following one (a daemon reconnecting after we dropped it).
   */
  static listen(dir: string, server: number, client: number, port: number): { path: string; accepted: Promise<FramePeer>; next: () => Promise<FramePeer>; stop: () => void } {
    const path = join(dir, `vchan.${server}.${client}.${port}.sock`);
    if (existsSync(path)) rmSync(path);
    const arrived: FramePeer[] = [];
    const waiting: Array<(peer: FramePeer) => void> = [];
    const listener = Connection.listen(path, (connection) => {
      const peer = new FramePeer(connection);
      const waiter = waiting.shift();
      if (waiter) waiter(peer);
      else arrived.push(peer);
    });
    const next = () => {
      const ready = arrived.shift();
      return ready ? Promise.resolve(ready) : new Promise<FramePeer>((resolve) => waiting.push(resolve));
    };
    // stop(true) would also close the connections already accepted.
    return { path, accepted: next(), next, stop: () => listener.stop(false) };
  }

  send(type: number, payload: Uint8Array = new Uint8Array(0)): void {
    this.connection.write(frame(type, payload));
  }

  sendRaw(bytes: Uint8Array): void {
    this.connection.write(bytes);
  }

  sendHello(version: number): void {
    this.connection.write(helloMessage(version));
  }

  /** The next whole message, or null at EOF. */
  async receive(payloadBytesMax = 1 << 20): Promise<RawMessage | null> {
    const head = await this.connection.read(HEADER_BYTES);
    if (head === null) return null;
    const header = decodeHeader(head);
    if (header.len > payloadBytesMax) throw new Error(`message 0x${header.type.toString(16)} of ${header.len} bytes`);
    const payload = header.len === 0 ? new Uint8Array(0) : await this.connection.read(header.len);
    if (payload === null) throw new Error("EOF inside a message");
    return { type: header.type, payload };
  }

  /** Expects a HELLO and returns its version. */
  async receiveHello(): Promise<number> {
    const message = await this.receive(4);
    if (!message || message.type !== MSG_HELLO || message.payload.length !== 4) {
      throw new Error(`expected HELLO, got ${message ? `0x${message.type.toString(16)}` : "EOF"}`);
    }
    return new DataView(message.payload.buffer, message.payload.byteOffset).getUint32(0, true);
  }

  /** Every message until the peer closes. */
  async receiveAll(): Promise<RawMessage[]> {
    const messages: RawMessage[] = [];
    for (;;) {
      const message = await this.receive();
      if (message === null) return messages;
      messages.push(message);
    }
  }

  close(): void {
    this.connection.close();
  }
}
