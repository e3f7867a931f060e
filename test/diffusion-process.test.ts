import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GaussianDiffusion, dynamicThresholdInPlace, quantile, type ShapedArray } from '../src/diffusion/index.ts';
import { Rng } from '../src/rng.ts';
import { assertClose, moments } from './helpers.ts';

const linear = GaussianDiffusion.fromConfig({ kind: 'linear' });
const cosine = GaussianDiffusion.fromConfig({ kind: 'cosine' });

/** A batch [B, C, H, W] of data in [-1, 1] and a noise draw of the same size. */
function fixture(seed: number, shape: number[]): { x0: ShapedArray; noise: Float32Array } {
  const rng = new Rng(seed);
  const n = shape.reduce((a, b) => a * b, 1);
  const data = rng.uniformFloat32(n).map((u) => 2 * u - 1);
  return { x0: { data, shape }, noise: rng.normalFloat32(n) };
}

test('qSample is eq. (4) with one t per example; qMeanVariance matches', () => {
  const shape = [3, 2, 2, 2];
  const { x0, noise } = fixture(1, shape);
  const t = [0, 487, 999];
  const xt = linear.qSample(x0, t, noise);
  const q = linear.qMeanVariance(x0, Int32Array.from(t));
  for (let b = 0; b < 3; b++) {
    const abar = linear.alphasCumprod[t[b]];
    for (let j = b * 8; j < (b + 1) * 8; j++) {
      assertClose(xt[j], Math.sqrt(abar) * x0.data[j] + Math.sqrt(1 - abar) * noise[j], { atol: 1e-6 }, `x_t[${j}]`);
      assertClose(q.mean[j], Math.sqrt(abar) * x0.data[j], { atol: 1e-6 }, `mean[${j}]`);
      assertClose(q.variance[j], 1 - abar, { rtol: 1e-6 }, `variance[${j}]`);
      assertClose(q.logVariance[j], Math.log(1 - abar), { rtol: 1e-6 }, `logVariance[${j}]`);
    }
  }
  // a single number broadcasts over the batch
  assert.deepEqual(linear.qSample(x0, 5, noise), linear.qSample(x0, [5, 5, 5], noise));
  assert.throws(() => linear.qSample(x0, [1, 2], noise), /2 timesteps for a batch of 3/);
  assert.throws(() => linear.qSample(x0, [0, 1, 1000], noise), /outside \[0, 1000\)/);
  assert.throws(() => linear.qSample(x0, [0, 1, 1.5], noise), /outside/);
  assert.throws(() => linear.qSample(x0, 1, noise.subarray(1)), /noise has 23 elements/);
  assert.throws(() => linear.qSample({ data: x0.data, shape: [3, 2, 2] }, 1, noise), /shape/);
});

test('parameterisation round trips: x_0 from ε, ε from x_0, v (eq. 4, 15)', () => {
  const shape = [4, 3, 2, 2];
  const { x0, noise } = fixture(2, shape);
  for (const d of [linear, cosine]) {
    const t = [0, 10, 500, 998];
    const xt: ShapedArray = { data: d.qSample(x0, t, noise), shape };
    // float32 storage of x_t is amplified by 1/√ᾱ_t when solving for x_0 (up to ~400 for cosine at 998)
    for (let b = 0; b < 4; b++) {
      const sl = (a: Float32Array) => a.subarray(b * 12, (b + 1) * 12);
      const tolX0 = 4e-7 * 4 * d.sqrtRecipAlphasCumprod[t[b]];
      const tolEps = 4e-7 * 4 / d.sqrtOneMinusAlphasCumprod[t[b]];
      assertClose(sl(d.predictX0FromEps(xt, t, noise)), sl(x0.data), { atol: tolX0 }, `x0 from eps, t=${t[b]}`);
      assertClose(sl(d.predictEpsFromX0(xt, t, x0.data)), sl(noise), { atol: tolEps }, `eps from x0, t=${t[b]}`);
      const v = d.getVelocity(x0, t, noise);
      assertClose(sl(d.predictX0FromV(xt, t, v)), sl(x0.data), { atol: 2e-6 }, `x0 from v, t=${t[b]}`);
      assertClose(sl(d.predictEpsFromV(xt, t, v)), sl(noise), { atol: 2e-6 }, `eps from v, t=${t[b]}`);
      // v = √ᾱ ε − √(1−ᾱ) x_0
      const abar = d.alphasCumprod[t[b]];
      const vRef = sl(noise).map((e, j) => Math.sqrt(abar) * e - Math.sqrt(1 - abar) * sl(x0.data)[j]);
      assertClose(sl(v), vRef, { atol: 1e-6 }, `v, t=${t[b]}`);
    }
  }
});

