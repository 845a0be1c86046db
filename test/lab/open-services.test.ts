// The services a Qubes user reaches for, in the default lab: qubes.GetDate, qubes.OpenURL and
// qubes.OpenInVM through qvm-open-in-vm / qvm-open-in-dvm, with a configurable opener
// ($QRX_OPEN_PROGRAM) that edits what it is given.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { TestLab } from "../helpers/lab.ts";
import { waitFor } from "../helpers/system.ts";

describe("open and date services", () => {
  const lab = new TestLab();
  const home = (domain: string) => join(lab.dir, "domains", domain, "home");
  beforeAll(async () => {
    const opener = join(lab.root.path, "opener.sh");
    // An "editor" that edits files that say draft, and notes everything it was given.
    const script =
      `#!/bin/sh\necho "$QRX_DOMAIN_NAME $1" >> ${lab.root.path}/opened.log\n` +
      `[ -f "$1" ] && grep -q draft "$1" && sed -i s/draft/final/ "$1"\nexit 0\n`;
    writeFileSync(opener, script, { mode: 0o755 });
    // The ask rules for OpenInVM/OpenURL to a named VM are answered "vault".
    const up = await lab.qrx(["lab", "up", "--isolation", "none", "--ask", "program:echo vault"], {
      env: { QRX_OPEN_PROGRAM: opener },
    });
    if (up.code !== 0) throw new Error(up.stderr);
  }, 30_000);
  afterAll(() => lab.remove());
  const opened = () => readFileSync(join(lab.root.path, "opened.log"), "utf8");

  test("qvm-open-in-vm: the file opens in the target, the edited file comes back", async () => {
    const file = join(home("work"), "letter.txt");
    writeFileSync(file, "a draft\n");
    expect(await lab.run("work", ["qvm-open-in-vm", "vault", file])).toMatchObject({
      code: 0,
      stderr: "",
    });
    expect(readFileSync(file, "utf8")).toBe("a final\n");
    expect(opened()).toMatch(/^vault \S+\/domains\/vault\/home\/\.qopen\/\w+\/letter.txt$/m);
    expect(readdirSync(join(home("vault"), ".qopen"))).toEqual([]); // the copy is removed after
    // Unchanged there: nothing comes back, the file stays as it was.
    writeFileSync(file, "kept as is\n");
    expect((await lab.run("work", ["qvm-open-in-vm", "vault", file])).code).toBe(0);
    expect(readFileSync(file, "utf8")).toBe("kept as is\n");
    // --view-only: an edit there does not come back.
    writeFileSync(file, "a draft\n");
    expect((await lab.run("work", ["qvm-open-in-vm", "--view-only", "vault", file])).code).toBe(0);
    expect(readFileSync(file, "utf8")).toBe("a draft\n");
    const missing = await lab.run("work", ["qvm-open-in-vm", "vault", join(home("work"), "nope")]);
    expect(missing).toMatchObject({ code: 1, stderr: expect.stringContaining("cannot read") });
  }, 30_000);

  test("qvm-open-in-dvm: opened in a new DisposableVM, which is gone after", async () => {
    const file = join(home("work"), "form.txt");
    writeFileSync(file, "draft form\n");
    expect(await lab.run("work", ["qvm-open-in-dvm", file])).toMatchObject({ code: 0 });
    expect(readFileSync(file, "utf8")).toBe("final form\n");
    const dispvm = /^(disp\d+) .*form.txt$/m.exec(opened())?.[1];
    expect(dispvm).toBeDefined();
    await waitFor(
      () => !existsSync(join(lab.dir, "domains", dispvm!)),
      "the DisposableVM destroyed",
      20_000,
    );
  }, 30_000);

  test("qubes.OpenURL records the URL in the target; qubes.GetDate tells the time", async () => {
    expect(
      (await lab.run("work", ["qvm-open-in-vm", "vault", "https://example.com/a?b"])).code,
    ).toBe(0);
    expect(readFileSync(join(home("vault"), "opened-urls.txt"), "utf8")).toBe(
      "https://example.com/a?b\n",
    );
    expect(opened()).toContain("vault https://example.com/a?b\n");
    const bad = await lab.run(
      "work",
      ["qrexec-client-vm", "vault", "qubes.OpenURL"],
      "file:///etc/passwd\n",
    );
    expect(bad).toMatchObject({
      code: 1,
      stderr: "qubes.OpenURL: not an http, https or ftp URL\n",
    });
    const date = await lab.run("work", ["qrexec-client-vm", "vault", "qubes.GetDate"]);
    expect(date.code).toBe(0);
    expect(Math.abs(Date.parse(date.stdout.trim()) - Date.now())).toBeLessThan(60_000);
  }, 30_000);
});
