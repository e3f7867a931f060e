// ddpm inpaint / edit / invert on the tiny checkpoint (1x8x8, T = 100): outputs, the exact known region, errors.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { loadMnist } from '../src/data/mnist.ts';
import { decodeImage, encodePng } from '../src/io/image.ts';
import { parseSafetensors, serializeSafetensors } from '../src/io/safetensors.ts';
import { INVERT_METADATA_KEY, type InvertRecord } from '../src/cli/invert.ts';
import { assertUserError, imageSize, runCli, tinyCheckpoint } from './cli-helpers.ts';

let dir: string;
let ckpt: string;
const out = (name: string) => path.join(dir, name);
const span = (k: number) => 10 * k + 2; // k tiles of 8 px with 2 px borders
const run = (cmd: string, ...args: string[]) => runCli([cmd, '--checkpoint', ckpt, '--threads', '1', ...args]);

/** An 8x8 gray image with every row different: 8-bit values 3·(8y + x) + 40. */
const pixels = Uint8Array.from({ length: 64 }, (_, j) => 3 * j + 40);

async function gray(file: string, data: Uint8Array, size = 8): Promise<void> {
  await writeFile(file, await encodePng({ data, width: size, height: size, channels: 1 }));
}

/** The first `(x, y)` where two 8-bit gray images differ inside the rows `rows`, or null. */
function firstDiff(a: Uint8Array, b: Uint8Array, rows: number[]): string | null {
  for (const y of rows) for (let x = 0; x < 8; x++) if (a[8 * y + x] !== b[8 * y + x]) return `(${x}, ${y}): ${a[8 * y + x]} vs ${b[8 * y + x]}`;
  return null;
}

const upper = [0, 1, 2, 3];
const lower = [4, 5, 6, 7];

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'ddpm-cli-edit-'));
  ckpt = await tinyCheckpoint(path.join(dir, 'run'));
  await gray(out('x.png'), pixels);
  await gray(out('lower.png'), Uint8Array.from({ length: 64 }, (_, j) => (j >= 32 ? 255 : 0))); // generate the lower half
  await gray(out('big.png'), new Uint8Array(100).fill(255), 10);
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

test('inpaint: the kept half is the input exactly (8-bit, after the PNG round trip) with each sampler and with resampling', async () => {
  const cases = [
    ['--sampler', 'ddpm', '--steps', '6'],
    ['--sampler', 'ddpm', '--steps', '6', '--jump', '2', '--resample', '3'],
    ['--sampler', 'ddim', '--steps', '5'],
    ['--sampler', 'dpm++', '--steps', '5'],
  ];
  for (const [k, flags] of cases.entries()) {
    const file = out(`inpainted-${k}.png`);
    const r = await run('inpaint', '--image', out('x.png'), '--mask', out('lower.png'), '--out', file, ...flags);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /32 of 64 pixels generated/);
    const got = (await decodeImage(file, { channels: 1 })).data;
    assert.equal(got.length, 64);
    assert.equal(firstDiff(got, pixels, upper), null, `kept pixels differ (${flags.join(' ')})`);
    assert.notEqual(firstDiff(got, pixels, lower), null, `the generated half is the input (${flags.join(' ')})`);
  }
  const r = await run('inpaint', '--image', out('x.png'), '--mask', out('lower.png'), '--out', out('rp.png'), '--steps', '6', '--jump', '2', '--resample', '3');
  assert.match(r.stdout, /RePaint jump 2 x 3 \(14 model calls per batch/); // 6 + 2 jump states · 2 · 2
});

test('inpaint --n: a grid of n results, each its own random stream, reproducible for a seed', async () => {
  const args = ['--image', out('x.png'), '--mask', out('lower.png'), '--steps', '5', '--seed', '3'];
  const a = await run('inpaint', ...args, '--n', '3', '--out', out('n3.png'));
  const b = await run('inpaint', ...args, '--n', '3', '--batch-size', '2', '--out', out('n3b.png'));
  for (const r of [a, b]) assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(await imageSize(out('n3.png')), [span(2), span(2)]);
  assert.deepEqual(await readFile(out('n3.png')), await readFile(out('n3b.png')));
});

