import { expect, test } from "bun:test";
import { printRows, tableLines } from "../../src/bench/table.ts";

test("a bench table: names left-aligned, figures right-aligned, two spaces apart", () => {
  const lines = tableLines([
    ["name", "MB/s"],
    ["baseline:pipe", "915"],
    ["shm", "12744"],
  ]);
  expect(lines).toEqual(["name            MB/s", "baseline:pipe    915", "shm            12744"]);
});

test("printRows: --json prints the rows as JSON, otherwise the table printer gets them", () => {
  const logged: string[] = [];
  const log = console.log;
  console.log = (line: string) => logged.push(line);
  const printed: number[][] = [];
  try {
    printRows([1, 2], true, (rows) => printed.push(rows));
    printRows([3], undefined, (rows) => printed.push(rows));
  } finally {
    console.log = log;
  }
  expect(logged).toEqual([JSON.stringify([1, 2], null, 2)]);
  expect(printed).toEqual([[3]]);
});
