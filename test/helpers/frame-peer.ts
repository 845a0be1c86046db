// A raw-frame qrexec peer over the socket vchan transport, as upstream's Python tests drive the C
// programs: the socket `vchan.<server>.<client>.<port>.sock` carries the bare message stream, so
// a test can play dom0 (or a caller) frame by frame and check exactly what our programs send.
// The conformance kit's RawPeer does the framing; this adds the vchan addressing tests use.

import { RawPeer, vchanPath, type RawMessage } from "../../src/conformance/wire.ts";

export type { RawMessage };

export class FramePeer extends RawPeer {
  /**
   * Connects as the vchan client of (server, client=us, port); retries while the server is not up.
   */
  static async connectVchan(
    dir: string,
    server: number,
    client: number,
    port: number,
    timeoutMs = 10_000,
  ): Promise<FramePeer> {
    const peer = await RawPeer.connect(vchanPath(dir, server, client, port), timeoutMs);
    return new FramePeer(peer.connection);
  }

  /**
   * Listens as the vchan server (us, client, port). `accepted` is the first connection, `next()`
   * each following one (a daemon reconnecting after we dropped it).
   */
  static listenVchan(
    dir: string,
    server: number,
    client: number,
    port: number,
  ): {
    path: string;
    accepted: Promise<FramePeer>;
    next: () => Promise<FramePeer>;
    stop: () => void;
  } {
    const listener = RawPeer.listen(vchanPath(dir, server, client, port));
    const next = async () => new FramePeer((await listener.next()).connection);
    return { path: listener.path, accepted: next(), next, stop: listener.stop };
  }

  /** Every message until the peer closes; an EOF inside a message is an error. */
  async messagesUntilClose(): Promise<RawMessage[]> {
    const { messages, error } = await this.receiveAll();
    if (error !== undefined) throw new Error(error);
    return messages;
  }
}
