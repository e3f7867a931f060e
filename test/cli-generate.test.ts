// The library behind `ddpm sample` (src/sample/generate.ts), with a deterministic dummy model.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { DiffusionModel } from '../src/diffusion/batch.ts';
import { evenSteps, generate, makeSampler, timestepSpec } from '../src/sample/generate.ts';
import { defaultTrainConfig } from '../src/train/config.ts';

const diffusion = { ...defaultTrainConfig('tiny').diffusion, schedule: { ...defaultTrainConfig('tiny').diffusion.schedule, T: 100 } };
/** ε̂ = 0.5·tanh(x_t)·(1 + t/100): per example, so batching cannot change it. */
const dummy: DiffusionModel = (xt, t, shape) => {
  const per = xt.length / shape[0];
  return xt.map((v, i) => 0.5 * Math.tanh(v) * (1 + t[Math.floor(i / per)] / 100));
};
const imageShape = [1, 4, 4] as const;

test('timestepSpec: auto is ddimN for DDIM and N for DDPM; the full chain is undefined; sections set the count', () => {
  assert.equal(timestepSpec('ddim', 1000, undefined), 'ddim50');
  assert.equal(timestepSpec('ddpm', 1000, undefined), undefined);
  assert.equal(timestepSpec('ddpm', 1000, 250), '250');
  assert.equal(timestepSpec('ddim', 100, 100), undefined);
  assert.equal(timestepSpec('ddim', 1000, 20, 'trailing'), 'trailing20');
  assert.equal(timestepSpec('ddpm', 1000, 20, 'ddim'), 'ddim20');
  assert.equal(timestepSpec('ddpm', 1000, undefined, '10,10,5'), '10,10,5');
  assert.throws(() => timestepSpec('ddpm', 1000, 20, '10,10,5'), /already sets 25 steps/);
  assert.throws(() => timestepSpec('ddim', 100, 101), /\[2, 100\]/);
  assert.throws(() => timestepSpec('ddim', 100, 10, 'sideways'), /--spacing must be one of/);
  assert.throws(() => makeSampler(diffusion, { sampler: 'ddim', steps: 40 }), /cannot create exactly 40 steps.*--spacing uniform/);
  assert.equal(makeSampler(diffusion, { sampler: 'ddim', steps: 40, spacing: 'uniform' }).timesteps.length, 40);
  assert.equal(makeSampler(diffusion, { sampler: 'ddim' }).timesteps.length, 50);
  assert.equal(makeSampler(diffusion, { sampler: 'ddpm' }).timesteps.length, 100);
});

test('evenSteps: first and last kept, evenly spaced, all when there are fewer steps than frames', () => {
  assert.deepEqual(evenSteps(10, 4), [0, 3, 6, 9]);
  assert.deepEqual(evenSteps(3, 10), [0, 1, 2]);
  assert.deepEqual(evenSteps(50, 1), [49]);
});

test('generate: image i does not depend on n or the batch size (per-image RNG streams), DDPM and DDIM(η=1)', async () => {
  for (const spec of [{ sampler: 'ddpm' as const, steps: 10 }, { sampler: 'ddim' as const, steps: 10, eta: 1 }]) {
    const sampler = makeSampler(diffusion, spec);
    const a = await generate({ model: dummy, sampler, imageShape, n: 3, seed: 4, batchSize: 3 });
    const b = await generate({ model: dummy, sampler, imageShape, n: 5, seed: 4, batchSize: 2 });
    const c = await generate({ model: dummy, sampler, imageShape, n: 3, seed: 5, batchSize: 3 });
    assert.deepEqual(b.samples.subarray(0, 3 * 16), a.samples, `${spec.sampler}: first 3 images`);
    assert.notDeepEqual(c.samples, a.samples);
    assert.equal(b.modelCalls, 3 * 10);
    assert.ok(a.samples.every((v) => v >= -1 && v <= 1), 'clipped x̂_0 at the last step keeps samples in [-1, 1]');
  }
});

test('generate: the trajectory records x_t and x̂_0 of the first images; the last x̂_0 is the sample', async () => {
  const sampler = makeSampler(diffusion, { sampler: 'ddpm', steps: 8 });
  const calls: number[] = [];
  const r = await generate({
    model: dummy, sampler, imageShape, n: 5, seed: 1, batchSize: 2, // the 3 recorded images span two batches
    trajectory: { samples: 3, steps: evenSteps(8, 3) },
    onProgress: (done, total) => calls.push(done / total),
  });
  const tr = r.trajectory!;
  assert.deepEqual(tr.steps, [0, 4, 7]);
  assert.deepEqual(tr.t, [99, 42, 0]); // "8" on T = 100: improved-diffusion's evenly spread steps, first and last kept
  assert.equal(tr.xt.length, 3);
  assert.deepEqual(tr.predX0[2], r.samples.subarray(0, 3 * 16));
  // x_T is the first draw of each image's stream: a standard normal, not clipped
  assert.ok(tr.xt[0].some((v) => Math.abs(v) > 1));
  assert.equal(calls.length, 3 * 8);
  assert.equal(calls.at(-1), 1);
});
