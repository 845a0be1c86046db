// A child run to its end, its output gathered and its time from spawn to exit taken: how the
// benchmarks, the fault runs and the demo run our programs.
import type { SpawnOptions, Subprocess } from "bun";

export interface Finished {
  code: number;
  stdout: string;
  stderr: string;
  /** From just before the spawn (or `started`) to the exit with both outputs read. */
  ms: number;
}

export interface RunOptions {
  env?: Record<string, string | undefined>;
  cwd?: string;
  /** Default: no stdin. */
  stdin?: "ignore" | Uint8Array | number;
  argv0?: string;
}

export function runToEnd(argv: string[], options: RunOptions = {}): Promise<Finished> {
  const started = performance.now();
  const child = Bun.spawn(argv, {
    argv0: options.argv0,
    env: options.env,
    cwd: options.cwd,
    stdin: options.stdin ?? "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  return gather(child, started);
}

/** The output and status of a child spawned with piped stdout and stderr. */
export async function gather(
  child: Subprocess<SpawnOptions.Writable, "pipe", "pipe">,
  started = performance.now(),
): Promise<Finished> {
  const [stdout, stderr, code] = await Promise.all([
    new Response(child.stdout).text(),
    new Response(child.stderr).text(),
    child.exited,
  ]);
  return { code, stdout, stderr, ms: performance.now() - started };
}
