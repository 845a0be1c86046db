// The only TypeScript file that touches the FFI boundary: it loads libqrx.so (zig/lib.zig is the
// other side), checks the ABI version, and wraps native handles in classes that throw clear
// errors and refuse use after close. Every export returns an i32: >= 0 is a value, -errno a
// failure whose message comes from `qrx_last_error`.
import { dlopen, FFIType } from "bun:ffi";
import { existsSync } from "node:fs";
import { constants as osConstants } from "node:os";
import { join } from "node:path";
import { ABI_VERSION, ConfigKey, INFO_BYTES, VchanState } from "./constants.ts";
import { vchanDir } from "./paths.ts";

const { i32, u32, ptr } = FFIType;

const symbols = {
  qrx_abi_version: { args: [], returns: i32 },
  qrx_constant: { args: [u32], returns: i32 },
  qrx_last_error: { args: [ptr, u32], returns: i32 },
  qrx_set_config: { args: [u32, i32], returns: i32 },
  vx_server_init: { args: [ptr, u32, i32, i32, i32, u32, u32], returns: i32 },
  vx_client_init_async: { args: [ptr, u32, i32, i32, i32], returns: i32 },
  vx_client_init_async_finish: { args: [u32], returns: i32 },
  vx_connect_wait: { args: [u32, i32], returns: i32 },
  vx_fd_for_select: { args: [u32], returns: i32 },
  vx_wait: { args: [u32], returns: i32 },
  vx_is_open: { args: [u32], returns: i32 },
  vx_data_ready: { args: [u32], returns: i32 },
  vx_buffer_space: { args: [u32], returns: i32 },
  vx_read: { args: [u32, ptr, u32], returns: i32 },
  vx_recv: { args: [u32, ptr, u32], returns: i32 },
  vx_write: { args: [u32, ptr, u32], returns: i32 },
  vx_send: { args: [u32, ptr, u32], returns: i32 },
  vx_set_blocking: { args: [u32, u32], returns: i32 },
  vx_info: { args: [u32, ptr], returns: i32 },
  vx_reason: { args: [u32, ptr, u32], returns: i32 },
  vx_close: { args: [u32], returns: i32 },
  vx_debug_poke: { args: [u32, u32, u32], returns: i32 },
} as const;

export function nativeLibraryPath(): string {
  return process.env.QRX_NATIVE_LIB || join(import.meta.dir, "..", "zig-out", "lib", "libqrx.so");
}

function load() {
  const path = nativeLibraryPath();
  if (!existsSync(path)) {
    throw new Error(`native library ${path} is missing: run \`npm run setup\` to build it`);
  }
  const lib = dlopen(path, symbols);
  const version = lib.symbols.qrx_abi_version();
  if (version !== ABI_VERSION) {
    throw new Error(
      `native library ${path} has ABI version ${version}, this code needs ${ABI_VERSION}: run \`npm run setup\``,
    );
  }
  return lib.symbols;
}

const native = load();

const errnoNames = new Map<number, string>(
  Object.entries(osConstants.errno).map(([name, value]) => [value as number, name]),
);

/** A failure reported by the native library: `errno` is positive, `code` its name (EPIPE...). */
export class NativeError extends Error {
  readonly errno: number;
  readonly code: string;
  constructor(errno: number, message: string) {
    const code = errnoNames.get(errno) ?? `errno ${errno}`;
    super(message || code);
    this.name = "NativeError";
    this.errno = errno;
    this.code = code;
  }
}

const messageBuffer = new Uint8Array(512);
const decoder = new TextDecoder();

function lastError(): string {
  const length = native.qrx_last_error(messageBuffer, messageBuffer.length);
  return decoder.decode(messageBuffer.subarray(0, length));
}

function check(rc: number): number {
  if (rc >= 0) return rc;
  throw new NativeError(-rc, lastError());
}

/** A constant as the native library defines it (for the constants cross-check). */
export function nativeConstant(id: number): number {
  return check(native.qrx_constant(id));
}

export interface NativeConfig {
  /** Longest spin before sleeping on the event fd, in ns; 0 turns spinning off. */
  spinNs?: number;
  /** Most pages a vchan may use, like a Xen peer's grant table (128 for MirageOS); 0 = no cap. */
  pagesMax?: number;
}

/** Process-wide settings applied to vchans created afterwards. */
export function configure(config: NativeConfig): void {
  if (config.spinNs !== undefined) check(native.qrx_set_config(ConfigKey.SpinNs, config.spinNs));
  if (config.pagesMax !== undefined) check(native.qrx_set_config(ConfigKey.PagesMax, config.pagesMax));
}

// Environment knobs, read once so every qrx process honours them the same way.
if (process.env.QRX_SPIN_NS) configure({ spinNs: Number(process.env.QRX_SPIN_NS) });
if (process.env.QRX_MAX_PAGES) configure({ pagesMax: Number(process.env.QRX_MAX_PAGES) });

export interface VchanEndpoint {
  /** Our own domain id. */
  localDomain: number;
  /** The domain at the other end. */
  remoteDomain: number;
  port: number;
  /** Rendezvous directory; defaults to QRX_VCHAN_DIR or the state directory's `vchan/`. */
  dir?: string;
}

export interface VchanServerOptions extends VchanEndpoint {
  /** Minimum size of the ring we read (bytes). */
  readMin: number;
  /** Minimum size of the ring we write (bytes). */
  writeMin: number;
}

