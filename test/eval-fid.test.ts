import { test } from 'node:test';
import assert from 'node:assert/strict';
import { accuracy, argmax, classifierScores, featureStats, frechetDistance, quantizeLikePng, type GaussianStats } from '../src/eval/fid.ts';
import { Rng } from '../src/rng.ts';
import { assertClose } from './helpers.ts';
import { compose, randomOrthogonal } from './random-matrices.ts';

function gaussian(mu: number[], sigma: ArrayLike<number>): GaussianStats {
  return { mu: Float64Array.from(mu), sigma: Float64Array.from(sigma), n: 0 };
}

function diag(v: number[]): Float64Array {
  const n = v.length;
  const a = new Float64Array(n * n);
  v.forEach((x, i) => (a[i * n + i] = x));
  return a;
}

test('featureStats: mean and unbiased covariance (np.cov, rowvar=False) of a hand-computed case', () => {
  // rows (1, 2), (3, 4), (5, 0): μ = (3, 2); centred (−2, 0), (0, 2), (2, −2)
  const s = featureStats([1, 2, 3, 4, 5, 0], 3, 2);
  assertClose(s.mu, [3, 2], { atol: 1e-15 }, 'mu');
  // Σ = [[8, −4], [−4, 8]] / 2
  assertClose(s.sigma, [4, -2, -2, 4], { atol: 1e-15 }, 'sigma');
  assert.equal(s.n, 3);
  assert.throws(() => featureStats([1, 2], 1, 2), /at least 2/);
  assert.throws(() => featureStats([1, 2, 3], 2, 2), /not 2 vectors/);
});

test('FID: identical Gaussians give 0; shifted means give |Δμ|²', () => {
  const rng = new Rng(1);
  const d = 20;
  const sigma = compose(randomOrthogonal(d, rng), Array.from({ length: d }, (_, i) => 0.01 + i * i * 0.05));
  const mu = Array.from(rng.normalFloat64(d));
  const a = gaussian(mu, sigma);
  const same = frechetDistance(a, a);
  assert.ok(Math.abs(same.meanTerm + same.covTerm) < 1e-10, `FID(a, a) = ${same.meanTerm + same.covTerm}`);
  const shift = Array.from(rng.normalFloat64(d));
  const b = gaussian(mu.map((m, i) => m + shift[i]!), sigma);
  const want = shift.reduce((s, v) => s + v * v, 0);
  assertClose(frechetDistance(a, b).fid, want, { rtol: 1e-10 }, 'shifted means');
});

test('FID: 1-D (μ1 − μ2)² + (σ1 − σ2)², diagonal Σ (√a_i − √b_i)², and commuting covariances', () => {
  assertClose(frechetDistance(gaussian([1], [4]), gaussian([-2], [9])).fid, 9 + 1, { rtol: 1e-14 }, '1-D');
  const a = [1, 4, 0.25, 0];
  const b = [9, 1, 0.25, 2];
  const want = a.reduce((s, ai, i) => s + (Math.sqrt(ai) - Math.sqrt(b[i]!)) ** 2, 0);
  assertClose(frechetDistance(gaussian([0, 0, 0, 0], diag(a)), gaussian([0, 0, 0, 0], diag(b))).fid, want, { rtol: 1e-14 }, 'diagonal (one singular)');
  // Σ1 = Q diag(λ) Qᵀ, Σ2 = Q diag(κ) Qᵀ commute: d² = Σ (√λ_i − √κ_i)²
  const rng = new Rng(2);
  const n = 16;
  const q = randomOrthogonal(n, rng);
  const l = Array.from(rng.uniformFloat64(n), (u) => 3 * u);
  const k = Array.from(rng.uniformFloat64(n), (u) => 2 * u);
  const zeros = new Array<number>(n).fill(0);
  const closed = () => l.reduce((s, li, i) => s + (Math.sqrt(li) - Math.sqrt(k[i]!)) ** 2, 0);
  assertClose(frechetDistance(gaussian(zeros, compose(q, l)), gaussian(zeros, compose(q, k))).fid, closed(), { rtol: 1e-10 }, 'commuting');
  // a singular Σ1: its zero eigenvalue comes out as ±1e-16 and √ turns that into 1e-8, so the
  // result is good to ~√ε·√κ (the square root's own conditioning at 0), not to rounding
  l[0] = 0;
  assertClose(frechetDistance(gaussian(zeros, compose(q, l)), gaussian(zeros, compose(q, k))).fid, closed(), { atol: 1e-6 }, 'commuting, singular');
});

