/**
 * `ddpm train --data <folder>` as a new user runs it: image size and channels inferred from the folder (one note),
 * conversions counted, unreadable files skipped with one warning (or refused with --on-corrupt error), the default
 * --out, and the flags, config files and checkpoints that the inference never overrides.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { defaultTrainConfig } from '../src/train/config.ts';
import { assertUserError, runCli, type CliResult } from './cli-helpers.ts';

let dir: string;
/** 10 readable images (mostly 4x4 RGB; RGBA, grey+alpha, 16-bit, grey 6x4) and four files that are not. */
let odd: string;

/** w x h of noise with `channels` 1-4 (1 and 2 written as grey, 2 and 4 with alpha). */
function noise(w: number, h: number, channels: 1 | 2 | 3 | 4, seed: number) {
  const px = Uint8Array.from({ length: w * h * channels }, (_, k) => (k * (seed + 3) * 37) % 256);
  const p = sharp(px, { raw: { width: w, height: h, channels } });
  return channels <= 2 ? p.toColourspace('b-w') : p;
}

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'ddpm-cli-folder-'));
  odd = path.join(dir, 'odd');
  await mkdir(path.join(odd, 'more'), { recursive: true });
  for (let i = 0; i < 6; i++) await noise(4, 4, 3, i).png().toFile(path.join(odd, `rgb${i}.png`));
  await noise(4, 4, 4, 6).png().toFile(path.join(odd, 'more', 'rgba.png'));
  await noise(4, 4, 2, 7).png().toFile(path.join(odd, 'more', 'grey-alpha.png'));
  await noise(4, 4, 3, 8).toColourspace('rgb16').png().toFile(path.join(odd, 'deep.png'));
  await noise(6, 4, 1, 9).png().toFile(path.join(odd, 'grey.png'));
  const jpg = await noise(48, 48, 3, 10).jpeg({ quality: 95 }).toBuffer();
  await writeFile(path.join(odd, 'truncated.jpg'), jpg.subarray(0, jpg.length >> 1)); // its header reads, its pixels do not
  await writeFile(path.join(odd, 'zero.png'), new Uint8Array(0));
  await writeFile(path.join(odd, 'text.png'), 'not a PNG at all');
  await writeFile(path.join(odd, 'notes.txt'), 'where these came from');
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

const lines = (r: CliResult, prefix: string) => r.stderr.split('\n').filter((l) => l.startsWith(prefix));
/** The error line alone (notes come before it). */
const errorOnly = (r: CliResult): CliResult => ({ ...r, stderr: lines(r, 'error:').join('\n') });
const readConfig = async (out: string) => JSON.parse(await readFile(path.join(out, 'checkpoint', 'config.json'), 'utf8'));
/** Flags that keep a run to a second or so. */
const fast = ['--config', 'tiny', '--T', '100', '--sample-every', '0', '--threads', '1'];

