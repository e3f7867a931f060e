/**
 * Resource limits (src/limits.ts) on the library paths: small hostile files and configs that declare something
 * huge are refused from their headers, before anything is allocated. The CLI side (one line, exit 2) is in
 * test/cli-limits.test.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { loadImageFolder, pixelBudget } from '../src/data/folder.ts';
import { decodeImage, readImageHeader } from '../src/io/image.ts';
import { MAX_DECODE_PIXELS } from '../src/limits.ts';
import { pngDeclaring } from './hostile-files.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

function tempDir(prefix: string): string {
  return mkdtempSync(path.join(tmpdir(), `ddpm-limits-${prefix}-`));
}

// ---------------------------------------------------------------------------------------------
// Images

test('a PNG declaring 8388608x16 pixels is refused from its header, naming the limit', async () => {
  const bomb = await pngDeclaring(8388608, 16);
  assert.ok(bomb.length < 1024, `${bomb.length} bytes`);
  const limit = /8388608x16 = 134,217,728 pixels, over the decode limit of 33,554,432 \(MAX_DECODE_PIXELS\)/;
  await assert.rejects(readImageHeader(bomb), limit);
  await assert.rejects(decodeImage(bomb), limit);
  await assert.rejects(decodeImage(bomb, { channels: 1, size: 28 }), limit);
  // the same header at a legal size reads fine (the data is still short: decoding it fails as corrupt)
  assert.deepEqual(await readImageHeader(await pngDeclaring(4096, 16)), { width: 4096, height: 16, pixels: 65536, format: 'png' });
  await assert.rejects(decodeImage(await pngDeclaring(4096, 16)), /libpng|read error|truncated|premature/i);
  // and so does an image exactly at the limit, which is allowed by it
  const atLimit = await readImageHeader(await pngDeclaring(MAX_DECODE_PIXELS / 4096, 4096));
  assert.equal(atLimit.pixels, MAX_DECODE_PIXELS);
});

test('decodeImage refuses a resize target over MAX_IMAGE_SIZE before decoding', async () => {
  const png = new Uint8Array(await sharp({ create: { width: 4, height: 4, channels: 3, background: '#000' } }).png().toBuffer());
  await assert.rejects(decodeImage(png, { size: 20000 }), /size must be an integer in \[1, 1024\], got 20000/);
  assert.equal((await decodeImage(png, { size: 16 })).width, 16);
});

test('a folder of bombs is refused image by image, naming each file; good images around them still load', async () => {
  const dir = tempDir('folder');
  try {
    const bomb = await pngDeclaring(8388608, 16);
    for (let i = 0; i < 4; i++) writeFileSync(path.join(dir, `bomb${i}.png`), bomb);
    await sharp({ create: { width: 10, height: 10, channels: 3, background: '#fff' } }).png().toFile(path.join(dir, 'good.png'));
    await assert.rejects(
      loadImageFolder(dir, { size: 8, channels: 1 }),
      /cannot decode image .*bomb0\.png: declares 8388608x16 .* \(MAX_DECODE_PIXELS\)/,
    );
    const warnings: string[] = [];
    const data = await loadImageFolder(dir, { size: 8, channels: 1, onCorrupt: 'skip', warn: (m) => warnings.push(m) });
    assert.deepEqual(data.files, ['good.png']);
    assert.equal(warnings.length, 4);
    assert.ok(warnings.every((w) => /bomb\d\.png: declares 8388608x16/.test(w)), warnings.join('\n'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('an image folder too large for memory is refused before the dataset is allocated', async () => {
  const dir = tempDir('big');
  try {
    for (let i = 0; i < 3; i++) {
      await sharp({ create: { width: 4, height: 4, channels: 3, background: '#fff' } }).png().toFile(path.join(dir, `${i}.png`));
    }
    await assert.rejects(
      loadImageFolder(dir, { size: 1024, channels: 3, maxBytes: 1e6 }),
      /image folder .*: 3 images at 3x1024x1024 need 0\.0 GB in memory, over the 0\.0 GB allowed$/,
    );
    assert.equal((await loadImageFolder(dir, { size: 8, channels: 3, maxBytes: 3 * 192 })).n, 3);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('pixelBudget: decodes run together only while their declared pixels fit; one may always run alone', async () => {
  const budget = pixelBudget(10);
  const started: string[] = [];
  const run = async (name: string, px: number) => {
    await budget.acquire(px);
    started.push(name);
    return () => budget.release(px);
  };
  const a = await run('a', 6); // fits
  const pb = run('b', 6); // 12 > 10: waits
  const pc = run('c', 1); // behind b: waits too (first come, first served)
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(started, ['a']);
  a();
  const b = await pb;
  const c = await pc;
  assert.deepEqual(started, ['a', 'b', 'c']); // 6 + 1 fit together
  b();
  c();
  const big = await run('big', 50); // over the budget but alone: allowed
  const pd = run('d', 1);
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(started, ['a', 'b', 'c', 'big']);
  big();
  (await pd)();
  assert.deepEqual(started, ['a', 'b', 'c', 'big', 'd']);
});

test('decoding bombs (one file, then a folder of 8) keeps peak RSS within 200 MB of the baseline', () => {
  // In a child process, so that maxRSS measures only this work. Before the pixel limit one such file took
  // 3.8 GB, and a folder of 8 took 15.6 GB.
  const dir = tempDir('rss');
  try {
    const script = path.join(dir, 'rss.mts'); // .mts: an ES module outside the package
    writeFileSync(
      script,
      `
      import { writeFileSync } from 'node:fs';
      import { loadImageFolder } from ${JSON.stringify(path.join(ROOT, 'src/data/folder.ts'))};
      import { decodeImage } from ${JSON.stringify(path.join(ROOT, 'src/io/image.ts'))};
      import { pngDeclaring } from ${JSON.stringify(path.join(ROOT, 'test/hostile-files.ts'))};
      const bomb = await pngDeclaring(8388608, 16);
      for (let i = 0; i < 8; i++) writeFileSync(${JSON.stringify(dir)} + '/b' + i + '.png', bomb);
      await decodeImage(await pngDeclaring(2, 2)).catch(() => {}); // load the codecs
      const base = process.resourceUsage().maxRSS;
      let refused = 0;
      await decodeImage(bomb).catch(() => refused++);
      await loadImageFolder(${JSON.stringify(dir)}, { size: 28, channels: 1 }).catch(() => refused++);
      console.log(JSON.stringify({ growKB: process.resourceUsage().maxRSS - base, refused }));
      `,
    );
    const out = execFileSync(process.execPath, ['--import', 'tsx', script], { cwd: ROOT, encoding: 'utf8' });
    const { growKB, refused } = JSON.parse(out.trim().split('\n').at(-1)!) as { growKB: number; refused: number };
    assert.equal(refused, 2);
    assert.ok(growKB < 200 * 1024, `peak RSS grew by ${(growKB / 1024).toFixed(0)} MB`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
