// The sweep's SVG chart (`qrx bench sweep --plot`): two panels over the ring size (log scale),
// throughput on top and CPU seconds per GiB below, each y-axis scaled to its data. A line per
// direction and concurrency (colour: direction, dash: concurrency), each point the median of its
// samples with a bar from the lowest to the highest; the 3-hop pipe of each concurrency as a
// grey line labelled where it ends. The run's parameters under the title, and the legend below
// the panels, so nothing is cut off whatever the labels.

export interface ChartSample {
  mbps: number;
  cpuSecondsPerGiB: number;
}

export interface ChartRow extends ChartSample {
  name: "to-service" | "from-service" | "baseline:pipe3";
  ringBytes: number;
  concurrency: number;
  /** Every measurement behind the row (the row's numbers are their medians). */
  samples?: ChartSample[];
}

export interface ChartOptions {
  title?: string;
  /** One line saying how the data was taken (bytes, samples, machine). */
  parameters?: string;
}

const WIDTH = 760;
const MARGIN = { left: 78, right: 70 };
const PLOT_W = WIDTH - MARGIN.left - MARGIN.right;
const PANEL_H = 200;
const TOP = 70;
const GAP = 60;
const COLORS = { "to-service": "#1f77b4", "from-service": "#d62728" } as const;
const DASHES = ["", "7 4", "2 3", "10 3 2 3"];
const GREYS = ["#444444", "#777777", "#999999", "#bbbbbb"];
/** A generous average glyph width at font-size 12, to keep text inside the picture. */
const CHAR_W = 7;

type Metric = "mbps" | "cpuSecondsPerGiB";

export function escapeXml(text: string): string {
  return text
    .replaceAll("&", "&amp;")
    .replaceAll("<", "&lt;")
    .replaceAll(">", "&gt;")
    .replaceAll('"', "&quot;");
}

export function formatSize(bytes: number): string {
  if (bytes >= 1 << 20 && bytes % (1 << 20) === 0) return `${bytes / (1 << 20)}M`;
  if (bytes >= 1024 && bytes % 1024 === 0) return `${bytes / 1024}K`;
  return String(bytes);
}

/** A step of 1, 2 or 5 times a power of ten giving at most `count` steps up to `max`. */
function niceStep(max: number, count: number): number {
  const raw = max / count;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  for (const step of [1, 2, 2.5, 5, 10]) if (step * magnitude >= raw) return step * magnitude;
  return 10 * magnitude;
}

/** The axis: 0 to the first tick at or above the data's highest value (spread included). */
export function axisFor(values: number[]): { max: number; step: number } {
  const top = Math.max(...values.filter(Number.isFinite), Number.MIN_VALUE);
  const step = niceStep(top, 5);
  // The epsilon keeps 0.8 / 0.2 (4.000000000000001 in floating point) on its tick.
  return { max: Math.ceil(top / step - 1e-9) * step, step };
}

function spread(row: ChartRow, metric: Metric): [number, number] {
  const values = (row.samples ?? [row]).map((sample) => sample[metric]);
  return [Math.min(...values), Math.max(...values)];
}

function tickLabel(value: number, step: number): string {
  return step < 1 ? value.toFixed(step < 0.1 ? 2 : 1) : value.toFixed(0);
}

type Attributes = Record<string, string | number | undefined>;

/** `<name a="v" .../>` or `<name ...>text</name>`: numbers to one decimal, strings escaped. */
function element(name: string, attributes: Attributes, text?: string): string {
  const list = Object.entries(attributes)
    .filter(([, value]) => value !== undefined && value !== "")
    .map(([key, value]) => {
      const shown =
        typeof value === "number"
          ? Number.isInteger(value)
            ? String(value)
            : value.toFixed(1)
          : escapeXml(value!);
      return ` ${key}="${shown}"`;
    })
    .join("");
  return text === undefined ? `<${name}${list}/>` : `<${name}${list}>${escapeXml(text)}</${name}>`;
}

function line(
  x1: number,
  y1: number,
  x2: number,
  y2: number,
  stroke: string,
  more: Attributes = {},
): string {
  return element("line", { x1, y1, x2, y2, stroke, ...more });
}

