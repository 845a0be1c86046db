// What policy evaluation needs to know about domains (upstream gets it from qubesd's
// internal.GetSystemInfo, §11.1). The engine only reads it through `DomainFacts`, so the lab can
// answer from its live state and tests from a table.

export const ADMIN_VM_NAME = "dom0";
export const ADMIN_VM_UUID = "00000000-0000-0000-0000-000000000000";

export type DomainType =
  "AdminVM" | "AppVM" | "TemplateVM" | "DispVM" | "StandaloneVM" | "RemoteVM";

export interface Domain {
  readonly name: string;
  readonly type: DomainType;
  readonly tags: ReadonlySet<string>;
  /** The DisposableVM template `@dispvm` means for calls from this domain, or null if none. */
  readonly defaultDispvm: string | null;
  /** Whether `@dispvm:<this domain>` may be started. */
  readonly templateForDispvms: boolean;
  /** Power state; `autostart=no` refuses targets that are not running. */
  readonly running: boolean;
  /**
   * Without the "uuid:" prefix; null when the facts have none (the response then omits
   * target_uuid).
   */
  readonly uuid: string | null;
  /** Internal domains are never offered as ask choices. */
  readonly internal: boolean;
  /** RemoteVM only: the local domain that relays calls to and from it. */
  readonly relayvm: string | null;
  /** RemoteVM only: the service the relay runs to reach it. */
  readonly transportRpc: string | null;
}

export interface DomainFacts {
  /** The domain called `name`, or undefined if there is none. */
  get(name: string): Domain | undefined;
  /** The domain whose uuid (without "uuid:") is `uuid`. */
  getByUuid(uuid: string): Domain | undefined;
  /** Every domain, dom0 included. Only ask's target expansion iterates this. */
  all(): Iterable<Domain>;
}

/** A table row: only the name is required; the rest default to an ordinary halted AppVM. */
export interface DomainSpec {
  name: string;
  type?: DomainType;
  tags?: Iterable<string>;
  defaultDispvm?: string | null;
  templateForDispvms?: boolean;
  running?: boolean;
  uuid?: string | null;
  internal?: boolean;
  relayvm?: string | null;
  transportRpc?: string | null;
}

function domainFrom(spec: DomainSpec): Domain {
  return Object.freeze({
    name: spec.name,
    type: spec.type ?? "AppVM",
    tags: new Set(spec.tags ?? []),
    defaultDispvm: spec.defaultDispvm ?? null,
    templateForDispvms: spec.templateForDispvms ?? false,
    running: spec.running ?? false,
    uuid: spec.uuid ?? null,
    internal: spec.internal ?? false,
    relayvm: spec.relayvm ?? null,
    transportRpc: spec.transportRpc ?? null,
  });
}

/**
 * Facts from a fixed table. dom0 is added (AdminVM, running) when the table has none: there always
 * is one.
 */
export class TableDomainFacts implements DomainFacts {
  readonly #byName = new Map<string, Domain>();
  readonly #byUuid = new Map<string, Domain>();

  constructor(specs: Iterable<DomainSpec>) {
    for (const spec of specs) {
      if (this.#byName.has(spec.name)) throw new Error(`domain '${spec.name}' listed twice`);
      this.#add(domainFrom(spec));
    }
    if (!this.#byName.has(ADMIN_VM_NAME)) {
      this.#add(
        domainFrom({ name: ADMIN_VM_NAME, type: "AdminVM", running: true, uuid: ADMIN_VM_UUID }),
      );
    }
  }

  #add(domain: Domain): void {
    this.#byName.set(domain.name, domain);
    if (domain.uuid !== null) this.#byUuid.set(domain.uuid, domain);
  }

  get(name: string): Domain | undefined {
    return this.#byName.get(name);
  }

  getByUuid(uuid: string): Domain | undefined {
    return this.#byUuid.get(uuid);
  }

  all(): Iterable<Domain> {
    return this.#byName.values();
  }
}
