// A unix stream socket as the qrexec tools use one: exact-length reads of untrusted frames, writes
// that never block the event loop, and a clear EOF. Used for the trigger socket (client-vm ->
// agent) and the daemon socket (qrexec-client -> daemon). Data never flows here: only the small
// messages that set a call up.
//
// Bounded: what arrives and is not read yet is held up to `inputBytesMax` (set by each user to
// the most it can ask for); a peer that sends more is cut off, and reads fail with a
// ProtocolError naming the limit, rather than memory growing for as long as it keeps sending.

import type { Socket, SocketListener } from "bun";
import { HEADER_BYTES } from "../protocol/constants.ts";
import { decodeHeader, ProtocolError, type Header } from "../protocol/codec.ts";

interface Waiter {
  bytes: number;
  resolve: (data: Uint8Array | null) => void;
  reject: (error: Error) => void;
}

/** Unread input a connection holds unless its user says otherwise. */
export const INPUT_BYTES_MAX_DEFAULT = 16 << 20;

export interface ConnectionOptions {
  /** Most bytes held unread; a peer that sends more is disconnected. */
  inputBytesMax?: number;
}

/** Thrown by `read` when the peer closed in the middle of what we asked for. */
export class ShortReadError extends Error {
  override name = "ShortReadError";
}

export class Connection {
  #socket: Socket<Connection> | null = null;
  #input: Uint8Array[] = [];
  #inputBytes = 0;
  readonly #inputBytesMax: number;
  /** Set when the peer sent more than `#inputBytesMax` unread: every read fails with it. */
  #overflow: ProtocolError | null = null;
  #waiter: Waiter | null = null;
  #pendingWrites: Uint8Array[] = [];
  #ended = false;
  #eof = false;
  #endWhenFlushed = false;
  #shutdownWhenFlushed = false;
  readonly #eofWaiters: Array<() => void> = [];
  readonly #onClose: Array<() => void> = [];
  readonly #closed: Promise<void>;
  #resolveClosed!: () => void;
  /** Free for the owner: a number or name to log the connection by. */
  label = "";

  constructor(options: ConnectionOptions = {}) {
    this.#closed = new Promise((resolve) => (this.#resolveClosed = resolve));
    this.#inputBytesMax = options.inputBytesMax ?? INPUT_BYTES_MAX_DEFAULT;
  }

  /**
   * Connects to a listening unix socket; rejects with the errno's code (ENOENT, ECONNREFUSED...).
   */
  static async connect(path: string, options: ConnectionOptions = {}): Promise<Connection> {
    const connection = new Connection(options);
    await Bun.connect<Connection>({ unix: path, data: connection, socket: Connection.handlers });
    return connection;
  }

  /**
   * One request, one answer, as the policy and qubesd sockets work: connects, writes `data`,
   * sends EOF when `halfClose` (the request ends there), and reads the answer until the peer
   * closes, refusing more than `bytesMax`.
   */
  static async exchange(
    path: string,
    data: Uint8Array | string,
    options: { halfClose?: boolean; bytesMax?: number } = {},
  ): Promise<Uint8Array> {
    // One byte more than allowed is what `readToEnd` needs to see to refuse.
    const bytesMax = options.bytesMax ?? 1 << 20;
    const connection = await Connection.connect(path, { inputBytesMax: bytesMax + 1 });
    try {
      connection.write(typeof data === "string" ? new TextEncoder().encode(data) : data);
      if (options.halfClose) connection.shutdownWrite();
      return await connection.readToEnd(bytesMax);
    } finally {
      connection.close();
    }
  }

  /**
   * Listens on `path`; `onConnection` gets each accepted connection once it is open. With
   * `halfOpen`, a client's shutdown of its write side leaves ours open for the reply (qubesd's
   * protocol: the request ends at the client's EOF).
   */
  static listen(
    path: string,
    onConnection: (connection: Connection) => void,
    options: { halfOpen?: boolean } & ConnectionOptions = {},
  ): SocketListener<Connection> {
    return Bun.listen<Connection>({
      unix: path,
      allowHalfOpen: options.halfOpen ?? false,
      data: undefined as unknown as Connection,
      socket: {
        ...Connection.handlers,
        open(socket) {
          const connection = new Connection(options);
          socket.data = connection;
          connection.#attach(socket);
          onConnection(connection);
        },
      },
    });
  }

  static readonly handlers = {
    open(socket: Socket<Connection>) {
      socket.data.#attach(socket);
    },
    data(socket: Socket<Connection>, chunk: Buffer) {
      socket.data.#receive(new Uint8Array(chunk));
    },
    drain(socket: Socket<Connection>) {
      socket.data.#flush();
    },
    end(socket: Socket<Connection>) {
      socket.data.#receiveEof();
    },
    close(socket: Socket<Connection>) {
      Connection.#close(socket);
    },
    error(socket: Socket<Connection>, _error: Error) {
      Connection.#close(socket);
    },
  };

