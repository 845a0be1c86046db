// The policy daemon's socket protocol (§7.4, §11.3) and the reloading store, in process: a
// PolicyDaemon on a temporary socket, driven by raw unix-socket clients.
import { Connection } from "../../src/io/connection.ts";
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ProgramAsker } from "../../src/policy/ask.ts";
import { parseSocketRequest, PolicyDaemon } from "../../src/policy/daemon.ts";
import { loadSnapshot, PolicyStore } from "../../src/policy/store.ts";
import { waitFor } from "../helpers/system.ts";
import { tempDir } from "../helpers/paths.ts";

/** Sends `text`, half-closes if asked, and returns everything read until the daemon closes. */
async function exchange(path: string, text: string, halfClose = false): Promise<string> {
  return new TextDecoder().decode(await Connection.exchange(path, text, { halfClose }));
}

const request = (lines: string[]) => `${lines.map((line) => `${line}\n`).join("")}\n`;

describe("parseSocketRequest", () => {
  test.each([
    ["source=work\nintended_target=vault\nservice_and_arg=a.B+c\n", true],
    [
      "source=work\nrequested_source=\nintended_target=\nservice_and_arg=a.B\n" +
        "assume_yes_for_ask=yes\njust_evaluate=no\n",
      true,
    ],
    // old daemons' key
    ["source=work\ndomain_id=2\nintended_target=vault\nservice_and_arg=a.B\n", false],
    ["source=work\nintended_target=vault\n", false], // missing service_and_arg
    ["source=work\nintended_target vault\nservice_and_arg=a.B\n", false], // no '='
    ["source=wörk\nintended_target=vault\nservice_and_arg=a.B\n", false], // non-ASCII
  ])("%j -> ok %p", (text, ok) => {
    expect(parseSocketRequest(text).ok).toBe(ok);
  });

  test("options and values", () => {
    const parsed = parseSocketRequest(
      "source=work\nintended_target=x=y\nservice_and_arg=a.B\njust_evaluate=yes\n",
    );
    expect(parsed).toEqual({
      ok: true,
      query: { source: "work", requestedSource: null, intendedTarget: "x=y", serviceAndArg: "a.B" },
      options: { assumeYesForAsk: false, justEvaluate: true },
    });
  });
});

