// A folder of images (PNG, JPEG, WebP; searched recursively) preloaded once into memory as uint8 (N, C, H, W):
// each image is resized so its shorter side is `size`, centre-cropped to size x size, and converted to grayscale
// (1 channel) or RGB (3 channels). Decoding is done by sharp (libvips) off the main thread.

import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { decodeImage } from '../io/image.ts';
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
  /** Images decoded at once (default 8). */
  concurrency?: number;
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

/** Decode, resize, crop and convert every image under `root` into one (N, C, size, size) uint8 array. */
export async function loadImageFolder(root: string, opts: ImageFolderOptions): Promise<ImageFolderData> {
  const { size, channels } = opts;
  if (!Number.isInteger(size) || size < 1) throw new Error(`size must be a positive integer, got ${size}`);
  if (channels !== 1 && channels !== 3) throw new Error(`channels must be 1 or 3, got ${channels}`);
  const onCorrupt = opts.onCorrupt ?? 'error';
  const warn = opts.warn ?? ((m: string) => console.warn(m));
  const concurrency = Math.max(1, opts.concurrency ?? 8);
  const extensions = opts.extensions ?? IMAGE_EXTENSIONS;

  // 1. Find the files.
  const files = await listImageFiles(root, extensions);
  if (files.length === 0) throw new ImageFolderError(`no images (${extensions.join(', ')}) found under ${root}`);

  // 2. Decode with a bounded number in flight, each into its own slot, then compact out the skipped ones.
  const chw = channels * size * size;
  const images = new Uint8Array(files.length * chw);
  const ok = new Uint8Array(files.length);
  let next = 0;
  let failure: unknown;
  async function worker(): Promise<void> {
    while (failure === undefined && next < files.length) {
      const i = next++;
      const file = path.join(root, files[i]);
      try {
        const img = await decodeImage(file, { channels, size });
        hwcToChw(img.data, channels, size, size, images, i * chw);
        ok[i] = 1;
      } catch (err) {
        const msg = `cannot decode image ${file}: ${(err as Error).message}`;
        if (onCorrupt === 'skip') warn(`warning: ${msg} (skipped)`);
        else failure ??= new ImageFolderError(msg, { cause: err });
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, files.length) }, worker));
  if (failure !== undefined) throw failure;

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
