// The lab's ask rules end to end: the question on the terminal of the `qrx run` that made the call
// (through a real pty), or waiting for `qrx lab asks` / `qrx lab answer` from another terminal,
// or answered by a program, or denied; and the caller told when the answer was no.
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { QRX, TestLab } from "../helpers/lab.ts";
import { PtySession } from "../helpers/pty.ts";
import { waitFor } from "../helpers/system.ts";

const LAB = `
policy = """
test.Add   *  work  @anyvm  ask default_target=vault
test.Echo  *  work  vault   ask
*          *  @anyvm @anyvm deny
"""
[[domain]]
name = "work"
services = ["test.Add"]
[[domain]]
name = "vault"
services = ["test.Add", "test.Echo"]
[[domain]]
name = "other"
services = ["test.Add"]
`;

function answered(lab: TestLab, id: string): boolean {
  const asks = join(lab.dir, "asks");
  return existsSync(join(asks, `${id}.answer`)) || existsSync(join(asks, `${id}.done`));
}

const sessions: PtySession[] = [];

function onTerminal(lab: TestLab, domain: string, command: string): PtySession {
  const env = lab.env({ QRX_DIR: lab.dir });
  const session = new PtySession(`${QRX} run ${domain} -- ${command}`, env);
  sessions.push(session);
  return session;
}

afterEach(() => {
  for (const session of sessions.splice(0)) session.kill();
});

describe("ask = tty", () => {
  const lab = new TestLab();
  beforeAll(() => lab.up(lab.config(LAB)), 30_000);
  afterAll(() => lab.remove());

  test("the caller's terminal shows the question; Enter takes the default", async () => {
    const pty = onTerminal(lab, "work", "qrexec-client-vm @default test.Add");
    await pty.waitFor("Allow to which target? [Enter = vault]");
    expect(pty.output).toContain(
      "work wants to call test.Add (argument: none), asking for @default",
    );
    // The caller itself is no choice.
    expect(pty.output).toMatch(/1\) other\n\s+2\) vault \(default\)\n\s+n\) deny/);
    pty.type("\n");
    await waitFor(() => answered(lab, "1"), "the answer");
    pty.type("11 22\n\x04");
    expect(await pty.finish()).toBe(0);
    expect(pty.output).toContain("33\n");
  }, 30_000);

  test("answered no at the terminal: the caller is told the policy asked", async () => {
    const pty = onTerminal(lab, "work", "qrexec-client-vm vault test.Echo");
    await pty.waitFor("Allow to which target? [Enter = deny]");
    pty.type("nobody\n"); // not a choice: asked again
    await pty.waitFor("not one of the choices");
    pty.type("n\n");
    expect(await pty.finish()).toBe(126);
    expect(pty.output).toMatch(
      new RegExp(
        String.raw`the policy asked \(question \d+, rule \S+50-lab.policy:2\) ` +
          String.raw`whether work may call test.Echo, and the answer was no`,
      ),
    );
    expect(pty.output).toContain("Request refused");
  }, 30_000);

  test("without a terminal the question waits for qrx lab answer from another one", async () => {
    const child = Bun.spawn(
      ["setsid", "-w", QRX, "run", "work", "--", "qrexec-client-vm", "@default", "test.Add"],
      {
        env: lab.env({ QRX_DIR: lab.dir }),
        stdin: new TextEncoder().encode("1 2\n"),
        stdout: "pipe",
        stderr: "pipe",
      },
    );
    let stderr = "";
    const reading = (async () => {
      for await (const chunk of child.stderr) stderr += new TextDecoder().decode(chunk);
    })();
    // What a user without a terminal sees first: how to answer from another one.
    await waitFor(() => stderr.includes("waits for an answer"), "the hint on stderr", 20_000);
    expect(stderr).toMatch(
      new RegExp(
        String.raw`policy question \d+ waits for an answer: work -> test.Add; ` +
          String.raw`from another terminal: qrx lab asks`,
      ),
    );
    const listed = Bun.spawnSync([QRX, "lab", "asks", "--json", "--dir", lab.dir], {
      env: lab.env(),
    });
    const asks = JSON.parse(listed.stdout.toString()) as Array<{ id: string; question: object }>;
    expect(asks).toHaveLength(1);
    expect(asks[0]!.question).toMatchObject({
      source: "work",
      targets: ["other", "vault"],
      defaultTarget: "vault",
    });
    const id = asks[0]!.id;
    const table = await lab.qrx(["lab", "asks"]);
    expect(table.stdout).toMatch(
      new RegExp(`^${id} +work +test.Add +@default +other,vault\\* `, "m"),
    );
    const wrong = await lab.qrx(["lab", "answer", id, "ghost"]);
    const choices = "other, vault, or deny";
    expect(wrong).toMatchObject({
      code: 2,
      stderr: `qrx: 'ghost' is not a choice for question ${id}: give one of ${choices}\n`,
    });
    expect(await lab.qrx(["lab", "answer", id, "other"])).toMatchObject({
      code: 0,
      stdout: `question ${id}: other allowed\n`,
    });
    expect(await new Response(child.stdout).text()).toBe("3\n");
    expect(await child.exited).toBe(0);
    await reading;
    expect(stderr).toContain(`qrx lab answer ${id} TARGET|deny`);
    const again = await lab.qrx(["lab", "answer", id, "deny"]);
    expect(again).toMatchObject({
      code: 1,
      stderr:
        `qrx: policy question ${id} was already answered (qrx ` +
        `lab asks --dir ${lab.dir} lists those that are)\n`,
    });
  }, 30_000);
});

