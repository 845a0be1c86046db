import { expect, test } from "bun:test";
import { tableLines } from "../../src/bench/table.ts";

test("a bench table: names left-aligned, figures right-aligned, two spaces apart", () => {
  const lines = tableLines([
    ["name", "MB/s"],
    ["baseline:pipe", "915"],
    ["shm", "12744"],
  ]);
  expect(lines).toEqual(["name            MB/s", "baseline:pipe    915", "shm            12744"]);
});
