// Animated GIFs of sampling trajectories (x_T -> x_0), encoded with `gifenc`. No node:* imports.

import * as gifencModule from 'gifenc';
import type { Encoder, Palette, PixelFormat } from 'gifenc';
import type { ImageU8 } from './grid.ts';

interface GifencApi {
  GIFEncoder(opts?: { initialCapacity?: number; auto?: boolean }): Encoder;
  quantize(rgba: Uint8Array, maxColors: number, opts?: { format?: PixelFormat }): Palette;
  applyPalette(rgba: Uint8Array, palette: Palette, format?: PixelFormat): Uint8Array;
}

// Node loads gifenc's CommonJS build, whose exports object arrives as the default export; bundlers load its ES
// build with named exports. Accept either.
const gifencAny = gifencModule as unknown as Partial<GifencApi> & { default?: unknown };
const gifenc: GifencApi =
  typeof gifencAny.GIFEncoder === 'function' ? (gifencAny as GifencApi) : (gifencAny.default as GifencApi);

export interface GifOptions {
  /** Delay of each frame in milliseconds (default 100). */
  delayMs?: number;
  /** Extra hold on the last frame in milliseconds (default 1000), so the final sample can be seen. */
  lastFrameDelayMs?: number;
  /** 0 = loop forever (default), -1 = play once, k > 0 = repeat k times. */
  repeat?: number;
}

// At most this many pixels feed the RGB palette search; more only cost time.
const PALETTE_SAMPLE_PIXELS = 1 << 20;

function toRgba(img: ImageU8, out: Uint8Array, offset: number, step = 1): number {
  const { data, channels } = img;
  const pixels = img.width * img.height;
  let o = offset;
  for (let p = 0; p < pixels; p += step, o += 4) {
    const s = p * channels;
    out[o] = data[s];
    out[o + 1] = data[s + (channels === 3 ? 1 : 0)];
    out[o + 2] = data[s + (channels === 3 ? 2 : 0)];
    out[o + 3] = 255;
  }
  return o;
}

/**
 * Encode frames (same size and channel count) as an animated GIF. Grayscale frames use an exact 256-level gray
 * palette; RGB frames share one palette quantised from all frames (no colour flicker between frames).
 */
export function encodeGif(frames: readonly ImageU8[], opts: GifOptions = {}): Uint8Array {
  if (frames.length === 0) throw new Error('encodeGif: no frames');
  const { width, height, channels } = frames[0];
  for (const [i, f] of frames.entries()) {
    if (f.width !== width || f.height !== height || f.channels !== channels) {
      throw new Error(`encodeGif: frame ${i} is ${f.width}x${f.height}x${f.channels}, frame 0 is ${width}x${height}x${channels}`);
    }
    if (f.data.length !== f.width * f.height * f.channels) throw new Error(`encodeGif: frame ${i} has ${f.data.length} bytes`);
  }
  const delay = opts.delayMs ?? 100;
  const lastDelay = opts.lastFrameDelayMs ?? 1000;
  const repeat = opts.repeat ?? 0;
  const pixels = width * height;

  let palette: Palette;
  let index: (f: ImageU8) => Uint8Array;
  if (channels === 1) {
    palette = Array.from({ length: 256 }, (_, v) => [v, v, v]);
    index = (f) => f.data;
  } else {
    // 1. Palette from an evenly strided sample of all frames' pixels.
    const step = Math.max(1, Math.ceil((pixels * frames.length) / PALETTE_SAMPLE_PIXELS));
    const perFrame = Math.ceil(pixels / step);
    const sample = new Uint8Array(perFrame * frames.length * 4);
    let o = 0;
    for (const f of frames) o = toRgba(f, sample, o, step);
    palette = gifenc.quantize(sample.subarray(0, o), 256);
    // 2. Each frame mapped to its nearest palette colours.
    const rgba = new Uint8Array(pixels * 4);
    index = (f) => {
      toRgba(f, rgba, 0);
      return gifenc.applyPalette(rgba, palette);
    };
  }

  const gif = gifenc.GIFEncoder({ initialCapacity: pixels * frames.length + 1024 });
  frames.forEach((f, i) => {
    const last = i === frames.length - 1;
    gif.writeFrame(index(f), width, height, {
      palette: i === 0 ? palette : undefined,
      delay: last ? delay + lastDelay : delay,
      repeat,
    });
  });
  gif.finish();
  return gif.bytes();
}
