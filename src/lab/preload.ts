// Preloaded DisposableVMs (Qubes 4.3's `preload-dispvm-max`): a DispVM template with
// `preload_dispvm = N` has N DispVMs created, started and called once ahead of time, so a
// `$dispvm` call does not wait for one to start (its agent and daemon are Bun processes: tens to
// hundreds of ms). A call takes a running one; its replacement starts once that call's DispVM is
// destroyed, off the call's path. Until it is handed out a
// preloaded DispVM is not in the policy's domain facts (Registry.systemInfo), so it cannot be
// called by name before its caller gets it; like Qubes' own, it is a copy of the template as it
// was when it was preloaded.

import type { DomainRecord } from "./registry.ts";

export interface PoolHooks {
  /** A new Halted DispVM of `template` (throws when it cannot be made). */
  create(template: DomainRecord): DomainRecord;
  start(record: DomainRecord): Promise<void>;
  /**
   * Runs a first, trivial call through it. The first call a fresh agent and daemon serve costs
   * tens to hundreds of ms more than the next (code paths Bun has not run yet); Qubes' preload
   * likewise waits until the qube has answered before it counts it as ready.
   */
  warmUp(record: DomainRecord): Promise<void>;
  /** Stops and destroys a DispVM. */
  kill(record: DomainRecord): Promise<void>;
  stopping(): boolean;
  /** Hides a DispVM from the policy while it waits in the pool (the registry's flag). */
  setPreloaded(record: DomainRecord, preloaded: boolean): void;
  log(message: string): void;
}

export class DispvmPool {
  /** Per template: running DispVMs waiting for a call, and how many are on their way. */
  readonly #ready = new Map<string, DomainRecord[]>();
  readonly #starting = new Map<string, number>();

  constructor(
    readonly sizes: ReadonlyMap<string, number>,
    readonly hooks: PoolHooks,
  ) {}

  /** Starts whatever each template is missing; returns when those have started (or failed). */
  async fill(template: DomainRecord): Promise<void> {
    const missing = (this.sizes.get(template.name) ?? 0) - this.#count(template.name);
    const pending: Array<Promise<void>> = [];
    for (let i = 0; i < missing && !this.hooks.stopping(); i++) {
      pending.push(this.#preloadOne(template));
    }
    await Promise.all(pending);
  }

  /** A running DispVM of `template`, now the caller's (visible to the policy); null if none. */
  take(template: DomainRecord): DomainRecord | null {
    const ready = this.#ready.get(template.name) ?? [];
    const record = ready.shift();
    if (!record) return null;
    this.hooks.setPreloaded(record, false);
    this.hooks.log(`${record.name} handed out (preloaded from ${template.name})`);
    return record;
  }

  /**
   * A DispVM of `template` was destroyed: its call is over, so its replacement starts now. Not
   * when it was handed out: starting two Bun processes beside the call it was taken for would
   * slow that call down on a small machine.
   */
  released(template: DomainRecord): void {
    void this.fill(template);
  }

  #count(name: string): number {
    return (this.#ready.get(name)?.length ?? 0) + (this.#starting.get(name) ?? 0);
  }

  async #preloadOne(template: DomainRecord): Promise<void> {
    this.#starting.set(template.name, (this.#starting.get(template.name) ?? 0) + 1);
    let record: DomainRecord | null = null;
    try {
      record = this.hooks.create(template);
      this.hooks.setPreloaded(record, true);
      await this.hooks.start(record);
      await this.hooks.warmUp(record);
      if (this.hooks.stopping()) return;
      const ready = this.#ready.get(template.name) ?? [];
      ready.push(record);
      this.#ready.set(template.name, ready);
    } catch (error) {
      const why = error instanceof Error ? error.message : String(error);
      this.hooks.log(`preloading a DispVM of ${template.name}: ${why}`);
      // One that was made but did not start is not kept half-made.
      if (record) await this.hooks.kill(record).catch(() => {});
    } finally {
      this.#starting.set(template.name, (this.#starting.get(template.name) ?? 1) - 1);
    }
  }
}
