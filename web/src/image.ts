/** Images on canvases: batches in [-1, 1] drawn as grids, and images decoded from files to 28×28 gray. */

/** [-1, 1] → 0..255 with torchvision's save_image rounding, clamped (x_t at large t leaves the range). */
function toByte(v: number): number {
  const b = Math.floor((v + 1) * 127.5 + 0.5);
  return b < 0 ? 0 : b > 255 ? 255 : b;
}

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
 * Draw a batch (B, C, H, W) in [-1, 1] as a grid on `canvas`, each pixel `scale` canvas pixels wide.
 * C = 1 is gray, C = 3 is RGB.
 */
export function drawGrid(canvas: HTMLCanvasElement, data: Float32Array, shape: readonly number[], scale: number): void {
  const [B, C, H, W] = shape as [number, number, number, number];
  const { cols, rows, pad } = gridLayout(B);
  const gw = cols * (W + pad) + pad;
  const gh = rows * (H + pad) + pad;
  const img = new ImageData(gw, gh);
  img.data.fill(255); // white padding
  for (let b = 0; b < B; b++) {
    const ox = pad + (b % cols) * (W + pad);
    const oy = pad + Math.floor(b / cols) * (H + pad);
    for (let y = 0; y < H; y++) {
      for (let x = 0; x < W; x++) {
        const o = ((oy + y) * gw + ox + x) * 4;
        for (let c = 0; c < 3; c++) img.data[o + c] = toByte(data[((b * C + (C === 1 ? 0 : c)) * H + y) * W + x]);
      }
    }
  }
  blit(canvas, img, scale);
}

/** Put `img` on `canvas` scaled up by an integer factor without smoothing. */
function blit(canvas: HTMLCanvasElement, img: ImageData, scale: number): void {
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
  const img = new ImageData(size, size);
  for (let i = 0; i < size * size; i++) {
    const v = toByte(data[i]);
    img.data[4 * i] = img.data[4 * i + 1] = img.data[4 * i + 2] = v;
    img.data[4 * i + 3] = 255;
  }
  blit(canvas, img, scale);
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
