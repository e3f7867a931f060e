import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { GaussianDiffusion } from '../src/diffusion/gaussian-diffusion.ts';
import { writePng } from '../src/io/image.ts';
import { Rng } from '../src/rng.ts';
import { forwardProcess } from '../src/sample/forward.ts';
import { assertUserError, imageSize, runCli } from './cli-helpers.ts';

let dir: string;
let image: string;
const S = 32;

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'ddpm-cli-noise-'));
  // a gray 32x32 test card: a bright disc on a horizontal ramp
  const data = new Uint8Array(S * S);
  for (let y = 0; y < S; y++) for (let x = 0; x < S; x++) data[y * S + x] = (x - 16) ** 2 + (y - 16) ** 2 < 64 ? 255 : x * 6;
  image = path.join(dir, 'card.png');
  await writePng(image, { data, width: S, height: S, channels: 1 });
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

test('forwardProcess: closed form (eq. 4) and chain (eq. 2) both match N(√ᾱ x_0, (1 − ᾱ) I) in their moments', () => {
  const diffusion = GaussianDiffusion.fromConfig({ kind: 'linear', T: 1000 });
  const rng = new Rng(3);
  const x0 = rng.uniformFloat32(64 * 64).map((u) => 2 * u - 1);
  const rows = forwardProcess(diffusion, x0, [0, 100, 500, 999], new Rng(0));
  for (const r of rows) {
    assert.equal(r.alphaBar, diffusion.alphasCumprod[r.t]);
    // z = (x_t − √ᾱ x_0)/√(1 − ᾱ) is standard normal per pixel; 4096 pixels: sd of the mean 0.016, of the std 0.011
    for (const [name, z] of [['closed', r.closedZ], ['chain', r.chainZ]] as const) {
      assert.ok(Math.abs(z.mean) < 0.08, `t=${r.t} ${name} z mean ${z.mean}`);
      assert.ok(Math.abs(z.std - 1) < 0.06, `t=${r.t} ${name} z std ${z.std}`);
    }
    for (const s of [r.closedStats, r.chainStats]) {
      assert.ok(Math.abs(s.mean - r.expected.mean) < 0.08 * r.expected.std, `t=${r.t} mean ${s.mean} vs ${r.expected.mean}`);
      assert.ok(Math.abs(s.std / r.expected.std - 1) < 0.06, `t=${r.t} std ${s.std} vs ${r.expected.std}`);
    }
  }
  assert.throws(() => forwardProcess(diffusion, x0, [1000], new Rng(0)), /outside \[0, 1000\)/);
});

test('noise: a strip of x_0 and x_t (closed form above, chain below) and a table of ᾱ_t and the statistics', async () => {
  const out = path.join(dir, 'strip.png');
  const r = await runCli(['noise', '--image', image, '--t', '0,10,50,99', '--T', '100', '--out', out]);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(await imageSize(out), [5 * (S + 2) + 2, 2 * (S + 2) + 2]);
  assert.match(r.stdout, /1x32x32, linear schedule, T = 100/); // a gray image is read with one channel
  const table = r.stdout.split('\n').filter((l) => /^\s+\d+\s+[\d.]+/.test(l));
  assert.equal(table.length, 4);
  for (const line of table) {
    // t ᾱ √ᾱ √(1−ᾱ) | E[mean] E[std] | mean std zmean zstd | mean std zmean zstd
    const v = line.replace(/\|/g, ' ').trim().split(/\s+/).map(Number);
    assert.equal(v.length, 14, line);
    assert.ok(Math.abs(v[1] - v[2] ** 2) < 1e-4 && Math.abs(v[1] + v[3] ** 2 - 1) < 1e-4, `ᾱ, √ᾱ, √(1−ᾱ) agree: ${line}`);
    for (const zStd of [v[9], v[13]]) assert.ok(Math.abs(zStd - 1) < 0.15, `z std near 1: ${line}`);
    for (const zMean of [v[8], v[12]]) assert.ok(Math.abs(zMean) < 0.15, `z mean near 0: ${line}`);
  }
});

test('noise: bad timesteps, missing or corrupt images are one line on stderr and exit code 2', async () => {
  const out = path.join(dir, 'x.png');
  assertUserError(await runCli(['noise', '--image', image, '--t', '0,100', '--T', '100', '--out', out]), /--t: 100 is not an integer in \[0, 100\)/);
  assertUserError(await runCli(['noise', '--image', image, '--t', '-1', '--out', out]), /--t: -1 is not an integer/);
  // a linear schedule at T < 20 has β > 1: refused as bad input before any work, naming the flags
  assertUserError(await runCli(['noise', '--image', image, '--t', '0,5', '--T', '10', '--out', out]), /--schedule linear --T 10: .*use T >= 20/);
  assertUserError(await runCli(['noise', '--image', image, '--t', '5,,7', '--out', out]), /--t: expected comma-separated integers/);
  assertUserError(await runCli(['noise', '--image', image, '--t', '2.5', '--out', out]), /--t: 2\.5 is not an integer/);
  assertUserError(await runCli(['noise', '--image', path.join(dir, 'missing.png'), '--out', out]), /--image: no such file/);
  const corrupt = path.join(dir, 'corrupt.png');
  await writeFile(corrupt, Buffer.from('\x89PNG\r\n\x1a\nthis is not really a png'));
  assertUserError(await runCli(['noise', '--image', corrupt, '--out', out]), /--image .*corrupt\.png: cannot decode/);
  assertUserError(await runCli(['noise', '--image', image, '--schedule', 'wobbly', '--out', out]), /argument 'wobbly' is invalid/);
  assertUserError(await runCli(['noise', '--image', image]), /required option '--out/);
});
