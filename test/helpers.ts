/**
 * Shared test helpers. `assertClose` compares numbers or arrays elementwise with
 * |actual - expected| <= atol + rtol·|expected| and, on failure, prints the first differing
 * indices and the maximum difference (llm.c / tinygrad style), so a failing CI log says how far off
 * a value is, not just that it is.
 */
import assert from 'node:assert/strict';

/** Tolerances for {@link assertClose}; both default to 0 (exact), so say what you mean. */
export interface Tolerance {
  atol?: number;
  rtol?: number;
}

type Numeric = number | ArrayLike<number>;

function toArray(x: Numeric): ArrayLike<number> {
  return typeof x === 'number' ? [x] : x;
}

/**
 * Assert that `actual` and `expected` (numbers or equal-length arrays) agree within tolerance.
 * NaN matches only NaN; ±Infinity matches only the same infinity.
 * @param label names the quantity in the failure message
 */
export function assertClose(actual: Numeric, expected: Numeric, tol: Tolerance, label = 'value'): void {
  const a = toArray(actual);
  const e = toArray(expected);
  const atol = tol.atol ?? 0;
  const rtol = tol.rtol ?? 0;
  if (a.length !== e.length) {
    assert.fail(`${label}: length ${a.length} != expected length ${e.length}`);
  }
  const bad: number[] = [];
  let maxDiff = 0;
  let maxIdx = -1;
  for (let i = 0; i < a.length; i++) {
    const ai = a[i];
    const ei = e[i];
    let ok: boolean;
    let diff: number;
    if (Number.isNaN(ei) || Number.isNaN(ai)) {
      ok = Number.isNaN(ei) && Number.isNaN(ai);
      diff = ok ? 0 : Infinity;
    } else if (!Number.isFinite(ei) || !Number.isFinite(ai)) {
      ok = ai === ei;
      diff = ok ? 0 : Infinity;
    } else {
      diff = Math.abs(ai - ei);
      ok = diff <= atol + rtol * Math.abs(ei);
    }
    if (diff > maxDiff || maxIdx < 0) {
      maxDiff = diff;
      maxIdx = i;
    }
    if (!ok) bad.push(i);
  }
  if (bad.length > 0) {
    const lines = bad
      .slice(0, 10)
      .map((i) => `  [${i}] actual=${a[i]} expected=${e[i]} diff=${Math.abs(a[i] - e[i])}`);
    assert.fail(
      `${label}: ${bad.length}/${a.length} values differ (atol=${atol}, rtol=${rtol}); ` +
        `maxdiff=${maxDiff} at [${maxIdx}]\n${lines.join('\n')}${bad.length > 10 ? '\n  …' : ''}`,
    );
  }
}

/** Sum of an array in float64 (for pinning goldens as "first values + sum"). */
export function sum(x: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < x.length; i++) s += x[i];
  return s;
}

/** Sample mean and unbiased sample variance in float64. */
export function moments(x: ArrayLike<number>): { mean: number; variance: number } {
  let m = 0;
  for (let i = 0; i < x.length; i++) m += x[i];
  m /= x.length;
  let v = 0;
  for (let i = 0; i < x.length; i++) v += (x[i] - m) ** 2;
  return { mean: m, variance: v / (x.length - 1) };
}

/** A tiny seeded PRNG in [0, 1) (mulberry32) for tests that must not depend on src/rng.ts. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
