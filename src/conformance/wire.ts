// Raw-frame peers for the conformance kit: the qrexec message stream over upstream's vchan-socket
// byte stream (`vchan.<server>.<client>.<port>.sock`, spec §12, vchan.md §4) and over the plain
// unix sockets (daemon socket, trigger socket). No validation of our own stands between the kit
// and the program under test: what it sends is read byte for byte.

import { existsSync, rmSync } from "node:fs";
import { join } from "node:path";
import { Connection } from "../io/connection.ts";
import { decodeExitCode, decodeHeader, frame, helloMessage } from "../protocol/codec.ts";
import * as C from "../protocol/constants.ts";

/** A raw peer takes what the program under test sends, however much (its reads say so). */
const RAW_INPUT = { inputBytesMax: Number.POSITIVE_INFINITY };

export interface RawMessage {
  type: number;
  payload: Uint8Array;
}

const decoder = new TextDecoder();

/** The socket path of the vchan (server, client, port) in `dir`. */
export function vchanPath(dir: string, server: number, client: number, port: number): string {
  return join(dir, `vchan.${server}.${client}.${port}.sock`);
}

export class RawPeer {
  constructor(readonly connection: Connection) {}

  /**
   * Connects to a unix socket, retrying while it does not exist or refuses (the program starts).
   */
  static async connect(
    path: string,
    timeoutMs: number,
    alive: () => boolean = () => true,
  ): Promise<RawPeer> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        return new RawPeer(await Connection.connect(path, RAW_INPUT));
      } catch (error) {
        if (Date.now() > deadline)
          throw new Error(`nothing accepted on ${path} within ${timeoutMs} ms`);
        if (!alive()) throw new Error(`the program exited before listening on ${path}`);
        await Bun.sleep(5);
      }
    }
  }

  /** Listens on `path`; `next()` is each accepted connection in turn. */
  static listen(path: string): { path: string; next: () => Promise<RawPeer>; stop: () => void } {
    if (existsSync(path)) rmSync(path);
    const arrived: RawPeer[] = [];
    const waiting: Array<(peer: RawPeer) => void> = [];
    const listener = Connection.listen(
      path,
      (connection) => {
        const peer = new RawPeer(connection);
        const waiter = waiting.shift();
        if (waiter) waiter(peer);
        else arrived.push(peer);
      },
      RAW_INPUT,
    );
    const next = () => {
      const ready = arrived.shift();
      return ready
        ? Promise.resolve(ready)
        : new Promise<RawPeer>((resolve) => waiting.push(resolve));
    };
    return {
      path,
      next,
      stop: () => {
        listener.stop(false);
        try {
          rmSync(path, { force: true });
        } catch {
          // The socket file is gone already.
        }
      },
    };
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

  /** The next whole message; null at a clean EOF; throws on EOF inside a message. */
  async receive(payloadBytesMax = 16 << 20): Promise<RawMessage | null> {
    const head = await this.connection.read(C.HEADER_BYTES);
    if (head === null) return null;
    const header = decodeHeader(head);
    if (header.len > payloadBytesMax)
      throw new Error(`${typeName(header.type)} announces ${header.len} bytes`);
    const payload = header.len === 0 ? new Uint8Array(0) : await this.connection.read(header.len);
    if (payload === null) throw new Error(`EOF inside a ${typeName(header.type)} message`);
    return { type: header.type, payload };
  }

  /** The next message, which must be a HELLO; returns its version. */
  async receiveHello(): Promise<number> {
    const message = await this.receive(64);
    if (!message) throw new Error("expected HELLO, got EOF");
    if (message.type !== C.MSG_HELLO || message.payload.length !== 4)
      throw new Error(`expected HELLO, got ${describe(message)}`);
    return new DataView(message.payload.buffer, message.payload.byteOffset).getUint32(0, true);
  }

  /** Every message until the peer closes (an EOF inside a message ends the list too). */
  async receiveAll(): Promise<{ messages: RawMessage[]; error?: string }> {
    const messages: RawMessage[] = [];
    for (;;) {
      try {
        const message = await this.receive();
        if (message === null) return { messages };
        messages.push(message);
      } catch (error) {
        return { messages, error: (error as Error).message };
      }
    }
  }

  /** Raw bytes (null at EOF before the first). */
  read(bytes: number): Promise<Uint8Array | null> {
    return this.connection.read(bytes);
  }

  /** Resolves when the peer closed (or we did). */
  get closed(): Promise<void> {
    return this.connection.closed;
  }

  close(): void {
    this.connection.close();
  }
}

