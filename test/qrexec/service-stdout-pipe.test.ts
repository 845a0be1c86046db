// QRX_SERVICE_STDOUT=pipe: the agent gives a spawned service its stdout as a pipe instead of
// upstream's socketpair (§5.5), a qrx option for throughput (docs/benchmarks.md, "Calls"). Stdin
// stays a socket, so SIGUSR1's single-socket mode (§6.6) works as before.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { QrexecSystem } from "../helpers/system.ts";
import { serviceStdoutPipe } from "../../src/services/start.ts";

const STDIO_KINDS =
  'for fd in 0 1; do if [ -p /dev/fd/$fd ]; then echo "$fd pipe"; elif [ ' +
  '-S /dev/fd/$fd ]; then echo "$fd socket"; else echo "$fd other"; fi; done';

describe.each([
  ["pipe", "0 socket\n1 pipe\n"],
  ["socket", "0 socket\n1 socket\n"],
] as const)("QRX_SERVICE_STDOUT=%s", (mode, kinds) => {
  let system: QrexecSystem;

  beforeAll(async () => {
    system = new QrexecSystem("shm");
    // The agents and daemons take it from the environment they start with.
    process.env.QRX_SERVICE_STDOUT = mode;
    try {
      await system.startVm(2, "work");
      await system.startVm(3, "vault");
    } finally {
      delete process.env.QRX_SERVICE_STDOUT;
    }
    system.service("vault", "test.Kinds", STDIO_KINDS);
    system.service("vault", "test.Echo", "exec cat");
    system.service("vault", "test.Zeros", 'head -c "$1" /dev/zero');
    system.service(
      "vault",
      "test.SingleExit",
      'kill -USR1 "$QREXEC_AGENT_PID"; echo "hello via fd0 $1" >&0',
    );
    system.policy("* work vault allow");
  });

  afterAll(async () => {
    await system.stop();
  });

  test("the service's stdin is a socket; its stdout is what was asked for", async () => {
    const result = await system.clientVm("work", ["vault", "test.Kinds"]);
    expect(result.stdout, result.stderr).toBe(kinds);
    expect(result.code).toBe(0);
  });

  test("data both ways, and 16 MiB of output arrive whole", async () => {
    const echo = await system.clientVm("work", ["vault", "test.Echo"], "there and back\n");
    expect(echo.stdout).toBe("there and back\n");
    const zeros = await system.clientVm("work", ["vault", `test.Zeros+${16 << 20}`]);
    expect(zeros.stdout.length).toBe(16 << 20);
    expect(zeros.code).toBe(0);
  });

  test("SIGUSR1: a service writes fd 0 and exits at once; the output always arrives", async () => {
    const failures: string[] = [];
    for (let i = 0; i < 20; i++) {
      const result = await system.clientVm("work", ["vault", `test.SingleExit+${i}`]);
      if (result.stdout !== `hello via fd0 ${i}\n` || result.code !== 0)
        failures.push(`${i}: exit ${result.code}, output ${JSON.stringify(result.stdout)}`);
    }
    expect(failures).toEqual([]);
  });
});

test("QRX_SERVICE_STDOUT takes socket (the default) or pipe, nothing else", () => {
  expect(serviceStdoutPipe({})).toBe(false);
  expect(serviceStdoutPipe({ QRX_SERVICE_STDOUT: "" })).toBe(false);
  expect(serviceStdoutPipe({ QRX_SERVICE_STDOUT: "socket" })).toBe(false);
  expect(serviceStdoutPipe({ QRX_SERVICE_STDOUT: "pipe" })).toBe(true);
  expect(() => serviceStdoutPipe({ QRX_SERVICE_STDOUT: "fifo" })).toThrow(
    /must be "socket" or "pipe", not "fifo"/,
  );
});
