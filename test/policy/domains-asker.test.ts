// The domains file (TOML and JSON) and the askers: ask program protocol, no asker, and
// answerQuery's log lines naming the deciding rule.
import { describe, expect, test } from "bun:test";
import { answerQuery } from "../../src/policy/answer.ts";
import {
  chooseAsker,
  NoAsker,
  parseAnswer,
  ProgramAsker,
  type AskQuestion,
} from "../../src/policy/ask.ts";
import { DomainsFileError, parseDomains } from "../../src/policy/domains-file.ts";
import { TableDomainFacts } from "../../src/policy/domains.ts";
import { policyOf } from "./fixtures.ts";

describe("domains file", () => {
  test("TOML, GetSystemInfo-shaped", () => {
    const specs = parseDomains(
      `[domains.work]
tags = ["trusted", "x"]
default_dispvm = "dvm"
uuid = "uuid:11111111-1111-1111-1111-111111111111"
power_state = "Running"
[domains.dvm]
template_for_dispvms = true
[domains.remote]
type = "RemoteVM"
relayvm = "work"
transport_rpc = "qubesair.SSHProxy"
`,
      "d.toml",
    );
    const facts = new TableDomainFacts(specs);
    const work = facts.get("work")!;
    expect([...work.tags]).toEqual(["trusted", "x"]);
    expect(work).toMatchObject({
      type: "AppVM",
      defaultDispvm: "dvm",
      running: true,
      uuid: "11111111-1111-1111-1111-111111111111",
      templateForDispvms: false,
    });
    expect(facts.get("dvm")).toMatchObject({ templateForDispvms: true, running: false });
    expect(facts.get("remote")).toMatchObject({
      type: "RemoteVM",
      relayvm: "work",
      transportRpc: "qubesair.SSHProxy",
    });
    expect(facts.get("dom0")?.type).toBe("AdminVM");
    expect(facts.getByUuid("11111111-1111-1111-1111-111111111111")?.name).toBe("work");
  });

  test("JSON by extension", () => {
    const specs = parseDomains(
      JSON.stringify({ domains: { vault: { running: true, internal: true } } }),
      "d.json",
    );
    expect(specs[0]).toMatchObject({ name: "vault", running: true, internal: true });
  });

  test.each([
    ['[domains.work]\ntype = "Bogus"\n', "type must be one of"],
    ['[domains.work]\ncolour = "red"\n', "unknown key 'colour'"],
    ['[domains.work]\ntags = "trusted"\n', "tags must be a list"],
    ['[domains.work]\nuuid = "nope"\n', "is not a lowercase UUID"],
    ['[domains."a b"]\n', "not a valid domain name"],
    ["[other]\n", "expected a 'domains' table"],
    ["[domains.work\n", "cannot parse"],
  ])("rejects %j", (text, message) => {
    let error: unknown;
    try {
      parseDomains(text, "d.toml");
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(DomainsFileError);
    expect((error as Error).message).toStartWith("d.toml: ");
    expect((error as Error).message).toContain(message);
  });
});

const QUESTION: AskQuestion = {
  source: "work",
  service: "test.Ask",
  argument: "+",
  targets: ["personal", "vault"],
  defaultTarget: "vault",
  intendedTarget: "personal",
  rule: "/p/50-test.policy:3",
};

describe("askers", () => {
  test.each([
    ["vault\n", "vault"],
    ["allow:vault\n", "vault"],
    ["deny\n", null],
    ["", null],
    ["  personal  \nignored\n", "personal"],
  ])("answer %j -> %p", (output, target) => {
    expect(parseAnswer(output)).toBe(target);
  });

  test("ask program: JSON on stdin and QRX_ASK_* variables", async () => {
    const asker = new ProgramAsker(
      `read -r json; printf '%s\\n' "$json" >&2; [ "$QRX_ASK_TARGETS" = "personal vault" ] ` +
        `&& [ "$QRX_ASK_DEFAULT_TARGET" = vault ] && [ "$QRX_ASK_RULE" ` +
        `= /p/50-test.policy:3 ] && echo "$json" | grep -q ` +
        `'"default_target":"vault"' && echo "$QRX_ASK_DEFAULT_TARGET"`,
    );
    expect(await asker.ask(QUESTION)).toEqual({
      target: "vault",
      reason: `${asker.description} chose vault`,
    });
  });

  test("ask program: failure, silence and a timeout deny", async () => {
    expect((await new ProgramAsker("echo vault; exit 3").ask(QUESTION)).target).toBeNull();
    expect((await new ProgramAsker("true").ask(QUESTION)).target).toBeNull();
    const slow = await new ProgramAsker("sleep 5; echo vault", 100).ask(QUESTION);
    expect(slow.target).toBeNull();
    expect(slow.reason).toContain("no answer within 100 ms");
  });

  test("with no way to ask: deny, and say why", async () => {
    const asker = chooseAsker({ terminal: false });
    expect(asker).toBeInstanceOf(NoAsker);
    expect((await asker.ask(QUESTION)).reason).toContain("nobody to ask");
    expect(chooseAsker({ askProgram: "true", terminal: false })).toBeInstanceOf(ProgramAsker);
  });

  test("answerQuery logs every decision and its rule; an answer not offered denies", async () => {
    const { policy } = policyOf(
      "test.Ask * work @anyvm ask default_target=vault\ntest.Echo * work vault allow\n",
    );
    const facts = new TableDomainFacts([
      { name: "work", running: true },
      { name: "vault", running: true },
      { name: "personal" },
    ]);
    const lines: string[] = [];
    const log = (line: string) => lines.push(line);
    const query = { source: "work", intendedTarget: "vault", serviceAndArg: "test.Echo" };
    const allowed = await answerQuery(
      query,
      {},
      { policy, facts, asker: new NoAsker("test"), log },
    );
    expect(allowed.decision.kind).toBe("allow");
    expect(lines.at(-1)).toBe(
      "work -> vault test.Echo+: allow to vault by /policy/50-test.policy:2",
    );

    const ask = { source: "work", intendedTarget: "personal", serviceAndArg: "test.Ask" };
    const denied = await answerQuery(
      ask,
      {},
      { policy, facts, asker: new NoAsker("no asker in this test"), log },
    );
    expect(denied.text).toBe("result=deny");
    expect(lines.at(-1)).toContain(
      "ask answered: work -> personal test.Ask+: deny (nobody to " +
        "ask (no asker in this test)) by /policy/50-test.policy:1",
    );

    const outside = await answerQuery(
      ask,
      {},
      { policy, facts, asker: new ProgramAsker("echo dom0"), log },
    );
    expect(outside.decision.kind).toBe("deny");
    expect(lines.at(-1)).toContain("answer 'dom0' is not one of the choices");

    const chosen = await answerQuery(
      ask,
      {},
      { policy, facts, asker: new ProgramAsker("echo personal"), log },
    );
    expect(chosen.text).toContain("target=personal");
  });
});
