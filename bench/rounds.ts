/**
 * Interleaved rounds on a shared machine: each round runs one phase of every side back to back (ours, theirs,
 * ours, theirs, ...), so that load which changes over minutes hits both sides of one round alike. The figure to
 * trust is the median of the per-round ratios; min and max show the spread.
 */

export const median = (xs: readonly number[]): number => {
  if (xs.length === 0) throw new Error('median of no values');
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

export interface Spread {
  median: number;
  min: number;
  max: number;
}

/** Median, min and max of some values, rounded to `digits` decimals. */
export function spread(xs: readonly number[], digits = 3): Spread {
  const r = (v: number) => +v.toFixed(digits);
  return { median: r(median(xs)), min: r(Math.min(...xs)), max: r(Math.max(...xs)) };
}

/** Per-round ratios ours[i] / theirs[i] (the two phases of round i) and their spread. */
export function roundRatios(ours: readonly number[], theirs: readonly number[]): { per_round: number[] } & Spread {
  if (ours.length !== theirs.length || ours.length === 0) throw new Error(`round ratios: ${ours.length} and ${theirs.length} phases`);
  const perRound = ours.map((v, i) => v / theirs[i]!);
  return { per_round: perRound.map((v) => +v.toFixed(3)), ...spread(perRound) };
}
