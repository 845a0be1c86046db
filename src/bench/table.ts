// The benchmarks' tables: the first column (a name) left-aligned, figures right-aligned.

/** `table` (a header line first) as text lines, columns two spaces apart. */
export function tableLines(table: string[][]): string[] {
  const widths = (table[0] ?? []).map((_, column) =>
    Math.max(...table.map((line) => (line[column] ?? "").length)),
  );
  const pad = (cell: string, column: number) =>
    column === 0 ? cell.padEnd(widths[column] ?? 0) : cell.padStart(widths[column] ?? 0);
  return table.map((line) => line.map(pad).join("  "));
}

export function printTable(table: string[][]): void {
  for (const line of tableLines(table)) console.log(line);
}

/** A benchmark's rows: as JSON (`--json`, pretty, on stdout) or through its table printer. */
export function printRows<Row>(
  rows: Row[],
  json: boolean | undefined,
  print: (rows: Row[]) => void,
): void {
  if (json) console.log(JSON.stringify(rows, null, 2));
  else print(rows);
}
