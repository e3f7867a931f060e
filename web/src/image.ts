/** Images on canvases: batches in [-1, 1] drawn as grids, and pictures decoded to the model's size and channels. */
import { makeGrid, toRgba, type BatchShape, type ImageU8 } from '../../src/io/grid.ts';

export interface GridLayout {
  cols: number;
  rows: number;
  /** pixels between images (torchvision make_grid's padding) */
  pad: number;
}

export function gridLayout(n: number, pad = 2): GridLayout {
  const cols = Math.max(1, Math.ceil(Math.sqrt(n)));
  return { cols, rows: Math.max(1, Math.ceil(n / cols)), pad };
}

/**
 * Draw a batch (B, C, H, W) in [-1, 1] as a grid on `canvas` (the library's makeGrid, white padding), each pixel
 * `scale` canvas pixels wide. C = 1 is gray, C = 3 is RGB.
 */
export function drawGrid(canvas: HTMLCanvasElement, data: Float32Array, shape: readonly number[], scale: number): void {
  const { cols, pad } = gridLayout(shape[0]!);
  blit(canvas, makeGrid(data, shape as BatchShape, { nrow: cols, padding: pad, padValue: 255 }), scale);
}

/** Put `image` on `canvas` scaled up by an integer factor without smoothing. */
function blit(canvas: HTMLCanvasElement, image: ImageU8, scale: number): void {
  drawRgba(canvas, toRgba(image), image.width, image.height, scale);
}

/** RGBA pixels (`width`×`height`) on `canvas`, each `scale` canvas pixels wide, without smoothing. */
export function drawRgba(canvas: HTMLCanvasElement, rgba: Uint8ClampedArray<ArrayBuffer>, width: number, height: number, scale: number): void {
  const src = document.createElement('canvas');
  src.width = width;
  src.height = height;
  src.getContext('2d')!.putImageData(new ImageData(rgba, width, height), 0, 0);
  canvas.width = width * scale;
  canvas.height = height * scale;
  const ctx = canvas.getContext('2d')!;
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(src, 0, 0, canvas.width, canvas.height);
}

/** One image (H×W gray in [-1, 1]) on `canvas`. */
export function drawImage(canvas: HTMLCanvasElement, data: Float32Array, size: number, scale: number): void {
  blit(canvas, makeGrid(data, [1, 1, size, size], { padding: 0 }), scale);
}

/** uint8 pixels (0 = black) → [-1, 1], as the data loader does (x / 127.5 − 1). */
export function bytesToFloat(px: Uint8Array): Float32Array {
  return Float32Array.from(px, (v) => v / 127.5 - 1);
}

/** How {@link decodeImage} brings a picture to the model. */
export interface DecodeOptions {
  /** side of the square result */
  size: number;
  /** 1 = grayscale (Rec. 601 luma, PIL's convert('L'), as the CLI), 3 = RGB */
  channels: 1 | 3;
  /** what transparent areas become: black, as the CLI (sharp's flatten), or white paper for drawings */
  background: 'black' | 'white';
  /** turn dark-on-light into MNIST's light-on-dark; 'auto' inverts when the mean is above mid-gray */
  invert: boolean | 'auto';
}

/**
 * Decode an image (a file, or a canvas) to `size`×`size` 8-bit pixels (C, H, W), as `ddpm inpaint|edit --image`
 * reads one (src/cli/edit-shared.ts readModelImage): the shorter side scaled to `size` and centre-cropped (sharp's
 * fit 'cover'; with the browser's resampler, so the pixels next to a sharp edge differ from sharp's lanczos3 by a few
 * levels), luma by Rec. 601 for one channel.
 */
export async function decodeImage(source: Blob | HTMLCanvasElement, opts: DecodeOptions): Promise<{ pixels: Uint8Array; inverted: boolean }> {
  const { size, channels } = opts;
  const bmp = await createImageBitmap(source);
  const canvas = document.createElement('canvas');
  canvas.width = canvas.height = size;
  const ctx = canvas.getContext('2d', { willReadFrequently: true })!;
  ctx.fillStyle = opts.background === 'white' ? '#fff' : '#000';
  ctx.fillRect(0, 0, size, size);
  // as sharp's fit 'cover': the whole picture scaled so that its shorter side is `size`, centred; the canvas crops it
  const k = size / Math.min(bmp.width, bmp.height);
  const [w, h] = [bmp.width * k, bmp.height * k];
  ctx.imageSmoothingQuality = 'high';
  ctx.drawImage(bmp, (size - w) / 2, (size - h) / 2, w, h);
  bmp.close();
  const rgba = ctx.getImageData(0, 0, size, size).data;
  const plane = size * size;
  const pixels = new Uint8Array(channels * plane);
  for (let i = 0; i < plane; i++) {
    const [r, g, b] = [rgba[4 * i], rgba[4 * i + 1], rgba[4 * i + 2]];
    if (channels === 1) pixels[i] = (19595 * r + 38470 * g + 7471 * b + 32768) >> 16; // PIL's convert('L'), src/io/image.ts rgbToLuma
    else [pixels[i], pixels[plane + i], pixels[2 * plane + i]] = [r, g, b];
  }
  const mean = pixels.reduce((a, v) => a + v, 0) / pixels.length;
  const inverted = opts.invert === 'auto' ? mean > 127.5 : opts.invert;
  if (inverted) for (let i = 0; i < pixels.length; i++) pixels[i] = 255 - pixels[i];
  return { pixels, inverted };
}

/** 8-bit gray pixels (`size`×`size`) on a canvas of that size, e.g. to decode a shipped digit to another model size. */
export function grayCanvas(px: Uint8Array, size: number): HTMLCanvasElement {
  const rgba = new Uint8ClampedArray(4 * px.length);
  for (let i = 0; i < px.length; i++) rgba.set([px[i], px[i], px[i], 255], 4 * i);
  const c = document.createElement('canvas');
  c.width = c.height = size;
  c.getContext('2d')!.putImageData(new ImageData(rgba, size, size), 0, 0);
  return c;
}
