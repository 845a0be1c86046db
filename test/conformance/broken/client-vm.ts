// A deliberately broken qrexec-client-vm for the conformance kit's own tests (raw frames over the
// socket vchan). BROKEN_MODE picks the bug:
//   trigger3         sends TRIGGER_SERVICE3 to the agent
//   exit-0           exits 0 whatever the remote status
//   no-prefix        ignores --prefix-data
//   hang-after-exit  never exits after EXIT_CODE (waits for the vchan to close)
//   no-stdin-eof     never sends STDIN EOF
import { existsSync, rmSync } from "node:fs";
import { join } from "node:path";
import { Connection } from "../../../src/io/connection.ts";
import {
  decodeExecParams,
  decodeExitCode,
  encodeTrigger3,
  encodeTrigger4,
  frame,
  helloMessage,
} from "../../../src/protocol/codec.ts";
import * as C from "../../../src/protocol/constants.ts";

const mode = process.env.BROKEN_MODE ?? "";
let agentSocket = "";
let prefix = "";
const positional: string[] = [];
for (const arg of process.argv.slice(2)) {
  if (positional.length === 0 && arg.startsWith("--agent-socket=")) agentSocket = arg.slice(15);
  else if (positional.length === 0 && arg.startsWith("--prefix-data=")) prefix = arg.slice(14);
  else positional.push(arg);
}
const [target = "", service = ""] = positional;
const agent = await Connection.connect(agentSocket);
const fields = { target: target.replaceAll("$", "@"), ident: "SOCKET", service };
agent.write(
  mode === "trigger3"
    ? frame(C.MSG_TRIGGER_SERVICE3, encodeTrigger3(fields))
    : frame(C.MSG_TRIGGER_SERVICE4, encodeTrigger4({ source: "", ...fields })),
);
const reply = await agent.read(8).catch(() => null);
if (reply === null) {
  process.stderr.write("Request refused\n");
  process.exit(126);
}
const { connectDomain, connectPort } = decodeExecParams(reply);
const path = join(
  process.env.VCHAN_SOCKET_DIR!,
  `vchan.${process.env.VCHAN_DOMAIN}.${connectDomain}.${connectPort}.sock`,
);
if (existsSync(path)) rmSync(path);
const data = await new Promise<Connection>((resolve) => {
  const listener = Connection.listen(path, (connection) => {
    listener.stop(false);
    resolve(connection);
  });
});
data.write(helloMessage(4));
await data.readMessage(4);
void (async () => {
  if (prefix && mode !== "no-prefix")
    data.write(frame(C.MSG_DATA_STDIN, new TextEncoder().encode(prefix)));
  for await (const chunk of Bun.stdin.stream()) {
    for (let offset = 0; offset < chunk.length; offset += 4096)
      data.write(frame(C.MSG_DATA_STDIN, chunk.subarray(offset, offset + 4096)));
  }
  if (mode !== "no-stdin-eof") data.write(frame(C.MSG_DATA_STDIN));
})();
for (;;) {
  const message = await data.readMessage(1 << 20).catch(() => null);
  if (!message) process.exit(255);
  if (message.header.type === C.MSG_DATA_STDOUT) process.stdout.write(message.payload);
  if (message.header.type === C.MSG_DATA_EXIT_CODE) {
    if (mode === "hang-after-exit") continue;
    process.exit(mode === "exit-0" ? 0 : decodeExitCode(message.payload));
  }
}
