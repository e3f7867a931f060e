// `--sampler dpm++` in the library behind `ddpm sample` (src/sample/generate.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { DiffusionModel } from '../src/diffusion/batch.ts';
import { DpmSolverSampler } from '../src/diffusion/dpm-solver.ts';
import { dpmSolverTimesteps } from '../src/diffusion/respace.ts';
import { SAMPLER_KINDS, generate, makeSampler, timestepSpec } from '../src/sample/generate.ts';
import { defaultTrainConfig } from '../src/train/config.ts';

const tiny = defaultTrainConfig('tiny').diffusion;
const diffusion = { ...tiny, schedule: { ...tiny.schedule, T: 100 } };
/** ε̂ = 0.5·tanh(x_t)·(1 + t/100), per example. */
const dummy: DiffusionModel = (xt, t, shape) => {
  const per = xt.length / shape[0];
  return xt.map((v, i) => 0.5 * Math.tanh(v) * (1 + t[Math.floor(i / per)] / 100));
};

test('dpm++ sampler kind: diffusers linspace by default (20 steps), leading/linspace of the DPM scheduler, others as for DDIM', () => {
  assert.ok(SAMPLER_KINDS.includes('dpm++'));
  assert.deepEqual(timestepSpec('dpm++', 1000, undefined), Array.from(dpmSolverTimesteps(1000, 20, 'linspace')));
  assert.deepEqual(timestepSpec('dpm++', 1000, 10, 'leading'), Array.from(dpmSolverTimesteps(1000, 10, 'leading')));
  assert.equal(timestepSpec('dpm++', 1000, 10, 'trailing'), 'trailing10');
  assert.equal(timestepSpec('dpm++', 1000, 10, 'uniform'), '10');
  const s = makeSampler(diffusion, { sampler: 'dpm++' });
  assert.ok(s instanceof DpmSolverSampler);
  assert.deepEqual(Array.from(s.timesteps), [99, 94, 89, 84, 79, 74, 69, 64, 59, 54, 50, 45, 40, 35, 30, 25, 20, 15, 10, 5]);
  assert.equal(makeSampler(diffusion, { sampler: 'dpm++', steps: 15, spacing: 'trailing' }).timesteps.length, 15);
  assert.throws(() => makeSampler(diffusion, { sampler: 'dpm++', eta: 0 }), /--eta applies to --sampler ddim only/);
  assert.throws(() => makeSampler(diffusion, { sampler: 'dpm++', steps: 100 }), /repeat timestep/);
});

test('generate with dpm++: deterministic given x_T, images independent of the batch size, final x̂_0 clipped', async () => {
  const sampler = makeSampler(diffusion, { sampler: 'dpm++', steps: 10 });
  const imageShape = [1, 4, 4] as const;
  const a = await generate({ model: dummy, sampler, imageShape, n: 3, seed: 4, batchSize: 3 });
  const b = await generate({ model: dummy, sampler, imageShape, n: 5, seed: 4, batchSize: 2 });
  assert.deepEqual(b.samples.subarray(0, 3 * 16), a.samples);
  assert.equal(a.modelCalls, 10); // one batch of 3, 10 steps
  assert.ok(a.samples.every((v) => v >= -1 && v <= 1));
  const tr = await generate({ model: dummy, sampler, imageShape, n: 2, seed: 4, trajectory: { samples: 2, steps: [9] } });
  assert.deepEqual(tr.trajectory!.predX0[0], tr.samples, 'the last step to σ = 0 returns x̂_0');
});

test('the browser-safe entry (and so the Node entry) exports the editing and fast-sampling API', async () => {
  const br = await import('../src/browser.ts');
  for (const name of ['DpmSolverSampler', 'dpmSolverTimesteps', 'inpaint', 'repaintSchedule', 'expandMask', 'sdedit', 'sdeditStartStep', 'ddimInvert', 'keptIndex', 'BaseSampler']) {
    assert.equal(typeof (br as Record<string, unknown>)[name], 'function', name);
  }
});
