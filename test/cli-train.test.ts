/** `ddpm train` end to end through the CLI: an RGB image folder, resume, and bad input. */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { UNET_CONFIGS, unetConfig, unetParamCount } from '../src/models/unet.ts';
import { applyOptions, defaultTrainConfig } from '../src/train/config.ts';
import { sampleCommandFor } from '../src/cli/train-options.ts';
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
  // the start line names the architecture the run actually trains
  assert.match(a.stdout, /^training tiny \(3x8x8, base 8, mults 1,2, 1 res block, attn 4; 45k params\) on .*images \(8 images\) from step 0; .*until 2 steps; out /m);
  assert.match(a.stdout, /step 2\/2 {2}loss [\d.]+/);
  const cfg = JSON.parse(await readFile(path.join(out, 'checkpoint', 'config.json'), 'utf8'));
  assert.equal(cfg.model.inChannels, 3);
  assert.equal(cfg.model.outChannels, 3);
  const b = await runCli(['train', '--out', out, '--resume', '--steps', '3', '--threads', '1', '--log-every', '1']);
  assert.equal(b.code, 0, b.stderr);
  assert.match(b.stdout, /^resuming tiny \(3x8x8, .*\) on .* from step 2;/m);
  // the last line says what this machine gave, counting this process's steps only (1 of the 3)
  assert.match(b.stdout, /done: 3 steps \(--steps 3 reached; 1 step in \d+s here, [\d.,]+ steps\/min at batch \d+\)/);
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

test('model flags: --base-channels, --channel-mults, --res-blocks, --attn-resolutions, --dropout shape the model and the start line', async () => {
  const out = path.join(dir, 'flags');
  const r = await runCli([
    'train', '--data', images, '--out', out, '--steps', '1', ...base,
    '--base-channels', '4', '--channel-mults', '1,2,2', '--res-blocks', '2', '--attn-resolutions', '4,2', '--dropout', '0.1',
    '--min-snr-gamma', '5',
  ]);
  assert.equal(r.code, 0, r.stderr);
  const cfg = JSON.parse(await readFile(path.join(out, 'checkpoint', 'config.json'), 'utf8'));
  assert.deepEqual(
    [cfg.model.baseChannels, cfg.model.channelMults, cfg.model.numResBlocks, cfg.model.attnResolutions, cfg.model.dropout],
    [4, [1, 2, 2], 2, [4, 2], 0.1],
  );
  const params = unetParamCount(unetConfig(cfg.model, UNET_CONFIGS.tiny));
  assert.match(r.stdout, new RegExp(`^training tiny \\(3x8x8, base 4, mults 1,2,2, 2 res blocks, attn 4,2, dropout 0.1; ${Math.round(params / 1e3)}k params\\)`, 'm'));
  assert.match(r.stdout, /; batch \d+, epsilon\/simple \(min-SNR-γ 5\), linear T=/);
  assert.equal(cfg.diffusion.minSnrGamma, 5);
  // 'none': no attention at any level (the middle block keeps its own)
  const none = await runCli(['train', '--data', images, '--out', path.join(dir, 'flags-none'), '--steps', '1', ...base, '--attn-resolutions', 'none']);
  assert.equal(none.code, 0, none.stderr);
  assert.match(none.stdout, /mults 1,2, 1 res block, attn none; /);
});

