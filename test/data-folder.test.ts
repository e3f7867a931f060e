import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import sharp, { type Sharp } from 'sharp';
import { imageFolderDataset, ImageFolderError, listImageFiles, loadImageFolder } from '../src/data/folder.ts';

type RGB = [number, number, number];
const RED: RGB = [255, 0, 0];
const GREEN: RGB = [0, 255, 0];
const BLUE: RGB = [0, 0, 255];

/** An RGB image of equal vertical (or horizontal) bands of colour. */
function bands(colors: RGB[], bandSize: number, other: number, vertical = true): Sharp {
  const width = vertical ? colors.length * bandSize : other;
  const height = vertical ? other : colors.length * bandSize;
  const data = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) data.set(colors[Math.floor((vertical ? x : y) / bandSize)], (y * width + x) * 3);
  }
  return sharp(data, { raw: { width, height, channels: 3 } });
}

async function makeFolder(): Promise<string> {
  const dir = mkdtempSync(path.join(tmpdir(), 'ddpm-folder-'));
  mkdirSync(path.join(dir, 'sub', 'deeper'), { recursive: true });
  await bands([RED, GREEN, BLUE], 10, 10).png().toFile(path.join(dir, 'a_wide.png')); // 30x10
  await bands([RED, BLUE, GREEN], 10, 10, false).png().toFile(path.join(dir, 'sub', 'b_tall.PNG')); // 10x30
  await bands([GREEN], 20, 20).jpeg({ quality: 95 }).toFile(path.join(dir, 'sub', 'deeper', 'c_big.jpg')); // 20x20
  await bands([[128, 128, 128]], 40, 40).webp({ lossless: true }).toFile(path.join(dir, 'd_gray.webp'));
  writeFileSync(path.join(dir, 'notes.txt'), 'not an image');
  writeFileSync(path.join(dir, '.hidden.png'), 'macOS metadata, not an image');
  return dir;
}

function pixel(images: Uint8Array, i: number, c: number, size: number, x: number, y: number, channels = 3): number {
  return images[((i * channels + c) * size + y) * size + x];
}

test('recursive scan, centre crop, resize, RGB and grayscale', async () => {
  const dir = await makeFolder();
  try {
    assert.deepEqual(await listImageFiles(dir), ['a_wide.png', 'd_gray.webp', path.join('sub', 'b_tall.PNG'), path.join('sub', 'deeper', 'c_big.jpg')]);

    const rgb = await loadImageFolder(dir, { size: 10, channels: 3 });
    assert.deepEqual([rgb.n, rgb.channels, rgb.height, rgb.width, rgb.images.length], [4, 3, 10, 10, 4 * 3 * 100]);
    const colourAt = (i: number, x: number, y: number) => [0, 1, 2].map((c) => pixel(rgb.images, i, c, 10, x, y));
    // 30x10 -> the middle vertical band; 10x30 -> the middle horizontal band (exact: no resampling needed).
    for (const [x, y] of [[0, 0], [9, 9], [5, 3]]) {
      assert.deepEqual(colourAt(0, x, y), GREEN);
      assert.deepEqual(colourAt(2, x, y), BLUE);
    }
    // 20x20 JPEG halved; 40x40 gray WebP quartered.
    for (const [v, want] of colourAt(3, 5, 5).map((v, c) => [v, GREEN[c]])) assert.ok(Math.abs(v - want) <= 3, `${v} vs ${want}`);
    assert.deepEqual(colourAt(1, 4, 6), [128, 128, 128]);

    const gray = await loadImageFolder(dir, { size: 4, channels: 1 });
    assert.deepEqual([gray.n, gray.channels, gray.images.length], [4, 1, 4 * 16]);
    assert.equal(pixel(gray.images, 1, 0, 4, 2, 2, 1), 128);
    // Pure green -> Rec. 601 luma as PIL's convert('L'): round(0.587 * 255) = 150; blue -> round(0.114 * 255) = 29.
    assert.equal(pixel(gray.images, 0, 0, 4, 2, 2, 1), 150);
    assert.equal(pixel(gray.images, 2, 0, 4, 2, 2, 1), 29);

    const ds = imageFolderDataset(gray);
    const out = new Float32Array(16);
    ds.getBatch([1], out);
    assert.equal(out[5], Math.fround(128 / 127.5 - 1));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('corrupt files: clear error naming the file, or skipped with a warning', async () => {
  const dir = await makeFolder();
  try {
    writeFileSync(path.join(dir, 'sub', 'broken.png'), new Uint8Array([0x89, 0x50, 0x4e, 0x47, 1, 2, 3]));
    await assert.rejects(loadImageFolder(dir, { size: 8, channels: 3 }), (err: Error) => {
      assert.ok(err instanceof ImageFolderError);
      assert.match(err.message, /cannot decode image .*sub\/broken\.png/);
      return true;
    });
    const warnings: string[] = [];
    const data = await loadImageFolder(dir, { size: 8, channels: 3, onCorrupt: 'skip', warn: (m) => warnings.push(m) });
    assert.equal(data.n, 4);
    assert.deepEqual(data.skipped, [path.join('sub', 'broken.png')]);
    assert.ok(!data.files.includes(path.join('sub', 'broken.png')));
    assert.equal(warnings.length, 1);
    assert.match(warnings[0], /broken\.png.*skipped/);
    // Kept images are compacted in order: the last one is still the JPEG's green.
    assert.ok(pixel(data.images, 3, 1, 8, 4, 4) > 250);

    // A truncated JPEG (half the file) is an error too, not a silently grey image.
    const jpg = readFileSync(path.join(dir, 'sub', 'deeper', 'c_big.jpg'));
    const trunc = path.join(dir, 'trunc');
    mkdirSync(trunc);
    writeFileSync(path.join(trunc, 'half.jpg'), jpg.subarray(0, jpg.length >> 1));
    await assert.rejects(loadImageFolder(trunc, { size: 8, channels: 1 }), /cannot decode image .*half\.jpg/);
    await assert.rejects(loadImageFolder(trunc, { size: 8, channels: 1, onCorrupt: 'skip', warn: () => {} }), /none of the 1 images/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('empty or missing folders are clear errors', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'ddpm-empty-'));
  try {
    writeFileSync(path.join(dir, 'readme.md'), '');
    await assert.rejects(loadImageFolder(dir, { size: 8, channels: 3 }), /no images \(\.png, \.jpg, \.jpeg, \.webp\) found under/);
    await assert.rejects(loadImageFolder(path.join(dir, 'nope'), { size: 8, channels: 3 }), /image folder .*nope cannot be read/);
    await assert.rejects(loadImageFolder(path.join(dir, 'readme.md'), { size: 8, channels: 3 }), /is not a directory/);
    await assert.rejects(loadImageFolder(dir, { size: 0, channels: 3 }), /size must be an integer in \[1, 1024\], got 0/);
    await assert.rejects(loadImageFolder(dir, { size: 20000, channels: 3 }), /size must be an integer in \[1, 1024\], got 20000/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
