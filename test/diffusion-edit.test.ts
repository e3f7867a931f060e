// Image-to-image (SDEdit) and DDIM inversion on an exact closed-form model: Gaussian data
// x_0 ~ N(μ, S² I), for which E[ε | x_t] = √(1 − ᾱ)(x_t − √ᾱ μ)/(ᾱ S² + 1 − ᾱ) and the probability-flow
// ODE keeps z = (x_t − √ᾱ μ)/√(ᾱ S² + 1 − ᾱ) constant.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  DdimSampler,
  DdpmSampler,
  DpmSolverSampler,
  GaussianDiffusion,
  ddimInvert,
  sampleLoop,
  sdedit,
  sdeditStartStep,
  type DiffusionModel,
  type Sampler,
} from '../src/diffusion/index.ts';
import { Rng } from '../src/rng.ts';
import { assertClose } from './helpers.ts';

const base = GaussianDiffusion.fromConfig({ kind: 'linear' });
const MU = 0.3;
const S = 0.5;
const gaussianEps: DiffusionModel = (x, t) => {
  const a = base.alphasCumprod[t[0]];
  return x.map((v) => (Math.sqrt(1 - a) * (v - Math.sqrt(a) * MU)) / (a * S * S + 1 - a));
};
const image = Float32Array.from({ length: 16 }, (_, j) => Math.cos(j));
const shape = [2, 8];

const mse = (a: ArrayLike<number>, b: ArrayLike<number>): number => {
  let s = 0;
  for (let j = 0; j < a.length; j++) s += (a[j] - b[j]) ** 2;
  return s / a.length;
};

test('sdeditStartStep: diffusers img2img get_timesteps (run the last ⌊strength·N⌋ steps)', () => {
  assert.equal(sdeditStartStep(10, 0.6), 4);
  assert.equal(sdeditStartStep(10, 1), 0);
  assert.equal(sdeditStartStep(10, 0.3), 7); // 10·0.3 = 3.0000000000000004 → 3
  assert.equal(sdeditStartStep(50, 0.5), 25);
  assert.throws(() => sdeditStartStep(10, 0.05), /keeps no step/);
  for (const bad of [0, -0.1, 1.5, NaN]) assert.throws(() => sdeditStartStep(10, bad), /strength must be in \(0, 1\]/);
});

test('sdedit: x_t = q(x_t | x_0) at the start timestep, then only the remaining steps, with any sampler', async () => {
  const samplers: Sampler[] = [
    new DdpmSampler(base, { meanType: 'epsilon', varType: 'fixedSmall', timesteps: '20' }),
    new DdimSampler(base, { meanType: 'epsilon', eta: 0, timesteps: 'trailing20' }),
    new DpmSolverSampler(base, { meanType: 'epsilon', timesteps: 'trailing20' }),
  ];
  for (const sampler of samplers) {
    const calls: { t: number; x: Float32Array }[] = [];
    const spy: DiffusionModel = (x, t, sh) => {
      calls.push({ t: t[0], x: Float32Array.from(x) });
      return gaussianEps(x, t, sh);
    };
    const noise = new Rng(2).normalFloat32(16);
    const out = await sdedit(sampler, spy, { data: image, shape }, new Rng(7), { strength: 0.6, noise });
    const start = 8; // 20 − ⌊20·0.6⌋
    assert.deepEqual(calls.map((c) => c.t), Array.from(sampler.timesteps.subarray(start)));
    const t0 = sampler.timesteps[start];
    assert.deepEqual(calls[0].x, base.qSample({ data: image, shape }, t0, noise), 'x_t ~ q(x_t | x_0), eq. (4)');
    // the same as the sampling loop from x_t at step `start`
    const loop = await sampleLoop(sampler, gaussianEps, shape, new Rng(7), { noise: calls[0].x, startStep: start });
    assert.deepEqual(out, loop);
  }
});

test('sdedit on the exact model: the output follows the ODE from x_t; it moves further from the input as strength grows', async () => {
  const sampler = new DpmSolverSampler(base, { meanType: 'epsilon', timesteps: 'trailing50' });
  const noise = new Rng(9).normalFloat32(16);
  const dist: number[] = [];
  for (const strength of [0.2, 0.4, 0.6, 0.8, 1]) {
    const out = await sdedit(sampler, gaussianEps, { data: image, shape }, new Rng(0), { strength, noise });
    // exact: x_0' = μ + S·z with z = (√ᾱ (x_0 − μ) + √(1 − ᾱ) ε)/√(ᾱ S² + 1 − ᾱ), ᾱ at the start timestep
    const a = base.alphasCumprod[sampler.timesteps[sdeditStartStep(50, strength)]];
    const exact = Array.from(image, (x0, j) => MU + (S * (Math.sqrt(a) * (x0 - MU) + Math.sqrt(1 - a) * noise[j])) / Math.sqrt(a * S * S + 1 - a));
    assertClose(out, exact, { atol: 0.05 }, `strength ${strength}`);
    dist.push(mse(out, image));
  }
  for (let k = 1; k < dist.length; k++) assert.ok(dist[k] > dist[k - 1], `distance to the input grows with strength: ${dist}`);
});

