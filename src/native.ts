// The only TypeScript file that touches the FFI boundary: it loads libqrx.so (zig/lib.zig is the
// other side) with the symbols of src/abi.generated.ts, checks the ABI version, decodes the
// library's structs by the generated field offsets, and wraps native handles in classes that
// throw clear errors and refuse use after close. Every export returns an i32: >= 0 is a value,
// -errno a failure whose message comes from `qrx_last_error`.
import { dlopen, FFIType, JSCallback } from "bun:ffi";
import { closeSync, existsSync } from "node:fs";
import { constants as osConstants } from "node:os";
import * as abi from "./abi.generated.ts";
import { PumpEventKind, StreamKind, VchanState } from "./abi.generated.ts";
import { VchanBackend, type VchanBackendName } from "./constants.ts";
import { defaultNativeLibraryPath } from "./install-paths.ts";
import { defaultVchanDir, vchanBackend } from "./paths.ts";

export function nativeLibraryPath(): string {
  return process.env.QRX_NATIVE_LIB || defaultNativeLibraryPath();
}

function load() {
  const path = nativeLibraryPath();
  if (!existsSync(path)) {
    throw new Error(`native library ${path} is missing: run \`npm run setup\` to build it`);
  }
  const lib = dlopen(path, abi.symbols);
  const version = lib.symbols.qrx_abi_version();
  if (version !== abi.ABI_VERSION) {
    throw new Error(
      `native library ${path} has ABI version ${version}, this code needs ` +
        `${abi.ABI_VERSION}: run \`npm run setup\``,
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

/** An `extern struct` of zig/abi.zig as src/abi.generated.ts describes it. */
interface Layout {
  readonly bytes: number;
  readonly fields: { readonly [name: string]: Field };
}
interface Field {
  readonly offset: number;
  readonly type: string;
  readonly count?: number;
}

/** The struct's scalar fields by name (arrays are read through their `offset`). */
type Scalars<L extends Layout> = {
  -readonly [
    K in keyof L["fields"] as L["fields"][K] extends { count: number } ? never : K
  ]: number;
};

/** Decodes the scalar fields of a `layout` struct starting at `base` in `bytes`. */
function readStruct<L extends Layout>(layout: L, bytes: Uint8Array, base = 0): Scalars<L> {
  const view = new DataView(bytes.buffer, bytes.byteOffset + base, layout.bytes);
  const values: Record<string, number> = {};
  for (const [name, field] of scalarFields(layout)) values[name] = readScalar(view, field);
  return values as Scalars<L>;
}

/** A layout's scalar fields, listed once: every pump event's header is read with them. */
const scalarFieldLists = new WeakMap<Layout, Array<[string, Field]>>();

function scalarFields(layout: Layout): Array<[string, Field]> {
  let fields = scalarFieldLists.get(layout);
  if (fields === undefined) {
    fields = Object.entries(layout.fields).filter(([, field]) => field.count === undefined);
    scalarFieldLists.set(layout, fields);
  }
  return fields;
}

function readScalar(view: DataView, field: Field): number {
  switch (field.type) {
    case "u8":
      return view.getUint8(field.offset);
    case "u16":
      return view.getUint16(field.offset, true);
    case "u32":
      return view.getUint32(field.offset, true);
    case "i32":
      return view.getInt32(field.offset, true);
    case "u64":
      return Number(view.getBigUint64(field.offset, true));
    default:
      throw new Error(`no decoder for a ${field.type} field`);
  }
}

/** The `flags` word for the bits of `mask` (name -> bit) that `options` sets. */
function flagsOf<M extends Record<string, number>>(
  mask: M,
  options: { readonly [K in keyof M]?: boolean | undefined },
): number {
  let flags = 0;
  for (const [name, bit] of Object.entries(mask)) if (options[name as keyof M]) flags |= bit;
  return flags;
}

export interface NativeConfig {
  /** Longest spin before sleeping on the event fd, in ns; 0 turns spinning off. */
  spinNs?: number;
  /** Most pages a vchan may use, like a Xen peer's grant table (128 for MirageOS); 0 = no cap. */
  pagesMax?: number;
}

/** Process-wide settings applied to vchans created afterwards. */
export function configure(config: NativeConfig): void {
  if (config.spinNs !== undefined)
    check(native.qrx_set_config(abi.ConfigKey.SpinNs, config.spinNs));
  if (config.pagesMax !== undefined)
    check(native.qrx_set_config(abi.ConfigKey.PagesMax, config.pagesMax));
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
  /** `shm` (ours) or `socket` (upstream's vchan-socket); defaults to QRX_VCHAN, else `shm`. */
  backend?: VchanBackendName;
  /**
   * Rendezvous directory. Defaults for shm to QRX_VCHAN_DIR or the state directory's `vchan/`,
   * for socket to VCHAN_SOCKET_DIR or /var/run/vchan.
   */
  dir?: string;
}

export interface VchanServerOptions extends VchanEndpoint {
  /** Minimum size of the ring we read (bytes). */
  readMin: number;
  /** Minimum size of the ring we write (bytes). */
  writeMin: number;
}

export interface VchanInfo {
  backend: VchanBackendName;
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

/** The backend and directory (encoded for the FFI) an endpoint asks for, env defaults applied. */
function rendezvous(options: VchanEndpoint): { backend: VchanBackendName; dir: Uint8Array } {
  const backend = options.backend ?? vchanBackend();
  if (!Object.hasOwn(VchanBackend, backend)) {
    throw new Error(`vchan backend must be "shm" or "socket", not ${JSON.stringify(backend)}`);
  }
  return { backend, dir: encoder.encode(options.dir ?? defaultVchanDir(backend)) };
}

export { defaultVchanDir, vchanBackend };

/**
 * libvchan, as upstream qrexec uses it: blocking by default, partial read/write, whole
 * recv/send.
 */
export class Vchan {
  #handle: number;
  readonly label: string;

  private constructor(handle: number, label: string) {
    this.#handle = handle;
    this.label = label;
  }

  /** libvchan_server_init: shares the rings and returns at once (state WAITING). */
  static server(options: VchanServerOptions): Vchan {
    const { backend, dir } = rendezvous(options);
    const handle = check(
      native.vx_server_init(
        VchanBackend[backend],
        dir,
        dir.length,
        options.localDomain,
        options.remoteDomain,
        options.port,
        options.readMin,
        options.writeMin,
      ),
    );
    return new Vchan(
      handle,
      `vchan server ${options.localDomain}<-${options.remoteDomain}:${options.port}`,
    );
  }

  /** libvchan_client_init_async: call `finish` (or `connectWait`) until connected. */
  static clientAsync(options: VchanEndpoint): Vchan {
    const { backend, dir } = rendezvous(options);
    const handle = check(
      native.vx_client_init_async(
        VchanBackend[backend],
        dir,
        dir.length,
        options.localDomain,
        options.remoteDomain,
        options.port,
      ),
    );
    return new Vchan(
      handle,
      `vchan client ${options.localDomain}->${options.remoteDomain}:${options.port}`,
    );
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
    const raw = new Uint8Array(abi.Info.bytes);
    check(native.vx_info(this.#guard(), raw));
    const { backend, role, state, ...counts } = readStruct(abi.Info, raw);
    return {
      ...counts,
      backend: backend === VchanBackend.socket ? "socket" : "shm",
      role: role === abi.VchanRole.Server ? "server" : "client",
      state: state as VchanState,
    };
  }

  /** Why the vchan disconnected ("" while it has not). */
  reason(): string {
    const length = check(native.vx_reason(this.#guard(), messageBuffer, messageBuffer.length));
    return decoder.decode(messageBuffer.subarray(0, length));
  }

  /** Test hook: write a u32 into the shared page, as a hostile peer could (shm only). */
  debugPoke(offset: number, value: number): void {
    check(native.vx_debug_poke(this.#guard(), offset, value >>> 0));
  }

  /**
   * Hands this vchan to the pump thread as a stream; this handle is closed afterwards and the
   * pump owns the vchan. The stream connects (within `connectTimeoutMs`), exchanges HELLO and
   * then runs as a control channel or one side of a data channel.
   */
  attach(options: StreamOptions): Stream {
    const handle = this.#guard();
    const flags = flagsOf(abi.AttachFlags, options);
    const spawn = options.spawn ?? NO_SPAWN;
    const spawnFlags = flagsOf(abi.ServiceStdioFlags, spawn);
    const pump = Pump.get();
    this.#handle = 0;
    const id = check(
      native.qp_attach(
        handle,
        options.kind,
        options.version,
        options.sendFirst ? 1 : 0,
        options.connectTimeoutMs,
        flags,
        spawn.block,
        spawn.block.length,
        spawn.argc,
        spawnFlags,
      ),
    );
    return pump.register(id, `${this.label} (${streamKindName(options.kind)})`);
  }

  /** Idempotent. Tells the peer (live byte 0 + kick), then frees the memory and fds. */
  close(): void {
    if (this.#handle === 0) return;
    const handle = this.#handle;
    this.#handle = 0;
    check(native.vx_close(handle));
  }
}

export interface StreamOptions {
  kind: StreamKind;
  /** Our protocol version; the stream runs at min(ours, peer's). */
  version: number;
  /** Send HELLO first (vchan servers, agents); otherwise answer the peer's. */
  sendFirst: boolean;
  /** Deadline for the peer to connect and say HELLO (negative: none). */
  connectTimeoutMs: number;
  filterStdout?: boolean;
  filterStderr?: boolean;
  exitOnClientEof?: boolean;
  exitOnServiceEof?: boolean;
  /** Service side of a mirage-qubes 2.0 peer (src/protocol/peer-profile.ts, spec §14). */
  mirageService?: boolean;
  /** Reproduce mirage-qubes 2.0's chunk-length bug when sending local data (a test knob). */
  mirageChunkBug?: boolean;
  /** Service side that never has a stderr fd (dom0): stderr's EOF leads, failures included. */
  stderrEofFirst?: boolean;
  /**
   * The child signals SIGUSR1 to a front end, not to us (a hosted call's local program): a
   * held stdout EOF waits for `frontEndSynced`, which `onFrontEndSync` is the cue to get.
   */
  frontEndSignals?: boolean;
  /**
   * A service stream's service (`spawnSpec`), started by the pump itself the moment the data
   * vchan is connected, with the stdio `makeServiceStdio` would make. The pump owns and reaps
   * the child, and sends its exit code; see `Stream.spawned`.
   */
  spawn?: SpawnSpec;
}

/** What `StreamOptions.spawn` takes: argv and environment as the pump's strings. */
export interface SpawnSpec {
  block: Uint8Array;
  argc: number;
  stderrPipe: boolean;
  stdoutPipe: boolean;
}

/** No service: qp_attach reads no strings when their length is 0. */
const NO_SPAWN: SpawnSpec = {
  block: new Uint8Array(0),
  argc: 0,
  stderrPipe: false,
  stdoutPipe: false,
};

/**
 * `argv` (its first an absolute path) and `env` as a spawn; a TypeError when a string holds a
 * NUL, which would split it.
 */
export function spawnSpec(
  argv: string[],
  env: Record<string, string>,
  stdio: { stderrPipe: boolean; stdoutPipe: boolean },
): SpawnSpec {
  // One string, built in place: this runs for every call a service answers.
  let text = "";
  for (const arg of argv) text += `${arg}\0`;
  for (const name in env) text += `${name}=${env[name]}\0`;
  const strings = argv.length + Object.keys(env).length;
  let nuls = 0;
  for (let at = text.indexOf("\0"); at !== -1; at = text.indexOf("\0", at + 1)) nuls++;
  if (nuls !== strings)
    throw new TypeError("a spawned program's argument or environment contains a NUL");
  return { block: encoder.encode(text), argc: argv.length, ...stdio };
}

export interface PumpEvent {
  kind: PumpEventKind;
  /** CONNECTED: version; MESSAGE: message type; DONE: status; FAILED: -errno. */
  value: number;
  payload: Uint8Array;
}

function streamKindName(kind: StreamKind): string {
  return kind === StreamKind.Control
    ? "control"
    : kind === StreamKind.DataService
      ? "service"
      : "client";
}

/** Thrown (or delivered) when a stream fails: the pump's reason, with the errno's name. */
export class StreamError extends NativeError {}

/** Bytes a stream's vchan moved each way (headers included) and its ring sizes. */
export interface StreamTraffic {
  bytesRead: number;
  bytesWritten: number;
  readRingBytes: number;
  writeRingBytes: number;
}

/**
 * A stream run by the pump thread. Events arrive through `onEvent` (or the `connected` and
 * `finished` promises); commands go straight to the pump.
 *
 * Events that come before the first `onEvent` listener are kept for it: the pump runs while
 * `Vchan.attach` registers the stream, and a fast peer can have said HELLO and sent its first
 * control message before the caller's next statement attaches the listener.
 */
export class Stream {
  readonly id: number;
  readonly label: string;
  #closed = false;
  #listeners: Array<(event: PumpEvent) => void> = [];
  /** Events delivered while no listener was attached (or while they are being handed over). */
  #early: PumpEvent[] = [];
  #handingOver = false;
  readonly connected: Promise<number>;
  /**
   * With `StreamOptions.spawn`: the service's pid, or -errno when it could not be started (the
   * stream then ends with 127 or 125 itself). Resolves before `connected`.
   */
  readonly spawned: Promise<number>;
  /** When the pump saw the HELLOs exchanged, and started the service (ms, the trace's clock). */
  connectedAt: number | undefined;
  spawnedAt: number | undefined;
  /** A data stream's stage times from its DONE record, for the trace (src/trace.ts). */
  pumpMarks: Uint8Array | null = null;
  /** With `frontEndSignals`: the pump holds stdout's EOF until `frontEndSynced`. */
  onFrontEndSync: (() => void) | null = null;
  /** Resolves with the DONE status; rejects with a StreamError when the stream fails. */
  readonly finished: Promise<number>;
  #resolveConnected!: (version: number) => void;
  #resolveSpawned!: (pid: number) => void;
  #resolveFinished!: (status: number) => void;
  #rejectFinished!: (error: Error) => void;
  /** `finished` resolved or rejected. */
  #settled = false;

  constructor(id: number, label: string) {
    this.id = id;
    this.label = label;
    this.connected = new Promise<number>((resolve) => (this.#resolveConnected = resolve));
    this.spawned = new Promise<number>((resolve) => (this.#resolveSpawned = resolve));
    this.finished = new Promise<number>((resolve, reject) => {
      this.#resolveFinished = (status) => {
        this.#settled = true;
        resolve(status);
      };
      this.#rejectFinished = (error) => {
        this.#settled = true;
        reject(error);
      };
    });
    // A failure nobody awaits must not crash the process; callers that care await `finished`.
    this.finished.catch(() => {});
  }

  /** @internal Called by the pump driver. */
  deliver(event: PumpEvent): void {
    if (event.kind === PumpEventKind.Spawned) {
      this.spawnedAt = wallClockMs(event.payload);
      this.#resolveSpawned(event.value);
    }
    if (event.kind === PumpEventKind.Connected) {
      this.connectedAt = wallClockMs(event.payload);
      this.#resolveConnected(event.value);
    }
    if (event.kind === PumpEventKind.Done) {
      this.pumpMarks = event.payload;
      this.#resolveFinished(event.value);
    }
    if (event.kind === PumpEventKind.Failed) {
      this.#rejectFinished(
        new StreamError(-event.value, `${this.label}: ${decoder.decode(event.payload)}`),
      );
    }
    if (event.kind === PumpEventKind.FrontEndSync) this.onFrontEndSync?.();
    if (this.#listeners.length === 0 || this.#handingOver) {
      this.#early.push(event);
      return;
    }
    for (const listener of this.#listeners) listener(event);
  }

  /**
   * Adds a listener; the first one is handed at once, in order, every event that came before
   * it (a listener that drains the pump meanwhile only appends to what it is handed).
   */
  onEvent(listener: (event: PumpEvent) => void): void {
    this.#listeners.push(listener);
    if (this.#listeners.length > 1 || this.#early.length === 0) return;
    this.#handingOver = true;
    try {
      for (let event = this.#early.shift(); event !== undefined; event = this.#early.shift())
        listener(event);
    } finally {
      this.#handingOver = false;
    }
  }

  #guard(): number {
    if (this.#closed) throw new Error(`${this.label} is closed`);
    return this.id;
  }

  /** Local fds for a data stream; the pump owns and finally closes them. */
  setStdio(stdinFd: number, stdoutFd: number, stderrFd: number, hasChild: boolean): void {
    check(native.qp_set_stdio(this.#guard(), stdinFd, stdoutFd, stderrFd, hasChild ? 1 : 0));
  }

  /** A client's remote stderr goes to `fd` (the pump owns it now) instead of our fd 2. */
  setRemoteStderr(fd: number): void {
    check(native.qp_set_remote_stderr(this.#guard(), fd));
  }

  /**
   * Creates the service's stdio; returns the child's ends [stdin, stdout, stderr] to spawn with.
   * Without stderr (dom0 services) the last is -1 and the stream sends stderr EOF at once.
   * `stdoutPipe`: stdout is a pipe instead of upstream's socketpair (QRX_SERVICE_STDOUT=pipe).
   */
  makeServiceStdio(withStderr = true, stdoutPipe = false): [number, number, number] {
    const fds = new Int32Array(3);
    const flags = flagsOf(abi.ServiceStdioFlags, { stderrPipe: withStderr, stdoutPipe });
    check(native.qp_make_service_stdio(this.#guard(), fds, flags));
    return [fds[0]!, fds[1]!, fds[2]!];
  }

  setPrefix(data: Uint8Array): void {
    check(native.qp_set_prefix(this.#guard(), data, data.length));
  }

  /** Queues a control message (it must fit the peer's ring whole). */
  send(type: number, body: Uint8Array): void {
    check(native.qp_send(this.#guard(), type, body, body.length));
  }

  /**
   * A hosted call's stream: the pump thread tells client host `connection`'s front end its
   * exit status as soon as the stream is done with the remote's status (before JS hears).
   */
  replyWhenDone(connection: number): void {
    check(native.qp_reply_when_done(this.#guard(), connection));
  }

  /** The local child exited with `status` (exit code, or 128+signal). */
  localExit(status: number): void {
    check(native.qp_local_exit(this.#guard(), status));
  }

  /**
   * Service side: end with `status`, with both EOFs first (spawn failure) or without
   * (JUST_EXEC).
   */
  finishWith(status: number, eofs: boolean): void {
    check(native.qp_finish_with(this.#guard(), status, eofs ? 1 : 0));
  }

  /** The local child's pid, so a SIGUSR1 from it (or its descendants) finds this stream. */
  setChild(pid: number): void {
    check(native.qp_set_child(this.#guard(), pid));
  }

  /** SIGUSR1: the child now writes its output to its stdin socket. */
  singleSocket(): void {
    check(native.qp_single_socket(this.#guard()));
  }

  /**
   * For `frontEndSignals`: its front end has sent every SIGUSR1 it got (`FrontEndSync` asked),
   * so a held stdout EOF may go.
   */
  frontEndSynced(): void {
    check(native.qp_front_end_synced(this.#guard()));
  }

  /** What the stream's vchan moved so far and its ring sizes; null once it left the vchan. */
  traffic(): StreamTraffic | null {
    if (this.#closed) return null;
    const raw = new Uint8Array(abi.StreamTraffic.bytes);
    const status = native.qp_stream_traffic(this.id, raw);
    if (status === -osConstants.errno.ENOTCONN) return null;
    check(status);
    return readStruct(abi.StreamTraffic, raw);
  }

  /**
   * Idempotent; frees the stream (closing its vchan and fds if still open). A stream closed
   * before it finished fails with ECANCELED, so nobody awaits `finished` forever.
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    // Only when it is still awaited: an Error's stack costs more than the rest of the close.
    if (!this.#settled)
      this.#rejectFinished(new StreamError(osConstants.errno.ECANCELED, `${this.label}: closed`));
    Pump.get().unregister(this.id);
    check(native.qp_close(this.id));
  }
}

/** A record's u64 CLOCK_REALTIME ns as milliseconds (src/trace.ts's clock), if it has one. */
function wallClockMs(payload: Uint8Array): number | undefined {
  if (payload.length < 8) return undefined;
  const view = new DataView(payload.buffer, payload.byteOffset, 8);
  return Number(view.getBigUint64(0, true) / 1000n) / 1000;
}

/** The records of the client host (zig/client_host/): `stream` is a front end's connection. */
const CLIENT_HOST_EVENTS = new Set<PumpEventKind>([
  PumpEventKind.ClientRequest,
  PumpEventKind.ClientSignal,
  PumpEventKind.ClientGone,
  PumpEventKind.ClientRefused,
  PumpEventKind.ClientLocalStarted,
  PumpEventKind.ClientLocalFailed,
  PumpEventKind.ClientLocalExit,
  PumpEventKind.ClientSynced,
]);

/** Reads the pump's doorbell and routes event records to their streams. One per process. */
class Pump {
  static #instance: Pump | undefined;
  readonly #streams = new Map<number, Stream>();
  #buffer = new Uint8Array(1 << 18);
  readonly #doorbell: number;
  #draining = false;

  private constructor() {
    this.#doorbell = check(native.qp_start());
    void this.#listen();
  }

  static get(): Pump {
    Pump.#instance ??= new Pump();
    return Pump.#instance;
  }

  register(id: number, label: string): Stream {
    const stream = new Stream(id, label);
    this.#streams.set(id, stream);
    // Events may already be queued for it (the pump runs while we register).
    this.#drain();
    return stream;
  }

  unregister(id: number): void {
    this.#streams.delete(id);
  }

  async #listen(): Promise<void> {
    for await (const _ of Bun.file(this.#doorbell).stream()) this.#drain();
  }

  #drain(): void {
    // A listener may attach a stream, whose `register` drains again: that nested call would
    // refill the buffer this loop is still reading (records lost, others seen twice). The
    // outer loop polls again until the queue is empty, so a nested call has nothing to do.
    if (this.#draining) return;
    this.#draining = true;
    try {
      this.#drainAll();
    } finally {
      this.#draining = false;
    }
  }

  #drainAll(): void {
    for (;;) {
      const length = native.qp_poll_events(this.#buffer, this.#buffer.length);
      if (length < 0) {
        this.#buffer = new Uint8Array(
          Math.max(this.#buffer.length * 2, native.qp_pending_event_bytes()),
        );
        continue;
      }
      if (length === 0) return;
      for (let offset = 0; offset < length;) offset = this.#route(offset);
    }
  }

  /** Hands the record at `offset` in the buffer to its stream; returns where the next starts. */
  #route(offset: number): number {
    const header = readStruct(abi.EventHeader, this.#buffer, offset);
    const start = offset + abi.EventHeader.bytes;
    const payload = this.#buffer.slice(start, start + header.payloadLen);
    const kind = header.kind as PumpEventKind;
    if (CLIENT_HOST_EVENTS.has(kind)) {
      ClientHost.deliver(header.stream, kind, header.value, payload);
    } else this.#streams.get(header.stream)?.deliver({ kind, value: header.value, payload });
    const padded = Math.ceil(header.payloadLen / abi.EVENT_RECORD_ALIGN) * abi.EVENT_RECORD_ALIGN;
    return start + padded;
  }
}

export { PumpEventKind, StreamKind, VchanBackend, type VchanBackendName, VchanState };

// ---------------------------------------------------------------------------------------------
// The client host: qrexec-client-vm front ends handing their calls to this process
// (zig/client_host/, src/agent/client-host.ts).

export interface ClientRequest {
  connection: number;
  /** The front end's fds 0, 1, 2 (ours to close). */
  fds: [number, number, number];
  /** Its argv without argv[0]. */
  argv: string[];
  env: Record<string, string>;
}

export interface ClientHostHandlers {
  request(request: ClientRequest): void;
  /** A SIGUSR1 reached the front end. */
  signal(connection: number): void;
  /** The front end closed or died before its final reply. */
  gone(connection: number): void;
  /** A front end was turned away: its fds could not be received (`errno`: EMFILE, ENFILE). */
  refused?(connection: number, errno: number): void;
  /**
   * After `startLocal`: the front end started its local program (`pid`, in the front end's
   * pid namespace), whose stdin and stdout are the other ends of `fds` (ours to close), or
   * could not (`errno`).
   */
  localStarted?(connection: number, fds: [stdin: number, stdout: number], pid: number): void;
  localFailed?(connection: number, errno: number): void;
  /** The front end's local program ended with `status` (its code, or 128+N for signal N). */
  localExit?(connection: number, status: number): void;
  /** The front end answered `sync`: the byte of every SIGUSR1 it got came before this. */
  synced?(connection: number): void;
}

const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

export class ClientHost {
  static #instance: ClientHost | null = null;
  readonly #handlers: ClientHostHandlers;

  private constructor(handlers: ClientHostHandlers) {
    this.#handlers = handlers;
  }

  /** Starts serving `path` (one per process; a stale socket there is replaced). */
  static listen(path: string, handlers: ClientHostHandlers): ClientHost {
    if (ClientHost.#instance) throw new Error("the client host is already listening");
    Pump.get();
    const bytes = encoder.encode(path);
    check(native.qh_listen(bytes, bytes.length));
    ClientHost.#instance = new ClientHost(handlers);
    return ClientHost.#instance;
  }

  /** @internal Called by the pump driver with a client record. */
  static deliver(
    connection: number,
    kind: PumpEventKind,
    value: number,
    payload: Uint8Array,
  ): void {
    const host = ClientHost.#instance;
    const handlers = host ? host.#handlers : undefined;
    if (kind === PumpEventKind.ClientRequest) {
      // Out of memory, the pump keeps a record without its payload: no fds to close then.
      if (payload.length < abi.ClientRequestPrefix.bytes) {
        native.qh_reply(connection, abi.ClientReply.Fallback, 0);
        return;
      }
      const fds = requestFds(payload);
      const { argc } = readStruct(abi.ClientRequestPrefix, payload);
      const strings = payload.subarray(abi.ClientRequestPrefix.bytes);
      const request = handlers && decodeClientRequest(connection, fds, argc, strings);
      if (request) return handlers.request(request);
      for (const fd of fds) closeSync(fd);
      native.qh_reply(connection, abi.ClientReply.Fallback, 0);
    } else if (kind === PumpEventKind.ClientSignal) handlers?.signal(connection);
    else if (kind === PumpEventKind.ClientGone) handlers?.gone(connection);
    else if (kind === PumpEventKind.ClientRefused) handlers?.refused?.(connection, -value);
    else if (kind === PumpEventKind.ClientLocalStarted) {
      // Out of memory, the pump keeps the record without its payload: the fds are lost.
      if (payload.length < abi.CLIENT_LOCAL_FDS * 4) {
        return handlers?.localFailed?.(connection, osConstants.errno.ENOMEM);
      }
      const fds = new Int32Array(payload.slice(0, abi.CLIENT_LOCAL_FDS * 4).buffer);
      const pair: [number, number] = [fds[0]!, fds[1]!];
      if (handlers?.localStarted) handlers.localStarted(connection, pair, value);
      else for (const fd of pair) closeSync(fd);
    } else if (kind === PumpEventKind.ClientLocalFailed)
      handlers?.localFailed?.(connection, -value);
    else if (kind === PumpEventKind.ClientLocalExit) handlers?.localExit?.(connection, value);
    else if (kind === PumpEventKind.ClientSynced) handlers?.synced?.(connection);
  }

  /**
   * Tells the front end to give up its stdin and stdout: the call runs here. False if it is
   * gone.
   */
  accept(connection: number): boolean {
    return native.qh_reply(connection, abi.ClientReply.Accepted, 0) >= 0;
  }

  /**
   * Tells the front end that its call is allowed and to start its local program, its
   * arguments from `first` on (`localStarted` or `localFailed` follows, then `localExit`).
   * False if it is gone.
   */
  startLocal(connection: number, first: number): boolean {
    return native.qh_reply(connection, abi.ClientReply.StartLocal, first) >= 0;
  }

  /**
   * The front end writes `text` to its stderr (cut to the wire's limit). A front end that is
   * gone is no error.
   */
  message(connection: number, text: string): void {
    const bytes = encoder.encode(text).subarray(0, abi.CLIENT_MESSAGE_BYTES_MAX);
    if (bytes.length > 0) native.qh_message(connection, bytes, bytes.length);
  }

  /**
   * Asks the front end to answer once it has sent the byte of every SIGUSR1 it got (`synced`).
   * False if it is gone.
   */
  sync(connection: number): boolean {
    return native.qh_reply(connection, abi.ClientReply.Sync, 0) >= 0;
  }

  /** The front end exits with `code` (0-255). A front end that is gone is no error. */
  reply(connection: number, code: number): void {
    native.qh_reply(connection, abi.ClientReply.Exit, code);
  }

  /** The front end runs the Bun CLI itself; only before anything was read from its fds. */
  fallback(connection: number): void {
    native.qh_reply(connection, abi.ClientReply.Fallback, 0);
  }
}

/** The front end's fds 0, 1 and 2 from a request record's payload. */
function requestFds(payload: Uint8Array): [number, number, number] {
  const { offset, count } = abi.ClientRequestPrefix.fields.fds;
  const fds = new Int32Array(
    payload.slice(offset, offset + count * Int32Array.BYTES_PER_ELEMENT).buffer,
  );
  return [fds[0]!, fds[1]!, fds[2]!];
}

/** Strings the CLI would see; null (the Bun CLI then runs) for bytes that are not UTF-8. */
function decodeClientRequest(
  connection: number,
  fds: [number, number, number],
  argc: number,
  strings: Uint8Array,
): ClientRequest | null {
  const argv: string[] = [];
  const env: Record<string, string> = {};
  // Each string ends with a NUL; a NUL is never part of another UTF-8 character, so the whole
  // block decodes (and fails) as its strings would one by one, in one call instead of fifty.
  if (strings.length > 0 && strings[strings.length - 1] !== 0) return null;
  let texts: string[];
  try {
    texts = strictUtf8.decode(strings).split("\0");
  } catch {
    return null;
  }
  texts.pop(); // what follows the last NUL: nothing
  for (let index = 0; index < texts.length; index++) {
    const text = texts[index]!;
    if (index < argc) {
      argv.push(text);
      continue;
    }
    const equals = text.indexOf("=");
    if (equals <= 0) return null;
    env[text.slice(0, equals)] ??= text.slice(equals + 1);
  }
  return { connection, fds, argv, env };
}

// ---------------------------------------------------------------------------------------------
// Connections for services and local programs, and SIGUSR1 with its sender.

/** A connected unix stream socket; the fd is the caller's to close. */
export function connectUnix(path: string): number {
  const bytes = encoder.encode(path);
  return check(native.qrx_connect_unix(bytes, bytes.length));
}

/** A connected TCP socket to a numeric IPv4/IPv6 host. */
export function connectTcp(host: string, port: number): number {
  const bytes = encoder.encode(host);
  return check(native.qrx_connect_tcp(bytes, bytes.length, port));
}

/**
 * NUL-terminated strings one after another, as `qrx_exec` takes its lists; `length` leaves out
 * one spare NUL, there so that an empty list is still a real buffer.
 */
function packStrings(strings: string[]): { bytes: Buffer; length: number } {
  const text = strings.map((item) => `${item}\0`).join("");
  return { bytes: Buffer.from(`${text}\0`), length: Buffer.byteLength(text) };
}

/**
 * Replaces this process with `path` (`argv` includes argv[0]), as upstream's dom0 -> dom0 call
 * does with the service. Returns only by throwing a NativeError (`code` ENOENT, EACCES, ...).
 */
export function execProcess(path: string, argv: string[], env: Record<string, string>): never {
  const variables = Object.entries(env).map(([name, value]) => `${name}=${value}`);
  const args = packStrings(argv);
  const environment = packStrings(variables);
  const file = packStrings([path]).bytes;
  const [envBytes, envLength, envCount] = [environment.bytes, environment.length, variables.length];
  check(native.qrx_exec(file, args.bytes, args.length, argv.length, envBytes, envLength, envCount));
  throw new NativeError(0, "execve returned without an error");
}

/** A close-on-exec copy of `fd`, numbered 3 or above; the caller closes it. */
export function dupFd(fd: number): number {
  return check(native.qrx_dup(fd));
}

/** A stream socketpair (close-on-exec; spawning a child dups its end onto 0/1). */
export function socketPair(): [number, number] {
  const fds = new Int32Array(2);
  check(native.qrx_socketpair(fds));
  return [fds[0]!, fds[1]!];
}

/** A close-on-exec pipe: [read end, write end]. */
export function pipe(): [number, number] {
  const fds = new Int32Array(2);
  check(native.qrx_pipe(fds));
  return [fds[0]!, fds[1]!];
}

/** What the kernel buffers between the ends of `fd`: a pipe's capacity, a socket's send buffer. */
export function kernelBufferBytes(fd: number): number {
  return check(native.qrx_kernel_buffer_bytes(fd));
}

/**
 * Has the pump thread take SIGUSR1 (§6.6) and switch the sender's call to single-socket mode:
 * "by-child" maps the sender (or an ancestor) to the stream whose `setChild` it is, for an agent
 * serving many calls; "any" switches every data stream, for a client with one call. In the pump
 * thread, the switch comes before that thread could read the service's stdout EOF.
 */
export function watchSigusr1(mode: "by-child" | "any"): void {
  check(
    native.qp_watch_sigusr1(mode === "by-child" ? abi.Sigusr1Mode.ByChild : abi.Sigusr1Mode.Any),
  );
}

// ---------------------------------------------------------------------------------------------
// filecopy: the qubes.Filecopy stream engine (zig/filecopy; spec filecopy.md). Each call blocks
// this thread for the whole transfer; the sender's progress callback runs synchronously inside it.

/** What a receiver reports when the stream ends inside an entry ("the sender will explain"). */
export const LEGAL_EOF = abi.FILECOPY_LEGAL_EOF;

export interface UnpackStats {
  files: number;
  dirs: number;
  symlinks: number;
  bytes: number;
  crc: number;
}

/**
 * The receiver (qfile-unpacker's loop): reads the stream from `inFd`, creates the entries below
 * `dirFd`, writes the one result message to `outFd`. `code` is what it reported (0 ok, an errno,
 * LEGAL_EOF, 121 EREMOTEIO, 4294967212 = (uint32)-84 for a bad directory name...), or -1 with
 * `fatal` set when it stopped without a result (nanoseconds above 999999999, filecopy.md §2.2).
 * `waitForSpace`: before each file, wait until the disk has room for it plus this many bytes.
 * The fds stay the caller's: close `inFd` (or exit) soon after an error, so that the sender sees
 * EPIPE.
 */
export function unpackStream(options: {
  inFd: number;
  outFd: number;
  dirFd: number;
  allowAllNames?: boolean;
  verbose?: boolean;
  waitForSpace?: number;
}): { code: number; fatal: string | null; stats: UnpackStats } {
  const raw = new Uint8Array(abi.UnpackStats.bytes);
  const flags = flagsOf(abi.UnpackFlags, options);
  const margin = options.waitForSpace ?? 0;
  const pattern = native.qf_unpack(options.inFd, options.outFd, options.dirFd, flags, margin, raw);
  const code = pattern === -1 ? -1 : pattern >>> 0;
  const { code: _sent, ...stats } = readStruct(abi.UnpackStats, raw);
  return { code, fatal: code < 0 ? lastError() || "stopped without a result" : null, stats };
}

export interface PackResult {
  /** ok: CRC matched; remote: the receiver's error `code`; crc: checksum mismatch; eof: the
   * receiver closed without a result; local: an error here (`code` is the errno). */
  status: "ok" | "remote" | "crc" | "eof" | "local";
  /** The remote code (status remote) or errno (other failures); 0 for ok. */
  code: number;
  /** Upstream's words for local failures ("open NAME", "Copying file NAME: ..."); "" for ok. */
  message: string;
  /** The receiver's last name, made safe to show (filecopy.md §2.4), <= 256 bytes, or null. */
  lastName: string | null;
  /** File content sent. */
  bytes: number;
  /** Entries sent (files, directories and symlinks, each once). */
  entries: number;
  /** Our CRC of everything sent. */
  crc: number;
}

/**
 * The sender (qfile-agent's loop): walks each path from its parent directory and writes the
 * stream to `outFd`, then reads the receiver's result from `inFd`. `onProgress` is called on this
 * thread after entries and content chunks, at most once per MiB of content, and once at the end.
 * SIGPIPE must be ignored (Bun does), so a receiver that stops turns into EPIPE, then its result.
 */
export function packStream(options: {
  outFd: number;
  inFd: number;
  paths: string[];
  ignoreSymlinks?: boolean;
  onProgress?: (bytes: number, entries: number) => void;
}): PackResult {
  const list = nulTerminated(options.paths);
  const raw = new Uint8Array(abi.PackResult.bytes);
  const onProgress = options.onProgress;
  const callback = onProgress
    ? new JSCallback(
        (bytes: number | bigint, entries: number | bigint) =>
          onProgress(Number(bytes), Number(entries)),
        { args: [FFIType.u64, FFIType.u64], returns: FFIType.void },
      )
    : null;
  let rc: number;
  try {
    rc = native.qf_pack(
      options.outFd,
      options.inFd,
      list.length > 0 ? list : null,
      list.length,
      flagsOf(abi.PackFlags, options),
      callback ? callback.ptr : null,
      raw,
    );
  } finally {
    callback?.close();
  }
  return packResult(rc, raw);
}

/** `paths` as `qf_pack` takes them: each NUL-terminated, one after another. */
function nulTerminated(paths: string[]): Uint8Array {
  for (const path of paths)
    if (path.includes("\0")) throw new Error(`a path contains a NUL byte: ${JSON.stringify(path)}`);
  return encoder.encode(paths.map((path) => `${path}\0`).join(""));
}

/** What `qf_pack`'s return code `rc` and its result struct `raw` say. */
function packResult(rc: number, raw: Uint8Array): PackResult {
  const message = rc < 0 ? lastError() : "";
  const fields = readStruct(abi.PackResult, raw);
  const nameStart = abi.PackResult.fields.lastName.offset;
  const result: PackResult = {
    status: "ok",
    code: 0,
    message,
    lastName: fields.hasLastName
      ? decoder.decode(raw.subarray(nameStart, nameStart + fields.lastNameLen))
      : null,
    bytes: fields.bytes,
    entries: fields.entries,
    crc: fields.localCrc,
  };
  if (rc > 0) {
    result.status = "remote";
    result.code = fields.remoteCode;
    result.message = `the receiver reported error ${fields.remoteCode}`;
  } else if (rc < 0) {
    result.code = -rc;
    const { EBADMSG, EPIPE } = osConstants.errno;
    result.status = -rc === EBADMSG ? "crc" : -rc === EPIPE ? "eof" : "local";
    // A local EPIPE/EBADMSG cannot happen: the sender maps write EPIPE to the receiver's result.
  }
  return result;
}

function bytesOf(text: string | Uint8Array): Uint8Array {
  return typeof text === "string" ? encoder.encode(text) : text;
}

/** A file or directory name as the receiver checks it (filecopy.md §3.4): 0 or 84 (EILSEQ). */
export function validateFilecopyPath(name: string | Uint8Array, allowAllNames: boolean): number {
  const bytes = bytesOf(name);
  const flags = flagsOf(abi.NamesFlags, { allowAllNames });
  return native.qf_validate_path(bytes.length > 0 ? bytes : null, bytes.length, flags);
}

/** A symlink's name and target (filecopy.md §3.5): 0, 84 (EILSEQ) or 67 (ENOLINK). */
export function validateFilecopySymlink(
  name: string | Uint8Array,
  target: string | Uint8Array,
  allowAllNames: boolean,
): number {
  const nameBytes = bytesOf(name);
  const targetBytes = bytesOf(target);
  return native.qf_validate_symlink(
    nameBytes.length > 0 ? nameBytes : null,
    nameBytes.length,
    targetBytes.length > 0 ? targetBytes : null,
    targetBytes.length,
    flagsOf(abi.NamesFlags, { allowAllNames }),
  );
}

/** The strict character rules of the sender's pre-flight check (qubes-fs-tree-check exit 2). */
export function safeForDisplay(text: string | Uint8Array): boolean {
  const bytes = bytesOf(text);
  return native.qf_safe_for_display(bytes.length > 0 ? bytes : null, bytes.length) === 1;
}
