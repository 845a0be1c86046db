// A hosted call (the native front end hands its fds to the agent) gets every byte of the remote
// stderr on its own fd 2. The stream used to be live before its stderr fd was set, so a service
// that wrote stderr at once could have it written to the agent's own stderr instead (seen about
// once in 100 calls on a loaded machine): hence many calls, several at a time.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { QrexecSystem } from "../helpers/system.ts";

let system: QrexecSystem;

beforeAll(async () => {
  system = new QrexecSystem("shm");
  await system.startVm(2, "work");
  await system.startVm(3, "vault");
  system.service("vault", "test.Stderr", "printf err >&2; printf out");
  system.policy("test.Stderr work vault allow");
});

afterAll(async () => {
  await system.stop();
});

test("400 hosted calls: each one's remote stderr reaches its own fd 2", async () => {
  const wrong: string[] = [];
  for (let round = 0; round < 100; round++) {
    const calls = [0, 1, 2, 3].map(() => system.clientVm("work", ["vault", "test.Stderr"]));
    for (const result of await Promise.all(calls)) {
      const seen = JSON.stringify([result.code, result.stdout, result.stderr]);
      if (seen !== JSON.stringify([0, "out", "err"])) wrong.push(seen);
    }
  }
  expect(wrong).toEqual([]);
}, 120_000);