test('inpaint: grey and RGB masks are thresholded at 50% luma', async () => {
  // RGB mask: (200, 200, 200) generates, (100, 100, 100) keeps, in alternating rows
  const rgb = new Uint8Array(64 * 3);
  for (let j = 0; j < 64; j++) rgb.fill(Math.floor(j / 8) % 2 === 0 ? 100 : 200, 3 * j, 3 * j + 3);
  await writeFile(out('rgbmask.png'), await encodePng({ data: rgb, width: 8, height: 8, channels: 3 }));
  const r = await run('inpaint', '--image', out('x.png'), '--mask', out('rgbmask.png'), '--steps', '5', '--out', out('rgb.png'));
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /32 of 64 pixels generated/);
  const got = (await decodeImage(out('rgb.png'), { channels: 1 })).data;
  assert.equal(firstDiff(got, pixels, [0, 2, 4, 6]), null);
});

test('inpaint: a mask of another size is one line and exit 2, before any work', async () => {
  const r = await run('inpaint', '--image', out('x.png'), '--mask', out('big.png'), '--out', out('never.png'));
  assertUserError(r, /--mask .*big\.png is 10x10 but --image .*x\.png is 8x8/);
  assert.equal(r.stderr.trim().split('\n').length, 1);
  assert.equal(existsSync(out('never.png')), false);
  assertUserError(await run('inpaint', '--image', out('x.png'), '--mask', out('nope.png'), '--out', out('never.png')), /--mask: no such file: .*nope\.png/);
  assertUserError(await run('inpaint', '--image', out('x.png'), '--mask', out('lower.png'), '--steps', '4', '--resample', '2', '--jump', '4', '--out', out('never.png')), /--jump 4 must be below the number of steps \(4\)/);
});

test('inpaint and edit: an image of another size is resized to the model\'s, with a note', async () => {
  const r = await run('edit', '--image', out('big.png'), '--strength', '0.5', '--steps', '4', '--out', out('resized.png'));
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /note: --image .*big\.png is 10x10: resized and centre-cropped to the model's 8x8/);
  assert.deepEqual(await imageSize(out('resized.png')), [8, 8]);
});

test('edit: SDEdit writes the result, runs the last floor(strength·steps) steps, reproducible for a seed', async () => {
  const a = await run('edit', '--image', out('x.png'), '--strength', '0.6', '--steps', '5', '--n', '2', '--seed', '1', '--out', out('e1.png'));
  const b = await run('edit', '--image', out('x.png'), '--strength', '0.6', '--steps', '5', '--n', '2', '--seed', '1', '--out', out('e2.png'));
  for (const r of [a, b]) assert.equal(r.code, 0, r.stderr);
  assert.match(a.stdout, /strength 0\.6, ddim \(eta 1\), 5 steps: the last 3 from t = 40/); // ddim5 on T = 100: t = 80, 60, 40, 20, 0
  assert.deepEqual(await imageSize(out('e1.png')), [span(2), span(1)]);
  assert.deepEqual(await readFile(out('e1.png')), await readFile(out('e2.png')));
  const c = await run('edit', '--image', out('x.png'), '--strength', '1', '--sampler', 'dpm++', '--steps', '4', '--out', out('e3.png'));
  assert.equal(c.code, 0, c.stderr);
  assert.deepEqual(await imageSize(out('e3.png')), [8, 8]);
});

test('edit: a bad --strength is one line and exit 2, before any work', async () => {
  for (const s of ['0', '1.5', '-0.2', 'abc', '']) {
    const r = await run('edit', '--image', out('x.png'), '--strength', s, '--out', out('never.png'));
    assertUserError(r, /--strength must be a number in \(0, 1\]/);
  }
  assertUserError(await run('edit', '--image', out('x.png'), '--strength', '0.1', '--steps', '5', '--out', out('never.png')), /--strength: strength 0\.1 keeps no step of 5/);
  assert.equal(existsSync(out('never.png')), false);
});

test('invert: x_T as safetensors with its settings; --decode writes the image', async () => {
  const enc = await run('invert', '--image', out('x.png'), '--steps', '20', '--out', out('noise.safetensors'));
  assert.equal(enc.code, 0, enc.stderr);
  assert.match(enc.stdout, /DDIM \(eta 0, no clipping\), 20 steps, t = 0\.\.95/);
  const file = parseSafetensors(new Uint8Array(await readFile(out('noise.safetensors'))));
  assert.deepEqual(file.tensors.x_T.shape, [1, 1, 8, 8]);
  const rec = JSON.parse(file.metadata[INVERT_METADATA_KEY]) as InvertRecord;
  assert.equal(rec.steps, 20);
  assert.equal(rec.diffusion.schedule.T, 100);
  assert.deepEqual(rec.imageShape, [1, 8, 8]);
  const dec = await run('invert', '--decode', out('noise.safetensors'), '--out', out('back.png'));
  assert.equal(dec.code, 0, dec.stderr);
  assert.match(dec.stdout, /DDIM \(eta 0, no clipping\), 20 steps/);
  assert.deepEqual(await imageSize(out('back.png')), [8, 8]);
});