test('chain of qStep and closed-form qSample agree in mean and variance', () => {
  // x_0 is one fixed example of D values replicated N times. Running qStep for indices 0..k-1
  // draws x at index k-1 through the chain; qSample(x_0, k-1, ε) draws it in closed form; both must be
  // N(√ᾱ x_0, 1 − ᾱ) with ᾱ = alphasCumprod[k-1].
  // Tolerances, per element, from the sample count N: the sample mean has standard error σ/√N
  // and the unbiased sample variance s² of a Gaussian has Var(s²) = 2σ⁴/(N−1), i.e. standard error
  // σ²√(2/(N−1)). We allow 5 standard errors (two-sided p ≈ 6e-7 per comparison; with 4 elements ×
  // 2 statistics × 2 samplers = 16 comparisons the chance of a false alarm is ~1e-5, and the seed is
  // fixed anyway). The chain is checked against the closed form's moments and against qSample's
  // sample moments (a difference of two independent estimates: SE·√2).
  const N = 20_000;
  const x0vals = [-1, -0.3, 0.5, 1];
  const D = x0vals.length;
  const shape = [N, D];
  const x0: ShapedArray = { data: new Float32Array(N * D).map((_, i) => x0vals[i % D]), shape };
  const k = 100;
  const rng = new Rng(17);
  let x: Float32Array = x0.data;
  for (let t = 0; t < k; t++) x = linear.qStep({ data: x, shape }, t, rng.normalFloat32(N * D));
  const closed = linear.qSample(x0, k - 1, rng.normalFloat32(N * D));
  const abar = linear.alphasCumprod[k - 1];
  const sigma2 = 1 - abar;
  const seMean = Math.sqrt(sigma2 / N);
  const seVar = sigma2 * Math.sqrt(2 / (N - 1));
  for (let j = 0; j < D; j++) {
    const column = (a: Float32Array) => Float64Array.from({ length: N }, (_, i) => a[i * D + j]);
    const chain = moments(column(x));
    const direct = moments(column(closed));
    const mu = Math.sqrt(abar) * x0vals[j];
    assertClose(chain.mean, mu, { atol: 5 * seMean }, `chain mean [${j}]`);
    assertClose(chain.variance, sigma2, { atol: 5 * seVar }, `chain variance [${j}]`);
    assertClose(direct.mean, mu, { atol: 5 * seMean }, `qSample mean [${j}]`);
    assertClose(direct.variance, sigma2, { atol: 5 * seVar }, `qSample variance [${j}]`);
    assertClose(chain.mean, direct.mean, { atol: 5 * Math.SQRT2 * seMean }, `chain vs qSample mean [${j}]`);
    assertClose(chain.variance, direct.variance, { atol: 5 * Math.SQRT2 * seVar }, `chain vs qSample variance [${j}]`);
  }
});

test('qStep is eq. (2): x_t = √α_t x_{t−1} + √β_t ε', () => {
  const { x0, noise } = fixture(3, [2, 5]);
  const out = cosine.qStep(x0, [3, 700], noise);
  for (let j = 0; j < 10; j++) {
    const t = j < 5 ? 3 : 700;
    assertClose(out[j], Math.sqrt(cosine.alphas[t]) * x0.data[j] + Math.sqrt(cosine.betas[t]) * noise[j], { atol: 1e-6 }, `qStep[${j}]`);
  }
});

