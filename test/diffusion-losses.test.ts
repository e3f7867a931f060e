import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  GaussianDiffusion,
  approxStandardNormalCdf,
  discretizedGaussianLogLikelihood,
  hybridLoss,
  meanFlat,
  meanSquaredError,
  minSnrWeights,
  normalKl,
  respace,
  type ShapedArray,
  type DiffusionModel,
} from '../src/diffusion/index.ts';
import { Rng } from '../src/rng.ts';
import { assertClose } from './helpers.ts';

/** Composite Simpson's rule with n (even) intervals. */
function simpson(f: (x: number) => number, a: number, b: number, n = 2000): number {
  const h = (b - a) / n;
  let s = f(a) + f(b);
  for (let i = 1; i < n; i++) s += (i % 2 === 1 ? 4 : 2) * f(a + i * h);
  return (s * h) / 3;
}

const normalPdf = (x: number, mu = 0, sigma = 1) => Math.exp(-0.5 * ((x - mu) / sigma) ** 2) / (sigma * Math.sqrt(2 * Math.PI));

/** Φ(z) by integrating the density from 0 (error far below 1e-12 for |z| < 10). */
function exactCdf(z: number): number {
  if (z > 10) return 1;
  if (z < -10) return 0;
  return 0.5 + Math.sign(z) * simpson((x) => normalPdf(x), 0, Math.abs(z));
}

/** 8-bit data scaled to [−1, 1]. */
function gridData(rng: Rng, n: number): Float32Array {
  return Float32Array.from(rng.integers(256, n), (k) => (k / 255) * 2 - 1);
}

test('normalKl: closed form, numerical integration, KL(p‖p) = 0, broadcasting', () => {
  const cases = [
    [0, 0, 0, 0],
    [0.3, Math.log(0.5), -0.2, Math.log(2)],
    [1.5, Math.log(0.01), 1.4, Math.log(0.02)],
    [-2, Math.log(3), 0, 0],
  ];
  for (const [m1, lv1, m2, lv2] of cases) {
    const kl = normalKl([m1], [lv1], [m2], [lv2])[0];
    const s1 = Math.exp(lv1 / 2);
    const s2 = Math.exp(lv2 / 2);
    const closed = Math.log(s2 / s1) + (s1 * s1 + (m1 - m2) ** 2) / (2 * s2 * s2) - 0.5;
    assertClose(kl, closed, { atol: 1e-14, rtol: 1e-12 }, `KL closed form ${[m1, lv1, m2, lv2]}`);
    // ∫ p log(p/q), p = N(m1, s1²), q = N(m2, s2²), over m1 ± 12 s1
    const integrand = (x: number) => {
      const p = normalPdf(x, m1, s1);
      return p === 0 ? 0 : p * (Math.log(p) - Math.log(normalPdf(x, m2, s2)));
    };
    assertClose(kl, simpson(integrand, m1 - 12 * s1, m1 + 12 * s1, 4000), { atol: 1e-9 }, `KL integral ${[m1, lv1, m2, lv2]}`);
  }
  assertClose(normalKl([0.7, -0.1], [-3, 1], [0.7, -0.1], [-3, 1]), [0, 0], { atol: 1e-15 }, 'KL(p‖p)');
  assertClose(normalKl([0.5, 1], [0, 0], 0, 0), [0.125, 0.5], { atol: 1e-15 }, 'scalar broadcast');
  assert.throws(() => normalKl([1, 2], [0], 0, 0), /lengths differ/);
});

test('approxStandardNormalCdf: the tanh formula, within 2e-4 of Φ', () => {
  let maxErr = 0;
  for (let z = -8; z <= 8; z += 0.01) {
    const approx = approxStandardNormalCdf(z);
    assertClose(approx, 0.5 * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (z + 0.044715 * z ** 3))), { atol: 1e-15 }, `formula at ${z}`);
    maxErr = Math.max(maxErr, Math.abs(approx - exactCdf(z)));
  }
  assert.ok(maxErr < 2e-4, `max |approx − Φ| = ${maxErr}`);
  assert.ok(maxErr > 1e-4, 'the approximation error is real (sanity check of exactCdf)');
});