test('invert round trip with the shipped model: an MNIST test digit comes back (20 steps)', async () => {
  const digit = loadMnist('test').images.subarray(0, 784); // a 7
  await gray(out('seven.png'), digit, 28);
  const enc = await runCli(['invert', '--threads', '1', '--image', out('seven.png'), '--steps', '20', '--out', out('seven.safetensors')]);
  assert.equal(enc.code, 0, enc.stderr);
  const dec = await runCli(['invert', '--threads', '1', '--decode', out('seven.safetensors'), '--out', out('seven-back.png')]);
  assert.equal(dec.code, 0, dec.stderr);
  const got = (await decodeImage(out('seven-back.png'), { channels: 1 })).data;
  // in [-1, 1] units; scripts/measure-editing.ts measures 0.012 on average at 20 steps, while the digit's variance is ~0.5
  let se = 0;
  for (let j = 0; j < 784; j++) se += ((got[j] - digit[j]) / 127.5) ** 2;
  assert.ok(se / 784 < 0.03, `reconstruction MSE ${(se / 784).toFixed(4)}`);
});

test('invert: bad input is one line and exit 2', async () => {
  assertUserError(await run('invert', '--out', out('n.safetensors')), /pass either --image \(encode\) or --decode \(decode\)/);
  assertUserError(await run('invert', '--image', out('x.png'), '--decode', out('noise.safetensors'), '--out', out('n.png')), /pass either --image/);
  assertUserError(await run('invert', '--image', out('x.png'), '--out', out('n.png')), /--out must end in \.safetensors/);
  assertUserError(await run('invert', '--decode', out('noise.safetensors'), '--out', out('n.safetensors')), /--out must end in \.png/);
  assertUserError(await run('invert', '--decode', out('noise.safetensors'), '--steps', '10', '--out', out('n.png')), /records its 20 steps/);
  assertUserError(await run('invert', '--decode', out('missing.safetensors'), '--out', out('n.png')), /--decode .*missing\.safetensors: cannot read: no such file/);
  await writeFile(out('wrong.safetensors'), serializeSafetensors({ x_T: { data: new Float32Array(2 * 16 * 16), shape: [2, 1, 16, 16] } }));
  assertUserError(await run('invert', '--decode', out('wrong.safetensors'), '--out', out('n.png')), /x_T is F32 \[2, 1, 16, 16\]; the model needs F32 \[N, 1, 8, 8\]/);
  await writeFile(out('junk.safetensors'), 'not safetensors');
  assertUserError(await run('invert', '--decode', out('junk.safetensors'), '--out', out('n.png')), /junk\.safetensors/);
  // noise of the right shape without the record decodes with --steps (DDIM from a given x_T)
  await writeFile(out('plain.safetensors'), serializeSafetensors({ x_T: { data: new Float32Array(3 * 64).fill(0.5), shape: [3, 1, 8, 8] } }));
  const r = await run('invert', '--decode', out('plain.safetensors'), '--steps', '5', '--out', out('plain.png'));
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(await imageSize(out('plain.png')), [span(2), span(2)]);
});

test('outputs are checked before any work: a bad --out is reported before a missing model or image', async () => {
  await writeFile(out('afile'), '');
  const bad = path.join(out('afile'), 'y.png'); // under a regular file
  for (const [cmd, extra] of [
    ['inpaint', ['--image', out('nope.png'), '--mask', out('nope.png')]],
    ['edit', ['--image', out('nope.png')]],
    ['invert', ['--image', out('nope.png')]],
  ] as const) {
    const o = cmd === 'invert' ? path.join(out('afile'), 'y.safetensors') : bad;
    const r = await runCli([cmd, '--checkpoint', out('no-model'), ...extra, '--out', o]);
    assertUserError(r, /--out .*afile.* is not a directory/);
  }
  assertUserError(await runCli(['edit', '--image', out('x.png'), '--out', out('y.jpg')]), /--out must end in \.png/);
});

test('--help of each command exits 0 with examples', async () => {
  for (const cmd of ['inpaint', 'edit', 'invert']) {
    const r = await runCli([cmd, '--help']);
    assert.equal(r.code, 0);
    assert.match(r.stdout, new RegExp(`Usage: ddpm ${cmd}`));
    assert.match(r.stdout, new RegExp(`Examples:\\n  ddpm ${cmd} `));
  }
});