test('a folder with odd files trains with no flag but --data and --steps, into runs/<folder name>', async () => {
  const cwd = process.cwd();
  process.chdir(dir);
  try {
    const r = await runCli(['train', '--data', 'odd', '--steps', '1']);
    assert.equal(r.code, 0, r.stderr);
    // one summary line whose counts add up: 10 used + 3 unreadable image files + 1 other file = the 14 files
    const summary = r.stderr.split('\n').filter((l) => / odd: /.test(l));
    assert.equal(summary.length, 1, r.stderr);
    assert.match(
      summary[0]!,
      new RegExp(
        '^warning: odd: 10 images in 2 sizes \\(most often 4x4; shorter side most often 4\\), 6 RGB, 1 16-bit RGB, 1 RGBA, 1 grey, 1 grey\\+alpha; ' +
          'left out: 3 unreadable image files \\(text\\.png: not a PNG, JPEG or WebP image; truncated\\.jpg: [^;]+; zero\\.png: empty file\\), 1 other file \\(\\.txt\\) ' +
          '-> training 3x4x4 \\(override with --image-size, --channels\\) \\(--on-corrupt error stops at the first unreadable file instead\\)$',
      ),
    );
    assert.deepEqual(lines(r, 'note: converted'), ["note: converted 1 16-bit RGB, 1 RGBA, 1 grey, 1 grey+alpha images to RGB (alpha dropped, as PIL's convert)"]);
    assert.equal(lines(r, 'warning:').length, 1, r.stderr);
    assert.match(r.stdout, / \(10 images\) from step 0/);
    assert.deepEqual(lines(r, 'note: batch'), ['note: batch 10, the whole folder (fewer images than the default --batch-size 32)']);
    const cfg = await readConfig(path.join('runs', 'odd'));
    assert.deepEqual([cfg.model.inChannels, cfg.model.imageSize, cfg.data.batchSize], [3, 4, 10]);
    // without --config a folder trains rgb-32 with its recipe (PRESET_RECIPES; MNIST keeps mnist-28's reference one)
    assert.deepEqual(
      [cfg.preset, cfg.model.baseChannels, cfg.diffusion.schedule, cfg.diffusion.minSnrGamma, cfg.optim.lr, cfg.optim.warmupSteps, cfg.optim.emaDecay],
      ['rgb-32', 16, { kind: 'cosine', T: 1000, rescaleZeroTerminalSnr: false, s: 0.008, maxBeta: 0.999 }, 5, 2e-3, 100, 0.995],
    );
    assert.match(r.stdout, /^training rgb-32 .*batch 10, epsilon\/simple \(min-SNR-γ 5\), cosine T=1000, lr 0\.002;/m);
    const mnist = defaultTrainConfig('mnist-28');
    assert.deepEqual(
      [mnist.diffusion.schedule.kind, mnist.diffusion.minSnrGamma, mnist.optim.lr, mnist.data.batchSize, defaultTrainConfig('rgb-32').data.batchSize],
      ['linear', 0, 2e-4, 64, 32],
    );
    assert.deepEqual([cfg.data.onCorrupt, cfg.data.resize], ['skip', 'center-crop']);

    // the same again is refused: the default --out holds that run's checkpoint
    assertUserError(
      await runCli(['train', '--data', 'odd', '--steps', '1']),
      /--out runs\/odd \(the default --out for --data odd\) already holds a checkpoint .*; pass --resume to continue that run, or --out <dir> for a new one/,
    );
    assertUserError(await runCli(['train', '--resume', '--steps', '2']), /--resume needs --out <dir>/);
    // a config file's data.source names the default --out too
    await writeFile('odd.json', JSON.stringify({ ...defaultTrainConfig('tiny'), data: { source: 'odd' } }));
    assertUserError(await runCli(['train', '--config', 'odd.json', '--steps', '1']), /--out runs\/odd \(the default --out for --data odd\) already holds a checkpoint/);
  } finally {
    process.chdir(cwd);
  }
});

