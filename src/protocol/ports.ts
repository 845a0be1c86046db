// Data vchan port allocation in one daemon (§7.5). Ports are 513 + slot; each slot remembers the
// peer domain it was allocated for. For a pair of VMs X<Y both daemons allocate ports for X↔Y
// calls, and the agent reports CONNECTION_TERMINATED only by (peer, port). So the daemon with the
// lower ID takes even ports and the other odd ones; neither can then release the other's port.

import { DATA_PORT_MAX, DATA_PORT_MIN, MAX_CLIENTS } from "./constants.ts";

const FREE = -1;

/** Whether `port` is in the data port range 513..768. */
export function isDataPort(port: number): boolean {
  return Number.isInteger(port) && port >= DATA_PORT_MIN && port <= DATA_PORT_MAX;
}

export class PortAllocator {
  readonly #peers = new Array<number>(MAX_CLIENTS).fill(FREE);

  /** `ownDomain` is the ID of the VM this daemon serves. */
  constructor(readonly ownDomain: number) {}

  /**
   * A free port for a call with `peerDomain`, or null when every slot it may use is taken. dom0
   * may use any slot; a higher peer gets odd slots (even ports), a lower or equal one even slots.
   */
  allocate(peerDomain: number): number | null {
    const first = peerDomain === 0 ? 0 : peerDomain > this.ownDomain ? 1 : 0;
    const step = peerDomain === 0 ? 1 : 2;
    for (let slot = first; slot < MAX_CLIENTS; slot += step) {
      if (this.#peers[slot] === FREE) {
        this.#peers[slot] = peerDomain;
        return DATA_PORT_MIN + slot;
      }
    }
    return null;
  }

  /**
   * Frees `port` if it was allocated for `connectDomain`; false otherwise (the other daemon of a
   * pair reports ports it never allocated). A port outside 513..768 is a caller bug: the daemon
   * checks the range first and exits on a bad one.
   */
  release(connectDomain: number, port: number): boolean {
    if (!isDataPort(port))
      throw new RangeError(`port ${port} is outside ${DATA_PORT_MIN}..${DATA_PORT_MAX}`);
    const slot = port - DATA_PORT_MIN;
    if (this.#peers[slot] !== connectDomain) return false;
    this.#peers[slot] = FREE;
    return true;
  }

  /** The peer domain `port` is allocated for, or null when it is free. */
  peerOf(port: number): number | null {
    if (!isDataPort(port)) return null;
    const peer = this.#peers[port - DATA_PORT_MIN]!;
    return peer === FREE ? null : peer;
  }
}
