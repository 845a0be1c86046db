// Benchmarks that run their rows in rounds (copy, call, latency): the order of each round, and a
// row against its baseline round by round.

/**
 * `items` in round `round`'s order: rotated by one per round, so that no item always runs first
 * (after a lab's start) or always right after a given other one.
 */
export function inTurns<T>(items: readonly T[], round: number): T[] {
  const shift = items.length === 0 ? 0 : round % items.length;
  return [...items.slice(shift), ...items.slice(0, shift)];
}

/** A throughput row: seconds per round, the row's own figure being their median. */
interface Rounds {
  runs: readonly number[];
  seconds: number;
}

/** Per round, a row's throughput as a fraction of its baseline's in that same round. */
export function roundRatios(ours: Rounds, baseline: Rounds): number[] {
  return ours.runs.map((seconds, round) => (baseline.runs[round] ?? NaN) / seconds);
}

/**
 * "NAME vs BASELINE: R% of the medians, per round A% B% ... (target >= T%): met|MISSED", the
 * verdict taken on the medians' ratio.
 */
export function ratioLine(
  names: [string, string],
  ours: Rounds,
  baseline: Rounds,
  target: number,
): string {
  const percent = (fraction: number) => `${(fraction * 100).toFixed(0)}%`;
  const ratio = baseline.seconds / ours.seconds;
  const rounds = roundRatios(ours, baseline).map(percent).join(" ");
  const verdict = ratio >= target ? "met" : "MISSED";
  return (
    `${names[0]} vs ${names[1]}: ${percent(ratio)} of the medians, per round ${rounds} ` +
    `(target >= ${percent(target)}): ${verdict}`
  );
}
