// `qrx trace --svg`: the calls' waterfalls as one SVG, a block per call, a row per stage, each
// bar spanning the step from the previous stage, coloured by the process that reached it.

import { shownName, stageLabel, type TracedCall } from "./trace-report.ts";

const ROW = 16;
const LABEL_WIDTH = 470;
const CHART_WIDTH = 560;
const MARGIN = 10;
const COLOURS = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#b07aa1", "#edc948"];
const ENTITIES: Record<string, string> = {
  "<": "&lt;",
  ">": "&gt;",
  "&": "&amp;",
  '"': "&quot;",
  "'": "&apos;",
};

/** What XML 1.0 allows in no document: U+FFFE, U+FFFF and a surrogate without its pair. */
const NOT_XML =
  /[\uFFFE\uFFFF]|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

/**
 * Every string from the trace reaches here already stripped of control characters (which XML
 * does not allow either) by trace-report.ts; this makes it text, never markup, and a document
 * that parses whatever the file held.
 */
function escape(text: string): string {
  return text.replace(NOT_XML, "\uFFFD").replace(/[<>&"']/g, (c) => ENTITIES[c] ?? c);
}

function text(x: number, y: number, content: string, extra = ""): string {
  return `<text x="${x}" y="${y}"${extra}>${escape(content)}</text>`;
}

function callBlock(
  call: TracedCall,
  top: number,
  colourOf: (pid: number) => string,
): { svg: string[]; height: number } {
  const title = `call ${call.number}: ${call.title} (${call.durationMs.toFixed(2)} ms)`;
  const svg = [text(MARGIN, top + 12, title, ` font-weight="bold"`)];
  const scale = CHART_WIDTH / Math.max(call.durationMs, 0.001);
  let previous = call.start;
  call.events.forEach((event, index) => {
    const y = top + ROW * (index + 1);
    const x = LABEL_WIDTH + (previous - call.start) * scale;
    const width = Math.max(1, (event.t - previous) * scale);
    const offset = (event.t - call.start).toFixed(2);
    const who = `${shownName(event.prog)} dom${event.dom}`;
    svg.push(text(MARGIN, y + 12, `${offset} ms  ${stageLabel(event)}  ${who}`));
    const box = `x="${x.toFixed(1)}" y="${y + 3}" width="${width.toFixed(1)}" height="${ROW - 5}"`;
    svg.push(`<rect ${box} fill="${colourOf(event.pid)}"/>`);
    previous = Math.max(previous, event.t);
  });
  return { svg, height: ROW * (call.events.length + 2) };
}

/** A standalone SVG document of `calls`' waterfalls. */
export function waterfallSvg(calls: TracedCall[]): string {
  const colours = new Map<number, string>();
  const colourOf = (pid: number) => {
    if (!colours.has(pid)) colours.set(pid, COLOURS[colours.size % COLOURS.length]!);
    return colours.get(pid)!;
  };
  const body: string[] = [];
  let top = MARGIN;
  for (const call of calls) {
    const block = callBlock(call, top, colourOf);
    body.push(...block.svg);
    top += block.height;
  }
  const width = LABEL_WIDTH + CHART_WIDTH + 2 * MARGIN;
  const height = top + MARGIN;
  return [
    `<?xml version="1.0" encoding="UTF-8"?>`,
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" ` +
      `viewBox="0 0 ${width} ${height}" font-family="monospace" font-size="11">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    ...body,
    `</svg>`,
    "",
  ].join("\n");
}