test('--on-corrupt error, a folder without images or without a readable one, too large a batch: exit 2, one line', async () => {
  const out = path.join(dir, 'never');
  assertUserError(
    await runCli(['train', '--data', odd, '--on-corrupt', 'error', '--out', out, ...fast]),
    /^error: --data: cannot decode image .*odd\/text\.png: not a PNG, JPEG or WebP image \(--on-corrupt skip leaves such files out, with a warning\)$/m,
  );
  // a file whose header reads fails at its decode
  const late = path.join(dir, 'late');
  await mkdir(late);
  for (const f of ['rgb0.png', 'rgb1.png', 'truncated.jpg']) await writeFile(path.join(late, f), await readFile(path.join(odd, f)));
  assertUserError(await runCli(['train', '--data', late, '--on-corrupt', 'error', '--out', out, ...fast]), /cannot decode image .*late\/truncated\.jpg/);

  const empty = path.join(dir, 'empty');
  await mkdir(empty);
  await writeFile(path.join(empty, 'notes.txt'), 'no images here');
  assertUserError(
    await runCli(['train', '--data', empty, '--out', out, ...fast]),
    /--data: no images \(\.png, \.jpg, \.jpeg, \.webp\) found under .*empty \(only 1 other file, such as notes\.txt\)/,
  );
  const bad = path.join(dir, 'bad');
  await mkdir(bad);
  await writeFile(path.join(bad, 'a.png'), new Uint8Array(0));
  await writeFile(path.join(bad, 'b.webp'), 'text');
  assertUserError(await runCli(['train', '--data', bad, '--out', out, ...fast]), /--data: none of the 2 images under .*bad could be read \(a\.png: empty file\)/);
  assertUserError(errorOnly(await runCli(['train', '--data', odd, '--out', out, '--batch-size', '64', ...fast])), /--batch-size 64 is more than the 10 readable images under .*odd: pass --batch-size 10 or less/);
});

test('--image-size/--channels, a config file and a checkpoint win over the folder; sizes round to what the levels halve', async () => {
  // flags
  const out = path.join(dir, 'flags');
  const r = await runCli(['train', '--data', odd, '--out', out, '--image-size', '8', '--channels', '1', '--resize', 'pad', '--steps', '1', ...fast]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /^warning: .*odd: 10 images .* -> training 1x8x8 \(as --image-size and --channels say\) \(--on-corrupt error stops/m);
  assert.match(r.stderr, /^note: converted 6 RGB, 1 16-bit RGB, 1 RGBA, 1 grey\+alpha images to grey \(alpha dropped; Rec\. 601 luma, as PIL's convert\)$/m);
  let cfg = await readConfig(out);
  assert.deepEqual([cfg.model.inChannels, cfg.model.imageSize, cfg.data.resize], [1, 8, 'pad']);

  // a checkpoint: resumed as it is, whatever the folder suggests
  const res = await runCli(['train', '--data', odd, '--out', out, '--resume', '--steps', '2', '--threads', '1']);
  assert.equal(res.code, 0, res.stderr);
  assert.match(res.stderr, /^warning: .*odd: 10 images .* -> the checkpoint's model, 1x8x8 \(--on-corrupt error stops/m);
  cfg = await readConfig(out);
  assert.deepEqual([cfg.model.inChannels, cfg.model.imageSize], [1, 8]);

  // a config file's model and batch size are kept (stopped after the notes by that batch, larger than the folder)
  const file = path.join(dir, 'model.json');
  await writeFile(file, JSON.stringify({ ...defaultTrainConfig('tiny'), data: { source: odd, batchSize: 11 } }));
  const j = await runCli(['train', '--config', file, '--out', path.join(dir, 'json'), '--steps', '1', '--threads', '1']);
  assert.match(j.stderr, new RegExp(`^warning: .*odd: 10 images .* -> the model of ${file.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}, 1x8x8 \\(--on-corrupt error stops`, 'm'));
  assertUserError(errorOnly(j), /--batch-size 11 is more than the 10 readable images/);

  // 6x6 images on rgb-32, the default preset for a folder (three levels: a multiple of 4) train at 4x4
  const six = path.join(dir, 'six');
  await mkdir(six);
  for (let i = 0; i < 2; i++) await noise(6, 6, 3, i).png().toFile(path.join(six, `${i}.png`));
  const s = await runCli(['train', '--data', six, '--out', path.join(dir, 'six-run'), '--batch-size', '3', '--steps', '1', '--threads', '1']);
  assert.match(s.stderr, /^note: .*six: 2 images, all 6x6 RGB -> training 3x4x4 \(override with --image-size, --channels; 6 rounded down to a multiple of 4 for rgb-32's 3 levels\)$/m);
  assertUserError(errorOnly(s), /--batch-size 3 is more than the 2 readable images/);
});
