// The lab's domains as real boundaries (issue 20): one isolated lab, driven through bin/qrx, and
// from inside `work` every way to reach `vault` that isolation must close. Each attempt must
// fail with a clear error and leave vault working; a call the policy allows still works.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { DEFAULT_LAB_FILE } from "../../src/lab/config.ts";
import { NativeError, Vchan } from "../../src/native.ts";
import { processesMentioning, TestLab } from "../helpers/lab.ts";
import { waitFor } from "../helpers/system.ts";

const NATIVE = join(import.meta.dir, "..", "..", "src", "native.ts");

/** Bun code run inside a domain: `bun -e CODE` with the project's bun. */
function bunInside(code: string): string[] {
  return [join(import.meta.dir, "..", "..", "node_modules", ".bin", "bun"), "-e", code];
}

const lab = new TestLab();
let vaultAgent = 0;

beforeAll(async () => {
  // The default lab, plus a shell in a DisposableVM for the last test.
  const base = readFileSync(DEFAULT_LAB_FILE, "utf8");
  const marker = "test.Whoami      *    work       @dispvm";
  expect(base).toContain(marker);
  await lab.up(
    lab.config(base.replace(marker, `qubes.VMShell * work @dispvm allow\n${marker}`)),
    "namespaces",
  );
  vaultAgent = (await lab.status()).domains.find((domain) => domain.name === "vault")!.agentPid!;
  const planted = await lab.run("vault", ["sh", "-c", "echo vault-secret > ~/secret"]);
  expect(planted.code).toBe(0);
}, 60_000);

afterAll(async () => {
  await lab.remove();
});

/** vault still answers, its secret is intact, and its agent was not restarted. */
async function expectVaultUntouched(): Promise<void> {
  const call = await lab.run("work", ["qrexec-client-vm", "vault", "test.Add"], "20 22\n");
  expect(call).toMatchObject({ code: 0, stdout: "42\n" });
  expect(readFileSync(join(lab.dir, "domains", "vault", "home", "secret"), "utf8")).toBe(
    "vault-secret\n",
  );
  const vault = (await lab.status()).domains.find((domain) => domain.name === "vault")!;
  expect(vault).toMatchObject({ agentPid: vaultAgent, restarts: 0, state: "Running" });
}

