// The in-process trigger connection (src/agent/in-process-trigger.ts): the trigger socket's
// protocol between a hosted call and its agent, without the socket.
import { describe, expect, test } from "bun:test";
import { InProcessTrigger } from "../../src/agent/in-process-trigger.ts";

const PARAMS = new Uint8Array([2, 0, 0, 0, 1, 2, 0, 0]);

function link(): { trigger: InProcessTrigger; delivered: Uint8Array[]; closes: () => number } {
  const delivered: Uint8Array[] = [];
  const trigger = new InProcessTrigger((message) => delivered.push(message));
  let closes = 0;
  trigger.onClose(() => closes++);
  return { trigger, delivered, closes: () => closes };
}

describe("InProcessTrigger", () => {
  test("the trigger reaches the agent; its answer reaches a read before or after it", async () => {
    const early = link();
    early.trigger.send(new Uint8Array([1, 2, 3]));
    expect(early.delivered).toEqual([new Uint8Array([1, 2, 3])]);
    const waiting = early.trigger.read();
    early.trigger.write(PARAMS);
    expect(await waiting).toEqual(PARAMS);

    const late = link();
    late.trigger.write(PARAMS);
    expect(await late.trigger.read()).toEqual(PARAMS);
    expect(late.closes()).toBe(0);
  });

  test("the agent closing refuses the call: a waiting read gets null, listeners once", async () => {
    const { trigger, closes } = link();
    const waiting = trigger.read();
    trigger.close();
    trigger.close();
    expect(await waiting).toBeNull();
    expect(await trigger.read()).toBeNull();
    expect(trigger.isClosed).toBe(true);
    expect(closes()).toBe(1);
  });

  test("after the caller's close nothing goes either way, and a late listener runs at once", () => {
    const { trigger, delivered, closes } = link();
    trigger.close();
    trigger.send(new Uint8Array([9]));
    trigger.write(PARAMS);
    expect(delivered).toEqual([]);
    let late = false;
    trigger.onClose(() => (late = true));
    expect(late).toBe(true);
    expect(closes()).toBe(1);
  });
});
