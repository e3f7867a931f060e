// Our samplers against the full-loop values that diffusers' own scheduler tests publish, with
// diffusers' fixtures rebuilt exactly (tests/schedulers/test_schedulers.py, SchedulerCommonTest):
//   dummy_sample_deter = arange(768).reshape(C=3, H=8, W=8, B=4).permute(3, 0, 1, 2) / 768,
//   dummy_noise_deter  = the same from arange(768).flip(-1),
//   dummy_model(sample, t) = sample·t/(t + 1) in float32.
// Tolerances are diffusers' own: |sum − pin| < 1e-2, |mean − pin| < 1e-3 (of |x|).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  DdimSampler,
  DpmSolverSampler,
  GaussianDiffusion,
  dpmSolverTimesteps,
  sampleLoop,
  type DdimSamplerOptions,
  type DiffusionModel,
  type DpmSolverOptions,
} from '../src/diffusion/index.ts';
import { Rng } from '../src/rng.ts';
import { assertClose } from './helpers.ts';

const shape = [4, 3, 8, 8];
const NUM = 768;

/** diffusers' dummy_sample_deter (flip = false) / dummy_noise_deter (flip = true), NCHW. */
function dummyDeter(flip: boolean): Float32Array {
  const out = new Float32Array(NUM);
  for (let b = 0; b < 4; b++) {
    for (let c = 0; c < 3; c++) {
      for (let h = 0; h < 8; h++) {
        for (let w = 0; w < 8; w++) {
          const k = ((c * 8 + h) * 8 + w) * 4 + b; // position in arange before the permute
          out[((b * 3 + c) * 8 + h) * 8 + w] = (flip ? NUM - 1 - k : k) / NUM;
        }
      }
    }
  }
  return out;
}

/** diffusers' dummy_model: sample·t/(t + 1), each operation rounded to float32 as torch does. */
const dummyModel: DiffusionModel = (x, t) => x.map((v) => Math.fround(Math.fround(v * t[0]) / (t[0] + 1)));

/** Sum and mean of |x| (diffusers' result_sum / result_mean). */
function absSumMean(x: Float32Array): { sum: number; mean: number } {
  let s = 0;
  for (const v of x) s += Math.abs(v);
  return { sum: s, mean: s / x.length };
}

function assertPins(x: Float32Array, pins: { sum?: number; mean: number }, label: string): void {
  const r = absSumMean(x);
  if (pins.sum !== undefined) assertClose(r.sum, pins.sum, { atol: 1e-2 }, `${label}: result_sum`);
  assertClose(r.mean, pins.mean, { atol: 1e-3 }, `${label}: result_mean`);
}

test('fixtures: diffusers dummy_sample_deter / dummy_noise_deter layout', () => {
  const s = dummyDeter(false);
  // sample[b, c, h, w] = (c·256 + h·32 + w·4 + b)/768
  const f = Math.fround;
  assert.equal(s[0], 0);
  assert.equal(s[1], f(4 / 768)); // [0, 0, 0, 1]
  assert.equal(s[64], f(256 / 768)); // [0, 1, 0, 0]
  assert.equal(s[192], f(1 / 768)); // [1, 0, 0, 0]
  assert.equal(dummyDeter(true)[0], f(767 / 768));
});

// ---------------------------------------------------------------- DDIM (tests/schedulers/test_scheduler_ddim.py)
// get_scheduler_config: T = 1000, linear β 1e-4 … 0.02, clip_sample = True; set_timesteps(10) with the
// default "leading" spacing (900, 800, …, 0); step(residual, t, sample, eta = 0) with diffusers' default
// use_clipped_model_output = False; set_alpha_to_one defaults to True.
const linear = GaussianDiffusion.fromConfig({ kind: 'linear' });
const linear01 = GaussianDiffusion.fromConfig({ kind: 'linear', betaStart: 0.01 }); // "so that the first alpha is 0.99"