test('qPosteriorMeanVariance is Bayes rule on eq. (2) and (4), and μ̃ with the true ε is eq. (11)', () => {
  const shape = [3, 1, 2, 2];
  const { x0, noise } = fixture(4, shape);
  const t = [1, 300, 999];
  for (const d of [linear, cosine]) {
    const xt = d.qSample(x0, t, noise);
    const post = d.qPosteriorMeanVariance(x0, xt, t);
    for (let b = 0; b < 3; b++) {
      const ti = t[b];
      const alpha = d.alphas[ti];
      const beta = d.betas[ti];
      const abarPrev = d.alphasCumprodPrev[ti];
      const abar = d.alphasCumprod[ti];
      // q(x_{t−1}|x_t,x_0) ∝ N(x_t; √α x_{t−1}, β) · N(x_{t−1}; √ᾱ_{t−1} x_0, 1 − ᾱ_{t−1}):
      // precision = α/β + 1/(1 − ᾱ_{t−1}), mean = (√α x_t/β + √ᾱ_{t−1} x_0/(1 − ᾱ_{t−1}))/precision.
      const precision = alpha / beta + 1 / (1 - abarPrev);
      for (let j = b * 4; j < (b + 1) * 4; j++) {
        const bayesMean = ((Math.sqrt(alpha) * xt[j]) / beta + (Math.sqrt(abarPrev) * x0.data[j]) / (1 - abarPrev)) / precision;
        assertClose(post.mean[j], bayesMean, { atol: 2e-6 }, `μ̃ (Bayes) t=${ti}`);
        assertClose(post.variance[j], 1 / precision, { rtol: 1e-6 }, `β̃ (Bayes) t=${ti}`);
        // eq. (11) with the true noise: μ = (x_t − β/√(1−ᾱ)·ε)/√α
        const eq11 = (xt[j] - (beta / Math.sqrt(1 - abar)) * noise[j]) / Math.sqrt(alpha);
        assertClose(post.mean[j], eq11, { atol: 2e-5 }, `μ̃ (eq. 11) t=${ti}`);
        assertClose(post.logVarianceClipped[j], Math.log(d.posteriorVariance[ti]), { rtol: 1e-6 }, 'log β̃');
      }
    }
  }
  // index 0: variance 0, clipped log-variance from index 1
  const post0 = linear.qPosteriorMeanVariance(x0, x0.data, 0);
  assert.equal(post0.variance[0], 0);
  assertClose(post0.logVarianceClipped[0], Math.log(linear.posteriorVariance[1]), { rtol: 1e-6 }, 'clipped log at 0');
  // at index 0 the posterior mean is x_0 itself (ᾱ_0 = 1: coef1 = 1, coef2 = 0)
  assertClose(post0.mean, x0.data, { atol: 1e-7 }, 'μ̃ at t=0');
});

test('pMeanVariance: ε-, x0- and v-prediction give μ̃(x_t, x̂_0); ε matches eq. (11)', () => {
  const shape = [2, 2, 2, 2];
  const { x0, noise } = fixture(5, shape);
  const t = [250, 800];
  const xt: ShapedArray = { data: linear.qSample(x0, t, noise), shape };
  const post = linear.qPosteriorMeanVariance(x0, xt.data, t);
  // A perfect model of each kind reproduces the true posterior mean.
  const eps = linear.pMeanVariance(noise, xt, t, { meanType: 'epsilon', varType: 'fixedSmall' });
  const x0p = linear.pMeanVariance(x0.data, xt, t, { meanType: 'x0', varType: 'fixedSmall' });
  const vp = linear.pMeanVariance(linear.getVelocity(x0, t, noise), xt, t, { meanType: 'v', varType: 'fixedSmall' });
  for (const [name, out] of [['epsilon', eps], ['x0', x0p], ['v', vp]] as const) {
    assertClose(out.mean, post.mean, { atol: 2e-5 }, `${name} mean`);
    assertClose(out.predX0, x0.data, { atol: 1e-4 }, `${name} predX0`);
  }
  // eq. (11) for an arbitrary ε_θ (not the true noise)
  const epsTheta = new Rng(6).normalFloat32(16);
  const out = linear.pMeanVariance(epsTheta, xt, t, { meanType: 'epsilon', varType: 'fixedSmall' });
  for (let j = 0; j < 16; j++) {
    const ti = t[j < 8 ? 0 : 1];
    const eq11 = (xt.data[j] - (linear.betas[ti] / Math.sqrt(1 - linear.alphasCumprod[ti])) * epsTheta[j]) / Math.sqrt(linear.alphas[ti]);
    assertClose(out.mean[j], eq11, { atol: 1e-5 }, `eq. (11) [${j}]`);
  }
  assert.throws(() => linear.pMeanVariance(epsTheta.subarray(1), xt, t, { meanType: 'epsilon', varType: 'fixedSmall' }), /model output/);
});

