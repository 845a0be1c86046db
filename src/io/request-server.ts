// A unix socket server for one request and one answer per connection (dom0's policy socket and
// its policy.Eval* socket services): bytes are gathered until `parse` says the request is whole
// (or must be dropped), the answer is written, with back-pressure, and the connection ends.
import { chmodSync, lstatSync, unlinkSync } from "node:fs";
import type { Socket, UnixSocketListener } from "bun";

export type Parsed<Request> =
  { kind: "more" } | { kind: "drop"; reason: string } | { kind: "request"; request: Request };

export interface RequestServerOptions<Request> {
  socketPath: string;
  /** The socket file's mode (upstream's dom0 sockets: 0660, owner and group qubes). */
  mode: number;
  /** Everything received so far, and whether the client has ended its side. */
  parse(received: Buffer, eof: boolean): Parsed<Request>;
  /** The answer's bytes, or null to end without one. */
  answer(request: Request): Promise<Uint8Array | null>;
  /** Called with a dropped request's reason, and with a client's socket errors. */
  log: (message: string) => void;
}

interface Client {
  received: Buffer;
  /** Set once the request is whole or dropped: further input is ignored. */
  handled: boolean;
  closed: boolean;
  pending: Uint8Array | null;
}

export class RequestServer<Request> {
  #listener: UnixSocketListener<Client> | null = null;

  constructor(readonly options: RequestServerOptions<Request>) {}

  /** Listens, replacing a stale socket from an earlier run. */
  start(): void {
    const { socketPath } = this.options;
    try {
      if (lstatSync(socketPath).isSocket()) unlinkSync(socketPath);
    } catch {
      // no such file
    }
    const server = this;
    this.#listener = Bun.listen<Client>({
      unix: socketPath,
      socket: {
        open(socket) {
          socket.data = { received: Buffer.alloc(0), handled: false, closed: false, pending: null };
        },
        data(socket, chunk) {
          server.#receive(socket, chunk, false);
        },
        end(socket) {
          server.#receive(socket, Buffer.alloc(0), true);
        },
        drain(socket) {
          server.#flush(socket);
        },
        close(socket) {
          socket.data.closed = true;
        },
        error(socket, error) {
          socket.data.closed = true;
          server.options.log(`${socketPath} client: ${error.message}`);
        },
      },
    });
    try {
      chmodSync(socketPath, this.options.mode);
    } catch {
      // best effort
    }
  }

  #receive(socket: Socket<Client>, chunk: Buffer, eof: boolean): void {
    const state = socket.data;
    if (state.handled) return;
    state.received = state.received.length === 0 ? chunk : Buffer.concat([state.received, chunk]);
    const parsed = this.options.parse(state.received, eof);
    if (parsed.kind === "more") {
      // A client that ends without a whole request gets no answer.
      if (eof) {
        state.handled = true;
        socket.end();
      }
      return;
    }
    state.handled = true;
    if (parsed.kind === "drop") {
      this.options.log(parsed.reason);
      socket.end();
      return;
    }
    void this.options.answer(parsed.request).then((answer) => {
      if (state.closed) return;
      if (answer === null) {
        socket.end();
        return;
      }
      state.pending = answer;
      this.#flush(socket);
    });
  }

  #flush(socket: Socket<Client>): void {
    const pending = socket.data.pending;
    if (pending === null) return;
    const written = socket.write(pending);
    if (written < pending.length) {
      socket.data.pending = pending.subarray(Math.max(written, 0));
      return;
    }
    socket.data.pending = null;
    socket.end();
  }

  stop(): void {
    this.#listener?.stop(true);
    this.#listener = null;
    try {
      unlinkSync(this.options.socketPath);
    } catch {
      // already gone
    }
  }
}