describe("PolicyDaemon on a socket", () => {
  const dir = tempDir("qrx-psock-");
  const policyDir = join(dir.path, "policy.d");
  const domainsFile = join(dir.path, "domains.json");
  const socketPath = join(dir.path, "policy.sock");
  const log: string[] = [];
  let store: PolicyStore;
  let daemon: PolicyDaemon;

  beforeAll(() => {
    mkdirSync(policyDir);
    writeFileSync(
      domainsFile,
      JSON.stringify({
        domains: {
          work: { power_state: "Running" },
          vault: { power_state: "Running", uuid: "44444444-4444-4444-4444-444444444444" },
          personal: {},
        },
      }),
    );
    writeFileSync(
      join(policyDir, "50-test.policy"),
      "test.Echo * work vault allow\ntest.Ask * work @anyvm ask default_target=vault\n" +
        "* * @anyvm @anyvm deny\n",
    );
    store = new PolicyStore(
      { dirs: [policyDir], legacyDir: join(dir.path, "legacy"), domainsFile },
      { log: (line) => log.push(line), debounceMs: 20 },
    );
    store.watch();
    daemon = new PolicyDaemon({
      socketPath,
      store,
      asker: new ProgramAsker("cat >/dev/null; echo personal"),
      log: (line) => log.push(line),
    });
    daemon.start();
  });

  afterAll(() => {
    daemon.stop();
    store.close();
    dir.remove();
  });

  test("allow: upstream's response lines, with target_uuid", async () => {
    const answer = await exchange(
      socketPath,
      request(["source=work", "intended_target=vault", "service_and_arg=test.Echo"]),
    );
    expect(answer).toBe(
      "user=DEFAULT\nresult=allow\ntarget=vault\n" +
        "target_uuid=uuid:44444444-4444-4444-4444-444444444444\nautostart=True\n" +
        "requested_target=vault\n",
    );
  });

  test("deny", async () => {
    expect(
      await exchange(
        socketPath,
        request(["source=work", "intended_target=vault", "service_and_arg=test.Other"]),
      ),
    ).toBe("result=deny\n");
  });

  test("an unknown key drops the connection with no answer", async () => {
    const before = daemon.served;
    expect(
      await exchange(
        socketPath,
        request([
          "source=work",
          "domain_id=2",
          "intended_target=vault",
          "service_and_arg=test.Echo",
        ]),
      ),
    ).toBe("");
    expect(daemon.served).toBe(before);
    expect(log.join("\n")).toContain(
      "policy request dropped without an answer: unknown key 'domain_id'",
    );
  });

  test("a missing required key: no answer", async () => {
    expect(await exchange(socketPath, request(["source=work", "service_and_arg=test.Echo"]))).toBe(
      "",
    );
  });

  test("ask goes to the asker; just_evaluate never asks; assume_yes_for_ask: intent", async () => {
    const asked = await exchange(
      socketPath,
      request(["source=work", "intended_target=vault", "service_and_arg=test.Ask"]),
    );
    expect(asked).toContain("target=personal\n");
    expect(
      await exchange(
        socketPath,
        request([
          "source=work",
          "intended_target=vault",
          "service_and_arg=test.Ask",
          "just_evaluate=yes",
        ]),
      ),
    ).toBe("result=deny\n");
    const assumed = await exchange(
      socketPath,
      request([
        "source=work",
        "intended_target=vault",
        "service_and_arg=test.Ask",
        "assume_yes_for_ask=yes",
      ]),
    );
    expect(assumed).toContain("target=vault\n");
    const both = await exchange(
      socketPath,
      request([
        "source=work",
        "intended_target=vault",
        "service_and_arg=test.Ask",
        "assume_yes_for_ask=yes",
        "just_evaluate=yes",
      ]),
    );
    expect(both).toBe("result=allow\n");
  });

  test("a request ended by EOF instead of an empty line is answered", async () => {
    expect(
      await exchange(
        socketPath,
        "source=work\nintended_target=vault\nservice_and_arg=test.Echo\n",
        true,
      ),
    ).toContain("result=allow");
  }, 10_000);

  test("many connections at once", async () => {
    const answers = await Promise.all(
      Array.from({ length: 50 }, () =>
        exchange(
          socketPath,
          request(["source=work", "intended_target=vault", "service_and_arg=test.Echo"]),
        ),
      ),
    );
    for (const answer of answers) expect(answer).toContain("result=allow");
  });

  test("reload: a new file is used; a broken one, or domains file, denies and logs", async () => {
    const ask = () =>
      exchange(
        socketPath,
        request(["source=work", "intended_target=vault", "service_and_arg=test.Echo"]),
      );
    const reloads = store.reloads;
    writeFileSync(join(policyDir, "10-first.policy"), "test.Echo * work vault deny\n");
    await waitFor(
      () => store.reloads > reloads && store.current.policy.rules.length === 4,
      "the reload",
    );
    expect(await ask()).toBe("result=deny\n");

    writeFileSync(join(policyDir, "10-first.policy"), "test.Echo * work vault allow bogus=1\n");
    await waitFor(() => store.current.errors.length > 0, "the broken reload");
    expect(log.join("\n")).toContain(`policy error: ${join(policyDir, "10-first.policy")}:1:`);
    expect(await ask()).toBe("result=deny\n");

    writeFileSync(join(policyDir, "10-first.policy"), "\n");
    await waitFor(() => store.current.errors.length === 0, "the fixed reload");
    expect(await ask()).toContain("result=allow");

    writeFileSync(domainsFile, "{ not json");
    await waitFor(() => store.current.errors.length > 0, "the domains reload");
    expect(store.current.errors[0]!.file).toBe(domainsFile);
    expect(await ask()).toBe("result=deny\n");
  });
});

test("loadSnapshot of a missing directory denies everything", () => {
  const snapshot = loadSnapshot({ dirs: ["/nonexistent/policy.d"], domainsFile: null });
  expect(snapshot.errors.length).toBe(1);
  expect(
    snapshot.policy.evaluate(
      { source: "dom0", intendedTarget: "dom0", serviceAndArg: "a.B" },
      snapshot.facts,
    ).kind,
  ).toBe("deny");
});