test('pMeanVariance variances: fixedSmall, fixedLarge (β̃_1 at t=0), learnedRange (N&D eq. 15)', () => {
  const shape = [3, 2, 1, 2]; // C = 2 channels of 2 values
  const { x0 } = fixture(7, shape);
  const t = [0, 1, 600];
  const zeros = new Float32Array(12);
  const small = cosine.pMeanVariance(zeros, x0, t, { meanType: 'epsilon', varType: 'fixedSmall' });
  const large = cosine.pMeanVariance(zeros, x0, t, { meanType: 'epsilon', varType: 'fixedLarge' });
  const at = (a: Float32Array, b: number) => a[b * 4];
  assertClose([at(small.variance, 0), at(small.variance, 1), at(small.variance, 2)], [0, cosine.posteriorVariance[1], cosine.posteriorVariance[600]], { rtol: 1e-6 }, 'fixedSmall variance');
  assertClose(at(small.logVariance, 0), Math.log(cosine.posteriorVariance[1]), { rtol: 1e-6 }, 'fixedSmall log-variance at 0 (clipped)');
  assertClose([at(large.variance, 0), at(large.variance, 1), at(large.variance, 2)], [cosine.posteriorVariance[1], cosine.betas[1], cosine.betas[600]], { rtol: 1e-6 }, 'fixedLarge variance');
  assertClose(large.logVariance.filter((_, j) => j % 4 === 0), [Math.log(cosine.posteriorVariance[1]), Math.log(cosine.betas[1]), Math.log(cosine.betas[600])], { rtol: 1e-6 }, 'fixedLarge log-variance');

  // learnedRange: per example the first C channels are ε, the next C channels v ∈ [−1, 1].
  // Channel 0 of the v half is −1 (→ log β̃ clipped), channel 1 is +1 (→ log β) for example 0;
  // example 1 uses v = 0 (the geometric mean) and example 2 v = 0.5.
  const modelOut = new Float32Array(24);
  const vs = [[-1, -1, 1, 1], [0, 0, 0, 0], [0.5, 0.5, 0.5, 0.5]];
  for (let b = 0; b < 3; b++) modelOut.set(vs[b], b * 8 + 4);
  const lr = cosine.pMeanVariance(modelOut, x0, t, { meanType: 'epsilon', varType: 'learnedRange' });
  for (let b = 0; b < 3; b++) {
    const minLog = cosine.posteriorLogVarianceClipped[t[b]];
    const maxLog = Math.log(cosine.betas[t[b]]);
    for (let j = 0; j < 4; j++) {
      const frac = (vs[b][j] + 1) / 2;
      assertClose(lr.logVariance[b * 4 + j], frac * maxLog + (1 - frac) * minLog, { rtol: 1e-6 }, `learnedRange logVar [${b},${j}]`);
      assertClose(lr.variance[b * 4 + j], Math.exp(frac * maxLog + (1 - frac) * minLog), { rtol: 1e-5 }, `learnedRange var [${b},${j}]`);
    }
  }
  // the mean half is the same as a plain ε output of zeros
  assertClose(lr.mean, small.mean, { atol: 0 }, 'learnedRange mean uses the first C channels');
  assert.throws(() => cosine.pMeanVariance(zeros, x0, t, { meanType: 'epsilon', varType: 'learnedRange' }), /twice the channels/);
});

