/** `ddpm train` end to end through the CLI: an RGB image folder, resume, and bad input. */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { assertUserError, runCli } from './cli-helpers.ts';

let dir: string;
let images: string;

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'ddpm-cli-train-'));
  images = path.join(dir, 'images');
  await mkdir(images);
  // 8 small RGB images of different sizes (the loader resizes + centre-crops to --image-size)
  for (let i = 0; i < 8; i++) {
    const w = 10 + i;
    const h = 12;
    const px = Buffer.alloc(w * h * 3);
    for (let k = 0; k < px.length; k++) px[k] = (k * (i + 3) * 37) % 256;
    await sharp(px, { raw: { width: w, height: h, channels: 3 } }).png().toFile(path.join(images, `im${i}.png`));
  }
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

const base = ['--config', 'tiny', '--image-size', '8', '--channels', '3', '--batch-size', '4', '--T', '100', '--log-every', '1', '--sample-every', '0', '--threads', '1'];

test('train on an RGB image folder, then resume: the step count continues and the config is kept', async () => {
  const out = path.join(dir, 'run');
  const a = await runCli(['train', '--data', images, '--out', out, '--steps', '2', ...base]);
  assert.equal(a.code, 0, a.stderr);
  assert.match(a.stdout, /training tiny on .*images \(8 images\) from step 0/);
  assert.match(a.stdout, /step 2\/2 {2}loss [\d.]+/);
  const cfg = JSON.parse(await readFile(path.join(out, 'checkpoint', 'config.json'), 'utf8'));
  assert.equal(cfg.model.inChannels, 3);
  assert.equal(cfg.model.outChannels, 3);
  const b = await runCli(['train', '--out', out, '--resume', '--steps', '3', '--threads', '1', '--log-every', '1']);
  assert.equal(b.code, 0, b.stderr);
  assert.match(b.stdout, /resuming tiny on .* from step 2/);
  assert.match(b.stdout, /done: 3 steps/);
  const log = (await readFile(path.join(out, 'log.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l).step);
  assert.deepEqual(log, [1, 2, 3]);
  assert.deepEqual((await readdir(out)).sort(), ['checkpoint', 'log.jsonl']);
  // a new run into the same directory (no --resume) is refused: its first write would replace the saved state
  const before = await readFile(path.join(out, 'checkpoint', 'params.safetensors'));
  assertUserError(await runCli(['train', '--data', images, '--out', out, '--steps', '1', ...base]), /already holds a checkpoint .*pass --resume/);
  assert.ok(before.equals(await readFile(path.join(out, 'checkpoint', 'params.safetensors'))), 'the checkpoint is untouched');
});

test('resuming with a different model or optimiser config is refused; a new learning-rate schedule is taken', async () => {
  const out = path.join(dir, 'run2');
  assert.equal((await runCli(['train', '--data', images, '--out', out, '--steps', '1', ...base])).code, 0);
  assertUserError(await runCli(['train', '--out', out, '--resume', '--beta2', '0.9', '--steps', '2', '--threads', '1']), /different config/);
  assertUserError(await runCli(['train', '--out', out, '--resume', '--clip-norm', '0.5', '--steps', '2', '--threads', '1']), /different config/);
  const r = await runCli(['train', '--out', out, '--resume', '--lr-decay', 'linear', '--decay-start', '1', '--decay-steps', '2', '--steps', '3', '--threads', '1', '--log-every', '1']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /linear decay to 0 over steps 1\.\.3/);
  const lrs = (await readFile(path.join(out, 'log.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l).lr);
  assert.deepEqual(lrs, [2e-4, 2e-4, 1e-4]); // updates 0, 1 (decay starts), 2 (half-way)
  const cfg = JSON.parse(await readFile(path.join(out, 'checkpoint', 'config.json'), 'utf8'));
  assert.deepEqual([cfg.optim.decay, cfg.optim.decayStart, cfg.optim.decaySteps], ['linear', 1, 2]);
});

test('bad input: a missing data folder, a bad number, an unknown preset, MNIST with the wrong model size', async () => {
  assertUserError(await runCli(['train', '--data', path.join(dir, 'nope'), '--out', path.join(dir, 'x'), ...base]), /neither 'mnist' nor an existing folder/);
  assertUserError(await runCli(['train', '--out', path.join(dir, 'x'), '--lr', 'fast']), /--lr: expected a number, got 'fast'/);
  assertUserError(await runCli(['train', '--out', path.join(dir, 'x'), '--config', 'huge']), /unknown preset 'huge'/);
  assertUserError(await runCli(['train', '--out', path.join(dir, 'x'), '--config', 'tiny']), /MNIST is 1x28x28 but the model is 1x8x8/);
  const empty = path.join(dir, 'empty');
  await mkdir(empty);
  await writeFile(path.join(empty, 'notes.txt'), 'no images here');
  assertUserError(await runCli(['train', '--data', empty, '--out', path.join(dir, 'x'), ...base]), /no images \(.png, .jpg, .jpeg, .webp\) found/);
});
