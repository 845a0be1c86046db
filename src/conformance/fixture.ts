// What every role's fixture shares: the scratch directory, the program under test, sockets and
// listeners to close at the end, and a control-channel inbox that keeps reading in the background.

import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ProgramUnderTest, scratchDir } from "./program.ts";
import { describe, type RawMessage, type RawPeer } from "./wire.ts";
import { CaseFailure } from "./types.ts";

export class BaseFixture {
  readonly scratch: { path: string; remove: () => void };
  readonly vchanDir: string;
  program: ProgramUnderTest | null = null;
  readonly #peers: RawPeer[] = [];
  readonly #listeners: Array<() => void> = [];
  signal: AbortSignal = new AbortController().signal;

  constructor(prefix: string) {
    this.scratch = scratchDir(prefix);
    this.vchanDir = join(this.scratch.path, "vchan");
    mkdirSync(this.vchanDir);
  }

  get dir(): string {
    return this.scratch.path;
  }

  /** Registers a peer to close at teardown; returns it. */
  own<T extends RawPeer>(peer: T): T {
    this.#peers.push(peer);
    return peer;
  }

  ownListener(stop: () => void): void {
    this.#listeners.push(stop);
  }

  /** The program under test, which must have been started. */
  get prog(): ProgramUnderTest {
    if (!this.program) throw new Error("the program under test was not started");
    return this.program;
  }

  get alive(): () => boolean {
    return () => !this.signal.aborted && (this.program?.running ?? false);
  }

  /** `promise`, or a CaseFailure as soon as the program under test exits first. */
  async whileAlive<T>(promise: Promise<T>, what: string): Promise<T> {
    for (;;) {
      const result = await within(50, promise);
      if (result !== "timeout") return result as T;
      if (this.program && !this.program.running)
        throw new CaseFailure(`the program ${this.program.status()} while ${what}`);
    }
  }

  /** Executable scripts (`#!/bin/sh` + body) in `dir`; a null body writes a non-executable file. */
  writeScripts(
    dir: string,
    scripts: Record<string, string | { body: string; mode: number }>,
  ): void {
    mkdirSync(dir, { recursive: true });
    for (const [name, script] of Object.entries(scripts)) {
      const { body, mode } = typeof script === "string" ? { body: script, mode: 0o755 } : script;
      writeFileSync(join(dir, name), `#!/bin/sh\n${body}\n`, { mode });
    }
  }

  async teardown(): Promise<void> {
    for (const peer of this.#peers) {
      try {
        peer.close();
      } catch {
        // Already closed: teardown only makes sure.
      }
    }
    for (const stop of this.#listeners) {
      try {
        stop();
      } catch {
        // Already stopped: teardown only makes sure.
      }
    }
    await this.program?.stop();
    this.scratch.remove();
  }

  diagnose(): string {
    if (!this.program) return "";
    const log = this.program.log().trim().split("\n").slice(-6).join(" | ");
    return `program ${this.program.status()}${log ? `; its log ends: ${log.slice(-600)}` : ""}`;
  }
}

/** Reads a channel's messages as they come, so several waiters can pick the ones they need. */
export class Inbox {
  readonly #queue: RawMessage[] = [];
  readonly #waiters: Array<() => void> = [];
  #ended = false;
  error: string | null = null;
  readonly all: RawMessage[] = [];

  constructor(readonly peer: RawPeer) {
    void this.#pump();
  }

  async #pump(): Promise<void> {
    for (;;) {
      let message: RawMessage | null;
      try {
        message = await this.peer.receive();
      } catch (error) {
        this.error = (error as Error).message;
        message = null;
      }
      if (message === null) {
        this.#ended = true;
        this.#wake();
        return;
      }
      this.#queue.push(message);
      this.all.push(message);
      this.#wake();
    }
  }

  #wake(): void {
    for (const waiter of this.#waiters.splice(0)) waiter();
  }

  get ended(): boolean {
    return this.#ended;
  }

  /** Resolves when the channel has ended (EOF). */
  async whenEnded(): Promise<void> {
    while (!this.#ended) await new Promise<void>((resolve) => this.#waiters.push(resolve));
  }

  /**
   * The first queued message matching `match` (removed from the queue); null if the channel ends
   * first. Messages that do not match stay queued.
   */
  async take(match: (message: RawMessage) => boolean = () => true): Promise<RawMessage | null> {
    for (;;) {
      const index = this.#queue.findIndex(match);
      if (index !== -1) return this.#queue.splice(index, 1)[0]!;
      if (this.#ended) return null;
      await new Promise<void>((resolve) => this.#waiters.push(resolve));
    }
  }

  /** Like take, but waits at most `ms`; "timeout" when nothing matched in time. */
  async takeWithin(
    ms: number,
    match: (message: RawMessage) => boolean = () => true,
  ): Promise<RawMessage | null | "timeout"> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const result = await Promise.race([
      this.take(match),
      new Promise<"timeout">((resolve) => {
        timer = setTimeout(() => resolve("timeout"), ms);
      }),
    ]);
    clearTimeout(timer);
    return result;
  }

  /** Messages received and not taken. */
  pending(): RawMessage[] {
    return [...this.#queue];
  }

  /** The next message, which must be of `type`. */
  async expect(type: number, what: string): Promise<RawMessage> {
    const message = await this.take();
    if (!message)
      throw new CaseFailure(
        `the channel closed while waiting for ${what}${this.error ? ` (${this.error})` : ""}`,
      );
    if (message.type !== type)
      throw new CaseFailure(`${describe(message)} while waiting for ${what}`);
    return message;
  }
}

/** Races `promise` against `ms`; "timeout" if it did not settle. */
export async function within<T>(ms: number, promise: Promise<T>): Promise<T | "timeout"> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const result = await Promise.race([
    promise,
    new Promise<"timeout">((resolve) => (timer = setTimeout(() => resolve("timeout"), ms))),
  ]);
  clearTimeout(timer);
  return result;
}
