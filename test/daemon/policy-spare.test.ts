// The daemon's policy query with a connection made ahead of it (src/daemon/policy-query.ts,
// SpareConnections), against a stand-in policy socket that records every connection and answers
// each request with an allow, unless told to hang up on it.
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { Connection } from "../../src/io/connection.ts";
import { policyConnection, queryPolicy } from "../../src/daemon/policy-query.ts";
import { SpareConnections } from "../../src/daemon/spare-connections.ts";
import { tempDir } from "../helpers/paths.ts";
import { waitFor } from "../helpers/system.ts";

const ALLOW = "user=DEFAULT\nresult=allow\ntarget=vault\nautostart=True\nrequested_target=vault\n";

class StandInPolicy {
  /** Connections accepted, and the requests read, in order. */
  accepted = 0;
  readonly requests: string[] = [];
  /** The next requests get no answer: the connection is closed instead. */
  hangUps = 0;
  readonly #listener: ReturnType<typeof Connection.listen>;

  constructor(path: string) {
    this.#listener = Connection.listen(path, (connection) => void this.#serve(connection));
  }

  async #serve(connection: Connection): Promise<void> {
    this.accepted++;
    let text = "";
    while (!text.endsWith("\n\n")) {
      const chunk = await connection.read(1).catch(() => null);
      if (chunk === null) return connection.close();
      text += new TextDecoder().decode(chunk);
    }
    this.requests.push(text);
    if (this.hangUps > 0) {
      this.hangUps--;
      return connection.close();
    }
    connection.write(new TextEncoder().encode(ALLOW));
    connection.end();
  }

  stop(): void {
    this.#listener.stop(true);
  }
}

describe("the policy query's spare connection", () => {
  let dir: { path: string; remove: () => void };
  let socketPath: string;
  let policy: StandInPolicy;
  let spare: SpareConnections;
  /** Spares the daemon tried to make. */
  let connects = 0;
  const logged: string[] = [];
  const ask = () =>
    queryPolicy(
      { source: "work", requestedSource: null, intendedTarget: "vault", serviceAndArg: "test.X" },
      {
        socketPath,
        // Never run: a fallback to the program would deny (it does not exist).
        program: join("/nonexistent", "qrexec-policy-exec"),
        log: (line) => logged.push(line),
        spare,
      },
    );

  beforeEach(() => {
    dir = tempDir("qrx-policy-spare-");
    socketPath = join(dir.path, "policy.sock");
    policy = new StandInPolicy(socketPath);
    connects = 0;
    spare = new SpareConnections((path) => {
      connects++;
      return policyConnection(path);
    });
    logged.length = 0;
  });

  afterEach(() => {
    spare.stop();
    policy.stop();
    dir.remove();
  });

  test("a query leaves a connection for the next one, which sends its request on it", async () => {
    expect((await ask()).kind).toBe("allow");
    await waitFor(() => policy.accepted === 2, "the spare's connection");
    expect(policy.requests.length).toBe(1);
    expect((await ask()).kind).toBe("allow");
    // The second request went on the spare; the third connection is the next spare.
    await waitFor(() => policy.accepted === 3, "the next spare");
    expect(policy.requests.length).toBe(2);
    expect(logged).toEqual([]);
  });

  test("a spare that is hung up on is not a refusal: the request is asked again", async () => {
    expect((await ask()).kind).toBe("allow");
    await waitFor(() => policy.accepted === 2, "the spare's connection");
    policy.hangUps = 1;
    expect((await ask()).kind).toBe("allow");
    expect(policy.requests.length).toBe(3);
    expect(logged).toEqual([]);
  });

  test("no socket, no spare: each query goes to the program, nothing connected ahead", async () => {
    policy.stop();
    socketPath = join(dir.path, "nowhere.sock");
    // The program does not exist either: a deny, after the socket's failure is logged.
    expect((await ask()).kind).toBe("deny");
    expect((await ask()).kind).toBe("deny");
    await Bun.sleep(20);
    expect(connects).toBe(0);
    expect(logged.filter((line) => line.includes("nowhere.sock")).length).toBe(2);
  });
});