export interface VchanInfo {
  role: "server" | "client";
  state: VchanState;
  leftOrder: number;
  rightOrder: number;
  readRingBytes: number;
  writeRingBytes: number;
  pages: number;
  kicks: number;
  wakeups: number;
  sleeps: number;
  spinHits: number;
  spinMisses: number;
  spinBudgetNs: number;
  localDomain: number;
  remoteDomain: number;
  port: number;
}

const encoder = new TextEncoder();

/** libvchan, as upstream qrexec uses it: blocking by default, partial read/write, whole recv/send. */
export class Vchan {
  #handle: number;
  readonly label: string;

  private constructor(handle: number, label: string) {
    this.#handle = handle;
    this.label = label;
  }

  /** libvchan_server_init: shares the rings and returns at once (state WAITING). */
  static server(options: VchanServerOptions): Vchan {
    const dir = encoder.encode(options.dir ?? vchanDir());
    const handle = check(
      native.vx_server_init(
        dir,
        dir.length,
        options.localDomain,
        options.remoteDomain,
        options.port,
        options.readMin,
        options.writeMin,
      ),
    );
    return new Vchan(handle, `vchan server ${options.localDomain}<-${options.remoteDomain}:${options.port}`);
  }

  /** libvchan_client_init_async: call `finish` (or `connectWait`) until connected. */
  static clientAsync(options: VchanEndpoint): Vchan {
    const dir = encoder.encode(options.dir ?? vchanDir());
    const handle = check(
      native.vx_client_init_async(dir, dir.length, options.localDomain, options.remoteDomain, options.port),
    );
    return new Vchan(handle, `vchan client ${options.localDomain}->${options.remoteDomain}:${options.port}`);
  }

  /** A connected client, or a NativeError (ETIMEDOUT) after `timeoutMs`. */
  static client(options: VchanEndpoint & { timeoutMs: number }): Vchan {
    const vchan = Vchan.clientAsync(options);
    try {
      vchan.connectWait(options.timeoutMs);
    } catch (error) {
      vchan.close();
      throw error;
    }
    return vchan;
  }

  get closed(): boolean {
    return this.#handle === 0;
  }

  #guard(): number {
    // Fail loud: a closed handle must never reach native code.
    if (this.#handle === 0) throw new Error(`${this.label} is closed`);
    return this.#handle;
  }

  /** libvchan_client_init_async_finish: true once connected. */
  finish(): boolean {
    return check(native.vx_client_init_async_finish(this.#guard())) === 0;
  }

  /** Blocks until connected; ETIMEDOUT after `timeoutMs` (negative: forever). */
  connectWait(timeoutMs: number): void {
    check(native.vx_connect_wait(this.#guard(), timeoutMs));
  }

  /** One fd, stable from init to close, readable when `wait` has something to handle. */
  get fd(): number {
    return check(native.vx_fd_for_select(this.#guard()));
  }

  wait(): void {
    check(native.vx_wait(this.#guard()));
  }

  isOpen(): VchanState {
    return check(native.vx_is_open(this.#guard())) as VchanState;
  }

  dataReady(): number {
    return check(native.vx_data_ready(this.#guard()));
  }

  bufferSpace(): number {
    return check(native.vx_buffer_space(this.#guard()));
  }

  /** Up to `buffer.length` bytes; blocks until at least one (EPIPE once closed and drained). */
  read(buffer: Uint8Array): number {
    return check(native.vx_read(this.#guard(), buffer, buffer.length));
  }

  /** Exactly `buffer.length` bytes (EMSGSIZE when larger than the ring). */
  recv(buffer: Uint8Array): number {
    return check(native.vx_recv(this.#guard(), buffer, buffer.length));
  }

  /** All of `data` when blocking (returns its length); what fit when not. */
  write(data: Uint8Array): number {
    return check(native.vx_write(this.#guard(), data, data.length));
  }

  /** All of `data` or nothing (EMSGSIZE when larger than the ring). */
  send(data: Uint8Array): number {
    return check(native.vx_send(this.#guard(), data, data.length));
  }

  setBlocking(on: boolean): void {
    check(native.vx_set_blocking(this.#guard(), on ? 1 : 0));
  }

  info(): VchanInfo {
    const raw = new Int32Array(INFO_BYTES / 4);
    check(native.vx_info(this.#guard(), raw));
    const u = new Uint32Array(raw.buffer);
    return {
      role: u[0] === 0 ? "server" : "client",
      state: raw[1] as VchanState,
      leftOrder: u[2]!,
      rightOrder: u[3]!,
      readRingBytes: u[4]!,
      writeRingBytes: u[5]!,
      pages: u[6]!,
      kicks: u[7]!,
      wakeups: u[8]!,
      sleeps: u[9]!,
      spinHits: u[10]!,
      spinMisses: u[11]!,
      spinBudgetNs: u[12]!,
      localDomain: raw[13]!,
      remoteDomain: raw[14]!,
      port: raw[15]!,
    };
  }

  /** Why the vchan disconnected ("" while it has not). */
  reason(): string {
    const length = check(native.vx_reason(this.#guard(), messageBuffer, messageBuffer.length));
    return decoder.decode(messageBuffer.subarray(0, length));
  }

  /** Test hook: write a u32 into the shared page, as a hostile peer could. */
  debugPoke(offset: number, value: number): void {
    check(native.vx_debug_poke(this.#guard(), offset, value >>> 0));
  }

  /** Idempotent. Tells the peer (live byte 0 + kick), then frees the memory and fds. */
  close(): void {
    if (this.#handle === 0) return;
    const handle = this.#handle;
    this.#handle = 0;
    check(native.vx_close(handle));
  }
}

export { VchanState };
