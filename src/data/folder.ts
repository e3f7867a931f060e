// A folder of images (PNG, JPEG, WebP; searched recursively) preloaded once into memory as uint8 (N, C, H, W):
// each image is resized so its shorter side is `size`, centre-cropped to size x size, and converted to grayscale
// (1 channel) or RGB (3 channels). Decoding is done by sharp (libvips) off the main thread.
//
// Memory stays bounded whatever the folder holds: every header is read before its image is decoded (a file
// declaring more than MAX_DECODE_PIXELS is refused), decodes run concurrently only while their declared pixels
// fit DECODE_BUDGET_PIXELS, and the dataset itself must fit `maxBytes` before it is allocated.

import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { decodeImage, readImageHeader } from '../io/image.ts';
import { DECODE_BUDGET_PIXELS, IMAGE_CHANNELS, MAX_IMAGE_SIZE } from '../limits.ts';
import { hwcToChw } from '../io/grid.ts';
import { uint8Dataset, type Dataset } from './loader.ts';

export const IMAGE_EXTENSIONS: readonly string[] = ['.png', '.jpg', '.jpeg', '.webp'];

export interface ImageFolderOptions {
  /** Output height = width. */
  size: number;
  /** 1 = grayscale, 3 = RGB. */
  channels: 1 | 3;
  /** 'error' (default): a file that cannot be decoded aborts loading; 'skip': warn and leave it out. */
  onCorrupt?: 'error' | 'skip';
  /** Receives skip warnings (default console.warn). */
  warn?: (message: string) => void;
  /** File extensions to load, lower case with the dot (default IMAGE_EXTENSIONS). */
  extensions?: readonly string[];
  /** Images decoded at once at most (default 8); fewer while their declared pixels exceed DECODE_BUDGET_PIXELS. */
  concurrency?: number;
  /** Largest dataset (N x C x size x size bytes) to allocate (default: half the machine's memory). */
  maxBytes?: number;
}

export interface ImageFolderData {
  /** (N, C, size, size) uint8. */
  images: Uint8Array;
  n: number;
  channels: 1 | 3;
  height: number;
  width: number;
  /** Path of each image, relative to the root, in the order of `images` (sorted). */
  files: string[];
  /** Files that could not be decoded and were skipped (onCorrupt: 'skip'). */
  skipped: string[];
}

export class ImageFolderError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ImageFolderError';
  }
}

/**
 * Image files under `root`, recursively, as paths relative to `root`, sorted by code unit (deterministic across
 * machines). Hidden files and folders (name starting with '.') are left out; symlinks are followed.
 */
