import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  GaussianDiffusion,
  betasForSchedule,
  linspace,
  scheduleConfig,
  scheduleTables,
  type ScheduleConfig,
} from '../src/diffusion/index.ts';
import { assertClose } from './helpers.ts';

const KINDS = ['linear', 'scaledLinear', 'sigmoid', 'cosine'] as const;

test('schedule configs: defaults, JSON round-trip, unknown keys are errors', () => {
  assert.deepEqual(scheduleConfig({ kind: 'linear' }), {
    kind: 'linear',
    T: 1000,
    rescaleZeroTerminalSnr: false,
    betaStart: 1e-4,
    betaEnd: 0.02,
  });
  assert.deepEqual(scheduleConfig({ kind: 'cosine', T: 4000 }), {
    kind: 'cosine',
    T: 4000,
    rescaleZeroTerminalSnr: false,
    s: 0.008,
    maxBeta: 0.999,
  });
  for (const kind of KINDS) {
    for (const rescaleZeroTerminalSnr of [false, true]) {
      const c = scheduleConfig({ kind, T: 500, rescaleZeroTerminalSnr });
      const back = scheduleConfig(JSON.parse(JSON.stringify(c)));
      assert.deepEqual(back, c);
      // the tables rebuilt from the JSON are bit-identical
      assert.deepEqual(GaussianDiffusion.fromConfig(back).alphasCumprod, GaussianDiffusion.fromConfig(c).alphasCumprod);
      assert.deepEqual(GaussianDiffusion.fromConfig(c).config, c);
    }
  }
  assert.throws(() => scheduleConfig({ kind: 'linear', T: 1000, betaMax: 0.02 }), /unknown key 'betaMax'/);
  assert.throws(() => scheduleConfig({ kind: 'linear', s: 0.008 }), /unknown key 's'/);
  assert.throws(() => scheduleConfig({ kind: 'quadratic' }), /unknown kind/);
  assert.throws(() => scheduleConfig({ T: 1000 }), /unknown kind/);
  assert.throws(() => scheduleConfig({ kind: 'linear', T: '1000' }), /'T' must be a number/);
  assert.throws(() => scheduleConfig({ kind: 'linear', T: 1.5 }), /T must be an integer/);
  assert.throws(() => scheduleConfig({ kind: 'cosine', rescaleZeroTerminalSnr: 1 }), /must be a boolean/);
  assert.throws(() => scheduleConfig(null), /must be an object/);
  // linear at T = 10 would need β = 0.02·100 = 2
  assert.throws(() => betasForSchedule(scheduleConfig({ kind: 'linear', T: 10 })), /outside \(0, 1\]/);
});

test('linspace follows NumPy (last value exactly stop)', () => {
  const x = linspace(1e-4, 0.02, 1000);
  assert.equal(x[0], 1e-4);
  assert.equal(x[999], 0.02);
  assert.equal(x[500], 1e-4 + 500 * ((0.02 - 1e-4) / 999));
  assert.deepEqual(Array.from(linspace(3, 3, 1)), [3]);
});

test('linear schedule: 1e-4..0.02 at T=1000; both ends scaled by 1000/T otherwise', () => {
  const b = betasForSchedule(scheduleConfig({ kind: 'linear' }));
  assert.equal(b.length, 1000);
  assert.equal(b[0], 1e-4);
  assert.equal(b[999], 0.02);
  const b100 = betasForSchedule(scheduleConfig({ kind: 'linear', T: 100 }));
  assertClose([b100[0], b100[99]], [1e-3, 0.2], { rtol: 1e-15 }, 'linear T=100 ends');
  const b4000 = betasForSchedule(scheduleConfig({ kind: 'linear', T: 4000 }));
  assertClose([b4000[0], b4000[3999]], [2.5e-5, 0.005], { rtol: 1e-15 }, 'linear T=4000 ends');
});

