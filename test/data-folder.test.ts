import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import sharp, { type Sharp } from 'sharp';
import { imageFolderDataset, ImageFolderError, inspectImageFolder, listImageFiles, loadImageFolder } from '../src/data/folder.ts';

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
    assert.deepEqual(data.skipped.map((s) => s.file), [path.join('sub', 'broken.png')]);
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
    await assert.rejects(loadImageFolder(path.join(dir, 'readme.md'), { size: 8, channels: 3 }), /readme\.md is an empty file, not a directory/);
    writeFileSync(path.join(dir, 'notes.txt'), 'a file of no known kind');
    await assert.rejects(loadImageFolder(path.join(dir, 'notes.txt'), { size: 8, channels: 3 }), /notes\.txt is not a directory/);
    await assert.rejects(loadImageFolder(dir, { size: 0, channels: 3 }), /size must be an integer in \[1, 1024\], got 0/);
    await assert.rejects(loadImageFolder(dir, { size: 20000, channels: 3 }), /size must be an integer in \[1, 1024\], got 20000/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/** w x h pixels of one colour with `channels` 1-4 (2 and 4 with the alpha `a`), as sharp input. */
function flat(w: number, h: number, channels: 1 | 2 | 3 | 4, value: number[], a = 255): Sharp {
  const px = new Uint8Array(w * h * channels);
  const one = channels === 2 || channels === 4 ? [...value, a] : value;
  for (let i = 0; i < w * h; i++) px.set(one, i * channels);
  const p = sharp(px, { raw: { width: w, height: h, channels } });
  return channels <= 2 ? p.toColourspace('b-w') : p; // else libvips writes grey input as RGB
}

/**
 * The odd folder a user brings: 32x32 RGB most often, one wider, and the modes torchvision's loader converts
 * (grey, RGBA with colour under transparent pixels, grey+alpha, 16-bit, palette), plus a zero-byte PNG, a text
 * file named .png, a truncated JPEG (its header reads; its pixels do not), a .txt and a hidden file.
 */
async function makeOddFolder(): Promise<string> {
  const dir = mkdtempSync(path.join(tmpdir(), 'ddpm-odd-'));
  mkdirSync(path.join(dir, 'sub'));
  for (let i = 0; i < 3; i++) await flat(32, 32, 3, [200, 10 * i, 0]).png().toFile(path.join(dir, `rgb${i}.png`));
  await bands([RED, GREEN, BLUE], 16, 32).png().toFile(path.join(dir, 'wide.png')); // 48x32: shorter side 32
  await flat(16, 16, 1, [90]).png().toFile(path.join(dir, 'grey.png'));
  await flat(32, 32, 4, [250, 20, 20], 0).png().toFile(path.join(dir, 'sub', 'rgba.png')); // transparent, stored red
  await flat(20, 20, 2, [60], 128).png().toFile(path.join(dir, 'sub', 'grey-alpha.png'));
  await flat(32, 32, 3, [40, 80, 120]).toColourspace('rgb16').png().toFile(path.join(dir, 'deep.png'));
  await flat(32, 32, 3, [0, 0, 255]).png({ palette: true }).toFile(path.join(dir, 'palette.png'));
  const noise = Uint8Array.from({ length: 48 * 48 * 3 }, (_, i) => (i * 7919) % 251);
  const jpg = await sharp(noise, { raw: { width: 48, height: 48, channels: 3 } }).jpeg({ quality: 95 }).toBuffer(); // mostly scan data
  writeFileSync(path.join(dir, 'sub', 'truncated.jpg'), jpg.subarray(0, jpg.length >> 1));
  writeFileSync(path.join(dir, 'zero.png'), new Uint8Array(0));
  writeFileSync(path.join(dir, 'text.png'), 'this is not a PNG');
  writeFileSync(path.join(dir, 'notes.txt'), 'not an image');
  writeFileSync(path.join(dir, '.DS_Store'), 'finder');
  return dir;
}

test('inspectImageFolder: sizes and modes from the headers; the most common shorter side and colour win', async () => {
  const dir = await makeOddFolder();
  try {
    const f = await inspectImageFolder(dir, { onCorrupt: 'skip' });
    assert.equal(f.files.length, 10); // the truncated JPEG's header reads
    assert.deepEqual(f.corrupt, [
      { file: 'text.png', reason: 'not a PNG, JPEG or WebP image' },
      { file: 'zero.png', reason: 'empty file' },
    ]);
    assert.deepEqual(f.ignored, { '.txt': 1 });
    assert.deepEqual(f.sizes, [['32x32', 6], ['16x16', 1], ['20x20', 1], ['48x32', 1], ['48x48', 1]]);
    assert.deepEqual(f.modes, [['RGB', 5], ['16-bit RGB', 1], ['RGBA', 1], ['grey', 1], ['grey+alpha', 1], ['palette', 1]]);
    assert.equal(f.size, 32);
    assert.equal(f.channels, 3);
    // strict: the first unreadable file in sorted order, named
    await assert.rejects(inspectImageFolder(dir), (e: Error) => e instanceof ImageFolderError && /^cannot decode image .*text\.png: not a PNG, JPEG or WebP image$/.test(e.message));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('inspectImageFolder: grey when grey images are the majority; ties go to colour and to the smaller side', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'ddpm-inspect-'));
  try {
    await flat(24, 30, 1, [10]).png().toFile(path.join(dir, 'a.png'));
    await flat(30, 24, 1, [10]).jpeg().toFile(path.join(dir, 'b.jpg'));
    await flat(64, 64, 3, [1, 2, 3]).png().toFile(path.join(dir, 'c.png'));
    let f = await inspectImageFolder(dir);
    assert.deepEqual([f.size, f.channels], [24, 1]);
    await flat(64, 64, 3, [1, 2, 3]).webp().toFile(path.join(dir, 'd.webp'));
    f = await inspectImageFolder(dir);
    assert.deepEqual([f.size, f.channels], [24, 3]); // 2 of side 24, 2 of 64; 2 grey, 2 colour
    await flat(2000, 1100, 3, [1, 2, 3]).png().toFile(path.join(dir, 'e.png'));
    await flat(1100, 2000, 3, [1, 2, 3]).png().toFile(path.join(dir, 'f.png'));
    await flat(1100, 1100, 3, [1, 2, 3]).png().toFile(path.join(dir, 'g.png'));
    assert.equal((await inspectImageFolder(dir)).size, 1024); // capped at MAX_IMAGE_SIZE
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('loading an odd folder: every mode converted as PIL does, unreadable files skipped with their reasons', async () => {
  const dir = await makeOddFolder();
  try {
    const f = await inspectImageFolder(dir, { onCorrupt: 'skip' });
    const warnings: string[] = [];
    const data = await loadImageFolder(dir, { size: 8, channels: 3, onCorrupt: 'skip', inspection: f, warn: (m) => warnings.push(m) });
    assert.equal(data.n, 9);
    assert.deepEqual(data.skipped.map((s) => s.file), [path.join('sub', 'truncated.jpg'), 'text.png', 'zero.png']);
    assert.match(data.skipped[0].reason, /premature end of JPEG|corrupt or truncated/); // libvips' words, when they reach us
    assert.equal(warnings.length, 1, 'the inspection already knew the other two');
    const at = (file: string) => {
      const i = data.files.indexOf(file);
      assert.ok(i >= 0, file);
      return [0, 1, 2].map((c) => pixel(data.images, i, c, 8, 4, 4));
    };
    assert.deepEqual(at(path.join('sub', 'rgba.png')), [250, 20, 20]); // alpha dropped, the stored colour kept
    assert.deepEqual(at(path.join('sub', 'grey-alpha.png')), [60, 60, 60]);
    assert.deepEqual(at('grey.png'), [90, 90, 90]);
    assert.deepEqual(at('palette.png'), [0, 0, 255]);
    for (const [v, want] of at('deep.png').map((v, c) => [v, [40, 80, 120][c]])) assert.ok(Math.abs(v - want) <= 1, `16-bit ${v} vs ${want}`);

    // the same without the inspection; grey output is Rec. 601 luma of the dropped-alpha colour
    const gray = await loadImageFolder(dir, { size: 8, channels: 1, onCorrupt: 'skip', warn: () => {} });
    assert.deepEqual(gray.skipped.map((s) => s.file), data.skipped.map((s) => s.file));
    assert.equal(gray.images[gray.files.indexOf(path.join('sub', 'rgba.png')) * 64 + 36], (19595 * 250 + 38470 * 20 + 7471 * 20 + 0x8000) >>> 16);

    // strict: the inspection's unreadable files stop the load too
    await assert.rejects(loadImageFolder(dir, { size: 8, channels: 3, inspection: f }), /cannot decode image .*text\.png/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('resize modes: center-crop (Resize + CenterCrop), stretch (Resize((s, s))), pad (black bars)', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'ddpm-resize-'));
  try {
    const white: RGB = [255, 255, 255];
    await bands([RED, GREEN, BLUE, white], 2, 2).png().toFile(path.join(dir, 'a.png')); // 8x2
    const load = async (resize: 'center-crop' | 'stretch' | 'pad') => {
      const d = await loadImageFolder(dir, { size: 2, channels: 3, resize });
      return [0, 1].map((y) => [0, 1].map((x) => [0, 1, 2].map((c) => pixel(d.images, 0, c, 2, x, y))));
    };
    assert.deepEqual(await load('center-crop'), [[GREEN, BLUE], [GREEN, BLUE]]);
    const stretched = await load('stretch'); // each output pixel averages two bands
    assert.deepEqual(stretched[0], stretched[1]);
    assert.ok(stretched[0][0][0] > 80 && stretched[0][0][1] > 80 && stretched[0][0][2] < 40, `${stretched[0][0]}`);
    const padded = await load('pad'); // 8x2 -> 2x1 (rounded), then a black row
    assert.deepEqual(padded[0], stretched[0]);
    assert.deepEqual(padded[1], [[0, 0, 0], [0, 0, 0]]);
    await assert.rejects(loadImageFolder(dir, { size: 2, channels: 3, resize: 'zoom' as never }), /resize must be one of center-crop, stretch, pad/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a folder of only unreadable files, or of no images, is an error naming the folder', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'ddpm-bad-'));
  try {
    writeFileSync(path.join(dir, 'a.png'), new Uint8Array(0));
    writeFileSync(path.join(dir, 'b.jpg'), 'text');
    for (const onCorrupt of ['skip', 'error'] as const) {
      const want = onCorrupt === 'skip' ? /^ImageFolderError: none of the 2 images under .*ddpm-bad-\w+ could be read \(a\.png: empty file\)$/ : /cannot decode image .*a\.png: empty file/;
      await assert.rejects(inspectImageFolder(dir, { onCorrupt }), want);
    }
    await assert.rejects(loadImageFolder(dir, { size: 8, channels: 3, onCorrupt: 'skip', warn: () => {} }), /^ImageFolderError: none of the 2 images/);
    rmSync(path.join(dir, 'a.png'));
    rmSync(path.join(dir, 'b.jpg'));
    writeFileSync(path.join(dir, 'c.gif'), 'GIF89a');
    await assert.rejects(inspectImageFolder(dir), /^ImageFolderError: no images \(\.png, \.jpg, \.jpeg, \.webp\) found under .* \(only 1 other file, such as c\.gif\)$/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
