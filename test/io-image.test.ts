import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import sharp from 'sharp';
import {
  decodeImage,
  encodeGif,
  encodePng,
  makeGrid,
  makeStrip,
  readImage,
  unitToUint8,
  writeGif,
  writeImageGrid,
  type BatchShape,
} from '../src/io/image.ts';

/** A batch whose values sit exactly on the 256 output levels, so uint8 round trips are lossless. */
function levels(shape: BatchShape): Float32Array {
  const n = shape.reduce((a, b) => a * b, 1);
  return Float32Array.from({ length: n }, (_, i) => ((i * 37) % 256) / 127.5 - 1);
}

test('unitToUint8 clamps and rounds like save_image', () => {
  assert.deepEqual([-1, 1, 0, -2, 2, Number.NaN, 0.004 - 1, 0.003 - 1].map(unitToUint8), [0, 255, 128, 0, 255, 0, 1, 0]);
  for (let v = 0; v < 256; v++) assert.equal(unitToUint8(Math.fround(v / 127.5 - 1)), v);
});

test('makeGrid lays tiles out like torchvision make_grid', () => {
  // 3 grayscale 2x2 images, nrow 2, padding 1, pad 7: 2 columns x 2 rows -> 7x7.
  const data = new Float32Array(12).map((_, i) => (i < 4 ? -1 : i < 8 ? 1 : 0));
  const g = makeGrid(data, [3, 1, 2, 2], { nrow: 2, padding: 1, padValue: 7 });
  assert.deepEqual([g.width, g.height, g.channels], [7, 7, 1]);
  const px = (x: number, y: number) => g.data[y * g.width + x];
  assert.deepEqual([px(1, 1), px(2, 2), px(4, 1), px(5, 2), px(1, 4), px(2, 5)], [0, 0, 255, 255, 128, 128]);
  assert.deepEqual([px(0, 0), px(3, 1), px(6, 6), px(4, 4)], [7, 7, 7, 7]); // border, gutter, empty 4th cell
  // RGB: channel planes are interleaved per pixel.
  const rgb = new Float32Array([/* R */ 1, /* G */ -1, /* B */ 0]);
  assert.deepEqual(Array.from(makeGrid(rgb, [1, 3, 1, 1], { padding: 0 }).data), [255, 0, 128]);
  const s = makeStrip(new Float32Array(5 * 4 * 4), [5, 1, 4, 4], { padding: 1 });
  assert.deepEqual([s.width, s.height], [26, 6]);
  assert.throws(() => makeGrid(new Float32Array(3), [1, 2, 1, 1]), /1 or 3 channels/);
  assert.throws(() => makeGrid(new Float32Array(3), [1, 1, 2, 2]), /does not match shape/);
});

for (const channels of [1, 3] as const) {
  test(`PNG grid round trip, ${channels} channel(s)`, async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'ddpm-img-'));
    try {
      const shape: BatchShape = [5, channels, 6, 4];
      const grid = makeGrid(levels(shape), shape, { nrow: 3 });
      const file = path.join(dir, 'grid.png');
      await writeImageGrid(file, levels(shape), shape, { nrow: 3 });
      assert.deepEqual(readdirSync(dir), ['grid.png']);
      const meta = await sharp(file).metadata();
      assert.deepEqual([meta.format, meta.width, meta.height, meta.channels], ['png', grid.width, grid.height, channels]);
      const back = await decodeImage(file, { channels });
      assert.deepEqual(back, grid);
      // readImage gives (C, H, W) floats x / 127.5 - 1 of the same pixels.
      const f = await readImage(readFileSync(file), { channels });
      assert.deepEqual([f.channels, f.height, f.width], [channels, grid.height, grid.width]);
      const hw = grid.width * grid.height;
      for (const p of [0, 17, hw - 1]) {
        for (let c = 0; c < channels; c++) assert.equal(f.data[c * hw + p], grid.data[p * channels + c] / 127.5 - 1);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
}

test('readImage resizes and centre-crops, gray input becomes RGB on request', async () => {
  const png = await encodePng({ data: new Uint8Array(8 * 4).fill(200), width: 8, height: 4, channels: 1 });
  const f = await readImage(png, { channels: 3, size: 2 });
  assert.deepEqual([f.channels, f.height, f.width, f.data.length], [3, 2, 2, 12]);
  for (const v of f.data) assert.ok(Math.abs(v - (200 / 127.5 - 1)) < 0.02, `${v}`);
  await assert.rejects(decodeImage(new Uint8Array([1, 2, 3, 4])), /unsupported image format|Input buffer/i);
});

test('animated GIF: exact gray palette, shared RGB palette, frame count', async () => {
  const gray = [0, 1, 2].map((k) => ({
    data: Uint8Array.from({ length: 6 * 5 }, (_, i) => (i * 9 + k * 50) % 256),
    width: 6, height: 5, channels: 1 as const,
  }));
  const bytes = encodeGif(gray, { delayMs: 50 });
  assert.equal(new TextDecoder().decode(bytes.subarray(0, 6)), 'GIF89a');
  const meta = await sharp(bytes, { pages: -1 }).metadata();
  assert.deepEqual([meta.pages, meta.width, meta.pageHeight, meta.loop], [3, 6, 5, 0]);
  assert.deepEqual(meta.delay, [50, 50, 1050]);
  // Frame 1 decodes to exactly the same gray levels.
  const frame1 = await sharp(bytes, { page: 1 }).extractChannel(0).raw().toBuffer();
  assert.deepEqual(new Uint8Array(frame1), gray[1].data);

  const rgb = [0, 1].map((k) => makeGrid(levels([4, 3, 8, 8]).map((v) => (k ? -v : v)), [4, 3, 8, 8]));
  const dir = mkdtempSync(path.join(tmpdir(), 'ddpm-gif-'));
  try {
    const file = path.join(dir, 'traj.gif');
    await writeGif(file, rgb, { repeat: -1 });
    const m = await sharp(file, { pages: -1 }).metadata();
    assert.deepEqual([m.pages, m.width, m.pageHeight], [2, rgb[0].width, rgb[0].height]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  assert.throws(() => encodeGif([gray[0], rgb[0]]), /frame 1 is/);
  assert.throws(() => encodeGif([]), /no frames/);
});
