// The agent's client host: runs qrexec-client-vm calls inside the agent, for the native front end
// (zig/client_host/front_end.zig) that hands over its command line, environment and stdio instead
// of starting Bun for every call (Bun's start alone is about the whole latency budget). The call
// is the CLI's own code (src/client-vm), fed the front end's fds and reaching the agent through
// an in-process trigger connection (src/agent/in-process-trigger.ts); a local program is started by
// the front end, in the caller's process, when the call is allowed. Anything the host would run
// differently from the CLI (an unusual command line, another environment, a terminal) is
// answered "fallback", and the front end runs the Bun CLI itself.
import { chmodSync, closeSync, writeSync } from "node:fs";
import { constants as osConstants } from "node:os";
import { ExitError } from "../call/exit-error.ts";
import type { LocalProgram } from "../call/caller.ts";
import {
  callService,
  spawnFailure,
  type AgentLink,
  type ClientVmCall,
} from "../client-vm/client-vm.ts";
import {
  isTerminal,
  parseFast,
  resolveCall,
  type ClientVmCommandLine,
} from "../client-vm/command-line.ts";
import { ClientHost, type ClientRequest, type Stream } from "../native.ts";
import { CLIENT_HOST_SOCKET_SUFFIX, DEFAULT_AGENT_SOCKET } from "../protocol/constants.ts";
import { QREXEC_EXIT_FATAL, QREXEC_EXIT_REQUEST_REFUSED } from "../protocol/exit.ts";
import { FdShortage, outOfFds } from "./fd-shortage.ts";
import { traceCall } from "../trace.ts";

const PROGRAM = "qrexec-client-vm";
/** What the caller reads when the agent could not set its call up (as the front end says). */
const REFUSED_OUT_OF_FDS = "Request refused: the qrexec agent is out of file descriptors";

/**
 * The variables a qrexec-client-vm process reads (directly, or through the native library's
 * process-wide settings). A call runs in the host only when the front end's values equal the
 * agent's: the agent's process settings are the ones the call gets. QRX_AGENT_SOCKET is not
 * among them: it only says where the agent is, and the call must name this agent's socket
 * (by it or by --agent-socket), which `#hostable` checks.
 */
const CLIENT_ENVIRONMENT = [
  "VCHAN_DOMAIN",
  "VCHAN_SOCKET_DIR",
  "QRX_DIR",
  "QRX_VCHAN",
  "QRX_VCHAN_DIR",
  "QRX_SPIN_NS",
  "QRX_MAX_PAGES",
  "QRX_NATIVE_LIB",
  "QRX_MIRAGE_BUGS",
] as const;

export function clientHostSocket(agentSocket: string): string {
  return agentSocket + CLIENT_HOST_SOCKET_SUFFIX;
}

interface HostedCall {
  abort: AbortController;
  stream: Stream | null;
  /** SIGUSR1s that came before the stream existed. */
  signalled: boolean;
  /** What the front end says of the local program it was told to start. */
  local: LocalReports | null;
}

interface LocalReports {
  started(fds: [number, number], pid: number): void;
  failed(errno: number): void;
  exited(status: number): void;
}

export class ClientVmHost {
  readonly #agentSocket: string;
  readonly #env: Record<string, string | undefined>;
  readonly #log: (message: string) => void;
  readonly #shortage: FdShortage;
  readonly #openTrigger: () => AgentLink;
  #host: ClientHost | null = null;
  readonly #calls = new Map<number, HostedCall>();

  constructor(options: {
    agentSocket: string;
    env: Record<string, string | undefined>;
    log: (message: string) => void;
    shortage: FdShortage;
    /** The agent's in-process trigger connection (`Agent.openLocalTrigger`). */
    openTrigger: () => AgentLink;
  }) {
    this.#agentSocket = options.agentSocket;
    this.#env = options.env;
    this.#log = options.log;
    this.#shortage = options.shortage;
    this.#openTrigger = options.openTrigger;
  }

