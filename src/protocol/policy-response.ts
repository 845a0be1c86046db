// The daemon's side of the policy socket (§7.4): the request text it writes and the key=value
// response it accepts, from the policy daemon or from the fallback policy program alike.

import { ProtocolError } from "./codec.ts";
import { POLICY_RESPONSE_BYTES_MAX } from "./constants.ts";

export interface PolicyRequest {
  /** The calling qube's name. */
  source: string;
  /** The TRIGGER4 relay field, possibly empty; null for older triggers, which omit the line. */
  requestedSource: string | null;
  intendedTarget: string;
  serviceAndArg: string;
}

function requireLineSafe(value: string, key: string): void {
  if (/[\n\0]/.test(value))
    throw new ProtocolError(`policy request ${key} contains a newline or NUL`);
}

export function buildPolicyRequest(request: PolicyRequest): string {
  const lines: [string, string][] = [["source", request.source]];
  if (request.requestedSource !== null) lines.push(["requested_source", request.requestedSource]);
  lines.push(
    ["intended_target", request.intendedTarget],
    ["service_and_arg", request.serviceAndArg],
  );
  for (const [key, value] of lines) requireLineSafe(value, key);
  return `${lines.map(([key, value]) => `${key}=${value}\n`).join("")}\n`;
}

export interface PolicyAllow {
  kind: "allow";
  /** A user name or "DEFAULT". */
  user: string;
  /** "dom0", a name, or "@dispvm:<template>". */
  target: string;
  /** "uuid:<uuid>" or "@dispvm:uuid:<uuid>"; when present it is used instead of `target`. */
  targetUuid: string | null;
  autostart: boolean;
  requestedTarget: string;
  /** A replacement "svc+arg" (RemoteVM relays). */
  service: string | null;
  /** The source name to put in the command (RemoteVM relays). */
  policySource: string | null;
  /** Keys this daemon does not know; they are ignored and should be logged. */
  unknownKeys: string[];
}

export type PolicyResponse =
  PolicyAllow | { kind: "deny"; unknownKeys: string[] } | { kind: "malformed"; reason: string };

const KNOWN_KEYS = [
  "result",
  "user",
  "target",
  "target_uuid",
  "autostart",
  "requested_target",
  "service",
  "policy_source",
] as const;
type KnownKey = (typeof KNOWN_KEYS)[number];

/** Required with allow, forbidden with deny. */
const ALLOW_ONLY_KEYS: KnownKey[] = ["user", "target", "autostart", "requested_target"];

function isKnownKey(key: string): key is KnownKey {
  return (KNOWN_KEYS as readonly string[]).includes(key);
}

function malformed(reason: string): { kind: "malformed"; reason: string } {
  return { kind: "malformed", reason };
}

export function parsePolicyResponse(response: string | Uint8Array): PolicyResponse {
  const bytes = typeof response === "string" ? new TextEncoder().encode(response) : response;
  if (bytes.length >= POLICY_RESPONSE_BYTES_MAX) {
    return malformed(`response of ${bytes.length} bytes, limit ${POLICY_RESPONSE_BYTES_MAX - 1}`);
  }
  if (bytes.includes(0)) return malformed("response contains NUL");
  let text = new TextDecoder().decode(bytes);
  if (text.endsWith("\n")) text = text.slice(0, -1);

  const values = new Map<KnownKey, string>();
  const unknownKeys: string[] = [];
  for (const line of text.split("\n")) {
    const equals = line.indexOf("=");
    if (equals === -1) return malformed(`line without '=': '${line}'`);
    const key = line.slice(0, equals);
    const value = line.slice(equals + 1);
    if (!isKnownKey(key)) {
      unknownKeys.push(key);
      continue;
    }
    if (values.has(key)) return malformed(`duplicate key '${key}'`);
    values.set(key, value);
  }

  const result = values.get("result");
  if (result === "deny") {
    const present = ALLOW_ONLY_KEYS.filter((key) => values.has(key));
    if (present.length > 0) return malformed(`deny with ${present.join(", ")}`);
    return { kind: "deny", unknownKeys };
  }
  if (result !== "allow")
    return malformed(result === undefined ? "no result" : `bad result '${result}'`);

  const missing = ALLOW_ONLY_KEYS.filter((key) => !values.has(key));
  if (missing.length > 0) return malformed(`allow without ${missing.join(", ")}`);
  const autostart = values.get("autostart");
  if (autostart !== "True" && autostart !== "False")
    return malformed(`bad autostart '${autostart}'`);
  return {
    kind: "allow",
    user: values.get("user")!,
    target: values.get("target")!,
    targetUuid: values.get("target_uuid") ?? null,
    autostart: autostart === "True",
    requestedTarget: values.get("requested_target")!,
    service: values.get("service") ?? null,
    policySource: values.get("policy_source") ?? null,
    unknownKeys,
  };
}
