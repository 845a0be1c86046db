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

export interface PolicyEndpoints {
  /** The policy daemon's socket, or null to go straight to the program. */
  socketPath: string | null;
  /** Run as `PROGRAM -- SOURCE TARGET SERVICE`; prints key=value lines, exit 0 = may allow. */
  program: string;
  log: (message: string) => void;
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

async function askSocket(socketPath: string, request: PolicyRequest): Promise<PolicyResponse> {
  return parsePolicyResponse(
    await Connection.exchange(socketPath, buildPolicyRequest(request), {
      bytesMax: POLICY_RESPONSE_BYTES_MAX - 1,
    }),
  );
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
      const response = await askSocket(endpoints.socketPath, request);
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