interface Panel {
  metric: Metric;
  label: string;
  top: number;
  x: (bytes: number) => number;
}

function drawAxes(
  parts: string[],
  panel: Panel,
  rows: ChartRow[],
  sizes: number[],
): (v: number) => number {
  const axis = axisFor(rows.flatMap((row) => spread(row, panel.metric)));
  const y = (value: number) => panel.top + PANEL_H - (value / axis.max) * PANEL_H;
  const right = MARGIN.left + PLOT_W;
  const bottom = panel.top + PANEL_H;
  for (let value = 0; value <= axis.max + axis.step / 2; value += axis.step) {
    parts.push(line(MARGIN.left, y(value), right, y(value), "#e4e4e4"));
    const label = { x: MARGIN.left - 8, y: y(value) + 4, "text-anchor": "end" };
    parts.push(element("text", label, tickLabel(value, axis.step)));
  }
  for (const size of sizes) {
    parts.push(line(panel.x(size), panel.top, panel.x(size), bottom, "#f0f0f0"));
    const label = { x: panel.x(size), y: bottom + 16, "text-anchor": "middle" };
    parts.push(element("text", label, formatSize(size)));
  }
  parts.push(line(MARGIN.left, bottom, right, bottom, "black"));
  parts.push(line(MARGIN.left, panel.top, MARGIN.left, bottom, "black"));
  const rotated = {
    transform: `translate(20 ${panel.top + PANEL_H / 2}) rotate(-90)`,
    "text-anchor": "middle",
  };
  parts.push(element("text", rotated, panel.label));
  return y;
}

function drawSeries(
  parts: string[],
  panel: Panel,
  y: (v: number) => number,
  points: ChartRow[],
  style: { color: string; dash: string },
): void {
  const path = points.map(
    (row) => `${panel.x(row.ringBytes).toFixed(1)},${y(row[panel.metric]).toFixed(1)}`,
  );
  const stroke = { stroke: style.color, "stroke-width": 2.5, "stroke-dasharray": style.dash };
  parts.push(element("polyline", { points: path.join(" "), fill: "none", ...stroke }));
  for (const row of points) {
    const cx = panel.x(row.ringBytes);
    const [low, high] = spread(row, panel.metric);
    if (high > low) {
      const [y1, y2] = [y(low).toFixed(1), y(high).toFixed(1)];
      const left = (cx - 4).toFixed(1);
      const d = `M${cx.toFixed(1)} ${y1}V${y2}M${left} ${y1}h8M${left} ${y2}h8`;
      parts.push(element("path", { class: "spread", d, stroke: style.color }));
    }
    parts.push(element("circle", { cx, cy: y(row[panel.metric]), r: 3, fill: style.color }));
  }
}

function drawBaseline(
  parts: string[],
  panel: Panel,
  y: (v: number) => number,
  row: ChartRow,
  index: number,
  many: boolean,
): void {
  const at = y(row[panel.metric]);
  const grey = GREYS[index % GREYS.length]!;
  const dash = DASHES[index % DASHES.length] || "4 4";
  const right = MARGIN.left + PLOT_W;
  parts.push(
    line(MARGIN.left, at, right, at, grey, { "stroke-width": 1.5, "stroke-dasharray": dash }),
  );
  const label = many ? `pipe ×${row.concurrency}` : "pipe";
  parts.push(element("text", { x: right + 4, y: at + 4, fill: grey }, label));
}

function drawPanel(
  parts: string[],
  panel: Panel,
  rows: ChartRow[],
  sizes: number[],
  concurrencies: number[],
): void {
  const y = drawAxes(parts, panel, rows, sizes);
  const many = concurrencies.length > 1;
  concurrencies.forEach((concurrency, index) => {
    const mine = rows.filter((row) => row.concurrency === concurrency);
    const baseline = mine.find((row) => row.name === "baseline:pipe3");
    if (baseline) drawBaseline(parts, panel, y, baseline, index, many);
    for (const direction of ["to-service", "from-service"] as const) {
      const points = mine
        .filter((row) => row.name === direction)
        .sort((a, b) => a.ringBytes - b.ringBytes);
      const style = { color: COLORS[direction], dash: DASHES[index % DASHES.length]! };
      if (points.length > 0) drawSeries(parts, panel, y, points, style);
    }
  });
}

