import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as ort from 'onnxruntime-node';
import { DdimSampler, sampleLoop } from '../src/diffusion/samplers.ts';
import { GaussianDiffusion } from '../src/diffusion/gaussian-diffusion.ts';
import { Denoiser } from '../src/models/denoiser.ts';
import { compileDenoiser, exportDenoiserOnnx } from '../src/models/denoiser-compile.ts';
import { Rng } from '../src/rng.ts';
import { loadModelDir } from '../src/train/checkpoint.ts';
import { applyOptions, defaultTrainConfig, type TrainConfig } from '../src/train/config.ts';
import { Trainer } from '../src/train/trainer.ts';
import { assertClose } from './helpers.ts';
import { squares } from './cli-helpers.ts';

function tinyConfig(extra: Record<string, string> = {}): TrainConfig {
  return applyOptions(defaultTrainConfig('tiny'), {
    'batch-size': '8', T: '100', 'log-every': '1', 'checkpoint-every': '3', 'sample-every': '0', lr: '1e-3', ...extra,
  });
}

async function run(cfg: TrainConfig, out: string, resume = false) {
  const losses: number[] = [];
  const tr = await Trainer.create(ort as never, cfg, out, squares(), { threads: 1, resume, events: { onStep: (_s, l) => losses.push(l) } });
  await tr.train();
  const params = tr.step.paramsByPath();
  await tr.release();
  return { losses, params };
}

test('resume is exact: 6 steps == 3 steps + resume + 3 steps (losses and weights bit for bit)', async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'ddpm-resume-'));
  try {
    const full = await run(tinyConfig({ steps: '6' }), path.join(dir, 'a'));
    const first = await run(tinyConfig({ steps: '3' }), path.join(dir, 'b'));
    const second = await run(tinyConfig({ steps: '6' }), path.join(dir, 'b'), true);
    assert.deepEqual([...first.losses, ...second.losses], full.losses);
    for (const [k, v] of full.params) assert.deepEqual(second.params.get(k)!.data, v.data, `param ${k} differs`);
    const ckpt = await loadModelDir(path.join(dir, 'b', 'checkpoint'));
    assert.equal(ckpt.config.run.steps, 6);
    assert.deepEqual((await readdir(path.join(dir, 'b'))).sort(), ['checkpoint']);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('train -> checkpoint -> sample; exported ONNX matches the compiled forward', async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'ddpm-e2e-'));
  try {
    const cfg = tinyConfig({ steps: '4', 'sample-every': '4', 'sample-count': '4', 'sample-steps': '5' });
    const tr = await Trainer.create(ort as never, cfg, dir, squares(), { threads: 1 });
    await tr.train();
    await tr.release();
    assert.deepEqual(await readdir(path.join(dir, 'samples')), ['step_0000004.png']);
    const { config, weights } = await loadModelDir(path.join(dir, 'checkpoint'));
    const live = await compileDenoiser(ort as never, config.model, weights, { threads: 1, weightsAsInputs: true });
    const onnx = await Denoiser.fromOnnx(ort as never, config.model, exportDenoiserOnnx(config.model, weights).bytes, { threads: 1 });
    const rng = new Rng(5);
    const x = rng.normalFloat32(3 * 64);
    const t = Int32Array.from([0, 50, 99]);
    assertClose(await onnx.predict(x, t), await live.predict(x, t), { atol: 1e-5, rtol: 1e-4 }, 'onnx vs compiled');
    const diffusion = GaussianDiffusion.fromConfig(config.diffusion.schedule);
    const sampler = new DdimSampler(diffusion, { meanType: 'epsilon', eta: 0, timesteps: 'ddim10', clipDenoised: true });
    const samples = await sampleLoop(sampler, onnx.predict, [2, 1, 8, 8], new Rng(0));
    assert.equal(samples.length, 128);
    assert.ok(samples.every((v) => Number.isFinite(v) && v >= -1 && v <= 1));
    await live.release();
    await onnx.release();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('a NaN loss stops training with a clear error and keeps the last good state on disk', async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'ddpm-nan-'));
  try {
    const base = squares();
    let calls = 0;
    const poisoned = { ...base, getBatch: (idx: Int32Array, out: Float32Array, flips?: Uint8Array) => {
      base.getBatch(idx, out, flips);
      if (++calls === 3) out[0] = NaN; // the third batch is corrupt
    } };
    const tr = await Trainer.create(ort as never, tinyConfig({ steps: '10', 'checkpoint-every': '100' }), dir, poisoned, { threads: 1 });
    await assert.rejects(tr.train(), /step 2: non-finite loss.*last good state was saved/s);
    await tr.release();
    const ckpt = await loadModelDir(path.join(dir, 'checkpoint'));
    assert.ok(Object.values(ckpt.weights).every((w) => w.data.every(Number.isFinite)));
    const state = JSON.parse(await (await import('node:fs/promises')).readFile(path.join(dir, 'checkpoint', 'state.json'), 'utf8'));
    assert.equal(state.step, 2);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('--init-from: a fixed-variance model warm-starts a hybrid (learned-variance) run; mismatched shapes are refused', async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'ddpm-init-'));
  try {
    await run(tinyConfig({ steps: '3' }), path.join(dir, 'src'));
    const source = await loadModelDir(path.join(dir, 'src', 'checkpoint'));
    const cfg = tinyConfig({ steps: '2', loss: 'hybrid', 'init-from': path.join(dir, 'src', 'checkpoint') });
    assert.equal(cfg.model.outChannels, 2);
    const tr = await Trainer.create(ort as never, cfg, path.join(dir, 'ft'), squares(), { threads: 1 });
    for (const [k, p] of tr.step.paramsByPath()) {
      const s = source.weights[k]!;
      if (k.startsWith('out.2.')) {
        // rows of the mean output are copied, the new variance rows start at zero
        assert.deepEqual(p.data.subarray(0, s.data.length), s.data, k);
        assert.ok(p.data.subarray(s.data.length).every((v) => v === 0), `${k}: new rows are not zero`);
        assert.equal(p.shape[0], 2 * s.shape[0]!);
      } else {
        assert.deepEqual(p.data, s.data, `${k} differs from the source EMA weights`);
      }
      assert.deepEqual(tr.ema.get(k)!.data, p.data, `EMA of ${k} does not start at the weights`);
    }
    await tr.train();
    await tr.release();
    assert.equal((await loadModelDir(path.join(dir, 'ft', 'checkpoint'))).config.run.initFrom, path.join(dir, 'src', 'checkpoint'));
    const wider = tinyConfig({ steps: '1', 'base-channels': '16', 'init-from': path.join(dir, 'src', 'checkpoint') });
    await assert.rejects(Trainer.create(ort as never, wider, path.join(dir, 'bad'), squares(), { threads: 1 }), /has shape \[.*\], the model needs/);
    const missing = tinyConfig({ steps: '1', 'init-from': path.join(dir, 'nope') });
    await assert.rejects(Trainer.create(ort as never, missing, path.join(dir, 'bad2'), squares(), { threads: 1 }), /no such checkpoint directory/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
