/**
 * DDPMPipeline (src/pipeline/): loading the shipped model, a checkpoint directory, an exported .onnx and its
 * bytes; generate() against the sampling loop it wraps and against `ddpm sample`; the learned-variance output
 * hidden from the caller; images, callbacks, cancellation, trajectories, savePngs; errors.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { UserError } from '../src/errors.ts';
import { makeGrid } from '../src/io/grid.ts';
import { decodeImage } from '../src/io/image.ts';
import { compileDenoiser } from '../src/models/denoiser-compile.ts';
import { ort } from '../src/node/ort.ts';
import { DEFAULT_MODEL_DIR, SHIPPED_MODELS, SHIPPED_MODEL_NAMES } from '../src/pipeline/load.ts';
import { DDPMPipeline, savePngs } from '../src/pipeline/node.ts';
import { DDPMPipeline as PortablePipeline } from '../src/pipeline/pipeline.ts';
import { generate, makeSampler } from '../src/sample/generate.ts';
import { loadModelDir } from '../src/train/checkpoint.ts';
import { runCli, tinyCheckpoint } from './cli-helpers.ts';
import { assertClose } from './helpers.ts';

let dir: string;
let tiny: string;
let shipped: DDPMPipeline;

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'ddpm-pipeline-'));
  tiny = await tinyCheckpoint(path.join(dir, 'run')); // 1x8x8, T = 100, fixed-large variance
  shipped = await DDPMPipeline.fromPretrained(undefined, { threads: 1 });
});
after(async () => {
  await shipped?.release();
  await rm(dir, { recursive: true, force: true });
});

test('fromPretrained() is the shipped model: learned variances (2C outputs), 1x28x28 images out', async () => {
  assert.equal(shipped.source.file, path.join(DEFAULT_MODEL_DIR, 'ema.safetensors'));
  assert.equal(shipped.diffusion.varType, 'learnedRange');
  assert.equal(shipped.unet.outChannels, 2 * shipped.unet.inChannels, 'the model itself outputs ε and v');
  const out = await shipped.generate({ n: 3, steps: 10, seed: 5 });
  assert.deepEqual(out.shape, [3, 1, 28, 28]);
  assert.equal(out.samples.length, 3 * 28 * 28, 'one channel per image: the variance half never leaves the pipeline');
  assert.equal(out.timesteps.length, 10);
  assert.equal(out.modelCalls, 10);
  assert.equal(out.images.length, 3);
  for (const [i, img] of out.images.entries()) {
    assert.deepEqual([img.width, img.height, img.channels, img.data.length], [28, 28, 1, 784]);
    assert.deepEqual(img.data, makeGrid(out.samples.subarray(i * 784, (i + 1) * 784), [1, 1, 28, 28], { padding: 0 }).data);
    const ink = img.data.filter((v) => v > 128).length / 784;
    assert.ok(ink > 0.03 && ink < 0.4, `image ${i} does not look like a digit: ${ink} of its pixels are bright`);
  }
});

test('generate() is the sampling loop it wraps (makeSampler + generate on the compiled weights), bit for bit', async () => {
  const { config, weights } = await loadModelDir(DEFAULT_MODEL_DIR);
  const denoiser = await compileDenoiser(ort, config.model, weights, { threads: 1 });
  for (const opts of [
    { sampler: 'ddim', steps: 8, eta: 0.5, seed: 3 },
    { sampler: 'ddpm', steps: 6, seed: 4 },
    { sampler: 'dpm++', steps: 5, seed: 2 },
  ] as const) {
    const got = await shipped.generate({ n: 2, ...opts });
    const want = await generate({ model: denoiser.predict, sampler: makeSampler(config.diffusion, opts), imageShape: [1, 28, 28], n: 2, seed: opts.seed });
    assertClose(got.samples, want.samples, { atol: 0 }, `${opts.sampler} samples`);
    assert.ok(got.samples.every((v) => v >= -1 && v <= 1), `${opts.sampler}: clipped x̂_0 stays in [-1, 1]`);
  }
  await denoiser.release();
});

test('the shipped model.onnx (a path, or its bytes) samples what its checkpoint directory does', async () => {
  const file = path.join(DEFAULT_MODEL_DIR, 'model.onnx');
  const want = (await shipped.generate({ n: 2, steps: 5, seed: 1 })).samples;
  for (const src of [file, new Uint8Array(await readFile(file))]) {
    const pipe = await DDPMPipeline.fromPretrained(src, { threads: 1 });
    assert.equal(pipe.diffusion.varType, 'learnedRange', 'configs from the ONNX metadata');
    assert.equal(pipe.source.file, typeof src === 'string' ? src : undefined);
    assertClose((await pipe.generate({ n: 2, steps: 5, seed: 1 })).samples, want, { atol: 1e-5 }, `from ${typeof src === 'string' ? 'the path' : 'bytes'}`);
    await pipe.release();
  }
});

test('the pipeline gives the images of `ddpm sample --out-dir` for the same flags', async () => {
  const outDir = path.join(dir, 'cli');
  const r = await runCli(['sample', '--n', '2', '--steps', '7', '--seed', '9', '--threads', '1', '--out', path.join(dir, 'g.png'), '--out-dir', outDir]);
  assert.equal(r.code, 0, r.stderr);
  const { images } = await shipped.generate({ n: 2, steps: 7, seed: 9 });
  for (const [i, img] of images.entries()) {
    const png = await decodeImage(path.join(outDir, `sample_0000${i}.png`), { channels: 1 });
    assert.deepEqual(png.data, img.data, `image ${i}`);
  }
});

test('onProgress and onStep follow every model call of every batch; an AbortSignal stops the generation', async () => {
  const pipe = await DDPMPipeline.fromPretrained(tiny, { threads: 1 });
  const progress: string[] = [];
  const steps: string[] = [];
  const out = await pipe.generate({
    n: 3,
    steps: 4,
    batchSize: 2,
    onProgress: (done, total) => progress.push(`${done}/${total}`),
    onStep: async (s) => {
      assert.equal(s.xt.length, s.shape[0] * 64);
      assert.equal(s.predX0.length, s.xt.length);
      steps.push(`${s.batch}:${s.start}:${s.shape[0]}:${s.step}/${s.total}`);
    },
  });
  assert.deepEqual(progress, ['1/8', '2/8', '3/8', '4/8', '5/8', '6/8', '7/8', '8/8']);
  assert.deepEqual(steps, ['0:0:2:0/4', '0:0:2:1/4', '0:0:2:2/4', '0:0:2:3/4', '1:2:1:0/4', '1:2:1:1/4', '1:2:1:2/4', '1:2:1:3/4']);
  // image i does not depend on the batch size (its own random stream)
  assertClose(out.samples, (await pipe.generate({ n: 3, steps: 4 })).samples, { atol: 1e-5 }, 'batch size 2 vs 64');

  const stop = new AbortController();
  let seen = 0;
  await assert.rejects(
    pipe.generate({ n: 1, steps: 10, signal: stop.signal, onStep: () => void (++seen === 2 && stop.abort(new Error('stopped by the test'))) }),
    /stopped by the test/,
  );
  assert.equal(seen, 2);
  await pipe.release();
});

test('trajectory: x_t and x̂_0 of the first images at evenly spaced steps; savePngs writes the images', async () => {
  const pipe = await DDPMPipeline.fromPretrained(tiny, { threads: 1 });
  const out = await pipe.generate({ n: 3, sampler: 'ddpm', steps: 10, seed: 2, trajectory: { samples: 2, frames: 4 } });
  const tr = out.trajectory!;
  assert.deepEqual([tr.samples, tr.steps], [2, [0, 3, 6, 9]]);
  assert.deepEqual(tr.t, tr.steps.map((s) => out.timesteps[s]));
  assert.equal(tr.xt[0]!.length, 2 * 64);
  const files = await savePngs(out.images, path.join(dir, 'pngs'));
  assert.deepEqual(await readdir(path.join(dir, 'pngs')), ['sample_00000.png', 'sample_00001.png', 'sample_00002.png']);
  for (const [i, f] of files.entries()) {
    const png = await decodeImage(f, { channels: 1 });
    assert.deepEqual([png.width, png.height], [8, 8]);
    assert.deepEqual(png.data, out.images[i]!.data);
  }
  await pipe.release();
});

test('options and sources that cannot work are refused with one line', async () => {
  await assert.rejects(DDPMPipeline.fromPretrained(path.join(dir, 'nothing'), { threads: 1 }), (e: Error) =>
    e instanceof UserError && /^fromPretrained: no such file or directory: .*nothing \(shipped models: mnist-28, mnist-28-cond\)$/.test(e.message),
  );
  await assert.rejects(DDPMPipeline.fromPretrained(Uint8Array.of(1, 2, 3), { threads: 1 }), /not a valid ONNX file/);
  await assert.rejects(shipped.generate({ sampler: 'ddpm', eta: 0.5 }), /eta applies to --sampler ddim only/);
  await assert.rejects(shipped.generate({ steps: 1 }), /steps must be an integer in \[2, 1000\]/);
  await assert.rejects(shipped.generate({ varType: 'fixedSmall' }), /learned its variance/);
  const fixed = await DDPMPipeline.fromPretrained(tiny, { threads: 1 });
  const a = await fixed.generate({ sampler: 'ddpm', steps: 5, n: 2 });
  const b = await fixed.generate({ sampler: 'ddpm', steps: 5, n: 2, varType: 'fixedSmall' });
  assert.ok(a.samples.some((v, i) => v !== b.samples[i]), 'fixedSmall and fixedLarge give different DDPM samples');
  await fixed.release();
});

test('the portable DDPMPipeline (the browser entry) opens ONNX bytes on an injected onnxruntime', async () => {
  const bytes = new Uint8Array(await readFile(path.join(DEFAULT_MODEL_DIR, 'model.onnx')));
  const pipe = await PortablePipeline.fromPretrained(bytes, { ort, threads: 1 });
  assert.ok(!('fromLoaded' in PortablePipeline), 'no Node loading in the portable class');
  assertClose((await pipe.generate({ n: 1, steps: 4 })).samples, (await shipped.generate({ n: 1, steps: 4 })).samples, { atol: 1e-5 }, 'portable vs Node');
  await pipe.release();
});

test('fromPretrained and loadModelDir take the shipped models by name and a run directory for its checkpoint (issue 32)', async () => {
  assert.deepEqual(SHIPPED_MODEL_NAMES, ['mnist-28', 'mnist-28-cond']);
  const cond = await DDPMPipeline.fromPretrained('mnist-28-cond', { threads: 1 });
  try {
    assert.equal(cond.source.file, path.join(SHIPPED_MODELS['mnist-28-cond'], 'ema.safetensors'));
    assert.equal(cond.classNames?.length, 10);
  } finally {
    await cond.release();
  }
  assert.equal((await loadModelDir('mnist-28')).dir, DEFAULT_MODEL_DIR);
  const run = await DDPMPipeline.fromPretrained(path.dirname(tiny), { threads: 1 });
  assert.equal(run.source.file, path.join(tiny, 'ema.safetensors'));
  await run.release();
  assert.equal((await loadModelDir(path.dirname(tiny))).dir, tiny);
  await assert.rejects(loadModelDir(path.join(dir, 'nothing')), /^CheckpointError: no such checkpoint directory: .*nothing \(shipped models: mnist-28, mnist-28-cond\)$/);
});
