// Image files: decode PNG/JPEG/WebP (sharp, libvips), write PNG grids and animated GIFs.
// Pure pixel work lives in ./grid.ts and ./gif.ts (shared with the browser); this module adds codecs and files.

import sharp, { type Metadata, type Sharp } from 'sharp';
import { MAX_DECODE_FRAME_BYTES, MAX_DECODE_PIXELS, MAX_DECODE_SIDE, MAX_IMAGE_SIZE } from '../limits.ts';
import { writeFileAtomic } from './atomic.ts';
import { encodeGif, type GifOptions } from './gif.ts';
import { hwcToChw, makeGrid, type BatchShape, type GridOptions, type ImageU8 } from './grid.ts';
import { RESIZE_MODES, type ResizeMode } from './resize.ts';

export { RESIZE_MODES, type ResizeMode } from './resize.ts';

export { chwToHwc, hwcToChw, makeGrid, makeStrip, unitToUint8 } from './grid.ts';
export type { BatchShape, GridOptions, ImageU8 } from './grid.ts';
export { encodeGif } from './gif.ts';
export type { GifOptions } from './gif.ts';

export interface DecodeOptions {
  /** 1 = grayscale (Rec. 601 luma, as PIL), 3 = RGB (default 3). */
  channels?: 1 | 3;
  /** Bring the image to size x size (see `resize`). Default: keep the size. */
  size?: number;
  /** How to bring it to `size` (default 'center-crop'). */
  resize?: ResizeMode;
  /**
   * 'black' (default): alpha is composited onto black, so a transparent pixel is black whatever colour it stores;
   * 'drop': alpha is dropped and the stored colour kept, as PIL's convert('RGB') / convert('L') (torchvision's
   * ImageFolder loader) does.
   */
  alpha?: 'black' | 'drop';
}

/** What an image file declares in its header. */
export interface ImageHeader {
  width: number;
  height: number;
  /** width x height */
  pixels: number;
  /** e.g. 'png', 'jpeg', 'webp' */
  format: string;
}

/** How an image file stores its pixels: what a decode to 8-bit grey or RGB converts. */
export interface ImageMode {
  /** colour (RGB, palette or CMYK) rather than grey */
  colour: boolean;
  alpha: boolean;
  /** bits per sample: 16 for a 16-bit PNG, else 8 */
  bits: 8 | 16;
  /** a PNG with a palette (PIL's mode 'P') */
  palette: boolean;
  /** a CMYK JPEG */
  cmyk: boolean;
}

/** The formats we decode (IMAGE_EXTENSIONS of src/data/folder.ts): sharp sniffs the bytes, not the file name, and
 *  its other decoders (SVG, TIFF, GIF, HEIF, ...) have costs the limits below do not bound. */
const DECODE_FORMATS: readonly string[] = ['png', 'jpeg', 'webp'];

const SAMPLE_BYTES: Record<string, number> = { uchar: 1, char: 1, ushort: 2, short: 2, uint: 4, int: 4, float: 4, double: 8, complex: 8, dpcomplex: 16 };

const mb = (bytes: number) => `${Math.ceil(bytes / 2 ** 20).toLocaleString('en-US')} MB`;

/**
 * What a decoder holds for the whole image before the first row comes out (0 when it streams rows), from the
 * header, with a name for the message:
 *   interlaced PNG    every pixel, decoded (libpng's Adam7 passes fill the whole image)
 *   progressive JPEG  2-byte DCT coefficients of every component at full resolution (the header's sampling factors
 *                     could only lower this, and libvips reports them only as 4:2:0 or 4:4:4)
 *   WebP              8 bytes a pixel: libvips decodes it whole to RGBA and copies that (measured: 10 bytes a pixel
 *                     in all, with the 3 of the decoded output, for a lossy RGB WebP of 2^25 pixels)
 */
