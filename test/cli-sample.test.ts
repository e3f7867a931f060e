import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { cp, mkdir, mkdtemp, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { encodePng } from '../src/io/image.ts';
import { resolveModelPath } from '../src/io/model-path.ts';
import { DEFAULT_MODEL_DIR, SHIPPED_MODELS } from '../src/pipeline/load.ts';
import { assertUserError, gifInfo, imageSize, runCli, tinyCheckpoint } from './cli-helpers.ts';

// The tiny model: 1x8x8 images, T = 100. Grid tiles are 8 px with 2 px padding: k tiles span 10k + 2 px.
let dir: string;
let ckpt: string;
const span = (k: number) => 10 * k + 2;
const out = (name: string) => path.join(dir, name);
const sample = (...args: string[]) => runCli(['sample', '--checkpoint', ckpt, '--threads', '1', ...args]);

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'ddpm-cli-sample-'));
  ckpt = await tinyCheckpoint(path.join(dir, 'run'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

test('sample --sampler ddim writes a grid of n images (ceil(sqrt(n)) per row) and reports img/s', async () => {
  const r = await sample('--n', '5', '--steps', '5', '--batch-size', '2', '--out', out('ddim.png'));
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(await imageSize(out('ddim.png')), [span(3), span(2)]);
  assert.match(r.stdout, /ddim \(eta 1\), 5 steps, 3 batch\(es\)/);
  assert.match(r.stdout, /done: 5 image\(s\) in [\d.]+ s: [\d.]+ img\/s/);
});

test('sample --sampler ddpm (respaced, stochastic) is reproducible for a seed and changes with it', async () => {
  const a = await sample('--sampler', 'ddpm', '--n', '3', '--steps', '4', '--seed', '7', '--out', out('a.png'));
  const b = await sample('--sampler', 'ddpm', '--n', '3', '--steps', '4', '--seed', '7', '--out', out('b.png'));
  const c = await sample('--sampler', 'ddpm', '--n', '3', '--steps', '4', '--seed', '8', '--out', out('c.png'));
  for (const r of [a, b, c]) assert.equal(r.code, 0, r.stderr);
  assert.match(a.stdout, /with ddpm, 4 steps/);
  assert.deepEqual(await imageSize(out('a.png')), [span(2), span(2)]);
  assert.deepEqual(await readFile(out('a.png')), await readFile(out('b.png')));
  assert.notDeepEqual(await readFile(out('a.png')), await readFile(out('c.png')));
});

test('--trajectory .png: two rows (x_t, x̂_0) per recorded image, one column per recorded step', async () => {
  const r = await sample('--n', '3', '--steps', '6', '--out', out('g.png'), '--trajectory', out('traj.png'));
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(await imageSize(out('traj.png')), [span(6), span(2 * 3)]); // 6 steps < 10 frames: all of them
  const r2 = await sample('--n', '6', '--steps', '6', '--trajectory-samples', '2', '--frames', '3', '--out', out('g.png'), '--trajectory', out('traj3.png'));
  assert.equal(r2.code, 0, r2.stderr);
  assert.deepEqual(await imageSize(out('traj3.png')), [span(3), span(2 * 2)]);
  assert.match(r2.stdout, /traj3\.png \(2 image\(s\), 3 steps, t = 85\.\.0\)/); // ddim6 on T = 100: stride 17, t = 85, 68, ..., 0
});

test('--trajectory .gif: an animated GIF, frames upscaled to >= 64 px tiles', async () => {
  const r = await sample('--n', '2', '--steps', '5', '--out', out('g.png'), '--trajectory', out('traj.gif'));
  assert.equal(r.code, 0, r.stderr);
  const gif = gifInfo(new Uint8Array(await readFile(out('traj.gif'))));
  assert.deepEqual([gif.width, gif.height], [8 * span(2), 8 * span(2)]); // 2 images side by side, x_t over x̂_0, x8
});

test('sample: bad input is one line on stderr and exit code 2', async () => {
  assertUserError(await sample('--sampler', 'foo'), /argument 'foo' is invalid/);
  assertUserError(await runCli(['sample', '--checkpoint', out('nope'), '--n', '1']), /no such file or directory: .*nope/);
  assertUserError(await sample('--steps', '101', '--out', out('x.png')), /--steps must be an integer in \[2, 100\]/);
  assertUserError(await sample('--steps', '1'), /--steps must be an integer in \[2, 100000\], got '1'/);
  assertUserError(await sample('--sampler', 'ddpm', '--eta', '0.5'), /--eta applies to --sampler ddim only/);
  assertUserError(await sample('--eta', '2'), /--eta must be a number in \[0, 1\]/);
  assertUserError(await sample('--spacing', 'bogus'), /--spacing must be one of/);
  assertUserError(await sample('--out', out('x.jpg')), /--out must end in \.png/);
  assertUserError(await sample('--frames', '3'), /--frames needs --trajectory/);
  assertUserError(await sample('--bogus'), /unknown option '--bogus'/);
  // corrupt checkpoints: truncated weights, invalid config
  const bad = out('bad');
  await cp(ckpt, bad, { recursive: true });
  await truncate(path.join(bad, 'ema.safetensors'), 100);
  assertUserError(await runCli(['sample', '--checkpoint', bad]), /bad\/ema\.safetensors: /);
  await writeFile(path.join(bad, 'config.json'), '{"model": ');
  assertUserError(await runCli(['sample', '--checkpoint', bad]), /config\.json is not valid JSON/);
  await writeFile(path.join(dir, 'junk.onnx'), 'not a model');
  assertUserError(await runCli(['sample', '--checkpoint', path.join(dir, 'junk.onnx')]), /junk\.onnx: /);
});

test('sample without --checkpoint uses the shipped models/mnist-28 (or names it when it is missing)', async () => {
  if (!existsSync(DEFAULT_MODEL_DIR)) {
    assertUserError(await runCli(['sample', '--n', '1']), /default model .*models\/mnist-28 does not exist/);
    return;
  }
  const r = await runCli(['sample', '--n', '2', '--steps', '2', '--threads', '1', '--out', out('default.png')]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /models\/mnist-28.*1x28x28, linear T=1000, epsilon\/learnedRange/);
  assert.deepEqual(await imageSize(out('default.png')), [2 * 30 + 2, 30 + 2]);
});

test('sample --help exits 0', async () => {
  const r = await runCli(['sample', '--help']);
  assert.equal(r.code, 0);
  assert.match(r.stdout, /Usage: ddpm sample/);
});

test('--out-dir writes one PNG per image, matching the grid', async () => {
  const r = await sample('--n', '3', '--steps', '4', '--out', out('od.png'), '--out-dir', out('each'));
  assert.equal(r.code, 0, r.stderr);
  for (const i of [0, 1, 2]) assert.deepEqual(await imageSize(out(`each/sample_0000${i}.png`)), [8, 8]);
  assert.match(r.stdout, /3 PNG file\(s\) in /);
});

test('a run directory works wherever a checkpoint does: --checkpoint runs/x means runs/x/checkpoint (sample, eval, export, invert, edit, inpaint, --init-from)', async () => {
  const run = path.dirname(ckpt); // what `ddpm train --out` was given
  const weights = path.join(ckpt, 'ema.safetensors').replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const img = out('eight.png');
  await writeFile(img, await encodePng({ data: Uint8Array.from({ length: 64 }, (_, i) => (i % 9) * 28), width: 8, height: 8, channels: 1 }));
  const mask = out('mask8.png');
  await writeFile(mask, await encodePng({ data: Uint8Array.from({ length: 64 }, (_, i) => (i >= 32 ? 255 : 0)), width: 8, height: 8, channels: 1 }));
  const ok = async (args: string[]) => {
    const r = await runCli([...args, '--checkpoint', run, '--threads', '1']);
    assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
    return r;
  };
  assert.match((await ok(['sample', '--n', '1', '--steps', '2', '--out', out('run.png')])).stdout, new RegExp(`model ${weights} \\(1x8x8`));
  assert.match((await ok(['export', '--out', out('run.onnx')])).stdout, new RegExp(`from ${weights}`));
  assert.match((await ok(['invert', '--image', img, '--steps', '3', '--out', out('run.safetensors')])).stdout, new RegExp(`model ${weights}`));
  assert.match((await ok(['edit', '--image', img, '--steps', '3', '--out', out('run-edit.png')])).stdout, new RegExp(`model ${weights}`));
  assert.match((await ok(['inpaint', '--image', img, '--mask', mask, '--steps', '3', '--out', out('run-inpaint.png')])).stdout, new RegExp(`model ${weights}`));
  // eval reads it too, then refuses its size (FID-LeNet needs MNIST's)
  assertUserError(await runCli(['eval', '--checkpoint', run, '--fid', '2', '--threads', '1']), new RegExp(`^error: ${weights}: the model makes 1x8x8 images`, 'm'));
  // --init-from (the trainer's loadModelDir) starts from the run's weights
  const images = out('images8');
  await mkdir(images, { recursive: true });
  for (const i of [0, 1]) await cp(img, path.join(images, `im${i}.png`));
  const t = await runCli(['train', '--data', images, '--config', 'tiny', '--image-size', '8', '--channels', '1', '--T', '100', '--steps', '1', '--sample-every', '0', '--threads', '1', '--init-from', run, '--out', out('finetune')]);
  assert.equal(t.code, 0, t.stderr);
  assert.match(t.stdout, new RegExp(`with the weights of ${run.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')};`));
  // a run directory whose first checkpoint is not written yet says so
  const early = out('early-run');
  await mkdir(early, { recursive: true });
  await writeFile(path.join(early, 'log.jsonl'), '');
  assertUserError(await runCli(['sample', '--checkpoint', early]), /^error: --checkpoint .*early-run: a run directory without a checkpoint yet \(.*early-run[/\\]checkpoint is written every --checkpoint-every steps/m);
});

test('--checkpoint takes a shipped model by name, resolved from the package, not the working directory; an existing path of that name wins', async () => {
  const r = await runCli(['sample', '--checkpoint', 'mnist-28-cond', '--class', '3', '--n', '1', '--steps', '2', '--threads', '1', '--out', out('three.png')]);
  assert.equal(r.code, 0, r.stderr);
  assert.ok(r.stdout.includes(`model ${path.join(SHIPPED_MODELS['mnist-28-cond'], 'ema.safetensors')} (1x28x28`), r.stdout);
  assert.equal(await resolveModelPath('mnist-28'), DEFAULT_MODEL_DIR);
  assert.equal(await resolveModelPath('mnist-28-cond'), path.join(path.dirname(DEFAULT_MODEL_DIR), 'mnist-28-cond'));
  assertUserError(await runCli(['sample', '--checkpoint', 'mnist-29', '--n', '1']), /^error: --checkpoint: no such file or directory: mnist-29 \(shipped models: mnist-28, mnist-28-cond\)$/m);
  // in a directory holding a run called mnist-28, the name is that run (a path that exists wins)
  const cwd = process.cwd();
  await mkdir(path.join(dir, 'project'), { recursive: true });
  await cp(path.dirname(ckpt), path.join(dir, 'project', 'mnist-28'), { recursive: true });
  process.chdir(path.join(dir, 'project'));
  try {
    assert.equal(await resolveModelPath('mnist-28'), path.join('mnist-28', 'checkpoint'));
    assert.equal(await resolveModelPath('mnist-28-cond'), SHIPPED_MODELS['mnist-28-cond']);
  } finally {
    process.chdir(cwd);
  }
});
