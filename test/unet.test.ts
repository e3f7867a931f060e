/**
 * The DDPM U-Net: the reference config's exact parameter count and layout, shapes for any batch,
 * shape errors, and a tiny model that overfits one image.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as ort from 'onnxruntime-node';
import { trainingLossesGraph } from '../src/diffusion/graph-losses.ts';
import { GaussianDiffusion } from '../src/diffusion/gaussian-diffusion.ts';
import { adamw } from '../src/engine/optim.ts';
import * as T from '../src/engine/tensor.ts';
import { TrainStep } from '../src/engine/train_step.ts';
import { compileDenoiser } from '../src/models/denoiser-compile.ts';
import { MNIST_28, UNET_CONFIGS, countParams, initUNet, unet, unetConfig } from '../src/models/unet.ts';
import { Rng } from '../src/rng.ts';

test('mnist-28 has exactly 1,623,169 parameters, laid out like the PyTorch reference', () => {
  const p = initUNet(MNIST_28, new Rng(0));
  assert.equal(countParams(p), 1_623_169);
  // a few names and shapes of torch_unet.py's state_dict
  const shape = (k: string) => p[k]?.shape;
  assert.deepEqual(shape('temb.0.weight'), [128, 32]);
  assert.deepEqual(shape('temb.2.weight'), [128, 128]);
  assert.deepEqual(shape('cin.weight'), [32, 1, 3, 3]);
  assert.deepEqual(shape('down.2.weight'), [32, 32, 3, 3]); // downsample after level 0
  assert.deepEqual(shape('down.3.skip.weight'), [64, 32, 1, 1]); // 32 -> 64 residual block
  assert.deepEqual(shape('down.7.qkv.weight'), [192, 64, 1, 1]); // attention at 7x7 (ModuleList index as in torch)
  assert.deepEqual(shape('mid.1.proj.weight'), [64, 64, 1, 1]);
  assert.deepEqual(shape('up.0.c1.weight'), [64, 128, 3, 3]); // first up block takes h ++ skip
  assert.deepEqual(shape('up.6.1.weight'), [64, 64, 3, 3]); // upsample conv (Sequential index 1)
  assert.deepEqual(shape('out.2.weight'), [1, 32, 3, 3]);
  assert.equal(Object.keys(p).filter((k) => k.endsWith('.qkv.weight')).length, 2 + 1 + 3);
  // torch's default init: U(±1/√fan_in)
  const w = p['cin.weight']!.data;
  assert.ok(w.every((v) => Math.abs(v) <= 1 / 3 + 1e-7));
  assert.ok(p['out.0.weight']!.data.every((v) => v === 1));
});

test('U-Net output shape follows the input for any batch; bad inputs and configs are clear errors', () => {
  const cfg = UNET_CONFIGS.tiny!;
  const p = initUNet(cfg, new Rng(0));
  const params = Object.fromEntries(Object.entries(p).map(([k, v]) => [k, T.input(k, v.shape)]));
  for (const n of ['N', 3] as const) {
    const y = unet(cfg, params, T.input('x', [n, 1, 8, 8]), T.input('t', [n]));
    assert.deepEqual(y.shape, [n, 1, 8, 8]);
  }
  assert.throws(() => unet(cfg, params, T.input('x', [2, 3, 8, 8]), T.input('t', [2])), /x must be \[N, 1, 8, 8\]/);
  assert.throws(() => unet(cfg, params, T.input('x', [2, 1, 8, 8]), T.input('t', [3])), /t must be \[N\]/);
  assert.throws(() => unetConfig({ imageSize: 30 }), /not divisible/);
  assert.throws(() => unetConfig({ nope: 1 } as never), /unknown U-Net config key 'nope'/);
  const learned = unetConfig({ outChannels: 2 });
  assert.equal(countParams(initUNet(learned, new Rng(0))), 1_623_169 + 32 * 9 + 1);
});

test('a tiny U-Net overfits one image: L_simple falls below 0.05 (from ~1) with fixed t and ε', async () => {
  const cfg = UNET_CONFIGS.tiny!;
  const diffusion = GaussianDiffusion.fromConfig({ kind: 'cosine', T: 100 });
  const B = 4;
  const step = await TrainStep.create(ort as never, {
    params: initUNet(cfg, new Rng(0)),
    inputs: { x0: { shape: [B, 1, 8, 8] }, t: { shape: [B], dtype: 'int64' }, noise: { shape: [B, 1, 8, 8] } },
    loss: (p, inp: Record<string, T.Tensor>) =>
      trainingLossesGraph(diffusion, (xt, tf) => unet(cfg, p as unknown as Record<string, T.Tensor>, xt, tf), inp.x0!, inp.t!, inp.noise!, { meanType: 'epsilon', varType: 'fixedLarge' }).loss,
    optimizer: adamw({ weightDecay: 0 }),
    clipNorm: 1,
  }, { threads: 1 });
  // one image (a bright square), repeated, at four fixed timesteps with fixed noise
  const img = new Float32Array(64).fill(-1);
  for (let y = 2; y < 6; y++) for (let x = 2; x < 6; x++) img[y * 8 + x] = 1;
  const x0 = new Float32Array(B * 64);
  for (let b = 0; b < B; b++) x0.set(img, b * 64);
  const feeds = { x0, t: BigInt64Array.from([5n, 30n, 60n, 90n]), noise: new Rng(1).normalFloat32(B * 64) };
  const losses: number[] = [];
  for (let i = 0; i < 300; i++) losses.push((await step.step(feeds, 3e-3)).loss);
  const last = losses.slice(-10).reduce((a, b) => a + b, 0) / 10;
  assert.ok(losses[0]! > 0.5, `initial loss ${losses[0]}`);
  assert.ok(last < 0.05, `loss after 300 steps ${last} (first ${losses[0]})`);
  // and the compiled inference model agrees with the training graph's view of the weights
  const den = await compileDenoiser(ort as never, cfg, Object.fromEntries(step.paramsByPath()), { threads: 1 });
  const out = await den.predict(new Rng(2).normalFloat32(2 * 64), Int32Array.from([5, 90]), [2, 1, 8, 8]);
  assert.equal(out.length, 128);
  assert.ok(out.every(Number.isFinite));
  await den.release();
  await step.release();
});
