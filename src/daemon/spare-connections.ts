// Connections to other VMs' daemons opened and greeted ahead of the next call to them. A daemon
// that carries out its VM's call to another VM first connects to the target's daemon and waits
// for its HELLO (§7.2, the daemon speaks first) before it can send EXEC_CMDLINE: a round trip
// between two processes on every VM -> VM call. After a call to a target, the next one's
// connection is made and greeted while nothing waits for it, so that call's request goes out at
// once. A daemon keeps at most one per target it has called; one the target's daemon closed (it
// stopped or restarted) is dropped and the next call connects as before.
import type { Connection } from "../io/connection.ts";
import { connectDaemon } from "./daemon-client.ts";

export class SpareConnections {
  readonly #socketDir: string;
  readonly #spares = new Map<string, Connection>();
  /** Targets whose spare is being connected. */
  readonly #connecting = new Set<string>();
  #stopped = false;

  constructor(socketDir: string) {
    this.#socketDir = socketDir;
  }

  /** The spare for `target`, greeted and unused, or null (the caller connects itself). */
  take(target: string): Connection | null {
    const spare = this.#spares.get(target);
    if (spare === undefined) return null;
    this.#spares.delete(target);
    // Anything the target's daemon said after its HELLO is not an answer to us: not usable.
    if (!spare.isClosed && spare.buffered === 0) return spare;
    spare.close();
    return null;
  }

  /** Makes the next call's connection to `target`, unless one is there or on its way. */
  refill(target: string): void {
    if (this.#stopped || this.#spares.has(target) || this.#connecting.has(target)) return;
    this.#connecting.add(target);
    connectDaemon(this.#socketDir, target).then(
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