  get socketPath(): string {
    return clientHostSocket(this.#agentSocket);
  }

  start(): void {
    this.#host = ClientHost.listen(this.socketPath, {
      request: (request) => this.#onRequest(request),
      signal: (connection) => this.#onSignal(connection),
      gone: (connection) => this.#calls.get(connection)?.abort.abort(),
      localStarted: (connection, fds, pid) => {
        const local = this.#calls.get(connection)?.local;
        if (local) local.started(fds, pid);
        else for (const fd of fds) closeSync(fd);
      },
      localFailed: (connection, errno) => this.#calls.get(connection)?.local?.failed(errno),
      localExit: (connection, status) => this.#calls.get(connection)?.local?.exited(status),
      synced: (connection) => {
        const stream = this.#calls.get(connection)?.stream;
        if (stream) frontEndSynced(stream);
      },
      refused: (_, errno) => {
        const code = errno === osConstants.errno.ENFILE ? "ENFILE" : "EMFILE";
        this.#shortage.refused(code, "a qrexec-client-vm's stdio could not be received");
      },
    });
    // Whoever may use the trigger socket may use this one (§5.1: the agent's socket is 0777).
    chmodSync(this.socketPath, 0o777);
  }

  /** The command line, when the host runs it exactly as the CLI would; null for "fallback". */
  #hostable(request: ClientRequest): ClientVmCommandLine | null {
    for (const key of CLIENT_ENVIRONMENT) if (request.env[key] !== this.#env[key]) return null;
    // A terminal stays with a process of its session: were it the agent's controlling terminal
    // too, reading or writing it from outside the foreground job would stop the agent (SIGTTIN,
    // SIGTTOU). Interactive calls are not the ones whose start-up matters.
    if (request.fds.some((fd) => isTerminal(fd))) return null;
    // A caller tracing into a file of its own (`qrx run --trace`) gets the CLI, which writes
    // it: the agent records its calls only in its own trace.
    const trace = request.env.QRX_TRACE;
    if (trace && trace !== this.#env.QRX_TRACE) return null;
    const commandLine = parseFast(
      request.argv,
      request.env.QRX_AGENT_SOCKET ?? DEFAULT_AGENT_SOCKET,
    );
    if (commandLine === null) return null;
    return commandLine.options.agentSocket === this.#agentSocket ? commandLine : null;
  }

  #onRequest(request: ClientRequest): void {
    const host = this.#host!;
    const [, output, error] = request.fds;
    const commandLine = this.#hostable(request);
    let call;
    try {
      call =
        commandLine && resolveCall(commandLine, request.env, { stdoutFd: output, stderrFd: error });
    } catch {
      // A bad option: the CLI says what is wrong, in its own words.
      call = null;
    }
    if (!call) {
      for (const fd of request.fds) closeSync(fd);
      host.fallback(request.connection);
      return;
    }
    const hosted: HostedCall = {
      abort: new AbortController(),
      stream: null,
      signalled: false,
      local: null,
    };
    this.#calls.set(request.connection, hosted);
    // From here on the front end has given up its stdin and stdout: the call owns them. With a
    // local program, the front end keeps them for it, and is told to start it once the call
    // is allowed (`#startLocal`).
    const local = call.localProgram !== null;
    // Gone before it heard of it: the call ends at once, as for a client killed mid-call.
    if (!local && !host.accept(request.connection)) hosted.abort.abort();
    const reason = (failure: unknown) => (failure instanceof Error ? failure.message : failure);
    // Whatever happens to the call, its front end hears an exit status: never a silent hang.
    void this.#run(request, call, hosted)
      .catch((failure: unknown) => {
        this.#log(`hosted call failed: ${reason(failure)}`);
        return QREXEC_EXIT_FATAL;
      })
      .then((code) => host.reply(request.connection, code))
      .catch((failure: unknown) => this.#log(`hosted call's exit not sent: ${reason(failure)}`))
      .finally(() => this.#calls.delete(request.connection));
  }

  /** The call on the front end's fds; its exit status. Every fd is closed or handed on. */
  async #run(request: ClientRequest, call: ClientVmCall, hosted: HostedCall): Promise<number> {
    const [input, output, error] = request.fds;
    // A local program gets the front end's stdin and stdout from the front end itself.
    const unused = call.localProgram ? [input, output] : call.useStdinSocket ? [output] : [];
    for (const fd of unused) closeSync(fd);
    const owned = new Set([input, output, error].filter((fd) => !unused.includes(fd)));
    // What goes to the caller's stderr from here: written to it until the stream has it, then
    // sent to the front end, which writes it (we keep no copy, so that stderr ends with the
    // stream and the front end).
    const say = (text: string) => {
      if (owned.has(error)) writeMessage(error, text);
      else this.#host!.message(request.connection, `${text}\n`);
    };
    try {
      return await callService({
        ...call,
        openAgent: this.#openTrigger,
        stdio: { input, output, error },
        abort: hosted.abort.signal,
        startLocal: (argv) => this.#startLocal(request, hosted, argv),
        trace: traceCall(call.domain)?.stage("client-start", { hosted: true }),
        onStream: (stream) => {
          // The stream owns its fds now.
          for (const fd of [input, output, error]) owned.delete(fd);
          hosted.stream = stream;
          // The exit status computed below is the same; the pump's goes out a wake-up sooner.
          stream.replyWhenDone(request.connection);
          this.#shortage.recovered();
          if (hosted.signalled) singleSocket(stream);
        },
      });
    } catch (failure) {
      if (hosted.abort.signal.aborted) return QREXEC_EXIT_FATAL;
      const message = failure instanceof Error ? failure.message : String(failure);
      // The agent could not set the call up (§8: 126, as when it closes the trigger socket).
      const short = hosted.stream === null ? outOfFds(failure) : null;
      if (short !== null) {
        this.#shortage.refused(short, message);
        say(`${REFUSED_OUT_OF_FDS} (${short})`);
        return QREXEC_EXIT_REQUEST_REFUSED;
      }
      const code = failure instanceof ExitError ? failure.code : QREXEC_EXIT_FATAL;
      say(code === QREXEC_EXIT_REQUEST_REFUSED ? message : `${PROGRAM}: ${message}`);
      return code;
    } finally {
      for (const fd of owned) closeSync(fd);
    }
  }

  /**
   * The front end starts `argv`, the last arguments of its command line, in its own process;
   * the program's stdin and stdout come back as socketpair ends and its status when it ends.
   * A front end that goes away ends the call (its program's status is then lost).
   */
  #startLocal(request: ClientRequest, hosted: HostedCall, argv: string[]): Promise<LocalProgram> {
    const { signal } = hosted.abort;
    let exited!: (status: number) => void;
    const status = new Promise<number>((resolve) => (exited = resolve));
    return new Promise((resolve, reject) => {
      let settled = false;
      const fail = (why: string) => {
        if (settled) return;
        settled = true;
        reject(new ExitError(why, QREXEC_EXIT_FATAL));
      };
      // Before the start or after it: nobody will report the program's status any more.
      const gone = () => {
        exited(QREXEC_EXIT_FATAL);
        fail("call aborted");
      };
      // Its SIGUSR1 reaches us from the front end: a held stdout EOF waits for its `synced`.
      const onSync = (stream: Stream) => {
        if (!this.#host!.sync(request.connection)) frontEndSynced(stream);
      };
      hosted.local = {
        started: ([stdinFd, stdoutFd], pid) => {
          if (settled) return [stdinFd, stdoutFd].forEach((fd) => closeSync(fd));
          settled = true;
          resolve({ stdinFd, stdoutFd, exited: status, pid, frontEnd: { onSync } });
        },
        failed: (errno) => fail(`cannot run ${argv[0]}: ${spawnFailure(argv[0]!, errno)}`),
        exited,
      };
      signal.addEventListener("abort", gone, { once: true });
      const first = request.argv.length - argv.length;
      if (signal.aborted || !this.#host!.startLocal(request.connection, first)) gone();
    });
  }

  #onSignal(connection: number): void {
    const hosted = this.#calls.get(connection);
    if (!hosted) return;
    if (hosted.stream) singleSocket(hosted.stream);
    else hosted.signalled = true;
  }
}

/** A signal, or a front end's answer to `sync`, after the call ended is nobody's business. */
function unlessEnded(stream: Stream, tell: (stream: Stream) => void): void {
  try {
    tell(stream);
  } catch {
    // The call already ended: nobody waits for the signal, and stdout's EOF went with it.
  }
}

const singleSocket = (stream: Stream) => unlessEnded(stream, (live) => live.singleSocket());
const frontEndSynced = (stream: Stream) => unlessEnded(stream, (live) => live.frontEndSynced());

function writeMessage(fd: number, message: string): void {
  try {
    writeSync(fd, `${message}\n`);
  } catch {
    // The front end is gone: there is nobody left to tell.
  }
}
