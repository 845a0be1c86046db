// Which lab a command means, how it says there is none, and one call to its admin service: what
// every lab command needs first. No node:fs here (Bun loads it in ~1.3 ms), so `qrx run` can
// start its command before loading it (src/lab/run.ts); nor the admin service's client before
// the first call (~0.1 ms), which `qrx run` makes only when running.json cannot vouch for it.
import { resolve } from "../posix-path.ts";
import { defaultStateDir } from "../paths.ts";
import { LabLayout } from "./layout.ts";

export class LabError extends Error {
  override name = "LabError";
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
  }
}

export function labLayout(dir: string | undefined): LabLayout {
  return new LabLayout(resolve(dir ?? defaultStateDir()));
}

/** " --dir D" when the lab is not in the default directory, for commands printed as advice. */
export function dirOption(layout: LabLayout): string {
  return layout.dir === resolve(defaultStateDir()) ? "" : ` --dir ${layout.dir}`;
}

export function noLab(layout: LabLayout): LabError {
  return new LabError(`no lab running in ${layout.dir}: run qrx lab up${dirOption(layout)}`);
}

/** One admin call; nothing listening on its socket and the service's own errors are LabErrors. */
export async function callAdmin(
  layout: LabLayout,
  method: string,
  dest = "dom0",
  payload?: string,
): Promise<string> {
  const { qubesdCallText, QubesdError } = await import("../admin/qubesd.ts");
  try {
    return await qubesdCallText(layout.adminSocket, method, dest, { payload });
  } catch (error) {
    if (error instanceof QubesdError) throw new LabError(error.message);
    const code = (error as { code?: string }).code;
    if (code === "ENOENT" || code === "ECONNREFUSED") throw noLab(layout);
    throw error;
  }
}
