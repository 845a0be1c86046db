import { describe, expect, test } from "bun:test";
import { isDataPort, PortAllocator } from "../../src/protocol/ports.ts";

describe("port allocation (§7.5)", () => {
  test("test_client_exec_allocates_next_port: daemon 42, peer 43 → 514, then peer 44 → 516", () => {
    const ports = new PortAllocator(42);
    expect(ports.allocate(43)).toBe(514);
    expect(ports.allocate(44)).toBe(516);
  });

  test("a lower peer gets odd ports", () => {
    const ports = new PortAllocator(42);
    expect([ports.allocate(41), ports.allocate(1), ports.allocate(41)]).toEqual([513, 515, 517]);
  });

  test("dom0 takes any free slot, lowest first", () => {
    const ports = new PortAllocator(42);
    expect(ports.allocate(43)).toBe(514);
    expect([ports.allocate(0), ports.allocate(0), ports.allocate(0)]).toEqual([513, 515, 516]);
  });

  test("the two daemons of a pair never hand out the same port", () => {
    const lower = new PortAllocator(5);
    const upper = new PortAllocator(9);
    const fromLower = Array.from({ length: 128 }, () => lower.allocate(9));
    const fromUpper = Array.from({ length: 128 }, () => upper.allocate(5));
    expect(fromLower.every((port) => port !== null && port % 2 === 0)).toBe(true);
    expect(fromUpper.every((port) => port !== null && port % 2 === 1)).toBe(true);
    expect(new Set([...fromLower, ...fromUpper]).size).toBe(256);
  });

  test("full: 128 slots per parity, 256 for dom0", () => {
    const ports = new PortAllocator(10);
    for (let i = 0; i < 128; i++) expect(ports.allocate(11)).not.toBeNull();
    expect(ports.allocate(12)).toBeNull();
    expect(ports.allocate(3)).toBe(513);
    const dom0 = new PortAllocator(10);
    const all = Array.from({ length: 256 }, () => dom0.allocate(0));
    expect(all[0]).toBe(513);
    expect(all[255]).toBe(768);
    expect(dom0.allocate(0)).toBeNull();
  });

  test("release only for the domain the port was allocated for", () => {
    const ports = new PortAllocator(42);
    const port = ports.allocate(43)!;
    expect(ports.peerOf(port)).toBe(43);
    expect(ports.release(44, port)).toBe(false);
    expect(ports.peerOf(port)).toBe(43);
    expect(ports.release(43, port)).toBe(true);
    expect(ports.peerOf(port)).toBeNull();
    expect(ports.release(43, port)).toBe(false);
    expect(ports.allocate(43)).toBe(port);
  });

  test("a dom0 port is released only for domain 0", () => {
    const ports = new PortAllocator(7);
    const port = ports.allocate(0)!;
    expect(ports.release(7, port)).toBe(false);
    expect(ports.release(0, port)).toBe(true);
  });

  test("ports outside 513..768", () => {
    expect([512, 513, 768, 769, 600.5].map(isDataPort)).toEqual([false, true, true, false, false]);
    const ports = new PortAllocator(1);
    expect(() => ports.release(0, 512)).toThrow(RangeError);
    expect(() => ports.release(0, 769)).toThrow(RangeError);
    expect(ports.peerOf(9999)).toBeNull();
  });
});