function diffusersDdim(base: GaussianDiffusion, extra: Partial<DdimSamplerOptions> = {}): DdimSampler {
  return new DdimSampler(base, {
    meanType: 'epsilon',
    eta: 0,
    timesteps: 'leading10',
    clipDenoised: true,
    useClippedModelOutput: false,
    ...extra,
  });
}

test('diffusers DDIM pins: test_full_loop_no_noise, _with_v_prediction, _with_(no_)set_alpha_to_one', async () => {
  const cases: [string, DdimSampler, { sum: number; mean: number }][] = [
    ['no_noise', diffusersDdim(linear), { sum: 172.0067, mean: 0.223967 }],
    ['v_prediction', diffusersDdim(linear, { meanType: 'v' }), { sum: 52.5302, mean: 0.0684 }],
    ['set_alpha_to_one', diffusersDdim(linear01, { setAlphaToOne: true }), { sum: 149.8295, mean: 0.1951 }],
    ['no_set_alpha_to_one', diffusersDdim(linear01, { setAlphaToOne: false }), { sum: 149.0784, mean: 0.1941 }],
  ];
  for (const [name, sampler, pins] of cases) {
    assert.deepEqual(Array.from(sampler.timesteps), [900, 800, 700, 600, 500, 400, 300, 200, 100, 0]);
    const x = await sampleLoop(sampler, dummyModel, shape, new Rng(0), { noise: dummyDeter(false) });
    assertPins(x, pins, `DDIM ${name}`);
  }
});

test('diffusers DDIM pin: test_full_loop_with_noise (add_noise at t = 100, then the last 2 of 10 steps)', async () => {
  const sampler = diffusersDdim(linear);
  const t0 = sampler.timesteps[8];
  assert.equal(t0, 100);
  const xt = linear.qSample({ data: dummyDeter(false), shape }, t0, dummyDeter(true));
  const x = await sampleLoop(sampler, dummyModel, shape, new Rng(0), { noise: xt, startStep: 8 });
  assertPins(x, { sum: 354.5418, mean: 0.4616 }, 'DDIM with_noise');
});

test('DDIM options: set_alpha_to_one only changes the last step; use_clipped_model_output only matters when clipping', async () => {
  const x = { data: Float32Array.of(2.5, -0.3, 0.8, -2), shape: [1, 4] };
  const eps = Float32Array.of(0.4, -0.1, 0.2, 0.3);
  const one = diffusersDdim(linear01, { setAlphaToOne: true });
  const zero = diffusersDdim(linear01, { setAlphaToOne: false });
  assert.equal(zero.finalAlphaCumprod, linear01.alphasCumprod[0]);
  assert.deepEqual(one.step(eps, 500, x, new Rng(0)).prevSample, zero.step(eps, 500, x, new Rng(0)).prevSample);
  // the last step: to ᾱ = 1 it returns x̂_0; to ᾱ_0 it is √ᾱ_0 x̂_0 + √(1 − ᾱ_0) ε (eq. 12, η = 0)
  const a = one.step(eps, 0, x, new Rng(0));
  assertClose(a.prevSample, a.predX0, { atol: 0 }, 'set_alpha_to_one: x̂_0');
  const b = zero.step(eps, 0, x, new Rng(0));
  const a0 = linear01.alphasCumprod[0];
  assertClose(b.prevSample, Array.from(b.predX0, (v, j) => Math.sqrt(a0) * v + Math.sqrt(1 - a0) * eps[j]), { atol: 1e-6 }, 'final ᾱ_0');
  // clipping x̂_0: the clipped-model-output ε is re-derived from the clipped x̂_0, the other is the model's ε
  const abar = linear.alphasCumprod[500];
  const abarPrev = linear.alphasCumprod[400];
  const big = { data: Float32Array.of(3, -3, 0.1, 0), shape: [1, 4] };
  const out = Float32Array.of(0.1, -0.2, 0.3, 0.05);
  for (const clipped of [true, false]) {
    const r = diffusersDdim(linear, { useClippedModelOutput: clipped }).step(out, 500, big, new Rng(0));
    const expected = Array.from(out, (e, j) => {
      const x0 = Math.min(1, Math.max(-1, (big.data[j] - Math.sqrt(1 - abar) * e) / Math.sqrt(abar)));
      const epsUsed = clipped ? (big.data[j] - Math.sqrt(abar) * x0) / Math.sqrt(1 - abar) : e;
      return Math.sqrt(abarPrev) * x0 + Math.sqrt(1 - abarPrev) * epsUsed;
    });
    assertClose(r.prevSample, expected, { atol: 2e-6 }, `use_clipped_model_output=${clipped}`);
  }
  // without clipping both choices give the same step
  const p = diffusersDdim(linear, { clipDenoised: false, useClippedModelOutput: true }).step(out, 500, big, new Rng(0));
  const q = diffusersDdim(linear, { clipDenoised: false, useClippedModelOutput: false }).step(out, 500, big, new Rng(0));
  assertClose(p.prevSample, q.prevSample, { atol: 2e-6 }, 'no clipping');
});