test('an attention resolution that is no level of the model is refused, naming the flag and the levels; bad lists too', async () => {
  const x = path.join(dir, 'x');
  assertUserError(
    await runCli(['train', '--data', images, '--out', x, ...base, '--attn-resolutions', '16']),
    /attnResolutions \(--attn-resolutions\) has 16, which is not a level of this 8x8 model \(its levels: 8, 4; pick from those, or 'none'\)/,
  );
  // fewer levels than the preset's attention needs: tiny's attention at 4 is no level of a one-level 8x8 model
  assertUserError(await runCli(['train', '--data', images, '--out', x, ...base, '--channel-mults', '2']), /has 4, which is not a level .*its levels: 8;/);
  assertUserError(await runCli(['train', '--out', x, '--channel-mults', '1,two']), /--channel-mults: expected comma-separated integers, got '1,two'/);
  assertUserError(await runCli(['train', '--out', x, '--channel-mults', 'none']), /--channel-mults: expected comma-separated integers, got 'none'/);
  assertUserError(await runCli(['train', '--out', x, '--attn-resolutions', '']), /--attn-resolutions: expected comma-separated integers or 'none', got ''/);
  assertUserError(await runCli(['train', '--out', x, '--attn-resolutions', '0']), /--attn-resolutions: 0 must be >= 1, got '0'/);
  assertUserError(await runCli(['train', '--out', x, '--channel-mults', '1,2,2,2,2,2,2,2,2']), /--channel-mults: at most 8 values/);
  // a config file says the same, naming the file and the key
  const file = path.join(dir, 'stray-attn.json');
  await writeFile(file, JSON.stringify({ preset: 'rgb-32', model: { attnResolutions: [7] } }));
  assertUserError(await runCli(['train', '--out', x, '--config', file]), /stray-attn\.json: U-Net config: attnResolutions \(--attn-resolutions\) has 7, which is not a level of this 32x32 model \(its levels: 32, 16, 8;/);
  assert.equal(existsSync(x), false, 'nothing written');
});

test('--image-size keeps the preset\'s attention at the same level; the presets rgb-32 and ddpm-cifar10', () => {
  // the case: mnist-28 at 32x32 used to keep attention at 7, which no level has, and silently lost it
  const moved = applyOptions(defaultTrainConfig('mnist-28'), { 'image-size': '32', channels: '3' });
  assert.deepEqual([moved.model.imageSize, moved.model.inChannels, moved.model.attnResolutions], [32, 3, [8]]);
  assert.deepEqual(applyOptions(defaultTrainConfig('rgb-32'), { 'image-size': '64' }).model.attnResolutions, [16]);
  // an explicit --attn-resolutions wins, and is checked
  assert.deepEqual(applyOptions(defaultTrainConfig('rgb-32'), { 'image-size': '64', 'attn-resolutions': '32,16' }).model.attnResolutions, [32, 16]);
  assert.throws(() => applyOptions(defaultTrainConfig('rgb-32'), { 'image-size': '64', 'attn-resolutions': '32,7' }), /has 7, which is not a level of this 64x64 model \(its levels: 64, 32, 16;/);
  const cifar = defaultTrainConfig('ddpm-cifar10').model;
  assert.deepEqual(cifar, { imageSize: 32, inChannels: 3, outChannels: 3, baseChannels: 128, channelMults: [1, 2, 2, 2], numResBlocks: 2, attnResolutions: [16], groups: 32, dropout: 0.1, numClasses: 0 });
  // a learned variance doubles the output channels of any preset
  assert.equal(applyOptions(defaultTrainConfig('rgb-32'), { loss: 'hybrid' }).model.outChannels, 6);
});

test('a checkpoint from before the check (attention at a size no level has, so never built) samples and resumes as the model it was', async () => {
  const out = path.join(dir, 'legacy');
  assert.equal((await runCli(['train', '--data', images, '--out', out, '--steps', '1', ...base, '--attn-resolutions', 'none'])).code, 0);
  // what an older ddpm-ts wrote for this model: a stray attention size it silently left out
  const file = path.join(out, 'checkpoint', 'config.json');
  const cfg = JSON.parse(await readFile(file, 'utf8'));
  cfg.model.attnResolutions = [3];
  await writeFile(file, JSON.stringify(cfg));
  const s = await runCli(['sample', '--checkpoint', path.join(out, 'checkpoint'), '--n', '2', '--steps', '2', '--out', path.join(dir, 'legacy.png'), '--threads', '1']);
  assert.equal(s.code, 0, s.stderr);
  const r = await runCli(['train', '--out', out, '--resume', '--steps', '2', '--threads', '1']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^resuming tiny \(3x8x8, base 8, mults 1,2, 1 res block, attn none; /m);
  assert.deepEqual(JSON.parse(await readFile(file, 'utf8')).model.attnResolutions, [], 'written back as what it is');
});

test('train ends with the exact ddpm sample command for its run, and that command samples it (issue 32)', async () => {
  const out = path.join(dir, 'circles');
  const r = await runCli(['train', '--data', images, '--out', out, '--steps', '1', ...base]);
  assert.equal(r.code, 0, r.stderr);
  const next = /^next: (ddpm sample .*)$/m.exec(r.stdout)?.[1];
  assert.equal(next, `ddpm sample --checkpoint ${out} --n 16 --out circles.png`);
  assert.ok(r.stdout.trimEnd().endsWith(next!), 'the last line');
  const cwd = process.cwd();
  process.chdir(dir); // where the user is: --out circles.png lands here
  try {
    const s = await runCli([...next!.split(' ').slice(1), '--threads', '1']);
    assert.equal(s.code, 0, s.stderr);
    assert.match(s.stdout, /^sampling 16 image\(s\) .*circles[/\\]checkpoint[/\\]ema\.safetensors/m);
  } finally {
    process.chdir(cwd);
  }
  assert.ok(existsSync(path.join(dir, 'circles.png')));
  assert.equal(sampleCommandFor('runs/my images'), "ddpm sample --checkpoint 'runs/my images' --n 16 --out 'my images.png'");
  assert.equal(sampleCommandFor('runs/c', true), 'ddpm sample --checkpoint runs/c --class all --out c.png');
});

test('train flags are checked as they are parsed: --minutes abc fails before the folder is read or the run directory made', async () => {
  const out = path.join(dir, 'never');
  // the folder does not exist: the flag's error comes first, so nothing was read
  for (const [flag, value, pattern] of [
    ['--minutes', 'abc', /^error: option '--minutes <x>' argument 'abc' is invalid\. --minutes: expected a number, got 'abc'$/m],
    ['--steps', '-1', /--steps: must be >= 0/],
    ['--schedule', 'wavy', /--schedule: 'wavy' is not one of linear, cosine, sigmoid, scaledLinear/],
    ['--folder-max-depth', '0', /--folder-max-depth must be an integer in \[1, /],
  ] as const) {
    assertUserError(await runCli(['train', '--data', path.join(dir, 'no-such-folder'), '--out', out, flag, value]), pattern);
  }
  assert.equal(existsSync(out), false);
});