describe("other ask modes", () => {
  test('--ask program:CMD answers with the program; ask = "deny" denies at once', async () => {
    const lab = new TestLab();
    try {
      const program = join(lab.root.path, "answer.sh");
      writeFileSync(program, '#!/bin/sh\ncat > "$(dirname "$0")/question.json"\necho other\n', {
        mode: 0o755,
      });
      const up = await lab.qrx([
        "lab",
        "up",
        "--config",
        lab.config(LAB),
        "--ask",
        `program:${program}`,
      ]);
      expect(up.code).toBe(0);
      const call = await lab.run("work", ["qrexec-client-vm", "@default", "test.Add"], "2 3\n");
      expect(call).toMatchObject({ code: 0, stdout: "5\n" });
      const question = JSON.parse(readFileSync(join(lab.root.path, "question.json"), "utf8"));
      expect(question).toMatchObject({
        source: "work",
        service: "test.Add",
        default_target: "vault",
      });
      await lab.down();
      const bad = await lab.qrx(["lab", "up", "--config", lab.config(LAB), "--ask", "sometimes"]);
      expect(bad.code).toBe(2);
      expect(bad.stderr).toContain("--ask: ask must be tty");
      await lab.up(lab.config(`ask = "deny"\n${LAB}`));
      const denied = await lab.run("work", ["qrexec-client-vm", "@default", "test.Add"], "2 3\n");
      expect(denied).toMatchObject({ code: 126, stderr: "Request refused\n" });
    } finally {
      await lab.remove();
    }
  }, 40_000);
});

describe("the default lab", () => {
  test("its Filecopy ask offers every VM, and the file goes where the answer says", async () => {
    const lab = new TestLab();
    try {
      await lab.up();
      const file = join(lab.dir, "domains", "vault", "home", "note.txt");
      writeFileSync(file, "from vault\n");
      const copy = Bun.spawn(["setsid", "-w", QRX, "run", "vault", "--", "qvm-copy", file], {
        env: lab.env({ QRX_DIR: lab.dir }),
        stdout: "pipe",
        stderr: "pipe",
      });
      await waitFor(() => existsSync(join(lab.dir, "asks", "1.ask")), "the question", 20_000);
      const asks = JSON.parse((await lab.qrx(["lab", "asks", "--json"])).stdout);
      expect(asks[0].question.targets).toEqual(
        expect.arrayContaining(["work", "personal", "default-dvm"]),
      );
      expect(asks[0].question.targets).not.toContain("vault");
      expect((await lab.qrx(["lab", "answer", "1", "work"])).code).toBe(0);
      const code = await copy.exited;
      expect({ code, stderr: await new Response(copy.stderr).text() }).toMatchObject({ code: 0 });
      expect(
        readFileSync(
          join(lab.dir, "domains", "work", "home", "QubesIncoming", "vault", "note.txt"),
          "utf8",
        ),
      ).toBe("from vault\n");
    } finally {
      await lab.remove();
    }
  }, 40_000);
});
