// Exit statuses (§8): what a killed process reports, and which status the calling tools exit with.

import { constants } from "node:os";
import { QREXEC_EXIT_SIGNAL_BASE, QREXEC_EXIT_SUCCESS } from "./constants.ts";

export {
  QREXEC_EXIT_FATAL,
  QREXEC_EXIT_NO_STATUS,
  QREXEC_EXIT_PROBLEM,
  QREXEC_EXIT_REQUEST_REFUSED,
  QREXEC_EXIT_SERVICE_NOT_FOUND,
  QREXEC_EXIT_SIGNAL_BASE,
  QREXEC_EXIT_SUCCESS,
  QREXEC_EXIT_USAGE,
} from "./constants.ts";

/** The status of a process killed by signal `signal` (a number or a name such as "SIGTERM"). */
export function signalExitStatus(signal: number | NodeJS.Signals): number {
  const number = typeof signal === "number" ? signal : constants.signals[signal];
  if (!Number.isInteger(number) || number <= 0) throw new RangeError(`unknown signal ${signal}`);
  return QREXEC_EXIT_SIGNAL_BASE + number;
}

/** A finished child's status: its exit code, or 128+N when signal N killed it. */
export function waitStatus(result: {
  exitCode: number | null;
  signalCode: number | NodeJS.Signals | null;
}): number {
  if (result.signalCode !== null) return signalExitStatus(result.signalCode);
  if (result.exitCode === null)
    throw new RangeError("a finished process has an exit code or a signal");
  return result.exitCode;
}

/** What exit(status) leaves for the parent: the low 8 bits, so -1 becomes 255. */
export function processExitCode(status: number): number {
  return status & 0xff;
}

/**
 * The exit code of qrexec-client-vm / qrexec-client: the remote status if it is non-zero,
 * otherwise the local program's status (0 without one). `remote` null means no EXIT_CODE arrived
 * (upstream −1), which exits 255 like any status is taken modulo 256.
 */
export function clientExitCode(remote: number | null, local: number | null = null): number {
  const remoteStatus = remote ?? -1;
  if (remoteStatus !== 0) return processExitCode(remoteStatus);
  return processExitCode(local ?? QREXEC_EXIT_SUCCESS);
}
