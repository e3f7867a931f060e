import { test } from 'node:test';
import assert from 'node:assert/strict';
import { matmulSquare, sqrtPsd, symmetricEigen, trace } from '../src/eval/linalg.ts';
import { Rng } from '../src/rng.ts';
import { assertClose } from './helpers.ts';
import { compose, randomOrthogonal } from './random-matrices.ts';

function transpose(a: Float64Array, n: number): Float64Array {
  const t = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) t[j * n + i] = a[i * n + j]!;
  return t;
}

function identity(n: number): Float64Array {
  const e = new Float64Array(n * n);
  for (let i = 0; i < n; i++) e[i * n + i] = 1;
  return e;
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

test('eigen: a diagonal matrix is its own decomposition (values sorted descending, vectors a permutation)', () => {
  const d = [3, -1, 7, 0, 2.5];
  const n = d.length;
  const a = new Float64Array(n * n);
  d.forEach((v, i) => (a[i * n + i] = v));
  const e = symmetricEigen(a, n);
  assert.deepEqual([...e.values], [7, 3, 2.5, 0, -1]);
  assert.equal(e.sweeps, 0);
  const order = [2, 0, 4, 3, 1];
  for (let k = 0; k < n; k++) for (let i = 0; i < n; i++) assert.equal(Math.abs(e.vectors[i * n + k]!), i === order[k] ? 1 : 0);
});

test('eigen: 2x2 rotation R(φ) diag(l1, l2) R(φ)ᵀ gives l1, l2 and ±(cos φ, sin φ), ±(−sin φ, cos φ)', () => {
  for (const [phi, l1, l2] of [[0.3, 5, 1], [1.2, 2, -3], [-0.7, 1e-6, 1e-9], [Math.PI / 4, 4, 4 - 1e-10]] as const) {
    const c = Math.cos(phi);
    const s = Math.sin(phi);
    // closed form of the product
    const a = [c * c * l1 + s * s * l2, c * s * (l1 - l2), c * s * (l1 - l2), s * s * l1 + c * c * l2];
    const e = symmetricEigen(a, 2);
    assertClose(e.values, [Math.max(l1, l2), Math.min(l1, l2)], { atol: 1e-15 * Math.abs(l1), rtol: 1e-12 }, `eigenvalues φ=${phi}`);
    const v1 = l1 >= l2 ? [c, s] : [-s, c];
    const sign = Math.sign(e.vectors[0]! * v1[0]! + e.vectors[2]! * v1[1]!);
    assertClose([sign * e.vectors[0]!, sign * e.vectors[2]!], v1, { atol: l1 - l2 > 1e-9 ? 1e-12 : 1e-5 }, `first eigenvector φ=${phi}`);
  }
});

test('eigen: random SPD Q diag(λ) Qᵀ (n = 6, 40, 128): eigenvalues, A V = V Λ, Vᵀ V = I (maxdiff printed)', (t) => {
  const rng = new Rng(11);
  for (const n of [6, 40, 128]) {
    const q = randomOrthogonal(n, rng);
    // spread over 10 decades, one repeated value, one exact zero: like a feature covariance
    const lambda = Array.from({ length: n }, (_, i) => 10 ** (2 - (10 * i) / n));
    lambda[1] = lambda[0]!;
    lambda[n - 1] = 0;
    const a = compose(q, lambda);
    const e = symmetricEigen(a, n);
    const want = [...lambda].sort((x, y) => y - x);
    const scale = want[0]!;
    const valDiff = maxAbsDiff(e.values, want);
    const recon = compose(e.vectors, e.values);
    const reconDiff = maxAbsDiff(recon, a);
    const orthoDiff = maxAbsDiff(matmulSquare(transpose(e.vectors, n), e.vectors, n), identity(n));
    t.diagnostic(`n=${n}: sweeps ${e.sweeps}, eigenvalue maxdiff ${valDiff.toExponential(2)}, reconstruction maxdiff ${reconDiff.toExponential(2)}, |VᵀV − I| ${orthoDiff.toExponential(2)}`);
    assertClose(e.values, want, { atol: 1e-13 * scale }, `eigenvalues n=${n}`);
    assert.ok(reconDiff < 1e-13 * scale, `reconstruction maxdiff ${reconDiff}`);
    assert.ok(orthoDiff < 1e-13, `orthogonality maxdiff ${orthoDiff}`);
  }
});

test('eigen: indefinite and rank-one matrices; trace is preserved', () => {
  const rng = new Rng(3);
  const n = 30;
  const u = rng.normalFloat64(n);
  const a = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) a[i * n + j] = u[i]! * u[j]!; // u uᵀ: one eigenvalue |u|², the rest 0
  const e = symmetricEigen(a, n);
  const uu = u.reduce((s, v) => s + v * v, 0);
  assertClose(e.values[0]!, uu, { rtol: 1e-13 }, 'rank-one top eigenvalue');
  assertClose(e.values.subarray(1), new Float64Array(n - 1), { atol: 1e-13 * uu }, 'rank-one null space');
  const b = compose(randomOrthogonal(n, rng), Array.from({ length: n }, (_, i) => i - 12.5));
  const eb = symmetricEigen(b, n);
  assertClose(eb.values, Array.from({ length: n }, (_, i) => n - 1 - i - 12.5), { atol: 1e-12 }, 'indefinite eigenvalues');
  assertClose(eb.values.reduce((s, v) => s + v, 0), trace(b, n), { atol: 1e-11 }, 'trace');
});

test('eigen: bad input throws', () => {
  assert.throws(() => symmetricEigen([1, 2, 3], 2), /expected 2x2/);
  assert.throws(() => symmetricEigen([1, NaN, NaN, 1], 2), /non-finite/);
});

test('sqrtPsd: S·S = A for random SPD and singular PSD matrices; negative rounding clipped', (t) => {
  const rng = new Rng(5);
  const n = 25;
  const lambda = Array.from({ length: n }, (_, i) => (i < 5 ? 0 : 0.1 * i));
  const a = compose(randomOrthogonal(n, rng), lambda);
  const s = sqrtPsd(a, n);
  const diff = maxAbsDiff(matmulSquare(s, s, n), a);
  t.diagnostic(`sqrtPsd n=${n} (rank ${n - 5}): |S² − A| maxdiff ${diff.toExponential(2)}`);
  assert.ok(diff < 1e-12, `maxdiff ${diff}`);
  assertClose(sqrtPsd([4, 0, 0, 9], 2), [2, 0, 0, 3], { atol: 1e-15 }, 'diag sqrt');
  assertClose(sqrtPsd([-1e-18, 0, 0, 1], 2), [0, 0, 0, 1], { atol: 0 }, 'tiny negative eigenvalue clipped');
});