test('discretizedGaussianLogLikelihood: formula, bin integrals, edge bins, sums to 1', () => {
  const rng = new Rng(21);
  const n = 64;
  const x = gridData(rng, n);
  x[0] = -1;
  x[1] = 1;
  const means = x.map((v, i) => v + 0.05 * Math.sin(i));
  const logScales = Float32Array.from({ length: n }, (_, i) => Math.log(0.02 + 0.3 * ((i * 7) % 11) / 11));
  const ll = discretizedGaussianLogLikelihood(x, means, logScales);
  for (let i = 0; i < n; i++) {
    const s = Math.exp(logScales[i]);
    const lo = (x[i] - 1 / 255 - means[i]) / s;
    const hi = (x[i] + 1 / 255 - means[i]) / s;
    // improved-diffusion's expression, inline
    const A = approxStandardNormalCdf;
    const expected = x[i] < -0.999 ? Math.log(A(hi)) : x[i] > 0.999 ? Math.log(1 - A(lo)) : Math.log(A(hi) - A(lo));
    assertClose(ll[i], expected, { rtol: 1e-12, atol: 1e-12 }, `formula [${i}]`);
    // the probability of the bin by integrating the Gaussian density; the edge bins extend to ±∞
    const exact = x[i] < -0.999 ? exactCdf(hi) : x[i] > 0.999 ? 1 - exactCdf(lo) : simpson((y) => normalPdf(y), lo, hi, 200);
    // each of the two CDF values is off by at most 2e-4
    assertClose(Math.exp(ll[i]), exact, { atol: 4e-4 }, `bin probability [${i}]`);
  }
  // Σ over the 256 grid values telescopes to exactly 1
  for (const [mu, logS] of [[0, Math.log(0.1)], [0.9, Math.log(0.5)], [-0.4, Math.log(0.003)]]) {
    const grid = Float32Array.from({ length: 256 }, (_, k) => (k / 255) * 2 - 1);
    const p = discretizedGaussianLogLikelihood(grid, new Float32Array(256).fill(mu), logS);
    let total = 0;
    for (const l of p) total += Math.exp(l);
    assertClose(total, 1, { atol: 1e-6 }, `Σ p over the grid (μ=${mu})`);
  }
  // far from the mean the probability is clamped at 1e-12 before the log
  assertClose(discretizedGaussianLogLikelihood([0], [0.9], Math.log(1e-3))[0], Math.log(1e-12), { rtol: 1e-12 }, 'clamped');
});

test('meanFlat, meanSquaredError', () => {
  assertClose(meanFlat([1, 2, 3, 4, 5, 6], 2), [2, 5], { atol: 0 }, 'meanFlat');
  assertClose(meanSquaredError([1, 2, 3, 4], [0, 0, 3, 6], 2), [2.5, 2], { atol: 0 }, 'mse');
  assert.throws(() => meanFlat([1, 2, 3], 2), /do not split/);
});

test('min-SNR-γ weights: closed forms, and all three weight the x̂_0 error by min(SNR, γ)', () => {
  const snr = [100, 5, 0.5, 0.01, 0];
  const g = 5;
  assertClose(minSnrWeights(snr, g, 'epsilon'), [0.05, 1, 1, 1, 1], { rtol: 1e-15 }, 'ε weights');
  assertClose(minSnrWeights(snr, g, 'x0'), [5, 5, 0.5, 0.01, 0], { rtol: 1e-15 }, 'x0 weights');
  assertClose(minSnrWeights(snr, g, 'v'), [5 / 101, 5 / 6, 0.5 / 1.5, 0.01 / 1.01, 0], { rtol: 1e-15 }, 'v weights');
  // For a prediction error δ in ε (resp. v), the implied x̂_0 error is δ/√SNR (resp. δ·√(1−ᾱ)), so
  // weight_ε·mse_ε = weight_v·mse_v = weight_x0·mse_x0 = min(SNR, γ)·mse_x0.
  const d = GaussianDiffusion.fromConfig({ kind: 'cosine' });
  const shape = [3, 4];
  const rng = new Rng(4);
  const x0: ShapedArray = { data: gridData(rng, 12), shape };
  const noise = rng.normalFloat32(12);
  const t = [5, 400, 950];
  const xt: ShapedArray = { data: d.qSample(x0, t, noise), shape };
  const delta = rng.normalFloat32(12).map((v) => 0.1 * v);
  const epsHat = noise.map((v, i) => v + delta[i]);
  const vTrue = d.getVelocity(x0, t, noise);
  const vHat = vTrue.map((v, i) => v + delta[i]);
  const snrT = t.map((ti) => d.snr[ti]);
  const mseX0FromEps = meanSquaredError(d.predictX0FromEps(xt, t, epsHat), x0.data, 3);
  const mseX0FromV = meanSquaredError(d.predictX0FromV(xt, t, vHat), x0.data, 3);
  const wEps = minSnrWeights(snrT, g, 'epsilon');
  const wV = minSnrWeights(snrT, g, 'v');
  const mseEps = meanSquaredError(epsHat, noise, 3);
  const mseV = meanSquaredError(vHat, vTrue, 3);
  for (let b = 0; b < 3; b++) {
    const target = Math.min(snrT[b], g);
    assertClose(wEps[b] * mseEps[b], target * mseX0FromEps[b], { rtol: 2e-3 }, `ε-weighted = min(SNR,γ)·mse_x0 (t=${t[b]})`);
    assertClose(wV[b] * mseV[b], target * mseX0FromV[b], { rtol: 2e-3 }, `v-weighted = min(SNR,γ)·mse_x0 (t=${t[b]})`);
  }
});