test('DDIM inversion: decoding x_T gives the image back, and the error falls with the number of steps', async () => {
  const errs: number[] = [];
  const xTerr: number[] = [];
  for (const N of [10, 20, 50]) {
    const sampler = new DdimSampler(base, { meanType: 'epsilon', eta: 0, timesteps: `trailing${N}` });
    const xT = await ddimInvert(sampler, gaussianEps, { data: image, shape });
    const back = await sampleLoop(sampler, gaussianEps, shape, new Rng(0), { noise: xT });
    errs.push(mse(back, image));
    // x_T on the exact ODE from x_0: z = (x_0 − μ)/S
    const aT = base.alphasCumprod[sampler.timesteps[0]];
    xTerr.push(mse(xT, Array.from(image, (x0) => Math.sqrt(aT) * MU + (Math.sqrt(aT * S * S + 1 - aT) * (x0 - MU)) / S)));
  }
  assert.ok(errs[1] < errs[0] / 2.5 && errs[2] < errs[1] / 3, `reconstruction MSE falls with steps: ${errs}`);
  assert.ok(errs[2] < 3e-3, `reconstruction MSE at 50 steps: ${errs[2]}`);
  assert.ok(xTerr[1] < xTerr[0] && xTerr[2] < xTerr[1], `x_T approaches the exact ODE's: ${xTerr}`);
});

test('DDIM inversion: x_0, v and learned-variance models; the first step starts at ᾱ = 1 (x̂_0 = the image); η ≠ 0 is refused', async () => {
  const toV: DiffusionModel = (x, t, sh) => {
    const a = base.alphasCumprod[t[0]];
    const eps = gaussianEps(x, t, sh) as Float32Array;
    return eps.map((e, j) => Math.sqrt(a) * e - Math.sqrt(1 - a) * ((x[j] - Math.sqrt(1 - a) * e) / Math.sqrt(a)));
  };
  const learned: DiffusionModel = (x, t, sh) => {
    const eps = gaussianEps(x, t, sh) as Float32Array;
    const out = new Float32Array(2 * eps.length); // [B, 2C, ...] with C = 8 here: per example, ε then the variance half
    for (let b = 0; b < 2; b++) {
      out.set(eps.subarray(b * 8, b * 8 + 8), b * 16);
      out.fill(0.3, b * 16 + 8, b * 16 + 16);
    }
    return out;
  };
  const mk = (meanType: 'epsilon' | 'v', lr = false) =>
    new DdimSampler(base, { meanType, eta: 0, timesteps: 'trailing10', varType: lr ? 'learnedRange' : undefined });
  const eps = await ddimInvert(mk('epsilon'), gaussianEps, { data: image, shape });
  assertClose(await ddimInvert(mk('v'), toV, { data: image, shape }), eps, { atol: 2e-5 }, 'v model');
  assertClose(await ddimInvert(mk('epsilon', true), learned, { data: image, shape }), eps, { atol: 0 }, 'learnedRange');
  // first step, written out: x_{t_0} = √ᾱ_{t_0} x_0 + √(1 − ᾱ_{t_0}) ε(x_0, t_0)
  const seen: Float32Array[] = [];
  await ddimInvert(mk('epsilon'), gaussianEps, { data: image, shape }, { onStep: (s) => void seen.push(s.x) });
  const t0 = mk('epsilon').timesteps[9];
  const a = base.alphasCumprod[t0];
  const e0 = gaussianEps(image, new Int32Array(2).fill(t0), shape) as Float32Array;
  assertClose(seen[0], Array.from(image, (x0, j) => Math.sqrt(a) * x0 + Math.sqrt(1 - a) * e0[j]), { atol: 1e-6 }, 'first inversion step');
  assert.equal(seen.length, 10);
  await assert.rejects(ddimInvert(new DdimSampler(base, { meanType: 'epsilon', eta: 0.5 }), gaussianEps, { data: image, shape }), /eta = 0/);
});
