import { describe, expect, test } from "bun:test";
import { ProtocolError } from "../../src/protocol/codec.ts";
import { buildPolicyRequest, parsePolicyResponse } from "../../src/protocol/policy-response.ts";

const ALLOW =
  "result=allow\nuser=DEFAULT\ntarget=work\nautostart=True\nrequested_target=@default\n";

describe("policy request (§7.4)", () => {
  test("v3 trigger: no requested_source line, blank line at the end", () => {
    expect(
      buildPolicyRequest({
        source: "work",
        requestedSource: null,
        intendedTarget: "@default",
        serviceAndArg: "qubes.Svc+a",
      }),
    ).toBe("source=work\nintended_target=@default\nservice_and_arg=qubes.Svc+a\n\n");
  });

  test("v4 trigger: requested_source is sent even when empty", () => {
    expect(
      buildPolicyRequest({
        source: "work",
        requestedSource: "",
        intendedTarget: "t",
        serviceAndArg: "s",
      }),
    ).toBe("source=work\nrequested_source=\nintended_target=t\nservice_and_arg=s\n\n");
    expect(
      buildPolicyRequest({
        source: "a",
        requestedSource: "relay",
        intendedTarget: "t",
        serviceAndArg: "s",
      }),
    ).toContain("\nrequested_source=relay\n");
  });

  test("a value with a newline or NUL cannot be sent", () => {
    expect(() =>
      buildPolicyRequest({
        source: "a\nb",
        requestedSource: null,
        intendedTarget: "t",
        serviceAndArg: "s",
      }),
    ).toThrow(ProtocolError);
    expect(() =>
      buildPolicyRequest({
        source: "a",
        requestedSource: "\0",
        intendedTarget: "t",
        serviceAndArg: "s",
      }),
    ).toThrow(ProtocolError);
  });
});

describe("policy response (§7.4)", () => {
  test("allow with every key", () => {
    const response =
      `${ALLOW.replace("target=work", "target=@dispvm:tmpl")}target_uuid=@dispvm:uuid:1234\n` +
      `service=other+x\npolicy_source=relay\n`;
    expect(parsePolicyResponse(response)).toEqual({
      kind: "allow",
      user: "DEFAULT",
      target: "@dispvm:tmpl",
      targetUuid: "@dispvm:uuid:1234",
      autostart: true,
      requestedTarget: "@default",
      service: "other+x",
      policySource: "relay",
      unknownKeys: [],
    });
  });

  test("allow with the required keys only; the trailing newline is optional", () => {
    for (const response of [ALLOW, ALLOW.slice(0, -1)]) {
      expect(parsePolicyResponse(response)).toMatchObject({
        kind: "allow",
        target: "work",
        autostart: true,
        targetUuid: null,
        service: null,
        policySource: null,
      });
    }
    expect(parsePolicyResponse(ALLOW.replace("True", "False"))).toMatchObject({
      kind: "allow",
      autostart: false,
    });
  });

  test("deny", () => {
    expect(parsePolicyResponse("result=deny\n")).toEqual({ kind: "deny", unknownKeys: [] });
    expect(parsePolicyResponse(new TextEncoder().encode("result=deny"))).toEqual({
      kind: "deny",
      unknownKeys: [],
    });
  });

  test("unknown keys are ignored and reported", () => {
    expect(parsePolicyResponse("result=deny\ndomain_id=3\nfoo=\n")).toEqual({
      kind: "deny",
      unknownKeys: ["domain_id", "foo"],
    });
    expect(parsePolicyResponse(`${ALLOW}extra=1\n`)).toMatchObject({
      kind: "allow",
      unknownKeys: ["extra"],
    });
  });

  test("values may contain '='", () => {
    expect(parsePolicyResponse(ALLOW.replace("user=DEFAULT", "user=a=b"))).toMatchObject({
      user: "a=b",
    });
  });

  const malformed: [string, string | Uint8Array, RegExp][] = [
    ["empty", "", /without '='/],
    ["only a newline", "\n", /without '='/],
    ["no result", "user=x\n", /no result/],
    ["unknown result", "result=ask\n", /bad result 'ask'/],
    ["duplicate result", "result=deny\nresult=deny\n", /duplicate key 'result'/],
    ["duplicate user", `${ALLOW}user=root\n`, /duplicate key 'user'/],
    ["line without '='", "result=deny\ngarbage\n", /without '='/],
    ["blank line in the middle", "result=deny\n\n", /without '='/],
    ["NUL", "result=deny\0\n", /NUL/],
    ["deny with user", "result=deny\nuser=x\n", /deny with user/],
    ["deny with target", "result=deny\ntarget=x\n", /deny with target/],
    ["deny with autostart", "result=deny\nautostart=False\n", /deny with autostart/],
    [
      "deny with requested_target",
      "result=deny\nrequested_target=x\n",
      /deny with requested_target/,
    ],
    ["allow without user", ALLOW.replace("user=DEFAULT\n", ""), /allow without user/],
    ["allow without target", ALLOW.replace("target=work\n", ""), /allow without target/],
    ["allow without autostart", ALLOW.replace("autostart=True\n", ""), /allow without autostart/],
    [
      "allow without requested_target",
      ALLOW.replace("requested_target=@default\n", ""),
      /allow without requested_target/,
    ],
    ["bad autostart", ALLOW.replace("True", "true"), /bad autostart/],
    ["4096 bytes", `result=deny\nx=${"a".repeat(4096 - 15)}\n`, /4096 bytes/],
    ["key with leading space", " result=deny\n", /no result/],
  ];
  test.each(malformed)("malformed: %s", (_name, response, reason) => {
    const parsed = parsePolicyResponse(response);
    expect(parsed.kind).toBe("malformed");
    expect(parsed.kind === "malformed" && parsed.reason).toMatch(reason);
  });

  test("4095 bytes is still read", () => {
    const response = `result=deny\nx=${"a".repeat(4095 - 15)}\n`;
    expect(response.length).toBe(4095);
    expect(parsePolicyResponse(response).kind).toBe("deny");
  });
});
