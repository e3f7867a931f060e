/**
 * The statistics of the interleaved benchmarks (bench/rounds.ts): median, min and max of per-round ratios. No timing
 * here: the values are given.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { median, roundRatios, spread } from '../bench/rounds.ts';

test('median: odd and even counts, order does not matter, the input is left alone', () => {
  const xs = [3, 1, 2];
  assert.equal(median(xs), 2);
  assert.deepEqual(xs, [3, 1, 2]);
  assert.equal(median([4, 1, 3, 2]), 2.5);
  assert.equal(median([7]), 7);
  assert.throws(() => median([]), /median of no values/);
});

test('spread: median, min, max rounded', () => {
  assert.deepEqual(spread([1.23456, 0.5, 2.0001], 2), { median: 1.23, min: 0.5, max: 2 });
});

test('roundRatios: ours[i] / theirs[i] per round, then the median of the ratios (not the ratio of the medians)', () => {
  // round medians: ours 100, theirs 100 -> ratio of medians 1; the per-round ratios are 2, 0.5, 1.25 -> median 1.25
  const r = roundRatios([100, 50, 125], [50, 100, 100]);
  assert.deepEqual(r, { per_round: [2, 0.5, 1.25], median: 1.25, min: 0.5, max: 2 });
  assert.throws(() => roundRatios([1, 2], [1]), /2 and 1 phases/);
  assert.throws(() => roundRatios([], []), /0 and 0 phases/);
});
