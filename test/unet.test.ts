/**
 * The DDPM U-Net: the reference config's exact parameter count and layout, shapes for any batch,
 * shape errors, and a tiny model that overfits one image; the presets (ddpm-cifar10 against the paper's count),
 * attention resolutions that must be levels, presets adapted to other data, and the shipped model unchanged.
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
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { UserError } from '../src/errors.ts';
import {
  DDPM_CIFAR10, MNIST_28, RGB_32, UNET_CONFIGS, countParams, describeUNet, initUNet, presetForData, unet, unetConfig, unetLevels, unetParamCount,
} from '../src/models/unet.ts';
import { loadModelDir } from '../src/train/checkpoint.ts';
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

test('ddpm-cifar10 has the paper\'s 35.7M parameters (35,746,307, counted from the shapes); rgb-32 is small', () => {
  // Ho et al. 2020, appendix B: "Our CIFAR10 model has 35.7 million parameters"
  const n = unetParamCount(DDPM_CIFAR10);
  assert.equal(n, 35_746_307);
  assert.equal((n / 1e6).toFixed(1), '35.7');
  assert.equal(unetParamCount(RGB_32), 280_755);
  assert.equal(unetParamCount(UNET_CONFIGS['mnist-small']!), 280_177); // rgb-32's shape at 1x28x28: the browser's Train view
  assert.deepEqual(unetLevels(DDPM_CIFAR10), [32, 16, 8, 4]);
  assert.equal(describeUNet(DDPM_CIFAR10), '3x32x32, base 128, mults 1,2,2,2, 2 res blocks, attn 16, dropout 0.1; 35.7M params');
  assert.equal(describeUNet(RGB_32), '3x32x32, base 16, mults 1,2,2, 1 res block, attn 8; 281k params');
  for (const [name, cfg] of Object.entries(UNET_CONFIGS)) assert.deepEqual(unetConfig({}, cfg), cfg, `${name} validates as it is`);
});

test('an attention resolution that is no level of the model is a UserError naming the key, the flag and the levels', () => {
  const err = (() => {
    try {
      unetConfig({ attnResolutions: [16, 7] }, RGB_32);
    } catch (e) {
      return e as Error;
    }
    assert.fail('accepted attention at 7 in a 32x32 model');
  })();
  assert.ok(err instanceof UserError);
  assert.equal(err.message, "U-Net config: attnResolutions (--attn-resolutions) has 7, which is not a level of this 32x32 model (its levels: 32, 16, 8; pick from those, or 'none')");
  assert.throws(() => unetConfig({ attnResolutions: [64] }, RGB_32), /has 64, which is not a level/);
  assert.deepEqual(unetConfig({ attnResolutions: [] }, RGB_32).attnResolutions, []);
  // a stored config (a checkpoint or an exported model from before the check) loads as the model it was: the
  // stray resolution never had an attention block, so dropping it changes no weight
  const stored = unetConfig({ ...RGB_32, attnResolutions: [16, 7] }, MNIST_28, { stored: true });
  assert.deepEqual(stored.attnResolutions, [16]);
  assert.deepEqual(Object.keys(initUNet(stored, new Rng(0))), Object.keys(initUNet({ ...RGB_32, attnResolutions: [16, 7] }, new Rng(0))));
});

test('presetForData: a preset at another size and channel count keeps its attention at the same level index', () => {
  const cases: [string, number, number, number[]][] = [
    ['mnist-28', 32, 3, [8]], // the case: 7 (level 2 of 28, 14, 7) becomes 8 (level 2 of 32, 16, 8)
    ['rgb-32', 64, 3, [16]],
    ['rgb-32', 16, 1, [4]],
    ['ddpm-cifar10', 64, 3, [32]],
    ['rgb-32', 32, 3, [8]],
  ];
  for (const [preset, size, channels, attn] of cases) {
    const c = presetForData(preset, size, channels);
    const p = UNET_CONFIGS[preset]!;
    assert.deepEqual(c, { ...p, imageSize: size, inChannels: channels, outChannels: channels, attnResolutions: attn }, `${preset} at ${channels}x${size}`);
  }
  // a learned-variance config keeps its 2C outputs
  assert.equal(presetForData({ ...MNIST_28, outChannels: 2 }, 32, 3).outChannels, 6);
  // the same rule when a partial config changes only the size
  assert.deepEqual(unetConfig({ imageSize: 16, inChannels: 3 }, UNET_CONFIGS.tiny).attnResolutions, [8]);
  assert.throws(() => presetForData('rgb-32', 30, 3), (e) => e instanceof UserError && /imageSize 30 is not divisible by 2\^2/.test(e.message));
  assert.throws(() => presetForData('huge', 32, 3), /unknown model preset 'huge' \(known: mnist-28, rgb-32, mnist-small, ddpm-cifar10, tiny\)/);
  assert.throws(() => presetForData('rgb-32', 32, 2), /inChannels must be 1 or 3/);
});

test('the shipped models/mnist-28 loads as before (attention at 7, one of its levels 28, 14, 7) and computes what its model.onnx does', async () => {
  const dir = path.join(import.meta.dirname, '..', 'models', 'mnist-28');
  const raw = JSON.parse(await readFile(path.join(dir, 'config.json'), 'utf8'));
  const { config, weights } = await loadModelDir(dir);
  // (numClasses, newer than the file, reads as 0: unconditional)
  assert.deepEqual(config.model, { ...raw.model, numClasses: 0 }, 'the stored model config is read back unchanged');
  assert.deepEqual(unetConfig(raw.model), { ...raw.model, numClasses: 0 }, 'and passes the strict check');
  // model.onnx was exported (by the code before this check) from these weights: the compiled model must agree
  const den = await compileDenoiser(ort as never, config.model, weights, { threads: 1 });
  const x = new Rng(5).normalFloat32(2 * 28 * 28);
  const ours = await den.predict(x, Int32Array.from([10, 700]), [2, 1, 28, 28]);
  await den.release();
  const session = await ort.InferenceSession.create(path.join(dir, 'model.onnx'), { intraOpNumThreads: 1 });
  const res = await session.run({ x: new ort.Tensor('float32', x, [2, 1, 28, 28]), t: new ort.Tensor('float32', Float32Array.from([10, 700]), [2]) });
  await session.release();
  const shipped = res[session.outputNames[0]!]!.data as Float32Array;
  assert.equal(ours.length, shipped.length);
  let maxDiff = 0;
  for (let i = 0; i < ours.length; i++) maxDiff = Math.max(maxDiff, Math.abs(ours[i]! - shipped[i]!));
  assert.ok(maxDiff < 1e-4, `max |ours - model.onnx| = ${maxDiff} (first values ${ours.slice(0, 3)} vs ${shipped.slice(0, 3)})`);
});