test('table identities hold for every schedule kind (eq. 4, 6-7)', () => {
  for (const kind of KINDS) {
    const d = GaussianDiffusion.fromConfig({ kind, T: 300 });
    const T = d.numTimesteps;
    let prod = 1;
    for (let t = 0; t < T; t++) {
      const label = `${kind} t=${t}`;
      prod *= 1 - d.betas[t];
      // ᾱ_t = ∏_{i≤t} α_i — a product up to t, not up to T
      assertClose(d.alphasCumprod[t], prod, { rtol: 1e-14 }, `${label} alphasCumprod`);
      const abar = d.alphasCumprod[t];
      const abarPrev = t === 0 ? 1 : d.alphasCumprod[t - 1];
      assert.equal(d.alphasCumprodPrev[t], abarPrev);
      assertClose(d.alphasCumprodNext[t], t === T - 1 ? 0 : d.alphasCumprod[t + 1], { atol: 0 }, `${label} next`);
      const alpha = d.alphas[t];
      const beta = d.betas[t];
      // β̃_t = 1/(1/(1−ᾱ_{t−1}) + α_t/β_t): the precision of q(x_{t−1}|x_t,x_0) is the sum of the
      // precisions of q(x_{t−1}|x_0) and of q(x_t|x_{t−1}) seen as a function of x_{t−1}.
      assertClose(d.posteriorVariance[t], 1 / (1 / (1 - abarPrev) + alpha / beta), { rtol: 1e-12 }, `${label} posteriorVariance`);
      assertClose(d.posteriorMeanCoef1[t], (Math.sqrt(abarPrev) * beta) / (1 - abar), { rtol: 1e-14 }, `${label} coef1`);
      assertClose(d.posteriorMeanCoef2[t], (Math.sqrt(alpha) * (1 - abarPrev)) / (1 - abar), { rtol: 1e-14 }, `${label} coef2`);
      assertClose(d.sqrtAlphasCumprod[t] ** 2 + d.sqrtOneMinusAlphasCumprod[t] ** 2, 1, { atol: 1e-15 }, `${label} √ᾱ² + √(1−ᾱ)²`);
      assertClose(d.sqrtRecipAlphasCumprod[t] * d.sqrtAlphasCumprod[t], 1, { atol: 1e-14 }, `${label} 1/√ᾱ`);
      assertClose(d.sqrtRecipm1AlphasCumprod[t], Math.sqrt(1 / abar - 1), { rtol: 1e-14 }, `${label} √(1/ᾱ−1)`);
      assertClose(d.logOneMinusAlphasCumprod[t], Math.log(1 - abar), { rtol: 1e-14 }, `${label} log(1−ᾱ)`);
      assertClose(d.snr[t], abar / (1 - abar), { rtol: 1e-14 }, `${label} snr`);
      const clippedIdx = t === 0 ? 1 : t;
      assertClose(d.posteriorLogVarianceClipped[t], Math.log(d.posteriorVariance[clippedIdx]), { rtol: 1e-14 }, `${label} log β̃ clipped`);
    }
    assert.equal(d.posteriorVariance[0], 0);
  }
});

test("linear schedule pins from diffusers' DDPM test_variance (fixed_small)", () => {
  // diffusers tests/schedulers/test_scheduler_ddpm.py::test_variance: DDPMScheduler(linear, 1e-4..0.02,
  // T=1000, variance_type='fixed_small')._get_variance(t) = (1−ᾱ_{t−1})/(1−ᾱ_t)·β_t, clamped at 1e-20;
  // expected 0.0 at t=0, 0.00979 at t=487, 0.02 at t=999, each within 1e-5.
  const d = GaussianDiffusion.fromConfig({ kind: 'linear' });
  assertClose(d.posteriorVariance[0], 0, { atol: 1e-5 }, 'β̃ at t=0');
  assertClose(d.posteriorVariance[487], 0.00979, { atol: 1e-5 }, 'β̃ at t=487');
  assertClose(d.posteriorVariance[999], 0.02, { atol: 1e-5 }, 'β̃ at t=999');
  // tighter, from an independent float64 NumPy evaluation of the same expression
  assertClose(d.posteriorVariance[487], 0.00979157198569004, { rtol: 1e-13 }, 'β̃ at t=487 (NumPy)');
  assertClose(d.posteriorVariance[999], 0.01999998352656061, { rtol: 1e-13 }, 'β̃ at t=999 (NumPy)');
});

test('cosine schedule golden values (Nichol & Dhariwal eq. 17)', () => {
  const d = GaussianDiffusion.fromConfig({ kind: 'cosine' });
  const f = (tau: number) => Math.cos(((tau + 0.008) / 1.008) * (Math.PI / 2)) ** 2;
  // Where no β is clipped the product telescopes: ᾱ at index t = f((t+1)/T)/f(0).
  for (const t of [0, 1, 10, 100, 499, 900, 998]) {
    assertClose(d.alphasCumprod[t], f((t + 1) / 1000) / f(0), { rtol: 1e-11 }, `ᾱ[${t}] closed form`);
  }
  // Only the last β hits the 0.999 clip (f(1) = 0 would make it 1).
  assert.equal(d.betas[999], 0.999);
  assert.ok(d.betas[998] < 0.999);
  // Pins from an independent NumPy evaluation of improved-diffusion's betas_for_alpha_bar.
  assertClose(
    [d.betas[0], d.betas[1], d.betas[499], d.betas[998]],
    [4.128422482196914e-5, 4.614175273665033e-5, 0.0031458862304780677, 0.7499993929011166],
    { rtol: 1e-11 },
    'cosine β',
  );
  assertClose(
    [d.alphasCumprod[0], d.alphasCumprod[499], d.alphasCumprod[998], d.alphasCumprod[999]],
    [0.999958715775178, 0.4938435904406382, 2.4287669070348544e-6, 2.4287669070348567e-9],
    { rtol: 1e-11 },
    'cosine ᾱ',
  );
});