function frameBytes(meta: Metadata, pixels: number): { bytes: number; what: string } {
  const channels = meta.channels ?? 4;
  if (meta.format === 'png' && meta.isProgressive) {
    const bytes = SAMPLE_BYTES[meta.depth ?? ''] ?? 8;
    return { bytes: pixels * channels * bytes, what: `an interlaced PNG (${channels} channel(s) of ${8 * bytes} bits) is decoded whole` };
  }
  if (meta.format === 'jpeg' && meta.isProgressive) {
    return { bytes: pixels * channels * 2, what: `a progressive JPEG (${channels} component(s)) holds the coefficients of the whole image` };
  }
  if (meta.format === 'webp') return { bytes: pixels * 8, what: 'a WebP is decoded whole' };
  return { bytes: 0, what: '' };
}

/**
 * Read an image's header (no pixel data is decoded) and check it against the decode limits (src/limits.ts), so
 * that a small file declaring a huge image (a decompression bomb) is refused before anything is allocated:
 * PNG, JPEG or WebP; at most MAX_DECODE_PIXELS, MAX_DECODE_SIDE on either side, and MAX_DECODE_FRAME_BYTES for
 * a decoder that holds the whole image. The largest images these accept decode in under 2 s with a peak RSS of
 * 330 MB or less, node included (bench/decode.ts).
 */
export async function readImageHeader(input: string | Uint8Array): Promise<ImageHeader> {
  return (await readHeader(input)).header;
}

/** readImageHeader, with how the pixels are stored (grey or colour, alpha, 16-bit, palette). */
export async function readImageInfo(input: string | Uint8Array): Promise<ImageHeader & { mode: ImageMode }> {
  const { header, mode } = await readHeader(input);
  return { ...header, mode };
}

/** readImageHeader, with the storage mode and the EXIF orientation (1 when there is none). */
async function readHeader(input: string | Uint8Array): Promise<{ header: ImageHeader; mode: ImageMode; orientation: number }> {
  const meta = await sharp(input).metadata();
  const { width, height, format } = meta;
  if (!DECODE_FORMATS.includes(format ?? '')) {
    throw new Error(`${format ? `${format.toUpperCase()} images are` : 'this format is'} not read: PNG, JPEG or WebP only`);
  }
  if (!width || !height) throw new Error(`no image size in the ${format} header`);
  const pixels = width * height;
  if (pixels > MAX_DECODE_PIXELS) {
    throw new Error(
      `declares ${width}x${height} = ${pixels.toLocaleString('en-US')} pixels, over the decode limit of ` +
        `${MAX_DECODE_PIXELS.toLocaleString('en-US')} (MAX_DECODE_PIXELS)`,
    );
  }
  if (Math.max(width, height) > MAX_DECODE_SIDE) {
    throw new Error(`declares ${width}x${height}: a side over the decode limit of ${MAX_DECODE_SIDE.toLocaleString('en-US')} pixels (MAX_DECODE_SIDE)`);
  }
  const frame = frameBytes(meta, pixels);
  if (frame.bytes > MAX_DECODE_FRAME_BYTES) {
    throw new Error(
      `declares ${width}x${height}, and ${frame.what}: ${mb(frame.bytes)}, over the limit of ${mb(MAX_DECODE_FRAME_BYTES)} ` +
        `(MAX_DECODE_FRAME_BYTES); a non-interlaced PNG or a baseline JPEG of this size is read row by row`,
    );
  }
  const mode: ImageMode = {
    colour: meta.space !== 'b-w' && meta.space !== 'grey16',
    alpha: meta.hasAlpha === true,
    bits: meta.depth === 'ushort' ? 16 : 8,
    palette: meta.isPalette === true,
    cmyk: meta.space === 'cmyk',
  };
  return { header: { width, height, pixels, format }, mode, orientation: meta.orientation ?? 1 };
}

