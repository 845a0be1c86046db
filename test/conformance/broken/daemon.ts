// A deliberately broken qrexec-daemon for the conformance kit's own tests: it connects to the
// agent's control vchan, refuses every trigger without asking any policy, and serves EXEC_CMDLINE
// clients with port 513. BROKEN_MODE picks the bug:
//   hello-4          answers every agent HELLO with 4 (no min rule)
//   ignore-triggers  never answers a trigger
//   no-socket        never creates its socket
import { existsSync, rmSync, symlinkSync } from "node:fs";
import { join } from "node:path";
import { Connection } from "../../../src/io/connection.ts";
import { encodeExecParams, frame, helloMessage, decodeHello } from "../../../src/protocol/codec.ts";
import * as C from "../../../src/protocol/constants.ts";

const mode = process.env.BROKEN_MODE ?? "";
const args = process.argv.slice(2);
const socketDir = args.find((arg) => arg.startsWith("--socket-dir="))!.slice(13);
const [domain, name] = args
  .filter((arg) => !arg.startsWith("-"))
  .filter((arg) => !arg.includes("-0000-"));
const path = join(process.env.VCHAN_SOCKET_DIR!, `vchan.${domain}.0.512.sock`);
let control: Connection;
for (;;) {
  try {
    control = await Connection.connect(path);
    break;
  } catch {
    await Bun.sleep(5);
  }
}
const hello = await control.readMessage(4);
const version = hello ? decodeHello(hello.header, hello.payload) : 0;
control.write(helloMessage(mode === "hello-4" ? 4 : Math.min(4, version)));
if (mode !== "no-socket") {
  const socket = join(socketDir, `qrexec.${domain}`);
  if (existsSync(socket)) rmSync(socket);
  Connection.listen(socket, (client) => {
    void (async () => {
      client.write(helloMessage(3));
      await client.readMessage(4);
      const message = await client.readMessage(65535).catch(() => null);
      if (!message) return client.close();
      client.write(
        frame(
          message.header.type,
          encodeExecParams({ connectDomain: Number(domain), connectPort: 513 }),
        ),
      );
      control.write(frame(message.header.type, message.payload));
    })();
  });
  symlinkSync(`qrexec.${domain}`, join(socketDir, `qrexec.${name}`));
}
for (;;) {
  const message = await control.readMessage(1 << 20).catch(() => null);
  if (!message) process.exit(0);
  const type = message.header.type;
  if (mode === "ignore-triggers") continue;
  const identAt = {
    [C.MSG_TRIGGER_SERVICE]: 96,
    [C.MSG_TRIGGER_SERVICE3]: 64,
    [C.MSG_TRIGGER_SERVICE4]: 128,
  }[type];
  if (identAt !== undefined)
    control.write(frame(C.MSG_SERVICE_REFUSED, message.payload.slice(identAt, identAt + 32)));
}