interface LegendEntry {
  color: string;
  dash: string;
  label: string;
}

/** Legend entries under the panels, as many per line as fit. Returns the height used. */
function drawLegend(parts: string[], top: number, entries: LegendEntry[]): number {
  let x = MARGIN.left;
  let y = top;
  for (const entry of entries) {
    const width = 40 + entry.label.length * CHAR_W + 24;
    if (x + width > WIDTH - 10 && x > MARGIN.left) {
      x = MARGIN.left;
      y += 20;
    }
    parts.push(
      line(x, y, x + 32, y, entry.color, { "stroke-width": 2.5, "stroke-dasharray": entry.dash }),
    );
    parts.push(element("text", { class: "legend", x: x + 40, y: y + 4 }, entry.label));
    x += width;
  }
  return y - top + 20;
}

function legendEntries(rows: ChartRow[], concurrencies: number[]): LegendEntry[] {
  const many = concurrencies.length > 1;
  const entries: LegendEntry[] = [];
  concurrencies.forEach((concurrency, index) => {
    const suffix = many ? `, ${concurrency} at once` : "";
    const dash = DASHES[index % DASHES.length]!;
    const mine = rows.filter((row) => row.concurrency === concurrency);
    for (const direction of ["to-service", "from-service"] as const) {
      if (mine.some((row) => row.name === direction))
        entries.push({ color: COLORS[direction], dash, label: `${direction}${suffix}` });
    }
    if (mine.some((row) => row.name === "baseline:pipe3")) {
      entries.push({
        color: GREYS[index % GREYS.length]!,
        dash: dash || "4 4",
        label: `3-hop pipe${suffix}`,
      });
    }
  });
  return entries;
}

const X_TITLE = "vchan ring size per direction (qrexec-client-vm --buffer-size), log scale";

export function sweepSvg(rows: ChartRow[], options: ChartOptions = {}): string {
  const title = options.title ?? "qrexec call throughput and CPU by vchan ring size";
  const sizes = [
    ...new Set(rows.filter((row) => row.ringBytes > 0).map((row) => row.ringBytes)),
  ].sort((a, b) => a - b);
  const concurrencies = [...new Set(rows.map((row) => row.concurrency))].sort((a, b) => a - b);
  const logMin = Math.log2(sizes[0] ?? 1024);
  const logMax = Math.log2(sizes.at(-1) ?? 1 << 20);
  const share = (bytes: number) =>
    logMax === logMin ? 0.5 : (Math.log2(bytes) - logMin) / (logMax - logMin);
  const x = (bytes: number) => MARGIN.left + share(bytes) * PLOT_W;
  const body: string[] = [
    element("text", { x: MARGIN.left, y: 26, "font-size": 16, "font-weight": "bold" }, title),
  ];
  if (options.parameters) {
    body.push(
      element(
        "text",
        { class: "parameters", x: MARGIN.left, y: 46, fill: "#333333" },
        options.parameters,
      ),
    );
  }
  const throughput: Panel = { metric: "mbps", label: "throughput, MB/s", top: TOP, x };
  const cpu: Panel = {
    metric: "cpuSecondsPerGiB",
    label: "CPU seconds per GiB",
    top: TOP + PANEL_H + GAP,
    x,
  };
  drawPanel(body, throughput, rows, sizes, concurrencies);
  drawPanel(body, cpu, rows, sizes, concurrencies);
  const titleY = cpu.top + PANEL_H + 36;
  body.push(
    element("text", { x: MARGIN.left + PLOT_W / 2, y: titleY, "text-anchor": "middle" }, X_TITLE),
  );
  const height = titleY + 26 + drawLegend(body, titleY + 26, legendEntries(rows, concurrencies));
  const size = { width: WIDTH, height, viewBox: `0 0 ${WIDTH} ${height}` };
  const svg = {
    xmlns: "http://www.w3.org/2000/svg",
    ...size,
    "font-family": "sans-serif",
    "font-size": 12,
  };
  const open = element("svg", svg).replace("/>", ">");
  return [
    open,
    element("rect", { x: 0, y: 0, width: WIDTH, height, fill: "white" }),
    ...body,
    "</svg>",
    "",
  ].join("\n");
}