  /** A socket can close before `open` attached its connection. */
  static #close(socket: Socket<Connection>): void {
    const connection = socket.data;
    if (!connection) return;
    connection.#receiveEof();
    connection.#finish();
  }

  #attach(socket: Socket<Connection>): void {
    this.#socket = socket;
  }

  #receive(chunk: Uint8Array): void {
    if (this.#overflow) return;
    this.#input.push(chunk);
    this.#inputBytes += chunk.length;
    if (this.#inputBytes > this.#inputBytesMax) return this.#cutOff();
    this.#serve();
  }

  #cutOff(): void {
    const [sent, limit] = [this.#inputBytes, this.#inputBytesMax];
    this.#overflow = new ProtocolError(
      `peer sent ${sent} bytes that were not read (limit ${limit})`,
    );
    this.#input = [];
    this.#inputBytes = 0;
    const waiter = this.#waiter;
    this.#waiter = null;
    waiter?.reject(this.#overflow);
    for (const resolve of this.#eofWaiters.splice(0)) resolve();
    this.#socket?.terminate();
  }

  #receiveEof(): void {
    this.#eof = true;
    this.#serve();
    for (const resolve of this.#eofWaiters.splice(0)) resolve();
  }

  #finish(): void {
    this.#receiveEof();
    this.#ended = true;
    this.#socket = null;
    this.#resolveClosed();
    for (const listener of this.#onClose.splice(0)) listener();
  }

  #serve(): void {
    const waiter = this.#waiter;
    if (!waiter) return;
    if (this.#overflow) {
      this.#waiter = null;
      return waiter.reject(this.#overflow);
    }
    if (this.#inputBytes >= waiter.bytes) {
      this.#waiter = null;
      waiter.resolve(this.#take(waiter.bytes));
    } else if (this.#eof) {
      this.#waiter = null;
      if (this.#inputBytes === 0) waiter.resolve(null);
      else
        waiter.reject(
          new ShortReadError(`peer closed after ${this.#inputBytes} of ${waiter.bytes} bytes`),
        );
    }
  }

  #take(bytes: number): Uint8Array {
    const out = new Uint8Array(bytes);
    let filled = 0;
    while (filled < bytes) {
      const chunk = this.#input[0];
      if (chunk === undefined) throw new Error(`#take(${bytes}): only ${filled} bytes buffered`);
      const count = Math.min(chunk.length, bytes - filled);
      out.set(chunk.subarray(0, count), filled);
      filled += count;
      if (count === chunk.length) this.#input.shift();
      else this.#input[0] = chunk.subarray(count);
    }
    this.#inputBytes -= bytes;
    return out;
  }

  /** Exactly `bytes` bytes; null on EOF before the first; ShortReadError on EOF in between. */
  read(bytes: number): Promise<Uint8Array | null> {
    if (this.#waiter) throw new Error("one read at a time");
    return new Promise((resolve, reject) => {
      this.#waiter = { bytes, resolve, reject };
      this.#serve();
    });
  }

  /**
   * One message: the header, then `len` bytes, refusing a `len` above `payloadBytesMax` before
   * reading it. Null on a clean EOF before the header.
   */
  async readMessage(
    payloadBytesMax: number,
  ): Promise<{ header: Header; payload: Uint8Array } | null> {
    const head = await this.read(HEADER_BYTES);
    if (head === null) return null;
    const header = decodeHeader(head);
    if (header.len > payloadBytesMax) {
      throw new ProtocolError(
        `message type 0x${header.type.toString(16)} announces ` +
          `${header.len} bytes, limit ${payloadBytesMax}`,
      );
    }
    const payload = header.len === 0 ? new Uint8Array(0) : await this.read(header.len);
    if (payload === null)
      throw new ShortReadError(`peer closed after the header of a ${header.len}-byte message`);
    return { header, payload };
  }

  /** Everything until the peer closes, refusing more than `bytesMax`. */
  async readToEnd(bytesMax: number): Promise<Uint8Array> {
    await this.#closedOrEof();
    if (this.#overflow) throw this.#overflow;
    if (this.#inputBytes > bytesMax)
      throw new ProtocolError(`peer sent ${this.#inputBytes} bytes, limit ${bytesMax}`);
    return this.#take(this.#inputBytes);
  }

  #closedOrEof(): Promise<void> {
    if (this.#eof || this.#overflow) return Promise.resolve();
    return new Promise((resolve) => this.#eofWaiters.push(resolve));
  }

  /** Bytes that arrived and were not read yet. */
  get buffered(): number {
    return this.#inputBytes;
  }

  get isClosed(): boolean {
    return this.#ended;
  }

  /** Queues `data`; it goes out as the socket takes it. */
  write(data: Uint8Array): void {
    if (this.#ended || !this.#socket) return;
    this.#pendingWrites.push(data);
    this.#flush();
  }

  #flush(): void {
    const socket = this.#socket;
    for (let next = this.#pendingWrites[0]; socket && next; next = this.#pendingWrites[0]) {
      const wrote = socket.write(next);
      if (wrote < 0) return;
      if (wrote < next.length) {
        this.#pendingWrites[0] = next.subarray(wrote);
        return;
      }
      this.#pendingWrites.shift();
    }
    if (socket && this.#pendingWrites.length === 0) {
      if (this.#endWhenFlushed) socket.end();
      else if (this.#shutdownWhenFlushed) {
        this.#shutdownWhenFlushed = false;
        socket.shutdown();
      }
    }
  }

  /** Closes after queued writes went out. */
  end(): void {
    if (!this.#socket || this.#ended) return;
    this.#endWhenFlushed = true;
    this.#flush();
  }

  /** Sends EOF after queued writes went out; reading goes on until the peer closes. */
  shutdownWrite(): void {
    if (!this.#socket || this.#ended) return;
    this.#shutdownWhenFlushed = true;
    this.#flush();
  }

  /** Closes at once. */
  close(): void {
    if (!this.#socket) return;
    this.#socket.terminate();
  }

  /** Resolves when the socket is closed, by either side. */
  get closed(): Promise<void> {
    return this.#closed;
  }

  onClose(listener: () => void): void {
    if (this.#ended) listener();
    else this.#onClose.push(listener);
  }
}
