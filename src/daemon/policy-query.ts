// Asking dom0's policy about a call (§7.4): the policy socket when there is one, else (or when it
// fails or answers garbage) the policy program. A call is allowed only on a well-formed allow.

import { Connection } from "../io/connection.ts";
import { POLICY_RESPONSE_BYTES_MAX } from "../protocol/constants.ts";
import {
  buildPolicyRequest,
  parsePolicyResponse,
  type PolicyRequest,
  type PolicyResponse,
} from "../protocol/policy-response.ts";
import { untrusted } from "../io/log-text.ts";
import type { SpareConnections } from "./spare-connections.ts";

export interface PolicyEndpoints {
  /** The policy daemon's socket, or null to go straight to the program. */
  socketPath: string | null;
  /** Run as `PROGRAM -- SOURCE TARGET SERVICE`; prints key=value lines, exit 0 = may allow. */
  program: string;
  log: (message: string) => void;
  /** Connections to the socket made ahead of the query that uses them; none if absent. */
  spare?: SpareConnections;
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** Most bytes of an answer; one more is what `readToEnd` needs to see to refuse. */
const ANSWER_BYTES_MAX = POLICY_RESPONSE_BYTES_MAX - 1;

/** A connection to the policy socket, for one query (the daemon answers one, then closes). */
export function policyConnection(socketPath: string): Promise<Connection> {
  return Connection.connect(socketPath, { inputBytesMax: ANSWER_BYTES_MAX + 1 });
}

async function askSocket(
  socketPath: string,
  request: PolicyRequest,
  spare: SpareConnections | undefined,
): Promise<PolicyResponse> {
  const ready = spare?.take(socketPath) ?? null;
  let answer: Uint8Array | null = null;
  if (ready !== null) {
    // A spare whose daemon went away since (closed, not yet noticed) answers nothing: that
    // says nothing about this request, which is asked again on a new connection.
    answer = await exchange(ready, request).catch(() => null);
    if (answer?.length === 0) answer = null;
  }
  answer ??= await exchange(await policyConnection(socketPath), request);
  // The next query's connection: only for a socket that answers (not while the policy daemon
  // works on this answer, nor for a socket that is not there), once this call's own messages
  // are out.
  if (spare) setImmediate(() => spare.refill(socketPath));
  return parsePolicyResponse(answer);
}

async function exchange(connection: Connection, request: PolicyRequest): Promise<Uint8Array> {
  try {
    connection.write(new TextEncoder().encode(buildPolicyRequest(request)));
    return await connection.readToEnd(ANSWER_BYTES_MAX);
  } finally {
    connection.close();
  }
}

async function askProgram(program: string, request: PolicyRequest): Promise<PolicyResponse> {
  const child = Bun.spawn(
    [program, "--", request.source, request.intendedTarget, request.serviceAndArg],
    {
      stdin: "ignore",
      stdout: "pipe",
      stderr: "inherit",
    },
  );
  const [output, status] = await Promise.all([new Response(child.stdout).bytes(), child.exited]);
  if (status !== 0) return { kind: "deny", unknownKeys: [] };
  return parsePolicyResponse(output);
}

/** The decision for `request`; every failure to get a well-formed one is a deny. */
export async function queryPolicy(
  request: PolicyRequest,
  endpoints: PolicyEndpoints,
): Promise<PolicyResponse> {
  if (endpoints.socketPath !== null) {
    try {
      const response = await askSocket(endpoints.socketPath, request, endpoints.spare);
      if (response.kind !== "malformed") return response;
      const reason = untrusted(response.reason, 512);
      const fallback = `asking ${endpoints.program}`;
      endpoints.log(`policy socket ${endpoints.socketPath}: ${reason}; ${fallback}`);
    } catch (error) {
      endpoints.log(
        `policy socket ${endpoints.socketPath}: ${describe(error)}; asking ${endpoints.program}`,
      );
    }
  }
  try {
    const response = await askProgram(endpoints.program, request);
    if (response.kind === "malformed") {
      endpoints.log(`policy program ${endpoints.program}: ${untrusted(response.reason, 512)}`);
    }
    return response;
  } catch (error) {
    endpoints.log(`policy program ${endpoints.program}: ${describe(error)}`);
    return { kind: "deny", unknownKeys: [] };
  }
}