test('vbTermsBpd: KL(q ‖ p_θ) for t > 0, discretised decoder NLL at t = 0, in bits/dim', () => {
  const d = GaussianDiffusion.fromConfig({ kind: 'linear' });
  const shape = [4, 1, 2, 3];
  const rng = new Rng(9);
  const x0: ShapedArray = { data: gridData(rng, 24), shape };
  const noise = rng.normalFloat32(24);
  const t = [0, 1, 400, 999];
  const xt = d.qSample(x0, t, noise);
  const epsTheta = noise.map((v, i) => v + 0.2 * Math.cos(i));
  const opts = { meanType: 'epsilon', varType: 'fixedLarge' } as const;
  const { output } = d.vbTermsBpd(epsTheta, x0, xt, t, opts);
  const p = d.pMeanVariance(epsTheta, { data: xt, shape }, t, opts);
  const q = d.qPosteriorMeanVariance(x0, xt, t);
  for (let b = 0; b < 4; b++) {
    // the means in float64 (eq. 7, with x̂_0 from eq. 15), as vbTermsBpd computes them
    const [c1, c2, abar] = [d.posteriorMeanCoef1[t[b]], d.posteriorMeanCoef2[t[b]], d.alphasCumprod[t[b]]];
    const pMean = (j: number) => c1 * (xt[j] / Math.sqrt(abar) - Math.sqrt(1 / abar - 1) * epsTheta[j]) + c2 * xt[j];
    const qMean = (j: number) => c1 * x0.data[j] + c2 * xt[j];
    let acc = 0;
    for (let j = b * 6; j < (b + 1) * 6; j++) {
      assertClose(pMean(j), p.mean[j], { atol: 1e-6 }, 'μ_θ');
      assertClose(qMean(j), q.mean[j], { atol: 1e-6 }, 'μ̃_t');
      if (t[b] === 0) {
        acc -= discretizedGaussianLogLikelihood([x0.data[j]], [pMean(j)], 0.5 * p.logVariance[j])[0];
      } else {
        // KL(q(x_{t−1}|x_t,x_0) ‖ p_θ(x_{t−1}|x_t)): the posterior is the FIRST argument
        const s1 = Math.exp(0.5 * q.logVarianceClipped[j]);
        const s2 = Math.exp(0.5 * p.logVariance[j]);
        acc += Math.log(s2 / s1) + (s1 * s1 + (qMean(j) - pMean(j)) ** 2) / (2 * s2 * s2) - 0.5;
      }
    }
    assertClose(output[b], acc / 6 / Math.LN2, { rtol: 1e-5, atol: 1e-9 }, `vb term t=${t[b]}`);
  }
  // A perfect ε-model with the posterior variance has KL = 0 for every t > 0.
  const perfect = d.vbTermsBpd(noise, x0, xt, t, { meanType: 'epsilon', varType: 'fixedSmall' }).output;
  assertClose(perfect.subarray(1), [0, 0, 0], { atol: 1e-6 }, 'KL of a perfect model');
  assert.ok(perfect[0] > 0, 'decoder NLL is positive');
});

