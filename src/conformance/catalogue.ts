// The whole catalogue (every role's cases), the profiles with their documented deviations, and the
// entry point the CLI and the tests call.

import { AGENT_CASES, agentDriver } from "./agent.ts";
import { CLIENT_VM_CASES, clientVmDriver } from "./client-vm.ts";
import { DAEMON_CASES, daemonDriver } from "./daemon.ts";
import { runCases, type RoleDriver, type RunOptions } from "./runner.ts";
import type { Case, Profile, Role, Row } from "./types.ts";

export const CATALOGUE: Record<Role, Case<never>[]> = {
  agent: AGENT_CASES as Case<never>[],
  daemon: DAEMON_CASES as Case<never>[],
  "client-vm": CLIENT_VM_CASES as Case<never>[],
};

/** Failures that are known behaviour of a peer, reported as "deviation" (spec §14). */
export const PROFILES: Record<string, Profile> = {
  strict: { name: "strict", description: "every difference is a failure", deviations: [] },
  mirage: {
    name: "mirage",
    description:
      "mirage-qubes 2.0 (spec §14): HELLO 3 only, never a stderr EOF, and its two wire bugs",
    deviations: [
      {
        role: "agent",
        case: "handshake-v4",
        note: "sends HELLO 3 only (§14 Version)",
        when: /HELLO carries version 3$/,
      },
      {
        role: "agent",
        case: "*",
        note: "never sends stderr EOF (§14 Incoming calls)",
        when: / — no STDERR EOF$/,
      },
      {
        role: "agent",
        case: "*",
        note:
          "every chunk header carries the total remaining " +
          "length (§14 bug 1, QRX_MIRAGE_BUGS=chunk-length)",
        when: / — STDOUT header announces \d+ bytes, over the chunk limit/,
      },
      {
        role: "agent",
        case: "*",
        note:
          "TRIGGER3 carries the request id in the service-name " +
          "field (§14 bug 2, QRX_MIRAGE_BUGS=trigger3-ident)",
        when: /service "MIRAGE\d*"/,
      },
    ],
  },
};

export function driverFor(role: Role, command: string): RoleDriver<unknown> {
  switch (role) {
    case "agent":
      return agentDriver(command) as RoleDriver<unknown>;
    case "daemon":
      return daemonDriver(command) as RoleDriver<unknown>;
    case "client-vm":
      return clientVmDriver(command) as RoleDriver<unknown>;
  }
}

export interface ConformanceOptions extends RunOptions {
  role: Role;
  command: string;
}

/** Runs the chosen cases of `role` against `command`; one row per case. */
export function runConformance(options: ConformanceOptions): Promise<Row[]> {
  return runCases(driverFor(options.role, options.command), options);
}
