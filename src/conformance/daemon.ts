import type { RoleDriver } from "./runner.ts";
import type { Case } from "./types.ts";
export const DAEMON_CASES: Case<never>[] = [];
export function daemonDriver(_command: string): RoleDriver<never> { throw new Error("todo"); }
