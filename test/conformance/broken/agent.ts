// A deliberately broken qrexec-agent for the conformance kit's own tests: it speaks just enough of
// the protocol over the socket vchan (raw frames) to serve simple calls, with one bug chosen by
// BROKEN_MODE:
//   hello-3          sends HELLO 3 on the control vchan
//   exit-first       sends EXIT_CODE before the stream EOFs
//   double-eof       sends STDOUT EOF twice
//   no-stderr-eof    never sends STDERR EOF (as mirage-qubes does)
//   huge-chunk       sends all stdout in one chunk whatever its size
//   wrong-code       reports every exit code as 0
//   silent-data      connects the data vchan and never says anything
//   crash            dies with SIGSEGV on the first EXEC_CMDLINE
//   no-terminated    never sends CONNECTION_TERMINATED
//   upstream-disconnect  as upstream: stays up after dom0 closes the control vchan, exits 1 when a
//                        client's trigger makes it write there (not a bug: the kit must pass it)
//   ignore-disconnect    stays up after dom0 closes the control vchan and ignores clients' triggers
import { existsSync, rmSync } from "node:fs";
import { join } from "node:path";
import { Connection } from "../../../src/io/connection.ts";
import {
  decodeExecCommand,
  encodeConnectionTerminated,
  encodeExitCode,
  frame,
  helloMessage,
} from "../../../src/protocol/codec.ts";
import * as C from "../../../src/protocol/constants.ts";

const mode = process.env.BROKEN_MODE ?? "";
const dir = process.env.VCHAN_SOCKET_DIR!;
const domain = Number(process.env.VCHAN_DOMAIN);
const servicePath = process.env.QREXEC_SERVICE_PATH!;

async function readMessage(connection: Connection) {
  return connection.readMessage(1 << 20).catch(() => null);
}

async function connectRetry(path: string): Promise<Connection> {
  for (;;) {
    try {
      return await Connection.connect(path);
    } catch {
      await Bun.sleep(5);
    }
  }
}

async function serveCall(
  control: Connection,
  justExec: boolean,
  port: number,
  command: string,
): Promise<void> {
  const data = await connectRetry(join(dir, `vchan.0.${domain}.${port}.sock`));
  if (mode === "silent-data") return;
  await readMessage(data);
  data.write(helloMessage(4));
  const service = /QUBESRPC (\S+)/.exec(command)?.[1]?.replace(/\+$/, "") ?? "";
  const path = join(servicePath, service);
  let stdout: Uint8Array = new Uint8Array(0);
  let stderr: Uint8Array = new Uint8Array(0);
  let code = 127;
  if (existsSync(path)) {
    const chunks: Uint8Array[] = [];
    if (!justExec) {
      for (;;) {
        const message = await readMessage(data);
        if (!message || message.payload.length === 0) break;
        chunks.push(message.payload);
      }
    }
    const child = Bun.spawn(["/bin/sh", path], {
      stdin: new Blob(chunks),
      stdout: "pipe",
      stderr: "pipe",
    });
    [stdout, stderr, code] = await Promise.all([
      new Response(child.stdout).bytes(),
      new Response(child.stderr).bytes(),
      child.exited,
    ]);
  }
  if (mode === "wrong-code") code = 0;
  const exit = frame(C.MSG_DATA_EXIT_CODE, encodeExitCode(code));
  if (mode === "exit-first" && !justExec) data.write(exit);
  if (!justExec) {
    const limit = mode === "huge-chunk" ? Infinity : C.MAX_DATA_CHUNK_V3;
    for (let offset = 0; offset < stdout.length; offset += limit)
      data.write(frame(C.MSG_DATA_STDOUT, stdout.subarray(offset, offset + limit)));
    if (stderr.length > 0) data.write(frame(C.MSG_DATA_STDERR, stderr));
    data.write(frame(C.MSG_DATA_STDOUT));
    if (mode === "double-eof") data.write(frame(C.MSG_DATA_STDOUT));
    if (mode !== "no-stderr-eof") data.write(frame(C.MSG_DATA_STDERR));
  }
  if (mode !== "exit-first" || justExec) data.write(exit);
  data.end();
  await data.closed;
  if (mode !== "no-terminated")
    control.write(
      frame(
        C.MSG_CONNECTION_TERMINATED,
        encodeConnectionTerminated({ connectDomain: 0, connectPort: port }),
      ),
    );
}

/** The modes that outlive the control vchan take clients' triggers on --agent-socket. */
function listenForClients(): void {
  const socket = process.argv
    .find((arg) => arg.startsWith("--agent-socket="))
    ?.slice("--agent-socket=".length);
  if (socket === undefined) return;
  if (existsSync(socket)) rmSync(socket);
  Connection.listen(socket, (client) => {
    void readMessage(client).then((trigger) => {
      if (trigger !== null && mode === "upstream-disconnect") process.exit(1);
    });
  });
}

const outlivesControl = mode === "upstream-disconnect" || mode === "ignore-disconnect";

function controlClosed(): void {
  if (!outlivesControl) process.exit(0);
}

listenForClients();
const path = join(dir, `vchan.${domain}.0.512.sock`);
if (existsSync(path)) rmSync(path);
const listener = Connection.listen(path, (control) => {
  // Like upstream's vchan server: one control connection, never a second one.
  if (outlivesControl) listener.stop();
  void (async () => {
    control.write(helloMessage(mode === "hello-3" ? 3 : 4));
    await readMessage(control);
    for (;;) {
      const message = await readMessage(control);
      if (!message) return controlClosed();
      const { type } = message.header;
      if (type !== C.MSG_EXEC_CMDLINE && type !== C.MSG_JUST_EXEC) continue;
      if (mode === "crash") process.kill(process.pid, "SIGSEGV");
      const exec = decodeExecCommand(message.payload, "terminate");
      void serveCall(control, type === C.MSG_JUST_EXEC, exec.connectPort, exec.command);
    }
  })();
});
process.on("SIGTERM", () => {
  listener.stop(true);
  process.exit(0);
});
