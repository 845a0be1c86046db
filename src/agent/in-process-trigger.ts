// A trigger connection inside the agent's own process, for the calls its client host runs: the
// trigger socket's protocol (§10: one trigger message in, the 8-byte exec_params or a close
// out, and the caller's close when its call ends), without the socket. Through the socket, each
// hosted call cost a connect, an accept and two reads, each a turn of the agent's event loop, on
// the path of every call.
import type { AgentLink } from "../client-vm/client-vm.ts";

/** The agent's side of a caller's trigger connection, socket or in-process. */
export interface TriggerPeer {
  label: string;
  readonly isClosed: boolean;
  write(data: Uint8Array): void;
  close(): void;
  onClose(listener: () => void): void;
}

export class InProcessTrigger implements TriggerPeer, AgentLink {
  label = "";
  #closed = false;
  #reply: Uint8Array | null = null;
  #reader: ((reply: Uint8Array | null) => void) | null = null;
  readonly #onClose: Array<() => void> = [];
  readonly #deliver: (trigger: Uint8Array) => void;

  /** `deliver` takes the caller's trigger message, whole. */
  constructor(deliver: (trigger: Uint8Array) => void) {
    this.#deliver = deliver;
  }

  get isClosed(): boolean {
    return this.#closed;
  }

  /** The caller's trigger (the agent's answer comes through `write`). */
  send(trigger: Uint8Array): void {
    if (!this.#closed) this.#deliver(trigger);
  }

  /** The agent's answer: the caller reads it whole. */
  write(data: Uint8Array): void {
    if (this.#closed) return;
    if (this.#reader) {
      const reader = this.#reader;
      this.#reader = null;
      reader(data);
    } else {
      this.#reply = data;
    }
  }

  /** The caller waits for the agent's answer: exec_params, or null when it closed instead. */
  read(): Promise<Uint8Array | null> {
    if (this.#reply !== null || this.#closed) {
      const reply = this.#reply;
      this.#reply = null;
      return Promise.resolve(reply);
    }
    return new Promise((resolve) => (this.#reader = resolve));
  }

  /** Either side's close: the caller's ends its call, the agent's refuses it. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    const reader = this.#reader;
    this.#reader = null;
    reader?.(this.#reply);
    for (const listener of this.#onClose.splice(0)) listener();
  }

  onClose(listener: () => void): void {
    if (this.#closed) listener();
    else this.#onClose.push(listener);
  }
}
