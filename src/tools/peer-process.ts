// Runs src/tools/vchan-peer.ts as a separate process and reads its JSON-line events.
import type { Subprocess } from "bun";
import type { PeerTask } from "./vchan-peer.ts";
import { entryCommand } from "../install-paths.ts";

export interface PeerEvent {
  event: string;
  [key: string]: unknown;
}

export class PeerProcess {
  readonly process: Subprocess<"ignore", "pipe", "pipe">;
  readonly events: PeerEvent[] = [];
  #waiters: Array<() => void> = [];
  #ended = false;
  readonly exited: Promise<number>;

  constructor(task: PeerTask, env: Record<string, string | undefined> = process.env) {
    const { cmd, argv0 } = entryCommand("qrx-vchan-peer", [JSON.stringify(task)]);
    this.process = Bun.spawn(cmd, {
      argv0,
      stdin: "ignore",
      stdout: "pipe",
      stderr: "pipe",
      env,
    });
    this.exited = this.process.exited;
    void this.#read();
  }

  async #read(): Promise<void> {
    const decoder = new TextDecoder();
    let pending = "";
    for await (const chunk of this.process.stdout) {
      pending += decoder.decode(chunk, { stream: true });
      let newline: number;
      while ((newline = pending.indexOf("\n")) >= 0) {
        const line = pending.slice(0, newline);
        pending = pending.slice(newline + 1);
        if (line.trim()) this.events.push(JSON.parse(line) as PeerEvent);
        this.#wake();
      }
    }
    this.#ended = true;
    this.#wake();
  }

  #wake(): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const wake of waiters) wake();
  }

  /** The first event named `name` (or a final done/error event), waiting up to `timeoutMs`. */
  async waitFor(name: string, timeoutMs = 60_000): Promise<PeerEvent> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found =
        this.events.find((e) => e.event === name) ??
        this.events.find((e) => e.event === "error" || e.event === "done");
      if (found) return found;
      if (this.#ended) {
        const stderr = await new Response(this.process.stderr).text();
        throw new Error(
          `peer exited without "${name}" (code ${await this.exited}): ${stderr.slice(-2000)}`,
        );
      }
      const remaining = deadline - Date.now();
      if (remaining <= 0) throw new Error(`peer sent no "${name}" within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, remaining);
        this.#waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** The final event (done or error). */
  result(timeoutMs = 120_000): Promise<PeerEvent> {
    return this.waitFor("done", timeoutMs);
  }

  kill(signal: NodeJS.Signals | number = "SIGKILL"): void {
    this.process.kill(signal);
  }
}