/**
 * Decode an image file or encoded bytes (PNG, JPEG or WebP) to 8-bit (H, W, C). EXIF orientation is applied.
 * Truncated or corrupt input throws (sharp's failOn 'warning'); so does an image whose header declares more
 * than MAX_DECODE_PIXELS, before decoding, or a `size` over MAX_IMAGE_SIZE.
 */
export async function decodeImage(input: string | Uint8Array, opts: DecodeOptions = {}): Promise<ImageU8> {
  const channels = opts.channels ?? 3;
  if (channels !== 1 && channels !== 3) throw new Error(`channels must be 1 or 3, got ${channels}`);
  if (opts.size !== undefined && !(Number.isInteger(opts.size) && opts.size >= 1 && opts.size <= MAX_IMAGE_SIZE)) {
    throw new Error(`size must be an integer in [1, ${MAX_IMAGE_SIZE}], got ${opts.size}`);
  }
  const resize = opts.resize ?? 'center-crop';
  if (!RESIZE_MODES.includes(resize)) throw new Error(`resize must be one of ${RESIZE_MODES.join(', ')}, got ${String(resize)}`);
  // 1. The header first: a bomb is refused here. limitInputPixels repeats the check inside libvips, for a
  //    header that the metadata reader and the decoder might read differently.
  const { orientation, mode } = await readHeader(input);
  // The EXIF orientation is applied last, to the 8-bit result (step 3), not by sharp: libvips turns and flips a
  // whole image in memory, and sharp does it after the resize but before the crop, so a 16384x1 JPEG tagged
  // 'rotate 90' read at size 256 asked for 16384*256 x 256 pixels (3 GB) to keep 256 x 256 of them.
  const load = { failOn: 'warning', limitInputPixels: MAX_DECODE_PIXELS } as const;
  let p: Sharp;
  if (opts.alpha !== 'drop' || !mode.alpha) {
    p = sharp(input, load).flatten({ background: '#000000' });
  } else if (opts.size === undefined) {
    p = sharp(input, load).removeAlpha(); // without a resize, sharp never premultiplies
  } else {
    // sharp resizes an image with alpha premultiplied (a transparent pixel turns black) and removes the alpha only
    // after that; PIL's convert('RGB') drops it before torchvision's Resize sees the image. So drop it in a pass of
    // its own, to 8-bit sRGB at full size (the memory of a decode at full size, which the limits above bound).
    const { data, info } = await sharp(input, load).removeAlpha().toColourspace('srgb').raw().toBuffer({ resolveWithObject: true });
    p = sharp(data, { raw: { width: info.width, height: info.height, channels: info.channels as 3 } });
  }
  if (opts.size !== undefined) {
    // center-crop = fit 'cover': scale the shorter side to `size`, then crop the longer one around the centre.
    // Cropping the stored image is cropping the oriented one (a centre square turns into itself), but for the one
    // pixel of an odd margin, which goes to the stored image's right or bottom side; the same holds for the
    // padding of 'pad' (fit 'contain'), and 'stretch' (fit 'fill') commutes with any turn or flip.
    const fit = ({ 'center-crop': 'cover', stretch: 'fill', pad: 'contain' } as const)[resize];
    p = p.resize(opts.size, opts.size, { fit, position: 'centre', background: { r: 0, g: 0, b: 0, alpha: 1 } });
  }
  // 2. Decode to 8-bit sRGB first, also for grayscale output: libvips' own b-w conversion weighs linear light (pure
  //    green -> 220), while PIL / torchvision Grayscale use Rec. 601 luma on the encoded values (pure green -> 150).
  const { data, info } = await p.toColourspace('srgb').raw().toBuffer({ resolveWithObject: true });
  if (info.channels !== 3) throw new Error(`decoded ${info.channels} channels, expected 3`);
  const rgb = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  const { width, height } = info;
  // 3. The image as it is meant to be seen.
  return orient({ data: channels === 3 ? rgb : rgbToLuma(rgb), width, height, channels }, orientation);
}