test('clipping and dynamic thresholding of x̂_0', () => {
  const shape = [2, 4];
  const xt: ShapedArray = { data: Float32Array.of(3, -2, 0.5, 0.1, 0.2, -0.4, 0.9, -0.3), shape };
  // x0-prediction passes the output through, so x̂_0 = output before processing
  const out = Float32Array.of(3, -2, 0.5, 0.1, 0.2, -0.4, 0.9, -0.3);
  const clipped = linear.pMeanVariance(out, xt, 10, { meanType: 'x0', varType: 'fixedSmall', clipDenoised: true });
  assertClose(clipped.predX0, [1, -1, 0.5, 0.1, 0.2, -0.4, 0.9, -0.3], { atol: 1e-7 }, 'clipped x̂_0');
  const unclipped = linear.pMeanVariance(out, xt, 10, { meanType: 'x0', varType: 'fixedSmall' });
  assertClose(unclipped.predX0, out, { atol: 0 }, 'unclipped x̂_0');
  // Imagen: s = max(1, quantile_p |x̂_0|) per sample; x̂_0 ← clip(x̂_0, −s, s)/s.
  // Example 0: |x| = [3, 2, 0.5, 0.1]; p = 0.5 → sorted [0.1, 0.5, 2, 3], position 1.5 → s = 1.25.
  // Example 1 lies inside [−1, 1] → s = 1 → unchanged.
  const th = linear.pMeanVariance(out, xt, 10, { meanType: 'x0', varType: 'fixedSmall', dynamicThreshold: { percentile: 0.5 } });
  assertClose(th.predX0, [1, -1, 0.4, 0.08, 0.2, -0.4, 0.9, -0.3], { atol: 1e-7 }, 'dynamically thresholded x̂_0');
  assertClose(quantile([3, 2, 0.5, 0.1], 0.5), 1.25, { atol: 0 }, 'quantile');
  assertClose(quantile([4, 1, 2, 3], 1), 4, { atol: 0 }, 'quantile p=1');
  // maxValue caps s (diffusers' sample_max_value)
  const capped = dynamicThresholdInPlace(Float32Array.of(3, -2, 0.5, 0.1), 1, { percentile: 1, maxValue: 2 });
  assertClose(capped, [1, -1, 0.25, 0.05], { atol: 1e-7 }, 'thresholding with maxValue');
  // the posterior mean is computed from the processed x̂_0
  const post = linear.qPosteriorMeanVariance({ data: clipped.predX0, shape }, xt.data, 10);
  assertClose(clipped.mean, post.mean, { atol: 0 }, 'mean from the clipped x̂_0');
});

test('zero terminal SNR: v-prediction stays finite at the last step', () => {
  const d = GaussianDiffusion.fromConfig({ kind: 'linear', rescaleZeroTerminalSnr: true });
  const shape = [1, 4];
  const { x0, noise } = fixture(8, shape);
  const T = d.numTimesteps;
  const xt: ShapedArray = { data: d.qSample(x0, T - 1, noise), shape };
  assertClose(xt.data, noise, { atol: 0 }, 'x_T is pure noise');
  const v = d.getVelocity(x0, T - 1, noise); // = ε·0 − 1·x_0
  const out = d.pMeanVariance(v, xt, T - 1, { meanType: 'v', varType: 'fixedSmall' });
  assertClose(out.predX0, x0.data, { atol: 1e-7 }, 'x̂_0 from v at ᾱ = 0');
  assert.ok(out.mean.every(Number.isFinite) && out.variance.every(Number.isFinite));
  assertClose(d.predictEpsFromX0(xt, T - 1, x0.data), noise, { atol: 1e-7 }, 'ε from x_0 at ᾱ = 0');
});