test('vbTermsBpd keeps precision for near-equal means: float64 closed form to 1e-5 relative', () => {
  // A nearly perfect ε-model (ε_θ = ε + 1e-4·cos) at small t: μ̃_t − μ_θ is ~1e-6 while both means are
  // ~1, so means rounded to float32 (ulp ~6e-8) would put the KL off by ~10%. Reference: the same
  // float32 inputs, everything else in float64: x̂_0 = x_t/√ᾱ_t − √(1/ᾱ_t − 1) ε_θ (eq. 15),
  // μ̃_t − μ_θ = coef1·(x_0 − x̂_0) (eq. 7), KL = ½(−1 + lv_p − lv_q + e^{lv_q − lv_p} + (μ̃ − μ_θ)² e^{−lv_p}).
  const d = GaussianDiffusion.fromConfig({ kind: 'linear' });
  const shape = [3, 1, 4, 4];
  const rng = new Rng(21);
  const x0: ShapedArray = { data: gridData(rng, 48), shape };
  const noise = rng.normalFloat32(48);
  const t = [1, 5, 30];
  const xt = d.qSample(x0, t, noise);
  const epsTheta = noise.map((v, i) => v + 1e-4 * Math.cos(i));
  const varHalf = Float32Array.from({ length: 48 }, (_, i) => 0.5 * Math.sin(i)); // learnedRange v ∈ [−1, 1]
  const learned = new Float32Array(96);
  for (let b = 0; b < 3; b++) {
    learned.set(epsTheta.subarray(b * 16, b * 16 + 16), b * 32);
    learned.set(varHalf.subarray(b * 16, b * 16 + 16), b * 32 + 16);
  }
  for (const varType of ['fixedSmall', 'learnedRange'] as const) {
    const out = d.vbTermsBpd(varType === 'learnedRange' ? learned : epsTheta, x0, xt, t, { meanType: 'epsilon', varType }).output;
    const expected = t.map((ti, b) => {
      const abar = d.alphasCumprod[ti];
      const lvq = d.posteriorLogVarianceClipped[ti];
      let acc = 0;
      for (let j = b * 16; j < (b + 1) * 16; j++) {
        const predX0 = xt[j] / Math.sqrt(abar) - Math.sqrt(1 / abar - 1) * epsTheta[j];
        const diff = d.posteriorMeanCoef1[ti] * (x0.data[j] - predX0);
        const frac = (varHalf[j] + 1) / 2;
        const lvp = varType === 'fixedSmall' ? lvq : frac * Math.log(d.betas[ti]) + (1 - frac) * lvq;
        acc += 0.5 * (-1 + lvp - lvq + Math.exp(lvq - lvp) + diff * diff * Math.exp(-lvp));
      }
      return acc / 16 / Math.LN2;
    });
    assertClose(out, expected, { rtol: 1e-5 }, `vbTermsBpd (${varType}) near-equal means`);
    if (varType === 'fixedSmall') assert.ok(expected.every((v) => v > 0 && v < 1e-8), `tiny KL terms: ${expected}`);
  }
});

test('priorBpd is KL(N(√ᾱ_T x_0, 1−ᾱ_T) ‖ N(0, 1)) averaged, in bits', () => {
  const d = GaussianDiffusion.fromConfig({ kind: 'linear', T: 200 });
  const x0: ShapedArray = { data: Float32Array.of(-1, 0, 1, 0.5, 0.5, 0.5), shape: [2, 3] };
  const abar = d.alphasCumprod[199];
  const kl = (x: number) => 0.5 * (-1 - Math.log(1 - abar) + (1 - abar) + abar * x * x);
  const expected = [(kl(-1) + kl(0) + kl(1)) / 3, kl(0.5)].map((v) => v / Math.LN2);
  assertClose(d.priorBpd(x0), expected, { rtol: 1e-6 }, 'priorBpd');
});

test('trainingLosses: targets ε / x_0 / v, min-SNR weighting, hybrid loss for learnedRange', () => {
  const d = GaussianDiffusion.fromConfig({ kind: 'cosine', T: 100 });
  const shape = [3, 2, 2];
  const rng = new Rng(10);
  const x0: ShapedArray = { data: gridData(rng, 12), shape };
  const noise = rng.normalFloat32(12);
  const t = [0, 30, 99];
  const v = d.getVelocity(x0, t, noise);
  for (const [meanType, target] of [['epsilon', noise], ['x0', x0.data], ['v', v]] as const) {
    const perfect = d.trainingLosses(target, x0, t, noise, { meanType, varType: 'fixedSmall' });
    assertClose(perfect.mse, [0, 0, 0], { atol: 0 }, `${meanType}: perfect prediction`);
    const off = target.map((x) => x + 0.5);
    const l = d.trainingLosses(off, x0, t, noise, { meanType, varType: 'fixedSmall', minSnrGamma: 5 });
    assertClose(l.mse, [0.25, 0.25, 0.25], { atol: 1e-6 }, `${meanType}: mse (float32 offsets)`);
    const mse = meanSquaredError(off, target, 3);
    const w = minSnrWeights(t.map((ti) => d.snr[ti]), 5, meanType);
    assertClose(l.weight, w, { atol: 0 }, `${meanType}: weights`);
    assertClose(l.loss, w.map((wi, b) => mse[b] * wi), { rtol: 1e-12 }, `${meanType}: weighted loss`);
    assert.equal(l.vb, undefined);
  }
  // learnedRange: [B, 2C, ...] output; loss = mse + λ·T·L_t (improved-diffusion RESCALED_MSE = vb·T/1000)
  const out = new Float32Array(24);
  for (let b = 0; b < 3; b++) {
    out.set(noise.subarray(b * 4, b * 4 + 4).map((e) => e + 0.1), b * 8);
    out.set([0.3, -0.2, 0.9, -1], b * 8 + 4);
  }
  const l = d.trainingLosses(out, x0, t, noise, { meanType: 'epsilon', varType: 'learnedRange' });
  const xt = d.qSample(x0, t, noise);
  const vb = d.vbTermsBpd(out, x0, xt, t, { meanType: 'epsilon', varType: 'learnedRange' }).output;
  assertClose(l.mse, [0.01, 0.01, 0.01], { rtol: 1e-5 }, 'learnedRange mse uses the first C channels');
  assertClose(l.vb!, vb, { atol: 0 }, 'learnedRange vb');
  assertClose(l.loss, hybridLoss(l.mse, vb, 100), { atol: 0 }, 'hybrid loss');
  assertClose(hybridLoss([1], [2], 1000), [1 + 0.001 * 1000 * 2], { atol: 0 }, 'hybridLoss formula');
});