export function typeName(type: number): string {
  const names: Record<number, string> = {
    [C.MSG_DATA_STDIN]: "STDIN",
    [C.MSG_DATA_STDOUT]: "STDOUT",
    [C.MSG_DATA_STDERR]: "STDERR",
    [C.MSG_DATA_EXIT_CODE]: "EXIT_CODE",
    [C.MSG_EXEC_CMDLINE]: "EXEC_CMDLINE",
    [C.MSG_JUST_EXEC]: "JUST_EXEC",
    [C.MSG_SERVICE_CONNECT]: "SERVICE_CONNECT",
    [C.MSG_SERVICE_REFUSED]: "SERVICE_REFUSED",
    [C.MSG_TRIGGER_SERVICE]: "TRIGGER_SERVICE",
    [C.MSG_CONNECTION_TERMINATED]: "CONNECTION_TERMINATED",
    [C.MSG_TRIGGER_SERVICE3]: "TRIGGER_SERVICE3",
    [C.MSG_TRIGGER_SERVICE4]: "TRIGGER_SERVICE4",
    [C.MSG_HELLO]: "HELLO",
  };
  return names[type] ?? `0x${type.toString(16)}`;
}

function quote(bytes: Uint8Array, limit = 40): string {
  let text = JSON.stringify(decoder.decode(bytes.subarray(0, limit)));
  if (text.length > 2 * limit) text = `${text.slice(0, 2 * limit)}…"`;
  return bytes.length > limit ? `${text}…(${bytes.length} bytes)` : text;
}

/** One message in a line: `STDOUT "33\n"`, `STDOUT EOF`, `EXIT_CODE 0`, `HELLO 4`. */
export function describe(message: RawMessage): string {
  const name = typeName(message.type);
  if (message.type === C.MSG_DATA_EXIT_CODE) {
    return message.payload.length === 4
      ? `EXIT_CODE ${decodeExitCode(message.payload)}`
      : `EXIT_CODE (${message.payload.length}-byte payload)`;
  }
  if (message.type === C.MSG_HELLO && message.payload.length === 4) {
    const { buffer, byteOffset } = message.payload;
    return `HELLO ${new DataView(buffer, byteOffset).getUint32(0, true)}`;
  }
  if (message.type >= C.MSG_DATA_STDIN && message.type <= C.MSG_DATA_STDERR) {
    return message.payload.length === 0 ? `${name} EOF` : `${name} ${quote(message.payload)}`;
  }
  return `${name} (${message.payload.length} bytes)`;
}

/** Messages in a line, data chunks of one stream merged (`STDOUT 3 chunks, 8 MiB`). */
export function summarize(messages: RawMessage[]): string {
  const parts: string[] = [];
  let run: { type: number; chunks: number; bytes: number; first: Uint8Array } | null = null;
  const flush = () => {
    if (!run) return;
    parts.push(
      run.chunks === 1
        ? describe({ type: run.type, payload: run.first })
        : `${typeName(run.type)} ${run.chunks} chunks, ${run.bytes} bytes`,
    );
    run = null;
  };
  for (const message of messages) {
    const isData =
      message.type >= C.MSG_DATA_STDIN &&
      message.type <= C.MSG_DATA_STDERR &&
      message.payload.length > 0;
    if (isData && run && run.type === message.type) {
      run.chunks++;
      run.bytes += message.payload.length;
      continue;
    }
    flush();
    if (isData)
      run = {
        type: message.type,
        chunks: 1,
        bytes: message.payload.length,
        first: message.payload,
      };
    else parts.push(describe(message));
  }
  flush();
  // Repeats collapse: `0x0 (0 bytes) ×15`.
  const collapsed: string[] = [];
  for (const part of parts) {
    const last = collapsed.at(-1);
    const match = last ? /^(.*) ×(\d+)$/.exec(last) : null;
    if (last === part) collapsed[collapsed.length - 1] = `${part} ×2`;
    else if (match && match[1] === part)
      collapsed[collapsed.length - 1] = `${part} ×${Number(match[2]) + 1}`;
    else collapsed.push(part);
  }
  return collapsed.length === 0 ? "(nothing)" : collapsed.join(", ");
}

export function text(bytes: Uint8Array): string {
  return decoder.decode(bytes);
}

export function exitCodeOf(message: RawMessage): number {
  return decodeExitCode(message.payload);
}

/** A header alone, with any `len` (for oversize and malformed messages). */
export function header(type: number, len: number): Uint8Array {
  const bytes = new Uint8Array(8);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, type, true);
  view.setUint32(4, len >>> 0, true);
  return bytes;
}
