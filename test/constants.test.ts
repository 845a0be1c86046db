// What src/constants.ts names in TypeScript's own words must cover what the library defines
// (src/abi.generated.ts; `zig build test` checks that file against zig/abi.zig, and
// src/native.ts refuses a library of another ABI version).
import { describe, expect, test } from "bun:test";
import * as abi from "../src/abi.generated.ts";
import { PUMP_MARKS, SharedPage, VchanBackend } from "../src/constants.ts";

describe("constants shared by Zig and TypeScript", () => {
  test("PUMP_MARKS names the pump's marks in their order", () => {
    const kebab = (name: string) =>
      name.replace(/[A-Z]/g, (c, at) => (at ? "-" : "") + c.toLowerCase());
    const marks = Object.entries(abi.PumpMark).sort(([, a], [, b]) => a - b);
    expect(marks.map(([name]) => kebab(name))).toEqual([...PUMP_MARKS]);
  });

  test("every vchan backend has a user-facing name", () => {
    const named = Object.values(VchanBackend).sort();
    expect(named).toEqual(Object.values(abi.VchanBackend).sort());
  });

  test("the shared page's grants follow its header", () => {
    const last = abi.SharedPageHeader.fields.srvNotify;
    expect(last.offset + 1).toBe(SharedPage.grants);
    expect(SharedPage.grants).toBe(24);
  });
});