export async function listImageFiles(root: string, extensions: readonly string[] = IMAGE_EXTENSIONS): Promise<string[]> {
  const exts = new Set(extensions.map((e) => e.toLowerCase()));
  const found: string[] = [];
  async function walk(rel: string): Promise<void> {
    const entries = await fsp.readdir(path.join(root, rel), { withFileTypes: true });
    for (const e of entries) {
      if (e.name.startsWith('.')) continue;
      const r = rel === '' ? e.name : path.join(rel, e.name);
      let isDir = e.isDirectory();
      let isFile = e.isFile();
      if (e.isSymbolicLink()) {
        const st = await fsp.stat(path.join(root, r)).catch(() => undefined);
        isDir = st?.isDirectory() ?? false;
        isFile = st?.isFile() ?? false;
      }
      if (isDir) await walk(r);
      else if (isFile && exts.has(path.extname(e.name).toLowerCase())) found.push(r);
    }
  }
  let st;
  try {
    st = await fsp.stat(root);
  } catch (err) {
    throw new ImageFolderError(`image folder ${root} cannot be read: ${(err as Error).message}`, { cause: err });
  }
  if (!st.isDirectory()) throw new ImageFolderError(`image folder ${root} is not a directory`);
  await walk('');
  return found.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

/**
 * A counting semaphore over declared pixels: `acquire(p)` waits until the pixels in flight plus p fit the budget,
 * except that one image may always run alone (an image up to MAX_DECODE_PIXELS is legal by itself).
 */
export function pixelBudget(budget: number) {
  let inFlight = 0;
  let running = 0;
  const waiting: { pixels: number; go: () => void }[] = [];
  const fits = (p: number) => running === 0 || inFlight + p <= budget;
  const wake = () => {
    // first come, first served: a large image is not starved by small ones behind it
    while (waiting.length > 0 && fits(waiting[0]!.pixels)) {
      const w = waiting.shift()!;
      inFlight += w.pixels;
      running++;
      w.go();
    }
  };
  return {
    async acquire(pixels: number): Promise<void> {
      if (waiting.length === 0 && fits(pixels)) {
        inFlight += pixels;
        running++;
        return;
      }
      await new Promise<void>((go) => waiting.push({ pixels, go }));
    },
    release(pixels: number): void {
      inFlight -= pixels;
      running--;
      wake();
    },
  };
}

const GB = 1e9;

/** Decode, resize, crop and convert every image under `root` into one (N, C, size, size) uint8 array. */
export async function loadImageFolder(root: string, opts: ImageFolderOptions): Promise<ImageFolderData> {
  const { size, channels } = opts;
  if (!Number.isInteger(size) || size < 1 || size > MAX_IMAGE_SIZE) throw new Error(`size must be an integer in [1, ${MAX_IMAGE_SIZE}], got ${size}`);
  if (!IMAGE_CHANNELS.includes(channels)) throw new Error(`channels must be 1 or 3, got ${channels}`);
  const onCorrupt = opts.onCorrupt ?? 'error';
  const warn = opts.warn ?? ((m: string) => console.warn(m));
  const concurrency = Math.max(1, opts.concurrency ?? 8);
  const extensions = opts.extensions ?? IMAGE_EXTENSIONS;
  const maxBytes = opts.maxBytes ?? os.totalmem() / 2;

  // 1. Find the files, and check that the dataset fits in memory before allocating it.
  const files = await listImageFiles(root, extensions);
  if (files.length === 0) throw new ImageFolderError(`no images (${extensions.join(', ')}) found under ${root}`);
  const chw = channels * size * size;
  if (files.length * chw > maxBytes) {
    throw new ImageFolderError(
      `image folder ${root}: ${files.length} images at ${channels}x${size}x${size} need ${((files.length * chw) / GB).toFixed(1)} GB in memory, ` +
        `over the ${(maxBytes / GB).toFixed(1)} GB allowed${opts.maxBytes === undefined ? " (half of this machine's memory)" : ''}`,
    );
  }

  // 2. Decode with a bounded number in flight (by count and by declared pixels), each into its own slot, then
  //    compact out the skipped ones.
  const images = new Uint8Array(files.length * chw);
  const ok = new Uint8Array(files.length);
  const budget = pixelBudget(DECODE_BUDGET_PIXELS);
  let next = 0;
  // the first bad file in sorted order, whatever the order the decodes finish in (all lower ones have started)
  let failure: { index: number; error: ImageFolderError } | undefined;
  async function decodeOne(i: number): Promise<void> {
    const file = path.join(root, files[i]);
    try {
      const { pixels } = await readImageHeader(file); // refuses a bomb before any pixel is decoded
      await budget.acquire(pixels);
      try {
        if (failure !== undefined && failure.index < i) return;
        const img = await decodeImage(file, { channels, size });
        hwcToChw(img.data, channels, size, size, images, i * chw);
        ok[i] = 1;
      } finally {
        budget.release(pixels);
      }
    } catch (err) {
      const msg = `cannot decode image ${file}: ${(err as Error).message}`;
      if (onCorrupt === 'skip') warn(`warning: ${msg} (skipped)`);
      else if (failure === undefined || i < failure.index) failure = { index: i, error: new ImageFolderError(msg, { cause: err }) };
    }
  }
  async function worker(): Promise<void> {
    while (failure === undefined && next < files.length) await decodeOne(next++);
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, files.length) }, worker));
  if (failure !== undefined) throw failure.error;

  const kept: string[] = [];
  const skipped: string[] = [];
  for (let i = 0; i < files.length; i++) {
    if (ok[i]) {
      if (kept.length !== i) images.copyWithin(kept.length * chw, i * chw, (i + 1) * chw);
      kept.push(files[i]);
    } else {
      skipped.push(files[i]);
    }
  }
  if (kept.length === 0) throw new ImageFolderError(`none of the ${files.length} images under ${root} could be decoded`);
  return {
    images: kept.length === files.length ? images : images.slice(0, kept.length * chw),
    n: kept.length,
    channels,
    height: size,
    width: size,
    files: kept,
    skipped,
  };
}

/** A loaded image folder as a loader Dataset. */
export function imageFolderDataset(data: ImageFolderData): Dataset {
  return uint8Dataset(data.images, data);
}
