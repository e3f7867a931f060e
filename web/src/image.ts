/** Images on canvases: batches in [-1, 1] drawn as grids, and images decoded from files to 28×28 gray. */
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
  const img = new ImageData(toRgba(image), image.width, image.height);
  const src = document.createElement('canvas');
  src.width = img.width;
  src.height = img.height;
  src.getContext('2d')!.putImageData(img, 0, 0);
  canvas.width = img.width * scale;
  canvas.height = img.height * scale;
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

/**
 * Decode an image file to `size`×`size` grayscale bytes: the shorter side scaled to `size` and
 * centre-cropped (like the folder loader), luma by Rec. 601. `invert` turns dark-on-light
 * drawings into MNIST's light-on-dark; 'auto' inverts when the mean is above mid-gray.
 */
export async function decodeToGray(file: Blob, size: number, invert: boolean | 'auto'): Promise<{ pixels: Uint8Array; inverted: boolean }> {
  const bmp = await createImageBitmap(file);
  const canvas = document.createElement('canvas');
  canvas.width = canvas.height = size;
  const ctx = canvas.getContext('2d', { willReadFrequently: true })!;
  ctx.fillStyle = '#fff'; // transparent areas count as paper
  ctx.fillRect(0, 0, size, size);
  const s = Math.min(bmp.width, bmp.height);
  ctx.imageSmoothingQuality = 'high';
  ctx.drawImage(bmp, (bmp.width - s) / 2, (bmp.height - s) / 2, s, s, 0, 0, size, size);
  bmp.close();
  const rgba = ctx.getImageData(0, 0, size, size).data;
  const pixels = new Uint8Array(size * size);
  let sum = 0;
  for (let i = 0; i < pixels.length; i++) {
    pixels[i] = Math.round(0.299 * rgba[4 * i] + 0.587 * rgba[4 * i + 1] + 0.114 * rgba[4 * i + 2]);
    sum += pixels[i];
  }
  const inverted = invert === 'auto' ? sum / pixels.length > 127.5 : invert;
  if (inverted) for (let i = 0; i < pixels.length; i++) pixels[i] = 255 - pixels[i];
  return { pixels, inverted };
}