// ---------------------------------------------------------------- DPM-Solver++ (tests/schedulers/test_scheduler_dpm_multi.py)
// get_scheduler_config: T = 1000, linear β, solver_order = 2, prediction_type "epsilon",
// algorithm_type "dpmsolver++", solver_type "midpoint", lower_order_final = False,
// final_sigmas_type "sigma_min", timestep_spacing "linspace" (the scheduler's default); full_loop:
// set_timesteps(10), x = dummy_sample_deter, x ← step(dummy_model(x, t), t, x).prev_sample.
function diffusersDpm(extra: Partial<DpmSolverOptions> = {}): DpmSolverSampler {
  return new DpmSolverSampler(linear, {
    meanType: 'epsilon',
    timesteps: Array.from(dpmSolverTimesteps(1000, 10, 'linspace')),
    solverOrder: 2,
    solverType: 'midpoint',
    lowerOrderFinal: false,
    finalSigmasType: 'sigma_min',
    ...extra,
  });
}

test('diffusers DPM-Solver++ timesteps: linspace drops 0 from N + 1 points (499.5 rounds to 500, half to even)', () => {
  assert.deepEqual(Array.from(diffusersDpm().timesteps), [999, 899, 799, 699, 599, 500, 400, 300, 200, 100]);
});

test('diffusers DPM-Solver++(2M) pins: test_full_loop_no_noise, _no_noise_thres, _with_v_prediction', async () => {
  const cases: [string, DpmSolverSampler, number][] = [
    ['no_noise', diffusersDpm(), 0.3301],
    // thresholding=True, dynamic_thresholding_ratio=0.87, sample_max_value=0.5
    ['no_noise_thres', diffusersDpm({ dynamicThreshold: { percentile: 0.87, maxValue: 0.5 } }), 1.1364],
    ['with_v_prediction', diffusersDpm({ meanType: 'v' }), 0.2251],
  ];
  for (const [name, sampler, mean] of cases) {
    const x = await sampleLoop(sampler, dummyModel, shape, new Rng(0), { noise: dummyDeter(false) });
    assertPins(x, { mean }, `DPM-Solver++ ${name}`);
  }
});

test('diffusers DPM-Solver++(2M) pin: test_full_loop_with_noise (add_noise at timesteps[5] = 500, then the last 5 steps)', async () => {
  const sampler = diffusersDpm();
  const t0 = sampler.timesteps[5];
  assert.equal(t0, 500);
  const xt = linear.qSample({ data: dummyDeter(false), shape }, t0, dummyDeter(true));
  const x = await sampleLoop(sampler, dummyModel, shape, new Rng(0), { noise: xt, startStep: 5 });
  assertPins(x, { sum: 318.4111, mean: 0.4146 }, 'DPM-Solver++ with_noise');
});
