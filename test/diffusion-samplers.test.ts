import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  DdimSampler,
  DdpmSampler,
  GaussianDiffusion,
  ddimSigma,
  respace,
  sampleLoop,
  type ShapedArray,
  type DiffusionModel,
  type SampleLoopStep,
} from '../src/diffusion/index.ts';
import { Rng } from '../src/rng.ts';
import { assertClose, sum } from './helpers.ts';

const linear = GaussianDiffusion.fromConfig({ kind: 'linear' });

/** The deterministic dummy model of the goldens: ε_θ(x, t) = 0.9·x + 0.05·sin(t/100). */
const dummy: DiffusionModel = (x, t) => x.map((v) => 0.9 * v + 0.05 * Math.sin(t[0] / 100));

test('DDIM with η = 1 on consecutive steps is DDPM: σ_t² = β̃_t and the same step', () => {
  for (const d of [linear, GaussianDiffusion.fromConfig({ kind: 'cosine' }), respace(linear, 'ddim50')]) {
    for (let i = 0; i < d.numTimesteps; i++) {
      assertClose(ddimSigma(d, i, 1) ** 2, d.posteriorVariance[i], { rtol: 1e-10, atol: 1e-18 }, `σ² at ${i}`);
    }
  }
  // The same model output and the same noise draw give the same x_{t−1} (Song et al. §4.1).
  const ddim = new DdimSampler(linear, { meanType: 'epsilon', eta: 1 });
  const ddpm = new DdpmSampler(linear, { meanType: 'epsilon', varType: 'fixedSmall' });
  const shape = [2, 3];
  const rng = new Rng(1);
  const x: ShapedArray = { data: rng.normalFloat32(6), shape };
  for (const t of [999, 500, 37, 1]) {
    const out = rng.normalFloat32(6);
    const a = ddim.step(out, t, x, new Rng(t));
    const b = ddpm.step(out, t, x, new Rng(t));
    assertClose(a.prevSample, b.prevSample, { atol: 2e-5 }, `DDIM(η=1) vs DDPM at t=${t}`);
    assertClose(a.predX0, b.predX0, { atol: 0 }, `x̂_0 at t=${t}`);
  }
});