test('FID: non-commuting 2x2 closed form tr √(AB) = √(tr(AB) + 2√(det A det B)); symmetric in its arguments', () => {
  const A = [2, 0.5, 0.5, 1];
  const B = [1, -0.3, -0.3, 3];
  const AB = [A[0]! * B[0]! + A[1]! * B[2]!, 0, 0, A[2]! * B[1]! + A[3]! * B[3]!];
  const trAB = AB[0]! + AB[3]!;
  const detA = A[0]! * A[3]! - A[1]! * A[2]!;
  const detB = B[0]! * B[3]! - B[1]! * B[2]!;
  const want = 1 ** 2 + 2 ** 2 + 3 + 4 - 2 * Math.sqrt(trAB + 2 * Math.sqrt(detA * detB));
  const a = gaussian([0, 0], A);
  const b = gaussian([1, 2], B);
  assertClose(frechetDistance(a, b).fid, want, { rtol: 1e-13 }, '2x2');
  assertClose(frechetDistance(b, a).fid, want, { rtol: 1e-13 }, '2x2 swapped');
});

test('FID of two large samples of one Gaussian is small, of different Gaussians near the population value', () => {
  const rng = new Rng(4);
  const d = 8;
  const n = 20000;
  const draw = (scale: number, shift: number) => {
    const x = rng.normalFloat64(n * d);
    for (let i = 0; i < x.length; i++) x[i] = scale * x[i]! + shift;
    return featureStats(x, n, d);
  };
  const a = draw(1, 0);
  const b = draw(1, 0);
  const c = draw(2, 0.5);
  // population: d·(1 − 2)² + d·0.5² = 8 + 2
  assert.ok(frechetDistance(a, b).fid < 0.01, `same population: ${frechetDistance(a, b).fid}`);
  assertClose(frechetDistance(a, c).fid, 10, { rtol: 0.02 }, 'different populations');
});

test('classifierScores: histogram, coverage, entropy, confidence', () => {
  const K = 3;
  // 4 samples: confident 0, confident 0, uncertain 1, tie-free 2
  const logits = [10, 0, 0, 10, 0, 0, 0, 0.5, 0, 0, 0, 5];
  const s = classifierScores(logits, K);
  assert.deepEqual(s.counts, [2, 1, 1]);
  assert.equal(s.classesCovered, 3);
  assertClose(s.entropyBits, -(0.5 * Math.log2(0.5) + 2 * 0.25 * Math.log2(0.25)), { atol: 1e-15 }, 'entropy');
  const soft = (l: number[]) => Math.max(...l.map(Math.exp)) / l.reduce((z, v) => z + Math.exp(v), 0);
  const confs = [soft([10, 0, 0]), soft([10, 0, 0]), soft([0, 0.5, 0]), soft([0, 0, 5])];
  assertClose(s.meanConfidence, confs.reduce((a, b) => a + b) / 4, { atol: 1e-12 }, 'mean confidence');
  assert.equal(s.confidentFraction, 0.75);
  assert.deepEqual([...argmax(logits, K)], [0, 0, 1, 2]);
  assert.equal(accuracy(logits, [0, 1, 1, 2], K), 0.75);
  // 1% rule: one class of 200 samples is below it
  const many = new Array<number>(200 * K).fill(0);
  for (let i = 0; i < 200; i++) many[i * K + (i === 0 ? 2 : i % 2)] = 1;
  assert.equal(classifierScores(many, K).classesCovered, 2);
});

test('quantizeLikePng: the 8-bit grid x/127.5 − 1 is kept exactly; other values round as save_image, clamped', () => {
  const grid = Float32Array.from({ length: 256 }, (_, i) => i / 127.5 - 1);
  assert.deepEqual(quantizeLikePng(grid), grid);
  assertClose(quantizeLikePng(Float32Array.from([-2, 2, 0, 0.003, 0.008])), [-1, 1, 128 / 127.5 - 1, 128 / 127.5 - 1, 129 / 127.5 - 1], { atol: 1e-7 }, 'rounding');
});
