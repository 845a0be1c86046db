import type { RoleDriver } from "./runner.ts";
import type { Case } from "./types.ts";
export const CLIENT_VM_CASES: Case<never>[] = [];
export function clientVmDriver(_command: string): RoleDriver<never> { throw new Error("todo"); }
