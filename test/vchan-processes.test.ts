// Two real processes over one shm vchan: bulk transfer with checksums, peer death, many vchans,
// and a hostile peer. The peers are src/tools/vchan-peer.ts, each its own Bun process.
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { readdirSync } from "node:fs";
import { SharedPage, VchanState } from "../src/constants.ts";
import { Vchan } from "../src/native.ts";
import { PeerProcess } from "../src/tools/peer-process.ts";
import { BLOCK_BYTES, Pattern, chain, type PeerTask } from "../src/tools/vchan-peer.ts";
import { tempDir } from "./helpers/paths.ts";

const GiB = 1 << 30;
let dir: ReturnType<typeof tempDir>;
let peers: PeerProcess[] = [];

beforeEach(() => {
  dir = tempDir();
  peers = [];
});

afterEach(async () => {
  for (const peer of peers) peer.kill();
  await Promise.all(peers.map((peer) => peer.exited));
  dir.remove();
});

function start(task: Omit<PeerTask, "dir">): PeerProcess {
  const peer = new PeerProcess({ ...task, dir: dir.path });
  peers.push(peer);
  return peer;
}

/** A receiving server in domain 0 and a sending client in domain 5, in two processes. */
async function startTransfer(ringBytes: number, bytes: number, port: number) {
  const receiver = start({
    role: "server",
    mode: "recv",
    localDomain: 0,
    remoteDomain: 5,
    port,
    ringBytes,
    bytes,
  });
  await receiver.waitFor("listening");
  const sender = start({
    role: "client",
    mode: "send",
    localDomain: 5,
    remoteDomain: 0,
    port,
    ringBytes,
    bytes,
  });
  return { receiver, sender };
}

describe("vchan between two processes", () => {
  for (const ringBytes of [1024, 2048, 65536, 1 << 20]) {
    test(`1 GiB through a ${ringBytes}-byte ring arrives intact`, async () => {
      const { receiver, sender } = await startTransfer(ringBytes, GiB, 700);
      const [received, sent] = await Promise.all([receiver.result(), sender.result()]);
      expect(sent.event).toBe("done");
      expect(received.event).toBe("done");
      expect(received.bytes).toBe(GiB);
      expect(received.readRingBytes).toBe(ringBytes);
      // Both ends hash the stream in the same 64 KiB blocks: equal hashes, equal bytes.
      expect(String(received.hash)).toMatch(/^\d+$/);
      expect(received.hash).toBe(sent.hash);
      expect(received.leftoverFds).toBe(0);
      expect(received.leftoverMaps).toBe(0);
      expect(readdirSync(dir.path)).toEqual([]);
    }, 120_000);
  }

  test("the checksum is the stream's: recomputed here, it matches the receiver's", async () => {
    const bytes = (3 << 20) + 12345;
    const { receiver } = await startTransfer(2048, bytes, 710);
    const received = await receiver.result();
    const pattern = new Pattern(0x5eed);
    let expected = 0n;
    for (let index = 0, left = bytes; left > 0; index++, left -= BLOCK_BYTES) {
      expected = chain(expected, pattern.block(index).subarray(0, Math.min(BLOCK_BYTES, left)));
    }
    expect(received.hash).toBe(expected.toString());
    // One byte less is a different stream and a different hash.
    expect(chain(0n, pattern.block(0).subarray(0, 100))).not.toBe(
      chain(0n, pattern.block(0).subarray(0, 99)),
    );
  });

  test("sender SIGKILLed mid-transfer: the receiver sees DISCONNECTED within 1 s", async () => {
    const { receiver, sender } = await startTransfer(65536, 64 * GiB, 720);
    await receiver.waitFor("progress");
    const killedAt = performance.now();
    sender.kill("SIGKILL");
    const outcome = await receiver.result(5_000);
    const noticedMs = performance.now() - killedAt;
    expect(outcome.event).toBe("error");
    expect(outcome.code).toBe("EPIPE");
    expect(outcome.state).toBe(VchanState.Disconnected);
    expect(String(outcome.reason)).toContain("closed");
    expect(noticedMs).toBeLessThan(1000);
    expect(await receiver.exited).toBe(1);
    expect(outcome.leftoverFds).toBe(0);
    expect(outcome.leftoverMaps).toBe(0);
    expect(readdirSync(dir.path)).toEqual([]);
  });

  test("receiver killed while the sender waits on a full ring: EPIPE within 1 s", async () => {
    const { receiver, sender } = await startTransfer(1024, 64 * GiB, 730);
    await sender.waitFor("progress");
    const killedAt = performance.now();
    receiver.kill("SIGKILL");
    const outcome = await sender.result(5_000);
    expect(performance.now() - killedAt).toBeLessThan(1000);
    expect(outcome.event).toBe("error");
    expect(outcome.code).toBe("EPIPE");
    expect(outcome.leftoverFds).toBe(0);
    expect(readdirSync(dir.path)).toEqual([]);
  });

  test("50 vchans open at once between two processes", async () => {
    const count = 50;
    const server = start({
      role: "server",
      mode: "echo-many",
      localDomain: 0,
      remoteDomain: 6,
      port: 800,
      ringBytes: 1024,
      count,
    });
    await server.waitFor("listening");
    const client = start({
      role: "client",
      mode: "call-many",
      localDomain: 6,
      remoteDomain: 0,
      port: 800,
      ringBytes: 1024,
      count,
    });
    const [served, called] = await Promise.all([server.result(), client.result()]);
    expect(served).toMatchObject({
      event: "done",
      open: count,
      verified: count,
      leftoverFds: 0,
      leftoverMaps: 0,
    });
    expect(called).toMatchObject({
      event: "done",
      open: count,
      verified: count,
      leftoverFds: 0,
      leftoverMaps: 0,
    });
    expect(readdirSync(dir.path)).toEqual([]);
  });

  const corruptions = [
    {
      what: "a producer index past the ring size",
      offset: SharedPage.leftProd,
      value: 5000,
      victimReads: true,
    },
    {
      what: "a producer index moved backwards",
      offset: SharedPage.leftProd,
      value: 0xfffffff0,
      victimReads: true,
    },
    {
      what: "a consumer index ahead of the producer",
      offset: SharedPage.rightCons,
      value: 4096,
      victimReads: false,
    },
  ];
  for (const corruption of corruptions) {
    test(`a peer process writing ${corruption.what} is disconnected with a reason`, async () => {
      const victim = Vchan.server({
        dir: dir.path,
        localDomain: 0,
        remoteDomain: 8,
        port: 900,
        readMin: 1024,
        writeMin: 1024,
      });
      try {
        const attacker = start({
          role: "client",
          mode: "poke",
          localDomain: 8,
          remoteDomain: 0,
          port: 900,
          ringBytes: 1024,
          poke: { offset: corruption.offset, value: corruption.value },
        });
        victim.connectWait(10_000);
        await attacker.waitFor("poked");
        const buffer = new Uint8Array(4096);
        const attempt = corruption.victimReads
          ? () => victim.read(buffer)
          : () => victim.write(buffer.subarray(0, 2000));
        expect(attempt).toThrow(/peer protocol error/);
        expect(victim.isOpen()).toBe(VchanState.Disconnected);
        expect(victim.reason()).toContain("peer protocol error");
        expect(victim.dataReady()).toBe(0);
        // The attacker is cut off too: its blocking read ends with EPIPE.
        const end = await attacker.result(5_000);
        expect(end.code).toBe("EPIPE");
      } finally {
        victim.close();
      }
    });
  }
});
