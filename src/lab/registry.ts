// The lab's domains, as qubesd knows them: names, ids, uuids, kinds, tags, power state. The admin
// service owns the only instance; the policy reads it through internal.GetSystemInfo, or through
// the file the admin rewrites on every change (`onChange`). So every change goes through here.

import { ADMIN_VM_NAME, ADMIN_VM_UUID } from "../policy/domains.ts";
import type { LabConfig } from "./config.ts";

export type PowerState = "Halted" | "Starting" | "Running" | "Stopping";
export type DomainClass = "AdminVM" | "AppVM" | "TemplateVM" | "StandaloneVM" | "DispVM";

export interface DomainRecord {
  readonly name: string;
  readonly id: number;
  readonly uuid: string;
  readonly klass: DomainClass;
  readonly templateForDispvms: boolean;
  readonly tags: readonly string[];
  readonly defaultUser: string;
  readonly defaultDispvm: string | null;
  /** DispVMs: the template it was cloned from. */
  readonly template: string | null;
  /** Started by `lab up`. */
  readonly autostartAtUp: boolean;
  readonly state: PowerState;
  /** When it last became Running (ms since the epoch), 0 when not running. */
  readonly runningSince: number;
  /**
   * A DispVM started ahead of a `$dispvm` call and not handed to one yet: the policy does not
   * see it, so nobody can call it by name and spoil it for the caller who gets it.
   */
  readonly preloaded?: boolean;
}

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

/** The highest domain id: ports and Xen both top out well below this; we never need more. */
const DOMAIN_ID_MAX = 32_767;

export class Registry {
  readonly #byName = new Map<string, Mutable<DomainRecord>>();
  readonly #listeners: Array<() => void> = [];
  /** DispVM ids start above the configured domains' so the configured ones are stable. */
  readonly #firstDispId: number;

  constructor(config: LabConfig) {
    this.#add({
      name: ADMIN_VM_NAME,
      id: 0,
      uuid: ADMIN_VM_UUID,
      klass: "AdminVM",
      templateForDispvms: false,
      tags: [],
      defaultUser: "root",
      defaultDispvm: config.defaultDispvm,
      template: null,
      autostartAtUp: true,
      state: "Running",
      runningSince: Date.now(),
    });
    config.domains.forEach((domain, index) => {
      this.#add({
        name: domain.name,
        id: index + 1,
        uuid: crypto.randomUUID(),
        klass: domain.klass,
        templateForDispvms: domain.templateForDispvms,
        tags: domain.tags,
        defaultUser: domain.defaultUser,
        defaultDispvm: domain.defaultDispvm,
        template: null,
        autostartAtUp: domain.start,
        state: "Halted",
        runningSince: 0,
      });
    });
    this.#firstDispId = config.domains.length + 1;
  }

  #add(record: Mutable<DomainRecord>): void {
    this.#byName.set(record.name, record);
  }

  /** Calls `listener` after every change of what `systemInfo` reports. */
  onChange(listener: () => void): void {
    this.#listeners.push(listener);
  }

  #changed(): void {
    for (const listener of this.#listeners) listener();
  }

  #own(record: DomainRecord): Mutable<DomainRecord> {
    const own = this.#byName.get(record.name);
    if (own !== record) throw new Error(`${record.name} is not in the registry`);
    return own;
  }

  /** A new power state; Running also stamps `runningSince`, Halted clears it. */
  setState(record: DomainRecord, state: PowerState): void {
    const own = this.#own(record);
    own.state = state;
    if (state === "Running") own.runningSince = Date.now();
    if (state === "Halted") own.runningSince = 0;
    this.#changed();
  }

  setPreloaded(record: DomainRecord, preloaded: boolean): void {
    this.#own(record).preloaded = preloaded;
    this.#changed();
  }

  all(): DomainRecord[] {
    return [...this.#byName.values()].sort((a, b) => a.id - b.id);
  }

  /** By name, `uuid:<uuid>` or bare uuid. */
  find(ref: string): DomainRecord | undefined {
    const byName = this.#byName.get(ref);
    if (byName) return byName;
    const uuid = ref.startsWith("uuid:") ? ref.slice(5) : ref;
    return this.all().find((record) => record.uuid === uuid);
  }

  /** A new DispVM of `template`, Halted: the lowest free id, a fresh `dispNNNN` name. */
  addDisposable(template: DomainRecord): DomainRecord {
    const used = new Set(this.all().map((record) => record.id));
    let id = this.#firstDispId;
    while (used.has(id)) id++;
    if (id > DOMAIN_ID_MAX) throw new Error("no free domain id");
    let name: string;
    do name = `disp${1 + Math.floor(Math.random() * 9999)}`;
    while (this.#byName.has(name));
    const record: Mutable<DomainRecord> = {
      name,
      id,
      uuid: crypto.randomUUID(),
      klass: "DispVM",
      templateForDispvms: false,
      tags: [],
      defaultUser: template.defaultUser,
      defaultDispvm: template.defaultDispvm,
      template: template.name,
      autostartAtUp: false,
      state: "Halted",
      runningSince: 0,
    };
    this.#add(record);
    this.#changed();
    return record;
  }

  remove(record: DomainRecord): void {
    this.#byName.delete(record.name);
    this.#changed();
  }

  /** qubesd's internal.GetSystemInfo, the shape src/policy/domains-file.ts reads. */
  systemInfo(): { domains: Record<string, Record<string, unknown>> } {
    const domains: Record<string, Record<string, unknown>> = {};
    for (const record of this.all()) {
      if (record.preloaded) continue;
      domains[record.name] = {
        type: record.klass,
        tags: record.tags,
        template_for_dispvms: record.templateForDispvms,
        default_dispvm: record.defaultDispvm,
        uuid: record.uuid,
        power_state:
          record.state === "Running"
            ? "Running"
            : record.state === "Halted"
              ? "Halted"
              : "Transient",
        icon: "",
      };
    }
    return { domains };
  }

  /** admin.vm.List's reply: one "name class=X state=Y" line per domain. */
  listLines(): string {
    return this.all()
      .map((record) => `${record.name} class=${record.klass} state=${record.state}\n`)
      .join("");
  }
}