test('scaledLinear and sigmoid schedules (diffusers definitions)', () => {
  const sl = betasForSchedule(scheduleConfig({ kind: 'scaledLinear' }));
  assertClose([sl[0], sl[999]], [0.00085, 0.012], { rtol: 1e-14 }, 'scaledLinear ends');
  const mid = (Math.sqrt(0.00085) + (Math.sqrt(0.012) - Math.sqrt(0.00085)) * (500 / 999)) ** 2;
  assertClose(sl[500], mid, { rtol: 1e-14 }, 'scaledLinear β[500]');
  const sg = betasForSchedule(scheduleConfig({ kind: 'sigmoid' }));
  const sig = (x: number) => 1 / (1 + Math.exp(-x));
  assertClose([sg[0], sg[999]], [sig(-6) * (0.02 - 1e-4) + 1e-4, sig(6) * (0.02 - 1e-4) + 1e-4], { rtol: 1e-14 }, 'sigmoid ends');
  for (let t = 1; t < 1000; t++) assert.ok(sg[t] > sg[t - 1], 'sigmoid β increasing');
});

test('zero-terminal-SNR rescaling (Lin et al. Alg. 1): ᾱ_T = 0, √ᾱ_1 kept, β_T = 1', () => {
  for (const kind of KINDS) {
    const plain = GaussianDiffusion.fromConfig({ kind });
    const d = GaussianDiffusion.fromConfig({ kind, rescaleZeroTerminalSnr: true });
    const T = d.numTimesteps;
    assert.equal(d.alphasCumprod[T - 1], 0, `${kind} ᾱ_T`);
    assert.equal(d.betas[T - 1], 1, `${kind} β_T`);
    assert.equal(d.snr[T - 1], 0);
    assertClose(d.sqrtAlphasCumprod[0], plain.sqrtAlphasCumprod[0], { rtol: 1e-14 }, `${kind} √ᾱ_1`);
    // √ᾱ is an affine map of the original √ᾱ
    const s0 = plain.sqrtAlphasCumprod[0];
    const sT = plain.sqrtAlphasCumprod[T - 1];
    for (const t of [1, 100, 500, 900]) {
      assertClose(d.sqrtAlphasCumprod[t], ((plain.sqrtAlphasCumprod[t] - sT) * s0) / (s0 - sT), { rtol: 1e-12 }, `${kind} √ᾱ[${t}]`);
    }
    for (let t = 1; t < T; t++) assert.ok(d.snr[t] < d.snr[t - 1], `${kind} SNR decreasing at ${t}`);
    // the posterior is still well defined at the last step; only 1/√ᾱ blows up there
    for (const name of ['posteriorVariance', 'posteriorMeanCoef1', 'posteriorMeanCoef2', 'posteriorLogVarianceClipped'] as const) {
      assert.ok(d[name].every(Number.isFinite), `${kind} ${name} finite`);
    }
    assert.equal(d.sqrtRecipAlphasCumprod[T - 1], Infinity);
  }
});

test('scheduleTables rejects bad β', () => {
  assert.throws(() => scheduleTables(Float64Array.of(0.1)), /at least 2/);
  assert.throws(() => scheduleTables(Float64Array.of(0.1, 0)), /outside/);
  assert.throws(() => scheduleTables(Float64Array.of(0.1, 1.5)), /outside/);
  const c: ScheduleConfig = scheduleConfig({ kind: 'cosine', T: 10 });
  assert.equal(new GaussianDiffusion(betasForSchedule(c)).numTimesteps, 10);
});

test('a schedule whose betas leave (0, 1] is refused by scheduleConfig itself (linear at T = 10)', () => {
  assert.throws(() => scheduleConfig({ kind: 'linear', T: 10 }), /linear schedule with T = 10 gives betas\[5\] = 1\.11.*use T >= 20/);
  assert.equal(scheduleConfig({ kind: 'linear', T: 20 }).T, 20); // β_T = 0.02·1000/20 = 1 exactly: allowed
  assert.equal(betasForSchedule(scheduleConfig({ kind: 'linear', T: 20 }))[19], 1);
});