describe("an isolated lab", () => {
  test("status shows each domain's isolation; a domain is its own host, uid, pids", async () => {
    const status = await lab.status();
    expect(status.isolation).toBe("namespaces");
    const isolation = Object.fromEntries(
      status.domains.map((domain) => [domain.name, domain.isolation]),
    );
    expect(isolation).toMatchObject({ dom0: "host", work: "namespaces", vault: "namespaces" });
    const text = await lab.qrx(["lab", "status"]);
    expect(text.stdout).toContain("isolation namespaces");
    const work = await lab.run("work", [
      "sh",
      "-c",
      "hostname; id -u; ls /proc | grep -c '^[0-9]'",
    ]);
    const vault = await lab.run("vault", ["sh", "-c", "hostname; id -u"]);
    const [workHost, workUid, workProcesses] = work.stdout.trim().split("\n");
    const [vaultHost, vaultUid] = vault.stdout.trim().split("\n");
    expect([workHost, vaultHost]).toEqual(["work", "vault"]);
    if (process.getuid?.() === 0) expect(workUid).not.toBe(vaultUid);
    // Its init, its agent, the shell and ls (grep may still be starting): a handful, not the
    // host's.
    expect(Number(workProcesses)).toBeLessThan(10);
  });

  test("a call the policy allows works, one it denies gets 126", async () => {
    expect(
      await lab.run("work", ["qrexec-client-vm", "vault", "test.Add"], "11 22\n"),
    ).toMatchObject({ code: 0, stdout: "33\n" });
    const denied = await lab.run("vault", ["qrexec-client-vm", "work", "test.Add"], "1 2\n");
    expect(denied.code).toBe(126);
    expect(denied.stderr).toContain("Request refused");
  });

  test("work cannot read a file in vault's home", async () => {
    const read = await lab.run("work", [
      "cat",
      join(lab.dir, "domains", "vault", "home", "secret"),
    ]);
    expect(read.code).not.toBe(0);
    expect(read.stderr).toContain("No such file or directory");
    expect(read.stdout).toBe("");
    await expectVaultUntouched();
  });

  test("work can neither see nor signal vault's processes", async () => {
    const listed = await lab.run("work", ["sh", "-c", "cat /proc/[0-9]*/cmdline | tr '\\0' ' '"]);
    expect(listed.code).toBe(0);
    expect(listed.stdout).not.toContain("domains/vault");
    const killed = await lab.run("work", ["kill", "-KILL", String(vaultAgent)]);
    expect(killed.code).not.toBe(0);
    expect(killed.stderr).toMatch(/No such process/);
    await expectVaultUntouched();
  });

  test("work cannot connect to vault's agent or client-host socket", async () => {
    const agentSocket = join(lab.dir, "domains", "vault", "qrexec-agent.sock");
    for (const path of [agentSocket, `${agentSocket}.clients`]) {
      const code =
        `await Bun.connect({ unix: ${JSON.stringify(path)}, socket: { data() {} ` +
        `} }).then(() => console.log("connected"), (e) => console.log(e.code))`;
      const attempt = await lab.run("work", bunInside(code));
      expect(attempt.stdout.trim()).toBe("ENOENT");
    }
    // The front end, pointed at vault's agent, says why it cannot call.
    const call = await lab.run(
      "work",
      ["qrexec-client-vm", `--agent-socket=${agentSocket}`, "vault", "test.Add"],
      "1 2\n",
    );
    expect(call.code).not.toBe(0);
    expect(call.stderr).toContain(agentSocket);
    await expectVaultUntouched();
  });

  test("work cannot offer a vchan as vault: the host refuses, dom0 never sees it", async () => {
    const port = 1700;
    const code = [
      `const { Vchan } = await import(${JSON.stringify(NATIVE)});`,
      `const v = Vchan.server({ localDomain: 2, remoteDomain: ` +
        `0, port: ${port}, readMin: 1024, writeMin: 1024 });`,
      `await Bun.sleep(1200); v.close(); console.log("served");`,
    ].join("\n");
    const impostor = lab.run("work", bunInside(code));
    // dom0 waits for vault on that port: nothing may come.
    expect(() =>
      Vchan.client({
        localDomain: 0,
        remoteDomain: 2,
        port,
        dir: join(lab.dir, "vchan"),
        timeoutMs: 1000,
      }),
    ).toThrow(NativeError);
    expect((await impostor).stdout).toContain("served");
    const log = readFileSync(join(lab.dir, "logs", "admin.log"), "utf8");
    expect(log).toContain(
      `refused shmvchan.2.0.${port}.sock in work's directory: work is domain 1, not 2`,
    );
    await expectVaultUntouched();
  });

  test("work cannot pass on, as its own offer, a vchan socket it was handed", async () => {
    // dom0 offers work a vchan; work hard-links that socket under a name offering it to vault.
    const offer = Vchan.server({
      localDomain: 0,
      remoteDomain: 1,
      port: 1702,
      readMin: 1024,
      writeMin: 1024,
      dir: join(lab.dir, "vchan"),
    });
    try {
      const vchan = join(lab.dir, "vchan");
      const handed = `${vchan}/shmvchan.0.1.1702.sock`;
      const wait = `for i in $(seq 200); do [ -S ${handed} ] && break; sleep 0.05; done`;
      const relay = await lab.run("work", [
        "sh",
        "-c",
        `${wait}; ln ${handed} ${vchan}/shmvchan.1.2.1703.sock`,
      ]);
      if (relay.code !== 0) {
        // As root the socket is dom0's, and the kernel (fs.protected_hardlinks) refuses already.
        expect(relay.stderr).toContain("Operation not permitted");
      } else {
        const log = join(lab.dir, "logs", "admin.log");
        const refused =
          "refused shmvchan.1.2.1703.sock in work's directory: not a socket of its own";
        const logged = () => readFileSync(log, "utf8").includes(refused);
        await waitFor(logged, () => `'${refused}' in ${readFileSync(log, "utf8")}`);
      }
      expect(readdirSync(join(lab.dir, "isolation", "vchan", "2"))).not.toContain(
        "shmvchan.1.2.1703.sock",
      );
    } finally {
      offer.close();
    }
    await expectVaultUntouched();
  });

  test("work cannot connect to a vchan offered to vault, nor see others' sockets", async () => {
    const port = 1701;
    // dom0 offers vault a vchan; work claims to be vault and tries to take it.
    const offer = Vchan.server({
      localDomain: 0,
      remoteDomain: 2,
      port,
      readMin: 1024,
      writeMin: 1024,
      dir: join(lab.dir, "vchan"),
    });
    try {
      const take = (domain: string) =>
        lab.run(
          domain,
          bunInside(
            [
              `const { Vchan } = await import(${JSON.stringify(NATIVE)});`,
              `const { readdirSync } = await import("node:fs");`,
              `console.log(JSON.stringify(readdirSync(process.env.QRX_VCHAN_DIR)));`,
              `try { Vchan.client({ localDomain: 2, remoteDomain: 0, port: ` +
                `${port}, timeoutMs: 1000 }).close(); console.log("connected"); }`,
              `catch (e) { console.log("failed: " + e.message); }`,
            ].join("\n"),
          ),
        );
      const stolen = await take("work");
      const [seen, outcome] = stolen.stdout.trim().split("\n");
      expect(
        (JSON.parse(seen!) as string[]).every((name) =>
          /^shmvchan\.(1\.\d+|\d+\.1)\.\d+\.sock$/.test(name),
        ),
      ).toBe(true);
      expect(outcome).toMatch(
        /^failed: no vchan server at .*shmvchan\.0\.2\.1701\.sock after 1000 ms$/,
      );
      // The offer was real: vault itself gets it (our end accepts while we wait here).
      const rightful = take("vault");
      try {
        offer.connectWait(20_000);
      } catch {
        // vault may be gone again already (it closes at once): its output says whether it got in.
      }
      expect((await rightful).stdout).toContain("connected");
    } finally {
      offer.close();
    }
    await expectVaultUntouched();
  });

  test("work cannot reach anything over the network: its namespace has only loopback", async () => {
    const listener = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    try {
      const code =
        `await Bun.connect({ hostname: "127.0.0.1", port: ${listener.port}, socket: { ` +
        `data() {} } }).then(() => console.log("connected"), (e) => console.log(e.code))`;
      const attempt = await lab.run("work", bunInside(code));
      expect(attempt.stdout.trim()).toBe("ECONNREFUSED");
      const links = await lab.run("work", [
        "sh",
        "-c",
        "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '",
      ]);
      expect(links.stdout.trim().split("\n")).toEqual(["lo"]);
    } finally {
      listener.stop(true);
    }
    await expectVaultUntouched();
  });

  test("qvm-copy lands in vault's ~/QubesIncoming, owned by vault", async () => {
    const copy = await lab.run("work", [
      "sh",
      "-c",
      "echo report > report.txt && qvm-copy report.txt",
    ]);
    expect(copy.code).toBe(0);
    const landed = join(lab.dir, "domains", "vault", "home", "QubesIncoming", "work", "report.txt");
    expect(readFileSync(landed, "utf8")).toBe("report\n");
    const vaultUid = (await lab.run("vault", ["id", "-u"])).stdout.trim();
    if (process.getuid?.() === 0) expect(String(statSync(landed).uid)).toBe(vaultUid);
  });

  test("a DisposableVM gets its own namespaces; its files are gone after its call", async () => {
    const script = "echo scratch > ~/left-behind; echo tmp > /tmp/left-behind; hostname\n";
    const call = await lab.run("work", ["qrexec-client-vm", "$dispvm", "qubes.VMShell"], script);
    expect(call.code).toBe(0);
    const name = call.stdout.trim();
    expect(name).toMatch(/^disp\d+$/);
    const removed = () => !existsSync(join(lab.dir, "domains", name));
    await waitFor(removed, `${name}'s directory to be removed`);
    expect(readdirSync(join(lab.dir, "isolation", "vchan")).sort()).toEqual(["1", "2"]);
    expect(processesMentioning(`domains/${name}`)).toEqual([]);
    expect(existsSync(join(lab.dir, "isolation", "roots", name))).toBe(false);
  });

  test("no rendezvous socket outlives its call: the host takes back what it gave", async () => {
    for (let call = 0; call < 5; call++)
      expect(
        (await lab.run("work", ["qrexec-client-vm", "vault", "test.Add"], "1 1\n")).stdout,
      ).toBe("2\n");
    const dirs = ["vchan", "isolation/vchan/1", "isolation/vchan/2"];
    const left = () =>
      dirs.flatMap((dir) => readdirSync(join(lab.dir, dir)).map((name) => `${dir}/${name}`));
    await waitFor(
      () => left().length === 0,
      () => `no vchan sockets, not ${left()}`,
      5_000,
    );
  }, 30_000);
});
