// An isolated lab brought up by an unprivileged user (issue 20: "and on one where only
// unprivileged user namespaces exist"). As root, the test becomes `nobody` for every qrx
// command; run unprivileged, test/lab/isolation.test.ts already is this case.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chownSync, mkdirSync, readdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { QRX, type RunResult, TestLab } from "../helpers/lab.ts";
import { waitFor } from "../helpers/system.ts";
import { parseTrace } from "../../src/trace-report.ts";

const NOBODY = 65534;
const BUN = join(import.meta.dir, "..", "..", "node_modules", ".bin", "bun");
const PROJECT = join(import.meta.dir, "..", "..");
const EXPOSE = join(import.meta.dir, "..", "fixtures", "as-nobody-exposed.sh");
const asNobody = ["setpriv", `--reuid=${NOBODY}`, `--regid=${NOBODY}`, "--clear-groups", "--"];
const nobodyCan = (...test: string[]) =>
  Bun.spawnSync([...asNobody, "test", ...test]).exitCode === 0;
/**
 * Only root can become nobody. When nobody cannot enter the checkout itself (a clone into
 * `mktemp -d` is 0700), each command runs where the checkout is exposed by binds, as a domain
 * sees it; a checkout behind a closed parent is out of reach and the test says it skipped.
 */
const reach =
  process.getuid?.() !== 0
    ? "none"
    : nobodyCan("-x", QRX)
      ? "direct"
      : nobodyCan("-x", dirname(PROJECT))
        ? "exposed"
        : "none";
const root = reach !== "none";
if (process.getuid?.() === 0 && !root) console.warn(`skipped: nobody cannot reach ${PROJECT}`);
const lab = new TestLab();
/** Where an exposed command mounts its view of the checkout (in its own mount namespace). */
const STAGE = join(lab.root.path, "expose");
mkdirSync(STAGE);
/** The lab's timing trace, on the host: each domain's agent writes it through its init's fd. */
const TRACE = join(lab.root.path, "trace.jsonl");

/** `qrx ARGS` as nobody, in this lab. */
async function qrx(args: string[], input = ""): Promise<RunResult> {
  const argv =
    reach === "exposed"
      ? ["unshare", "--mount", "--propagation", "private", "--", EXPOSE, STAGE, PROJECT]
      : asNobody.slice(0, -1);
  argv.push("--", QRX, ...args);
  const child = Bun.spawn(argv, {
    env: lab.env({ QRX_DIR: lab.dir }),
    stdin: new TextEncoder().encode(input),
    stdout: "pipe",
    stderr: "pipe",
  });
  const [stdout, stderr, code] = await Promise.all([
    new Response(child.stdout).text(),
    new Response(child.stderr).text(),
    child.exited,
  ]);
  return { code, stdout, stderr };
}

beforeAll(async () => {
  if (!root) return;
  for (const path of [lab.root.path, lab.elsewhere]) chownSync(path, NOBODY, NOBODY);
  const up = await qrx(["lab", "up", "--isolation", "namespaces", "--trace", TRACE]);
  expect(up).toMatchObject({ code: 0 });
}, 60_000);

afterAll(async () => {
  if (root) await qrx(["lab", "down"]);
  lab.root.remove();
});

describe.skipIf(!root)("an isolated lab of an unprivileged user", () => {
  test("its domains are in user namespaces: calls work, vault's home is out of reach", async () => {
    const status = JSON.parse((await qrx(["lab", "status", "--json"])).stdout) as {
      domains: { name: string; isolation: string }[];
    };
    expect(status.domains.find((domain) => domain.name === "work")!.isolation).toBe("namespaces");
    expect(
      await qrx(["run", "work", "--", "qrexec-client-vm", "vault", "test.Add"], "11 22\n"),
    ).toMatchObject({ code: 0, stdout: "33\n" });
    expect(
      (await qrx(["run", "vault", "--", "sh", "-c", "echo vault-secret > ~/secret"])).code,
    ).toBe(0);

    const read = await qrx([
      "run",
      "work",
      "--",
      "cat",
      join(lab.dir, "domains", "vault", "home", "secret"),
    ]);
    expect(read.code).not.toBe(0);
    expect(read.stderr).toContain("No such file or directory");
    // Root of its own user namespace, yet the read-only system and project trees stay so.
    const remount = await qrx(["run", "work", "--", "mount", "-o", "remount,bind,rw", "/usr"]);
    expect(remount.code).not.toBe(0);
    expect(remount.stderr).toContain("permission denied");
    const write = await qrx(["run", "work", "--", "touch", join(import.meta.dir, "escaped")]);
    expect(write.stderr).toContain("Read-only file system");

    expect(readFileSync(join(lab.dir, "domains", "vault", "home", "secret"), "utf8")).toBe(
      "vault-secret\n",
    );
    expect(
      await qrx(["run", "work", "--", "qrexec-client-vm", "vault", "test.Add"], "20 22\n"),
    ).toMatchObject({ code: 0, stdout: "42\n" });
    // Both agents recorded their side of the calls in the host's trace file.
    const agents = parseTrace(readFileSync(TRACE, "utf8"))
      .events.filter((event) => event.prog === "qrexec-agent")
      .map((event) => `${event.dom} ${event.stage}`);
    expect(agents).toContain("1 agent-service-connect");
    expect(agents).toContain("2 exec-request");
  }, 30_000);

  test("work cannot pass on, as its own offer, a vchan socket it was handed", async () => {
    // Same uid everywhere, so the kernel lets work hard-link the socket dom0 offered it: the
    // broker is what refuses to hand it on to vault.
    const vchan = join(lab.dir, "vchan");
    const native = join(import.meta.dir, "..", "..", "src", "native.ts");
    const serve = [
      `const { Vchan } = await import(${JSON.stringify(native)});`,
      `const v = Vchan.server({ localDomain: 0, remoteDomain: ` +
        `1, port: 1702, readMin: 1024, writeMin: 1024 });`,
      "await Bun.sleep(4000); v.close();",
    ].join("\n");
    const offer = qrx(["run", "dom0", "--", BUN, "-e", serve]);
    const handed = `${vchan}/shmvchan.0.1.1702.sock`;
    const wait = `for i in $(seq 200); do [ -S ${handed} ] && break; sleep 0.05; done`;
    const relay = await qrx([
      "run",
      "work",
      "--",
      "sh",
      "-c",
      `${wait}; ln ${handed} ${vchan}/shmvchan.1.2.1703.sock`,
    ]);
    expect(relay).toMatchObject({ code: 0, stderr: "" });
    const log = join(lab.dir, "logs", "admin.log");
    const refused = "refused shmvchan.1.2.1703.sock in work's directory: not a socket of its own";
    const logged = () => readFileSync(log, "utf8").includes(refused);
    await waitFor(logged, () => `'${refused}' in ${readFileSync(log, "utf8")}`);
    expect(readdirSync(join(lab.dir, "isolation", "vchan", "2"))).not.toContain(
      "shmvchan.1.2.1703.sock",
    );
    expect((await offer).code).toBe(0);
  }, 30_000);
});
