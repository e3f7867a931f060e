import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as ort from 'onnxruntime-node';
import { loadMnist, mnistToFloat } from '../src/data/mnist.ts';
import { GaussianDiffusion } from '../src/diffusion/gaussian-diffusion.ts';
import { evaluateNll, meanAndStderr } from '../src/eval/nll.ts';
import { compileDenoiser } from '../src/models/denoiser-compile.ts';
import { initUNet, unetConfig, UNET_CONFIGS } from '../src/models/unet.ts';
import { Rng } from '../src/rng.ts';
import { assertClose } from './helpers.ts';

test('meanAndStderr: sample sd / √n', () => {
  const r = meanAndStderr([1, 2, 3, 6]); // mean 3, squares 4+1+0+9 = 14, sd² = 14/3
  assertClose(r.mean, 3, { atol: 0 }, 'mean');
  assertClose(r.stderr, Math.sqrt(14 / 3 / 4), { atol: 1e-15 }, 'stderr');
  assert.ok(Number.isNaN(meanAndStderr([2]).stderr));
});

test('evaluateNll: per-image noise streams, so the batch size does not change the result; parts add up', async () => {
  const diffusion = GaussianDiffusion.fromConfig({ kind: 'cosine', T: 20 });
  const mnist = loadMnist('test');
  const n = 5;
  const x0 = mnistToFloat(mnist, [0, 1, 2, 3, 4], new Float32Array(n * 784));
  // a fixed deterministic "model": ε̂ = 0.1·x_t
  const model = (xt: Float32Array) => xt.map((v) => 0.1 * v);
  const calls: number[] = [];
  const opts = { meanType: 'epsilon' as const, varType: 'fixedLarge' as const, rng: new Rng(7) };
  const a = await evaluateNll(diffusion, model, { data: x0, shape: [n, 1, 28, 28] }, { ...opts, batchSize: 2, onProgress: (d, t) => calls.push(d, t) });
  const b = await evaluateNll(diffusion, model, { data: x0, shape: [n, 1, 28, 28] }, { ...opts, batchSize: 5 });
  assert.deepEqual([...a.perImage], [...b.perImage]);
  assert.equal(a.modelCalls, 3 * 20);
  assert.deepEqual(calls.slice(-2), [60, 60]);
  assert.ok(a.perImage.every((v) => Number.isFinite(v) && v > 0));
  const ms = meanAndStderr(a.perImage);
  assert.equal(a.meanBpd, ms.mean);
  assert.equal(a.stderrBpd, ms.stderr);
  assertClose(a.priorBpd + a.vbBpd + a.decoderBpd, a.meanBpd, { rtol: 1e-12 }, 'prior + Σ L_t + L_0');
});

test('evaluateNll with a (random, untrained) 28x28 U-Net Denoiser on 2 MNIST test images, cosine T = 10: finite', async () => {
  const cfg = unetConfig({ imageSize: 28 }, UNET_CONFIGS.tiny);
  const den = await compileDenoiser(ort as never, cfg, initUNet(cfg, new Rng(0)), { threads: 1 });
  try {
    const diffusion = GaussianDiffusion.fromConfig({ kind: 'cosine', T: 10 });
    const x0 = mnistToFloat(loadMnist('test'), [0, 1], new Float32Array(2 * 784));
    const r = await evaluateNll(diffusion, den.predict, { data: x0, shape: [2, 1, 28, 28] }, { meanType: 'epsilon', varType: 'fixedLarge', rng: new Rng(0) });
    assert.equal(r.n, 2);
    assert.ok(Number.isFinite(r.meanBpd) && r.meanBpd > 0, `mean ${r.meanBpd}`);
    assert.ok(Number.isFinite(r.stderrBpd), `stderr ${r.stderrBpd}`);
  } finally {
    await den.release();
  }
});
