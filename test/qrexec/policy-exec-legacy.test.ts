// qrexec-policy-exec's legacy 5-argument form (DOMID SOURCE TARGET SERVICE IDENT), as daemons
// before R4.2 ran it: an allowed call is connected by the program itself through qrexec-client -c.
// Real qrexec-daemons for two VMs; raw-frame peers play both agents. testvm's daemon keeps the
// call pending (its own policy program takes 5 s), so the legacy program connects that request.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Subprocess } from "bun";
import {
  decodeExecCommand,
  decodeServiceConnect,
  encodeTrigger4,
  fieldText,
} from "../../src/protocol/codec.ts";
import * as C from "../../src/protocol/constants.ts";
import { FramePeer } from "../helpers/frame-peer.ts";
import { tempDir } from "../helpers/paths.ts";
import { BIN, waitFor } from "../helpers/system.ts";

const dir = tempDir("qrx-legacy-exec-");
const run = join(dir.path, "run");
const policyDir = join(dir.path, "policy.d");
const domains = join(dir.path, "domains.toml");
const daemons: Subprocess[] = [];
const log: string[] = [];
const agents = new Map<string, FramePeer>();

async function startDaemon(id: number, name: string): Promise<void> {
  const listener = FramePeer.listenVchan(dir.path, id, 0, C.VCHAN_BASE_PORT);
  const program = join(import.meta.dir, "..", "fixtures", "policy-exec");
  const argv = [
    join(BIN, "qrexec-daemon"),
    "--direct",
    `--socket-dir=${run}`,
    `--policy-program=${program}`,
    "--policy-socket=",
  ];
  const env = {
    VCHAN_DOMAIN: "0",
    QRX_VCHAN: "socket",
    VCHAN_SOCKET_DIR: dir.path,
    QRX_TEST_POLICY: join(dir.path, "hang"),
  };
  const daemon = Bun.spawn([...argv, String(id), name], {
    env: { ...process.env, ...env },
    stdio: ["ignore", "ignore", "pipe"],
  });
  daemons.push(daemon);
  void (async () => {
    for await (const chunk of daemon.stderr as ReadableStream<Uint8Array>)
      log.push(new TextDecoder().decode(chunk));
  })();
  const agent = await listener.accepted;
  agent.sendHello(4);
  expect(await agent.receiveHello()).toBe(4);
  agents.set(name, agent);
  await waitFor(() => existsSync(join(run, `qrexec.${name}`)), `${name}'s daemon socket`);
}

function legacyExec(...args: string[]) {
  const argv = [
    join(BIN, "qrexec-policy-exec"),
    "--path",
    policyDir,
    "--domains",
    domains,
    "--",
    ...args,
  ];
  const child = Bun.spawn(argv, {
    env: { ...process.env, QRX_SOCKET_DIR: run },
    stdout: "pipe",
    stderr: "pipe",
  });
  return Promise.all([
    child.exited,
    new Response(child.stdout).text(),
    new Response(child.stderr).text(),
  ]);
}

beforeAll(async () => {
  mkdirSync(run);
  mkdirSync(policyDir);
  writeFileSync(
    join(policyDir, "50-test.policy"),
    "test.Echo * testvm vault allow user=alice\ntest.Echo * @anyvm @anyvm deny\n",
  );
  writeFileSync(domains, "[domains.testvm]\n[domains.vault]\n");
  writeFileSync(join(dir.path, "hang"), "* * * hang\n");
  await startDaemon(42, "testvm");
  await startDaemon(43, "vault");
});

afterAll(async () => {
  for (const daemon of daemons) daemon.kill("SIGTERM");
  await Promise.all(daemons.map((daemon) => daemon.exited));
  dir.remove();
});

test("an allowed call: the target's agent gets the command, the caller's the connect", async () => {
  agents
    .get("testvm")!
    .send(
      C.MSG_TRIGGER_SERVICE4,
      encodeTrigger4({ source: "", target: "vault", ident: "SOCKET7", service: "test.Echo" }),
    );
  const [code, stdout, stderr] = await legacyExec("42", "testvm", "vault", "test.Echo", "SOCKET7");
  expect([code, stdout], `${stderr}\ndaemons:\n${log.join("")}`).toEqual([0, ""]);
  const exec = await agents.get("vault")!.receive();
  expect(exec?.type).toBe(C.MSG_EXEC_CMDLINE);
  expect(decodeExecCommand(exec!.payload, "terminate").command).toBe(
    "alice:QUBESRPC test.Echo+ testvm",
  );
  const connect = await agents.get("testvm")!.receive();
  expect(connect?.type).toBe(C.MSG_SERVICE_CONNECT);
  const params = decodeServiceConnect(connect!.payload, "terminate");
  expect(fieldText(params.ident)).toBe("SOCKET7");
  expect(params.connectDomain).toBe(43);
});

test("a denied call: exit 126, nothing printed, nothing connected", async () => {
  const [code, stdout, stderr] = await legacyExec("42", "testvm", "vault", "test.Other", "SOCKET8");
  expect([code, stdout]).toEqual([126, ""]);
  expect(stderr).toContain("deny");
});

test("neither 3 nor 5 arguments: usage, exit 1", async () => {
  const [code, , stderr] = await legacyExec("42", "testvm", "vault", "test.Echo");
  expect(code).toBe(1);
  expect(stderr).toContain("expected 3 arguments (or the legacy 5), got 4");
});
