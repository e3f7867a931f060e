// Float image batches -> 8-bit images: grids, strips, channel layout. No node:* imports (the browser shares it).

/** An 8-bit image, rows top to bottom, channels interleaved (H, W, C), as PNG/GIF encoders take it. */
export interface ImageU8 {
  data: Uint8Array;
  width: number;
  height: number;
  channels: 1 | 3;
}

/** (N, C, H, W) of a float batch. */
export type BatchShape = readonly [n: number, channels: number, height: number, width: number];

/** [-1, 1] -> {0..255}: clamp, then round half up, as torchvision's save_image does ((x+1)/2*255 + 0.5, floor). NaN -> 0. */
export function unitToUint8(x: number): number {
  const v = (x + 1) * 127.5 + 0.5;
  return v >= 255 ? 255 : v > 0 ? Math.floor(v) : 0;
}

function checkBatch(data: Float32Array, shape: BatchShape): void {
  const [n, c, h, w] = shape;
  if (shape.length !== 4 || ![n, c, h, w].every((d) => Number.isInteger(d) && d > 0)) {
    throw new Error(`batch shape must be 4 positive integers (N, C, H, W), got [${shape}]`);
  }
  if (c !== 1 && c !== 3) throw new Error(`images need 1 or 3 channels, got ${c}`);
  if (data.length !== n * c * h * w) throw new Error(`batch of ${data.length} floats does not match shape [${shape}]`);
}

export interface GridOptions {
  /** Images per row (default 8, as torchvision's make_grid). */
  nrow?: number;
  /** Pixels between and around images (default 2). */
  padding?: number;
  /** Byte value of the padding (default 0, black). */
  padValue?: number;
}

/**
 * Tile a batch (N, C, H, W) of floats in [-1, 1] into one image: min(nrow, N) columns, ceil(N / nrow) rows,
 * `padding` pixels between and around tiles (torchvision make_grid layout). Keeps 1 or 3 channels.
 */
export function makeGrid(data: Float32Array, shape: BatchShape, opts: GridOptions = {}): ImageU8 {
  checkBatch(data, shape);
  const [n, c, h, w] = shape;
  const nrow = opts.nrow ?? 8;
  const pad = opts.padding ?? 2;
  const padValue = opts.padValue ?? 0;
  if (!Number.isInteger(nrow) || nrow < 1) throw new Error(`nrow must be a positive integer, got ${nrow}`);
  if (!Number.isInteger(pad) || pad < 0) throw new Error(`padding must be a non-negative integer, got ${pad}`);
  const cols = Math.min(nrow, n);
  const rows = Math.ceil(n / cols);
  const width = cols * (w + pad) + pad;
  const height = rows * (h + pad) + pad;
  const out = new Uint8Array(width * height * c).fill(padValue);
  for (let i = 0; i < n; i++) {
    const x0 = (i % cols) * (w + pad) + pad;
    const y0 = Math.floor(i / cols) * (h + pad) + pad;
    for (let ch = 0; ch < c; ch++) {
      const plane = (i * c + ch) * h * w; // start of (i, ch, :, :)
      for (let y = 0; y < h; y++) {
        let o = ((y0 + y) * width + x0) * c + ch;
        const s = plane + y * w;
        for (let x = 0; x < w; x++, o += c) out[o] = unitToUint8(data[s + x]);
      }
    }
  }
  return { data: out, width, height, channels: c as 1 | 3 };
}

/** All N images of a batch side by side in one row (e.g. x_T ... x_0 of one trajectory). */
export function makeStrip(data: Float32Array, shape: BatchShape, opts: Omit<GridOptions, 'nrow'> = {}): ImageU8 {
  return makeGrid(data, shape, { ...opts, nrow: shape[0] });
}

/** (C, H, W) uint8 -> interleaved (H, W, C). */
export function chwToHwc(chw: Uint8Array, channels: number, height: number, width: number): Uint8Array {
  const hw = height * width;
  const out = new Uint8Array(chw.length);
  for (let c = 0; c < channels; c++) for (let p = 0; p < hw; p++) out[p * channels + c] = chw[c * hw + p];
  return out;
}

/** Interleaved (H, W, C) uint8 -> planar (C, H, W), written into `out` at `offset`. */
export function hwcToChw(
  hwc: Uint8Array,
  channels: number,
  height: number,
  width: number,
  out: Uint8Array = new Uint8Array(hwc.length),
  offset = 0,
): Uint8Array {
  const hw = height * width;
  for (let c = 0; c < channels; c++) {
    const d = offset + c * hw;
    for (let p = 0; p < hw; p++) out[d + p] = hwc[p * channels + c];
  }
  return out;
}

/** An 8-bit image as RGBA bytes (gray repeated, opaque), e.g. for a canvas: `new ImageData(toRgba(img), img.width, img.height)`. */
export function toRgba(img: ImageU8): Uint8ClampedArray<ArrayBuffer> {
  const n = img.width * img.height;
  const out = new Uint8ClampedArray(n * 4);
  const c = img.channels;
  for (let p = 0; p < n; p++) {
    for (let k = 0; k < 3; k++) out[4 * p + k] = img.data[p * c + (c === 1 ? 0 : k)]!;
    out[4 * p + 3] = 255;
  }
  return out;
}
