// Connections opened ahead of the next call that needs them. A daemon that carries out its VM's
// call to another VM first connects to the target's daemon and waits for its HELLO (§7.2, the
// daemon speaks first) before it can send EXEC_CMDLINE: a round trip between two processes on
// every VM -> VM call. Every call from a VM also first connects to the policy daemon (§7.4),
// whose accept is a wake-up of its own before the request can go. After a call, the next one's
// connection is made (and greeted) while nothing waits for it, so that call's request goes out
// at once. At most one is kept per target; one its peer closed (it stopped or restarted) is
// dropped and the next call connects as before.
import type { Connection } from "../io/connection.ts";

export class SpareConnections {
  readonly #connect: (target: string) => Promise<Connection>;
  readonly #spares = new Map<string, Connection>();
  /** Targets whose spare is being connected. */
  readonly #connecting = new Set<string>();
  #stopped = false;

  /** `connect` makes a connection to `target` ready for a request (greeted where it must be). */
  constructor(connect: (target: string) => Promise<Connection>) {
    this.#connect = connect;
  }

  /** The spare for `target`, ready and unused, or null (the caller connects itself). */
  take(target: string): Connection | null {
    const spare = this.#spares.get(target);
    if (spare === undefined) return null;
    this.#spares.delete(target);
    // Anything the peer said (after its HELLO) is not an answer to us: not usable.
    if (!spare.isClosed && spare.buffered === 0) return spare;
    spare.close();
    return null;
  }

  /** Makes the next call's connection to `target`, unless one is there or on its way. */
  refill(target: string): void {
    if (this.#stopped || this.#spares.has(target) || this.#connecting.has(target)) return;
    this.#connecting.add(target);
    this.#connect(target).then(
      (connection) => {
        this.#connecting.delete(target);
        if (this.#stopped || this.#spares.has(target)) return connection.close();
        this.#spares.set(target, connection);
        connection.onClose(() => {
          if (this.#spares.get(target) === connection) this.#spares.delete(target);
        });
      },
      // No spare: the next call connects itself, and says what is wrong if it still is.
      () => this.#connecting.delete(target),
    );
  }

  /** Closes every spare; none is made after this. */
  stop(): void {
    this.#stopped = true;
    for (const spare of this.#spares.values()) spare.close();
    this.#spares.clear();
  }
}
