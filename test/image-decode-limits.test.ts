/**
 * Decode limits of src/io/image.ts beyond the pixel count (MAX_DECODE_PIXELS, test/limits.test.ts): a side over
 * MAX_DECODE_SIDE (a 33554432x1 PNG took 1 GB, a 1x33554432 one 25 s), a decoder that holds the whole image over
 * MAX_DECODE_FRAME_BYTES (interlaced PNG, progressive JPEG, WebP), and formats other than PNG, JPEG and WebP; all
 * refused from the header; and the EXIF orientation, applied to the decoded pixels after the resize and crop. The
 * decode time and peak RSS of the largest images these limits accept are measured by bench/decode.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import sharp, { type Sharp } from 'sharp';
import { decodeImage, readImageHeader } from '../src/io/image.ts';
import { MAX_DECODE_FRAME_BYTES, MAX_DECODE_PIXELS, MAX_DECODE_SIDE } from '../src/limits.ts';
import { crc32 } from './hostile-files.ts';

/** `png` (from sharp: IHDR first) with its IHDR patched to declare `width` x `height`, CRC recomputed. */
function pngDeclaring(png: Uint8Array, width: number, height: number): Uint8Array {
  const out = png.slice();
  const view = new DataView(out.buffer);
  assert.equal(new TextDecoder().decode(out.subarray(12, 16)), 'IHDR');
  view.setUint32(16, width);
  view.setUint32(20, height);
  view.setUint32(29, crc32(out.subarray(12, 29)));
  return out;
}

/** `jpeg` (from sharp) with its frame header (SOF0 or SOF2) patched to declare `width` x `height`. */
function jpegDeclaring(jpeg: Uint8Array, width: number, height: number): Uint8Array {
  const out = jpeg.slice();
  const view = new DataView(out.buffer);
  for (let p = 2; p + 4 < out.length; p += 2 + view.getUint16(p + 2)) {
    assert.equal(out[p], 0xff, `marker at ${p}`);
    if (out[p + 1] === 0xc0 || out[p + 1] === 0xc2) {
      view.setUint16(p + 5, height);
      view.setUint16(p + 7, width);
      return out;
    }
  }
  throw new Error('no SOF0/SOF2 segment');
}

const tiny = (channels: 3 | 4) => sharp({ create: { width: 2, height: 2, channels, background: { r: 9, g: 99, b: 199, alpha: 0.5 } } });
const bytes = async (p: Sharp) => new Uint8Array(await p.toBuffer());

test('a side over MAX_DECODE_SIDE is refused from the header (33554432x1: 1 GB; 1x33554432: 25 s)', async () => {
  const rgb = await bytes(tiny(3).png());
  const gray = await bytes(tiny(3).toColourspace('b-w').png());
  for (const [png, w, h] of [[rgb, 33554432, 1], [gray, 1, 33554432], [rgb, MAX_DECODE_SIDE + 1, 1]] as const) {
    assert.ok(w * h <= MAX_DECODE_PIXELS, 'within the pixel limit');
    const bomb = pngDeclaring(png, w, h);
    const limit = new RegExp(`^Error: declares ${w}x${h}: a side over the decode limit of 16,384 pixels \\(MAX_DECODE_SIDE\\)$`);
    await assert.rejects(readImageHeader(bomb), limit);
    await assert.rejects(decodeImage(bomb, { channels: 3 }), limit);
    await assert.rejects(decodeImage(bomb, { channels: 1, size: 28 }), limit);
  }
  // the longest sides the limits allow (the data is short: decoding fails as corrupt, not on a limit)
  for (const [w, h] of [[MAX_DECODE_SIDE, MAX_DECODE_PIXELS / MAX_DECODE_SIDE], [MAX_DECODE_PIXELS / MAX_DECODE_SIDE, MAX_DECODE_SIDE], [MAX_DECODE_SIDE, 1]]) {
    assert.deepEqual(await readImageHeader(pngDeclaring(rgb, w!, h!)), { width: w, height: h, pixels: w! * h!, format: 'png' });
  }
});

test('an interlaced PNG is decoded whole: its pixels must fit MAX_DECODE_FRAME_BYTES', async () => {
  const rgba16il = await bytes(tiny(4).toColourspace('rgb16').png({ progressive: true }));
  const rgba8il = await bytes(tiny(4).png({ progressive: true }));
  const rgba16 = await bytes(tiny(4).toColourspace('rgb16').png());
  assert.equal(MAX_DECODE_FRAME_BYTES, 8192 * 4096 * 4);
  // 8192x4096 RGBA at 16 bits: 256 MB (a peak of 450 MB before this limit)
  await assert.rejects(
    readImageHeader(pngDeclaring(rgba16il, 8192, 4096)),
    /^Error: declares 8192x4096, and an interlaced PNG \(4 channel\(s\) of 16 bits\) is decoded whole: 256 MB, over the limit of 128 MB \(MAX_DECODE_FRAME_BYTES\); a non-interlaced PNG/,
  );
  // at 8 bits it is exactly the limit; not interlaced, 16 bits stream row by row
  assert.equal((await readImageHeader(pngDeclaring(rgba8il, 8192, 4096))).pixels, 8192 * 4096);
  assert.equal((await readImageHeader(pngDeclaring(rgba16, 8192, 4096))).pixels, 8192 * 4096);
  assert.equal((await readImageHeader(pngDeclaring(rgba16il, 4096, 4096))).pixels, 4096 * 4096);
});