test('calcBpdLoop: prior + Σ vb; an oracle model has zero KL terms; progress; original timesteps', async () => {
  const d = GaussianDiffusion.fromConfig({ kind: 'cosine', T: 20 });
  const T = d.numTimesteps;
  const shape = [2, 1, 2, 2];
  const x0: ShapedArray = { data: gridData(new Rng(11), 8), shape };
  // The oracle knows x_0 and returns the ε that makes x̂_0 = x_0.
  const oracle: DiffusionModel = (xt, t) =>
    xt.map((v, j) => (v - d.sqrtAlphasCumprod[t[0]] * x0.data[j]) / d.sqrtOneMinusAlphasCumprod[t[0]]);
  const progress: [number, number][] = [];
  const res = await d.calcBpdLoop(oracle, x0, {
    rng: new Rng(12),
    meanType: 'epsilon',
    varType: 'fixedSmall',
    onProgress: (done, total) => progress.push([done, total]),
  });
  assert.deepEqual(progress, Array.from({ length: T }, (_, k) => [k + 1, T]));
  for (let b = 0; b < 2; b++) {
    const row = (a: Float64Array) => a.subarray(b * T, (b + 1) * T);
    assertClose(row(res.vb).subarray(1), new Float64Array(T - 1), { atol: 1e-4 }, `oracle KL terms (b=${b})`);
    assertClose(res.totalBpd[b], res.priorBpd[b] + row(res.vb).reduce((a, v) => a + v, 0), { rtol: 1e-12 }, 'total = prior + Σ vb');
    assertClose(row(res.xstartMse), new Float64Array(T), { atol: 1e-8 }, 'oracle x̂_0 error');
    assertClose(row(res.mse), new Float64Array(T), { atol: 1e-4 }, 'oracle ε error');
  }
  assertClose(res.priorBpd, d.priorBpd(x0), { atol: 0 }, 'prior');

  // A non-oracle model: every entry equals vbTermsBpd on the same noise (drawn for t = T−1 … 0).
  const model: DiffusionModel = (xt, t) => xt.map((v) => 0.1 * v + 0.01 * t[0]);
  const rng = new Rng(13);
  const res2 = await d.calcBpdLoop(model, x0, { rng: rng.clone(), meanType: 'epsilon', varType: 'fixedLarge' });
  for (let t = T - 1; t >= 0; t--) {
    const noise = rng.normalFloat32(8);
    const xt = d.qSample(x0, t, noise);
    const vb = d.vbTermsBpd(await model(xt, new Int32Array(2).fill(t), shape), x0, xt, t, {
      meanType: 'epsilon',
      varType: 'fixedLarge',
      clipDenoised: true,
    }).output;
    assertClose([res2.vb[t], res2.vb[T + t]], vb, { atol: 0 }, `vb at t=${t}`);
  }

  // On a respaced process the model sees the original timesteps.
  const spaced = respace(d, 'ddim5'); // keeps 0, 4, 8, 12, 16
  const seen: number[] = [];
  const spy: DiffusionModel = (xt, t) => {
    seen.push(t[0]);
    return new Float32Array(xt.length);
  };
  const res3 = await spaced.calcBpdLoop(spy, x0, { rng: new Rng(1), meanType: 'epsilon', varType: 'fixedSmall' });
  assert.deepEqual(seen, [16, 12, 8, 4, 0]);
  assert.equal(res3.vb.length, 2 * 5);
});
