import { describe, expect, test } from "bun:test";
import { LOG_TEXT_MAX, RefusalLog, untrusted } from "../../src/io/log-text.ts";

describe("untrusted: a peer's string in a log line", () => {
  test("a short printable string is kept as it is", () => {
    expect(untrusted("test.Echo+arg")).toBe("test.Echo+arg");
  });

  test("control characters and backslashes are escaped: no faked line or terminal", () => {
    expect(untrusted("a\nb\r\tc\x1b[31m\x00\x7f\x85\\")).toBe(
      "a\\nb\\r\\tc\\x1b[31m\\x00\\x7f\\x85\\\\",
    );
  });

  test("a long string is cut, with its real length", () => {
    const long = "s".repeat(65000);
    expect(untrusted(long)).toBe(`${"s".repeat(LOG_TEXT_MAX)}...(65000 bytes in all)`);
    expect(untrusted(long, 10)).toBe("ssssssssss...(65000 bytes in all)");
    expect(untrusted("s".repeat(LOG_TEXT_MAX))).toBe("s".repeat(LOG_TEXT_MAX));
  });
});

describe("RefusalLog: refusals rate-limited per source", () => {
  function setup() {
    const lines: string[] = [];
    let now = 1000;
    const log = new RefusalLog((line) => lines.push(line), {
      burst: 3,
      windowMs: 10_000,
      now: () => now,
    });
    return { lines, log, advance: (ms: number) => (now += ms) };
  }

  test("a burst: logged, then one notice, then nothing until the window ends, then a count", () => {
    const { lines, log, advance } = setup();
    for (let i = 0; i < 10; i++) log.log("work", `refused ${i}`);
    expect(lines).toEqual([
      "refused 0",
      "refused 1",
      "refused 2",
      "more than 3 refusals from work in 10 s: not logging more of them for now",
    ]);
    advance(10_000);
    log.log("work", "refused 10");
    expect(lines.slice(4)).toEqual([
      "7 refusal line(s) from work were not logged (rate limit)",
      "refused 10",
    ]);
  });

  test("each source has its own limit", () => {
    const { lines, log } = setup();
    for (let i = 0; i < 5; i++) log.log("work", `work ${i}`);
    log.log("vault", "vault 0");
    expect(lines.filter((line) => line.startsWith("vault"))).toEqual(["vault 0"]);
  });
});