test('a progressive JPEG holds every DCT coefficient: 2 bytes per component and pixel within MAX_DECODE_FRAME_BYTES', async () => {
  const progressive = await bytes(tiny(3).jpeg({ progressive: true }));
  const baseline = await bytes(tiny(3).jpeg());
  await assert.rejects(
    readImageHeader(jpegDeclaring(progressive, 8192, 4096)),
    /^Error: declares 8192x4096, and a progressive JPEG \(3 component\(s\)\) holds the coefficients of the whole image: 192 MB, over the limit of 128 MB \(MAX_DECODE_FRAME_BYTES\)/,
  );
  assert.equal((await readImageHeader(jpegDeclaring(progressive, 4096, 4096))).format, 'jpeg');
  assert.equal((await readImageHeader(jpegDeclaring(baseline, 8192, 4096))).pixels, MAX_DECODE_PIXELS);
});

test('a WebP is decoded whole: 8 bytes a pixel within MAX_DECODE_FRAME_BYTES', async () => {
  const flat = (w: number, h: number) => bytes(sharp({ create: { width: w, height: h, channels: 3, background: '#123456' } }).webp({ quality: 10, effort: 0 }));
  await assert.rejects(readImageHeader(await flat(4097, 4096)), /^Error: declares 4097x4096, and a WebP is decoded whole: 129 MB, over the limit of 128 MB/);
  assert.equal((await readImageHeader(await flat(16383, 8))).width, 16383);
});

test('formats other than PNG, JPEG and WebP are refused from the header, whatever the file is named', async () => {
  const svg = new TextEncoder().encode('<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8"><rect width="8" height="8"/></svg>');
  const cases: [Uint8Array, string][] = [
    [await bytes(tiny(3).tiff()), 'TIFF'],
    [await bytes(tiny(3).gif()), 'GIF'],
    [svg, 'SVG'],
  ];
  for (const [input, name] of cases) {
    const refused = new RegExp(`^Error: ${name} images are not read: PNG, JPEG or WebP only$`);
    await assert.rejects(readImageHeader(input), refused);
    await assert.rejects(decodeImage(input, { channels: 1, size: 8 }), refused);
  }
});

// ---------------------------------------------------------------------------------------------
// EXIF orientation, applied after the resize and crop (sharp turned the uncropped resized image in memory)

/** A w x h RGB JPEG of distinct pixels (quality 100: a decode is deterministic either way) tagged `orientation`. */
async function orientedJpeg(w: number, h: number, orientation: number): Promise<Uint8Array> {
  const raw = Buffer.from(Uint8Array.from({ length: w * h * 3 }, (_, i) => (i * 53 + ((i / 3) | 0) * 29) & 0xff));
  return bytes(sharp(raw, { raw: { width: w, height: h, channels: 3 } }).jpeg({ quality: 100, chromaSubsampling: '4:4:4' }).withMetadata({ orientation }));
}

/** What sharp makes of it with its own auto-orientation, resized ('cover') when `size` is given. */
async function sharpOriented(input: Uint8Array, size?: number): Promise<{ data: Uint8Array; width: number; height: number }> {
  let p = sharp(input).rotate();
  if (size !== undefined) p = p.resize(size, size, { fit: 'cover', position: 'centre' });
  const { data, info } = await p.toColourspace('srgb').raw().toBuffer({ resolveWithObject: true });
  return { data: new Uint8Array(data), width: info.width, height: info.height };
}

test('EXIF orientations 1-8: decodeImage equals sharp auto-orientation, at full size and resized', async () => {
  for (let o = 1; o <= 8; o++) {
    const jpeg = await orientedJpeg(12, 8, o);
    const want = await sharpOriented(jpeg);
    assert.deepEqual([want.width, want.height], o >= 5 ? [8, 12] : [12, 8], `orientation ${o}: sharp's dims`);
    const got = await decodeImage(jpeg, { channels: 3 });
    assert.deepEqual([got.width, got.height], [want.width, want.height], `orientation ${o}`);
    assert.deepEqual(got.data, want.data, `orientation ${o}: full size`);
    // resized: the same pixels where the crop margin is even (12 x 8 -> 6 x 4 -> 4 x 4: 1 + 1 px); with an odd
    // margin the crop may fall one pixel to the other side (see decodeImage)
    const small = await decodeImage(jpeg, { channels: 3, size: 4 });
    const wantSmall = await sharpOriented(jpeg, 4);
    assert.deepEqual([small.width, small.height], [4, 4]);
    const diff = small.data.reduce((m, v, i) => Math.max(m, Math.abs(v - wantSmall.data[i]!)), 0);
    assert.equal(diff, 0, `orientation ${o}: resized to 4, max diff ${diff}`);
  }
});

// Before: at size 256, 27 s and a peak RSS of 3.8 GB; at size 1024 sharp failed asking libvips for 49 GB.
test('a 16384x1 JPEG tagged "rotate 90" reads at sizes 256 and 1024 (sharp turned 16384*size x size pixels)', { timeout: 20_000 }, async () => {
  const jpeg = await bytes(sharp({ create: { width: MAX_DECODE_SIDE, height: 1, channels: 3, background: '#20a040' } }).jpeg().withMetadata({ orientation: 6 }));
  const luma = Math.round((19595 * 0x20 + 38470 * 0xa0 + 7471 * 0x40) / 65536);
  for (const size of [256, 1024]) {
    const img = await decodeImage(jpeg, { channels: 1, size });
    assert.deepEqual([img.width, img.height, img.data.length], [size, size, size * size]);
    assert.ok(img.data.every((v) => Math.abs(v - luma) <= 3), `flat colour, luma ~${luma}: got ${img.data.slice(0, 8)}`);
  }
  const full = await decodeImage(jpeg, { channels: 1 });
  assert.deepEqual([full.width, full.height], [1, MAX_DECODE_SIDE], 'turned: 1 wide');
});
