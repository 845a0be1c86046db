// dom0's logs under a flood of refused calls (issue 16 item 3): a VM sends triggers with 64 KB
// service names that the policy refuses, and invalid ones the daemon refuses itself. Each line
// quotes at most a bounded cut of the name, repeated refusals are rate-limited per source with a
// notice, and control characters reach the log escaped. Real qrexec-daemon and
// qrexec-policy-daemon; a raw-frame peer plays the VM's agent.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { Connection } from "../../src/io/connection.ts";
import { encodeTrigger4 } from "../../src/protocol/codec.ts";
import * as C from "../../src/protocol/constants.ts";
import { FramePeer } from "../helpers/frame-peer.ts";
import { tempDir } from "../helpers/paths.ts";
import { BIN, waitFor } from "../helpers/system.ts";

const VM = 43;
const FLOOD = 60;
const NAME_BYTES = 64_000;
const dir = tempDir("qrx-logflood-");
const policySocket = join(dir.path, "policy.sock");
const daemonLog: string[] = [];
const policyLog: string[] = [];
const children: Subprocess[] = [];

function collect(child: Subprocess, into: string[]): void {
  void (async () => {
    for await (const chunk of child.stderr as ReadableStream<Uint8Array>)
      into.push(new TextDecoder().decode(chunk));
  })();
}

function start(argv: string[], env: Record<string, string>, into: string[]): Subprocess {
  const child = Bun.spawn(argv, {
    env: { ...process.env, ...env },
    stdio: ["ignore", "ignore", "pipe"],
  });
  children.push(child);
  collect(child, into);
  return child;
}

let agent: FramePeer;

beforeAll(async () => {
  mkdirSync(join(dir.path, "run"));
  mkdirSync(join(dir.path, "policy.d"));
  writeFileSync(join(dir.path, "policy.d", "50-test.policy"), "test.Echo * @anyvm @anyvm allow\n");
  writeFileSync(join(dir.path, "domains.toml"), "[domains.testvm]\n[domains.vault]\n");
  const policyArgs = [
    "--socket",
    policySocket,
    "--policy-dir",
    join(dir.path, "policy.d"),
    "--domains",
    join(dir.path, "domains.toml"),
  ];
  start([join(BIN, "qrexec-policy-daemon"), ...policyArgs, "--no-tty"], {}, policyLog);
  await waitFor(() => existsSync(policySocket), "the policy daemon's socket");
  const listener = FramePeer.listenVchan(dir.path, VM, 0, C.VCHAN_BASE_PORT);
  const daemonArgs = [
    "--direct",
    `--socket-dir=${join(dir.path, "run")}`,
    `--policy-socket=${policySocket}`,
    "--policy-program=/bin/false",
  ];
  const env = { VCHAN_DOMAIN: "0", QRX_VCHAN: "socket", VCHAN_SOCKET_DIR: dir.path };
  start([join(BIN, "qrexec-daemon"), ...daemonArgs, String(VM), "testvm"], env, daemonLog);
  agent = await listener.accepted;
  agent.sendHello(4);
  expect(await agent.receiveHello()).toBe(4);
});

afterAll(() => {
  for (const child of children) child.kill("SIGTERM");
  dir.remove();
});

function trigger(ident: string, service: string | Uint8Array): Uint8Array {
  return encodeTrigger4({ source: "", target: "vault", ident, service });
}

const bytesOf = (lines: string[]) =>
  lines.reduce((sum, chunk) => sum + Buffer.byteLength(chunk), 0);

test("a flood of refused 64 KB triggers grows dom0's logs boundedly, with a notice", async () => {
  const before = { daemon: bytesOf(daemonLog), policy: bytesOf(policyLog) };
  const denied = `test.Denied${"x".repeat(NAME_BYTES)}`;
  // An interior NUL makes the daemon refuse before asking the policy.
  const invalid = new TextEncoder().encode(`a\0${"y".repeat(NAME_BYTES)}`);
  for (let i = 0; i < FLOOD; i++) {
    agent.send(C.MSG_TRIGGER_SERVICE4, trigger(`SOCKET${i}`, i % 2 === 0 ? denied : invalid));
    const reply = await agent.receive();
    expect(reply?.type, `trigger ${i}; daemon log:\n${daemonLog.join("").slice(-2000)}`).toBe(
      C.MSG_SERVICE_REFUSED,
    );
  }
  await waitFor(
    () => daemonLog.join("").includes("more than 20 refusals from testvm"),
    "the daemon's drop notice",
  );
  await waitFor(
    () => policyLog.join("").includes("more than 20 refusals from testvm"),
    "the policy daemon's drop notice",
  );
  const grown = {
    daemon: bytesOf(daemonLog) - before.daemon,
    policy: bytesOf(policyLog) - before.policy,
  };
  // 60 x 64 KB were sent; at most 20 cut lines of a few hundred bytes each, plus the notice.
  expect(grown.daemon).toBeLessThan(16_384);
  expect(grown.policy).toBeLessThan(16_384);
  // The name is cut, with its length (the policy daemon sees it with the empty argument "+").
  expect(daemonLog.join("")).toContain(`...(${"test.Denied".length + NAME_BYTES} bytes in all)`);
  expect(policyLog.join("")).toContain(
    `...(${"test.Denied".length + NAME_BYTES + 1} bytes in all)`,
  );
});

test("control characters from a request reach the policy daemon's log escaped", async () => {
  const client = await Connection.connect(policySocket);
  client.write(
    new TextEncoder().encode(
      "source=vault\nintended_target=testvm\nservice_and_arg=test.\x1b[2JEcho\n\n",
    ),
  );
  expect(new TextDecoder().decode(await client.readToEnd(4096))).toBe("result=deny\n");
  await waitFor(
    () => policyLog.join("").includes("test.\\x1b[2JEcho"),
    "the escaped service name in the policy daemon's log",
  );
  expect(policyLog.join("")).not.toContain("\x1b");
  client.close();
});
