// wait-for-session (§5.6): services configured with it start only after `qubes.WaitForSession`
// has run. One waiter at a time; requests queue behind it (up to 256, then they go ahead), and
// all of them run when it exits, whatever its status.

import { MAX_CLIENTS } from "../protocol/constants.ts";
import { findService } from "../services/lookup.ts";
import type { ServiceContext } from "../services/start.ts";

const WAIT_FOR_SESSION_SERVICE = "qubes.WaitForSession";

export class SessionGate {
  readonly #context: ServiceContext;
  readonly #queued: Array<() => void> = [];
  #waiting = false;

  constructor(context: ServiceContext) {
    this.#context = context;
  }

  whenReady(user: string, source: string, run: () => void): void {
    if (this.#queued.length >= MAX_CLIENTS) return run();
    this.#queued.push(run);
    if (!this.#waiting) this.#startWaiter(user, source);
  }

  #startWaiter(user: string, source: string): void {
    const location = findService(WAIT_FOR_SESSION_SERVICE, this.#context.servicePath);
    if (location.kind !== "executable") {
      this.#context.log(
        `${WAIT_FOR_SESSION_SERVICE} is not an executable service here; not waiting`,
      );
      return this.#release();
    }
    this.#waiting = true;
    try {
      const env: Record<string, string> = {};
      for (const [name, value] of Object.entries(this.#context.baseEnv))
        if (value !== undefined) env[name] = value;
      env.QREXEC_REMOTE_DOMAIN = source;
      const waiter = Bun.spawn([location.path], {
        stdin: new TextEncoder().encode(`${user}\n`),
        stdout: "ignore",
        stderr: "inherit",
        env,
      });
      void waiter.exited.then(() => this.#release());
    } catch (error) {
      this.#context.log(
        `cannot run ${location.path}: ${error instanceof Error ? error.message : error}`,
      );
      this.#release();
    }
  }

  #release(): void {
    this.#waiting = false;
    for (const run of this.#queued.splice(0)) run();
  }
}
