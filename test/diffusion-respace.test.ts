import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  GaussianDiffusion,
  diffusersTimesteps,
  resolveTimestepSpec,
  respace,
  roundHalfEven,
  spaceTimesteps,
} from '../src/diffusion/index.ts';
import { assertClose } from './helpers.ts';

const range = (start: number, stop: number, step: number) =>
  Array.from({ length: Math.ceil((stop - start) / step) }, (_, i) => start + i * step);

test('roundHalfEven is Python/NumPy rounding', () => {
  assert.deepEqual([0.5, 1.5, 2.5, 16.5, 499.5, 2.4, 2.6, 7].map(roundHalfEven), [0, 2, 2, 16, 500, 2, 3, 7]);
});

test("spaceTimesteps matches improved-diffusion's space_timesteps", () => {
  // Expected lists: sorted(space_timesteps(T, s)) from improved-diffusion's respace.py.
  assert.deepEqual(Array.from(spaceTimesteps(1000, 'ddim50')), range(0, 1000, 20));
  assert.deepEqual(Array.from(spaceTimesteps(1000, 'ddim10')), range(0, 1000, 100));
  assert.deepEqual(Array.from(spaceTimesteps(4000, 'ddim250')), range(0, 4000, 16));
  assert.deepEqual(
    Array.from(spaceTimesteps(1000, '10,10')),
    [0, 55, 111, 166, 222, 277, 333, 388, 444, 499, 500, 555, 611, 666, 722, 777, 833, 888, 944, 999],
  );
  assert.deepEqual(Array.from(spaceTimesteps(1000, '10')), [0, 111, 222, 333, 444, 555, 666, 777, 888, 999]);
  assert.deepEqual(
    Array.from(spaceTimesteps(1000, '25')),
    [0, 42, 83, 125, 166, 208, 250, 291, 333, 375, 416, 458, 500, 541, 583, 624, 666, 708, 749, 791, 832, 874, 916, 957, 999],
  );
  // uneven sections (34, 33, 33) and a half-way rounding (16.5 → 16)
  assert.deepEqual(Array.from(spaceTimesteps(100, '3,4,5')), [0, 16, 33, 34, 45, 55, 66, 67, 75, 83, 91, 99]);
  assert.deepEqual(Array.from(spaceTimesteps(100, [3, 4, 5])), Array.from(spaceTimesteps(100, '3,4,5')));
  assert.deepEqual(Array.from(spaceTimesteps(1000, '1000')), range(0, 1000, 1));
  assert.throws(() => spaceTimesteps(1000, 'ddim600'), /integer stride/);
  assert.throws(() => spaceTimesteps(10, '6,6'), /cannot divide section of 5 steps into 6/);
  assert.throws(() => spaceTimesteps(1000, '10,x'), /invalid timestep spacing/);
});

test("diffusersTimesteps matches diffusers' leading / trailing / linspace", () => {
  assert.deepEqual(Array.from(diffusersTimesteps(1000, 10, 'trailing')), [999, 899, 799, 699, 599, 499, 399, 299, 199, 99]);
  assert.deepEqual(Array.from(diffusersTimesteps(1000, 10, 'leading')), [900, 800, 700, 600, 500, 400, 300, 200, 100, 0]);
  assert.deepEqual(Array.from(diffusersTimesteps(1000, 10, 'leading', 1)), [901, 801, 701, 601, 501, 401, 301, 201, 101, 1]);
  // round(linspace(0, 999, 10)) reversed
  assert.deepEqual(Array.from(diffusersTimesteps(1000, 10, 'linspace')), [999, 888, 777, 666, 555, 444, 333, 222, 111, 0]);
  // non-divisible counts (from NumPy): fractional strides and half-to-even rounding (499.5 → 500)
  assert.deepEqual(Array.from(diffusersTimesteps(1000, 7, 'trailing')), [999, 856, 713, 570, 428, 285, 142]);
  assert.deepEqual(Array.from(diffusersTimesteps(1000, 7, 'leading')), [852, 710, 568, 426, 284, 142, 0]);
  assert.deepEqual(Array.from(diffusersTimesteps(1000, 7, 'linspace')), [999, 832, 666, 500, 333, 166, 0]);
  assert.deepEqual(Array.from(diffusersTimesteps(1000, 3, 'trailing')), [999, 666, 332]);
  assert.deepEqual(Array.from(diffusersTimesteps(1000, 3, 'linspace')), [999, 500, 0]);
  assert.throws(() => diffusersTimesteps(1000, 1001, 'leading'), /numInferenceSteps/);
  assert.throws(() => diffusersTimesteps(1000, 10, 'leading', 100), /outside/);
});

test('resolveTimestepSpec: strings, objects and lists, sorted and unique', () => {
  assert.deepEqual(Array.from(resolveTimestepSpec(1000, 'trailing10')), [99, 199, 299, 399, 499, 599, 699, 799, 899, 999]);
  assert.deepEqual(Array.from(resolveTimestepSpec(1000, { spacing: 'leading', numSteps: 4, stepsOffset: 1 })), [1, 251, 501, 751]);
  assert.deepEqual(Array.from(resolveTimestepSpec(1000, 'linspace3')), [0, 500, 999]);
  assert.deepEqual(Array.from(resolveTimestepSpec(1000, 'ddim4')), [0, 250, 500, 750]);
  assert.deepEqual(Array.from(resolveTimestepSpec(1000, [5, 1, 5, 3])), [1, 3, 5]);
  assert.throws(() => resolveTimestepSpec(1000, [0, 1000]), /outside/);
});

test('respace keeps ᾱ at the kept steps, β_i = 1 − ᾱ_{t_i}/ᾱ_{t_{i−1}}, maps to original timesteps', () => {
  const base = GaussianDiffusion.fromConfig({ kind: 'cosine' });
  const kept = [99, 199, 299, 399, 499, 599, 699, 799, 899, 999];
  const d = respace(base, 'trailing10');
  assert.equal(d.numTimesteps, 10);
  assert.deepEqual(Array.from(d.timestepMap), kept);
  assertClose(d.alphasCumprod, kept.map((t) => base.alphasCumprod[t]), { rtol: 1e-10 }, 'ᾱ at kept steps');
  assertClose(d.betas, kept.map((t, i) => 1 - base.alphasCumprod[t] / (i === 0 ? 1 : base.alphasCumprod[kept[i - 1]])), { rtol: 1e-15 }, 'respaced β');
  // posterior variance of the shorter chain: (1 − ᾱ_{t_{i−1}})/(1 − ᾱ_{t_i})·β'_i
  assertClose(d.posteriorVariance[3], ((1 - base.alphasCumprod[299]) / (1 - base.alphasCumprod[399])) * d.betas[3], { rtol: 1e-12 }, 'respaced β̃');
  // keeping every step changes nothing; respacing twice composes the maps
  const all = respace(base, '1000');
  assertClose(all.betas, base.betas, { rtol: 1e-12 }, 'identity respacing');
  const twice = respace(respace(base, 'ddim100'), 'ddim10');
  assert.deepEqual(Array.from(twice.timestepMap), range(0, 1000, 100));
  assertClose(twice.alphasCumprod, range(0, 1000, 100).map((t) => base.alphasCumprod[t]), { rtol: 1e-12 }, 'twice');
  assert.equal(twice.config, null);
  assert.throws(() => respace(base, [500]), /at least 2/);
});