/**
 * Apply an EXIF orientation (1-8) to an (H, W, C) image: displayed pixel (x, y) is stored pixel
 * s0 + x ax + y ay (in pixels), with width and height swapped for 5-8 (those that turn by 90 degrees).
 */
function orient(img: ImageU8, orientation: number): ImageU8 {
  if (!Number.isInteger(orientation) || orientation < 2 || orientation > 8) return img;
  const { width: W, height: H, channels: C, data } = img;
  const last = (H - 1) * W; // first pixel of the last stored row
  const [s0, ax, ay] = {
    2: [W - 1, -1, W], // mirrored left-right
    3: [last + W - 1, -1, -W], // turned 180
    4: [last, 1, -W], // mirrored top-bottom
    5: [0, W, 1], // transposed
    6: [last, -W, 1], // turned 90 clockwise
    7: [last + W - 1, -W, -1], // transversed
    8: [W - 1, W, -1], // turned 90 counter-clockwise
  }[orientation]!;
  const [w, h] = orientation >= 5 ? [H, W] : [W, H];
  const out = new Uint8Array(data.length);
  for (let y = 0, d = 0; y < h; y++) {
    for (let x = 0, s = s0 + y * ay; x < w; x++, s += ax) {
      for (let c = 0; c < C; c++) out[d++] = data[s * C + c]!;
    }
  }
  return { data: out, width: w, height: h, channels: img.channels };
}

/** Rec. 601 luma, PIL's convert('L') exactly: (19595 R + 38470 G + 7471 B + 2^15) >> 16; gray stays gray. */
export function rgbToLuma(rgb: Uint8Array): Uint8Array {
  const out = new Uint8Array(rgb.length / 3);
  for (let i = 0, j = 0; i < out.length; i++, j += 3) {
    out[i] = (19595 * rgb[j] + 38470 * rgb[j + 1] + 7471 * rgb[j + 2] + 0x8000) >>> 16;
  }
  return out;
}

/** An image as float32 (C, H, W) in [-1, 1] (x / 127.5 - 1), e.g. the input of `ddpm noise --image`. */
export async function readImage(
  input: string | Uint8Array,
  opts: DecodeOptions = {},
): Promise<{ data: Float32Array; channels: 1 | 3; height: number; width: number }> {
  const img = await decodeImage(input, opts);
  const chw = hwcToChw(img.data, img.channels, img.height, img.width);
  const data = new Float32Array(chw.length);
  for (let i = 0; i < chw.length; i++) data[i] = chw[i] / 127.5 - 1;
  return { data, channels: img.channels, height: img.height, width: img.width };
}

/** PNG bytes of an 8-bit image (grayscale or RGB). */
export async function encodePng(img: ImageU8): Promise<Uint8Array> {
  const { width, height, channels } = img;
  if (img.data.length !== width * height * channels) {
    throw new Error(`encodePng: ${img.data.length} bytes for ${width}x${height}x${channels}`);
  }
  let p = sharp(img.data, { raw: { width, height, channels } });
  if (channels === 1) p = p.toColourspace('b-w'); // else libvips writes 1-channel input as an RGB PNG
  const buf = await p.png().toBuffer();
  return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
}

/** Write an 8-bit image as PNG (atomically). */
export async function writePng(file: string, img: ImageU8): Promise<void> {
  await writeFileAtomic(file, await encodePng(img), { fsync: false });
}

/** Write a batch (N, C, H, W) of floats in [-1, 1] as a PNG grid (see makeGrid). */
export async function writeImageGrid(
  file: string,
  data: Float32Array,
  shape: BatchShape,
  opts: GridOptions = {},
): Promise<void> {
  await writePng(file, makeGrid(data, shape, opts));
}

/** Write frames (e.g. one grid per saved timestep) as an animated GIF (atomically). */
export async function writeGif(file: string, frames: readonly ImageU8[], opts: GifOptions = {}): Promise<void> {
  await writeFileAtomic(file, encodeGif(frames, opts), { fsync: false });
}