test('DDIM η = 0 is deterministic and draws no noise; DDPM adds no noise at the last step', () => {
  const ddim = new DdimSampler(linear, { meanType: 'epsilon', eta: 0, timesteps: 'ddim10' });
  const x: ShapedArray = { data: Float32Array.of(0.3, -0.2, 1.5, 0), shape: [1, 4] };
  const rng = new Rng(5);
  const before = rng.state();
  const a = ddim.step(Float32Array.of(0.1, 0.2, 0.3, 0.4), 500, x, rng);
  assert.deepEqual(rng.state(), before);
  assert.deepEqual(ddim.step(Float32Array.of(0.1, 0.2, 0.3, 0.4), 500, x, rng).prevSample, a.prevSample);
  // DDIM eq. (12) written out for η = 0: √ᾱ_{t−1} x̂_0 + √(1−ᾱ_{t−1}) ε̂ with ε̂ the model output
  const abar = linear.alphasCumprod[500];
  const abarPrev = linear.alphasCumprod[400];
  const eps = [0.1, 0.2, 0.3, 0.4];
  const expected = eps.map((e, j) => {
    const x0 = (x.data[j] - Math.sqrt(1 - abar) * e) / Math.sqrt(abar);
    return Math.sqrt(abarPrev) * x0 + Math.sqrt(1 - abarPrev) * e;
  });
  assertClose(a.prevSample, expected, { atol: 1e-5 }, 'DDIM eq. (12)');

  const ddpm = new DdpmSampler(linear, { meanType: 'epsilon', varType: 'fixedLarge' });
  const last = ddpm.step(Float32Array.of(0.1, 0.2, 0.3, 0.4), 0, x, rng);
  assert.deepEqual(rng.state(), before, 'no noise drawn at t = 0');
  const p = linear.pMeanVariance(Float32Array.of(0.1, 0.2, 0.3, 0.4), x, 0, { meanType: 'epsilon', varType: 'fixedLarge' });
  assertClose(last.prevSample, p.mean, { atol: 0 }, 'last DDPM step is the mean');
  assert.throws(() => ddim.step(new Float32Array(4), 501, x, rng), /not one of this sampler's timesteps/);
  assert.throws(() => new DdimSampler(linear, { meanType: 'epsilon', eta: 1.5 }), /eta/);
});

test('respaced DDPM: recomputed β, model called with the original timesteps, per-step callback', async () => {
  const sampler = new DdpmSampler(linear, { meanType: 'epsilon', varType: 'fixedSmall', timesteps: '10' });
  const kept = [999, 888, 777, 666, 555, 444, 333, 222, 111, 0];
  assert.deepEqual(Array.from(sampler.timesteps), kept);
  // the step at original t = 555 uses β' = 1 − ᾱ_555/ᾱ_444 and the posterior of the short chain
  const d = sampler.diffusion;
  const i = 5;
  assert.equal(d.timestepMap[i], 555);
  const betaPrime = 1 - linear.alphasCumprod[555] / linear.alphasCumprod[444];
  assertClose(d.betas[i], betaPrime, { rtol: 1e-12 }, "β'");
  assertClose(d.posteriorVariance[i], ((1 - linear.alphasCumprod[444]) / (1 - linear.alphasCumprod[555])) * betaPrime, { rtol: 1e-10 }, "β̃'");
  const x: ShapedArray = { data: Float32Array.of(0.5, -0.5), shape: [2, 1] };
  const out = Float32Array.of(0.2, -0.1);
  const step = sampler.step(out, 555, x, new Rng(3));
  const z = new Rng(3).normalFloat32(2);
  for (let j = 0; j < 2; j++) {
    // μ_θ = (x_t − β'/√(1−ᾱ_555)·ε)/√α' (eq. 11 on the short chain) plus √β̃'·z
    const mean = (x.data[j] - (betaPrime / Math.sqrt(1 - linear.alphasCumprod[555])) * out[j]) / Math.sqrt(1 - betaPrime);
    assertClose(step.prevSample[j], mean + Math.sqrt(d.posteriorVariance[i]) * z[j], { atol: 1e-5 }, `respaced step [${j}]`);
  }

  const seen: number[] = [];
  const spy: DiffusionModel = (xt, t) => {
    assert.ok(t.every((v) => v === t[0]) && t.length === 2);
    seen.push(t[0]);
    return dummy(xt, t, [2, 1]);
  };
  const steps: SampleLoopStep[] = [];
  const final = await sampleLoop(sampler, spy, [2, 1], new Rng(4), { onStep: (s) => void steps.push(s) });
  assert.deepEqual(seen, kept);
  assert.deepEqual(steps.map((s) => s.t), kept);
  assert.deepEqual(steps.map((s) => s.step), kept.map((_, k) => k));
  for (let k = 1; k < steps.length; k++) assert.equal(steps[k].xt, steps[k - 1].prevSample);
  assert.equal(final, steps[steps.length - 1].prevSample);
  assert.ok(steps.every((s) => s.predX0.length === 2 && s.total === 10));
});

test('x̂_0 processing inside the samplers: clipping and dynamic thresholding', () => {
  const x: ShapedArray = { data: Float32Array.of(3, -2, 0.5, 0.1), shape: [1, 4] };
  const out = Float32Array.of(3, -2, 0.5, 0.1); // x0-prediction: x̂_0 = output
  const th = new DdimSampler(linear, { meanType: 'x0', eta: 0, dynamicThreshold: { percentile: 0.5 } }).step(out, 10, x, new Rng(0));
  assertClose(th.predX0, [1, -1, 0.4, 0.08], { atol: 1e-7 }, 'thresholded');
  const cl = new DdpmSampler(linear, { meanType: 'x0', varType: 'fixedSmall', clipDenoised: true }).step(out, 10, x, new Rng(0));
  assertClose(cl.predX0, [1, -1, 0.5, 0.1], { atol: 1e-7 }, 'clipped');
  // learnedRange output: the second half of the channels is ignored by DDIM
  const lr = new DdimSampler(linear, { meanType: 'x0', eta: 0, varType: 'learnedRange' }).step(
    Float32Array.of(0.3, -0.2, 0.5, 0.1, 9, 9, 9, 9),
    10,
    x,
    new Rng(0),
  );
  assertClose(lr.predX0, [0.3, -0.2, 0.5, 0.1], { atol: 1e-7 }, 'learnedRange split in DDIM');
});

test('pinned: 10-step DDIM (η = 0) loop with a deterministic dummy model', async () => {
  // Golden: T = 1000 linear schedule, DDIM η = 0 on 'ddim10' (timesteps 900, 800, …, 0), x̂_0 clipped,
  // shape [2, 3, 2, 2], x_T[i] = fround(cos(0.7·i)), model ε_θ(x, t) = 0.9·x + 0.05·sin(t/100).
  // Values from this implementation; an independent float64 NumPy implementation of Song et al.
  // eq. (12) agrees to 2e-7.
  const shape = [2, 3, 2, 2];
  const noise = Float32Array.from({ length: 24 }, (_, i) => Math.cos(0.7 * i));
  const sampler = new DdimSampler(linear, { meanType: 'epsilon', eta: 0, timesteps: 'ddim10', clipDenoised: true });
  assert.deepEqual(Array.from(sampler.timesteps), [900, 800, 700, 600, 500, 400, 300, 200, 100, 0]);
  const x0 = await sampleLoop(sampler, dummy, shape, new Rng(0), { noise });
  assertClose(
    x0.subarray(0, 8),
    [0.692695677280426, 0.5302991271018982, 0.07145020365715027, -0.38617244362831116, -0.6497608423233032, -0.6462860703468323, -0.3773825764656067, 0.0853177011013031],
    { atol: 1e-5 },
    'DDIM golden (first 8)',
  );
  assertClose(x0[23], -0.6388590335845947, { atol: 1e-5 }, 'DDIM golden (last)');
  assertClose(sum(x0), -0.7319255731999874, { atol: 1e-4 }, 'DDIM golden (sum)');
});

test('pinned: full 1000-step DDPM loop with the Philox RNG', async () => {
  // Golden: T = 1000 linear schedule, DDPM ancestral sampling (Algorithm 2), fixedSmall variance,
  // x̂_0 clipped, shape [2, 1, 2, 2], rng = new Rng(2024): x_T = rng.normalFloat32(8), then one
  // rng.normalFloat32(8) per step for t = 999 … 1 (none at t = 0); model ε_θ(x, t) = 0.9·x + 0.05·sin(t/100).
  // Values from this implementation; an independent float64 NumPy loop fed by a Python-int Philox
  // with the same conventions agrees to 1e-6.
  const sampler = new DdpmSampler(linear, { meanType: 'epsilon', varType: 'fixedSmall', clipDenoised: true });
  const x0 = await sampleLoop(sampler, dummy, [2, 1, 2, 2], new Rng(2024));
  assertClose(
    x0,
    [0.8029091358184814, 0.3338584899902344, 0.5673209428787231, -0.7169114351272583, -0.24029392004013062, -0.7111898064613342, 0.2870967388153076, -0.5076289772987366],
    { atol: 1e-5 },
    'DDPM golden',
  );
  assertClose(sum(x0), -0.18483883142471313, { atol: 1e-4 }, 'DDPM golden (sum)');
});

test('pinned: respaced DDPM (trailing10, fixedLarge) and stochastic DDIM (η = 0.5, "25")', async () => {
  // Same dummy model; goldens from this implementation (regression pins for the respaced paths).
  const ddpm = new DdpmSampler(linear, { meanType: 'epsilon', varType: 'fixedLarge', clipDenoised: true, timesteps: 'trailing10' });
  const a = await sampleLoop(ddpm, dummy, [2, 1, 2, 2], new Rng(7));
  assertClose(
    a,
    [0.5025572776794434, 0.09567514061927795, 0.9316582083702087, 0.34974411129951477, 0.5090192556381226, -0.3852159082889557, -1, 0.5009851455688477],
    { atol: 1e-5 },
    'DDPM trailing10 golden',
  );
  const ddim = new DdimSampler(linear, { meanType: 'epsilon', eta: 0.5, timesteps: '25' });
  const b = await sampleLoop(ddim, dummy, [1, 1, 2, 2], new Rng(99));
  assertClose(b, [-0.0502546951174736, 0.17836949229240417, -0.24828572571277618, -0.20516447722911835], { atol: 1e-5 }, 'DDIM η=0.5 golden');
});
