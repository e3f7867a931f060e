// A folder of images (PNG, JPEG, WebP; searched recursively) preloaded once into memory as uint8 (N, C, H, W):
// each image is brought to size x size (by default its shorter side resized to `size` and centre-cropped, as
// torchvision's Resize + CenterCrop) and converted to grayscale (1 channel) or RGB (3 channels), alpha dropped as
// PIL's convert() drops it. Decoding is done by sharp (libvips) off the main thread.
//
// `inspectImageFolder` reads only the headers: the sizes and modes (grey, RGB, alpha, 16-bit, palette) a model
// for the folder should take, and the files whose header is unreadable.
//
// Memory stays bounded whatever the folder holds: every header is read before its image is decoded (a file
// declaring more than MAX_DECODE_PIXELS is refused), decodes run concurrently only while their declared pixels
// fit DECODE_BUDGET_PIXELS, and the dataset itself must fit `maxBytes` before it is allocated.

import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { decodeImage, readImageInfo, RESIZE_MODES, type ImageHeader, type ImageMode, type ResizeMode } from '../io/image.ts';
import { DECODE_BUDGET_PIXELS, IMAGE_CHANNELS, MAX_IMAGE_SIZE } from '../limits.ts';
import { hwcToChw } from '../io/grid.ts';
import { uint8Dataset, type Dataset } from './loader.ts';
import { FolderWalkError, walkImageFolder, type FolderWalk, type FolderWalkLimits } from './folder-walk.ts';

export { IMAGE_EXTENSIONS } from './folder-summary.ts';
import { IMAGE_EXTENSIONS } from './folder-summary.ts';

export interface ImageFolderOptions {
  /** Output height = width. */
  size: number;
  /** 1 = grayscale, 3 = RGB. */
  channels: 1 | 3;
  /** How each image is brought to size x size (default 'center-crop': torchvision's Resize + CenterCrop). */
  resize?: ResizeMode;
  /** 'error' (default): a file that cannot be decoded aborts loading; 'skip': leave it out (listed in `skipped`). */
  onCorrupt?: 'error' | 'skip';
  /** Receives one warning per skipped file (default console.warn). */
  warn?: (message: string) => void;
  /** File extensions to load, lower case with the dot (default IMAGE_EXTENSIONS). */
  extensions?: readonly string[];
  /** Images decoded at once at most (default 8); fewer while their declared pixels exceed DECODE_BUDGET_PIXELS. */
  concurrency?: number;
  /** Largest dataset (N x C x size x size bytes) to allocate (default: half the machine's memory). */
  maxBytes?: number;
  /** Bounds on the folder walk (depth, entries read). */
  limits?: FolderWalkLimits;
  /**
   * The folder as inspectImageFolder read it (with the same extensions): its files and headers are used as they
   * are, and its unreadable files count as skipped.
   */
  inspection?: ImageFolderInspection;
}

/** A file left out, and why. */
export interface SkippedFile {
  /** path relative to the root */
  file: string;
  reason: string;
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
  /** Files that could not be read and were left out (onCorrupt: 'skip'), sorted. */
  skipped: SkippedFile[];
}

export class ImageFolderError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ImageFolderError';
  }
}

/** Image files under `root` (see walkImageFolder: each file once, links followed, special files left out), sorted. */
export async function listImageFiles(root: string, extensions: readonly string[] = IMAGE_EXTENSIONS, limits?: FolderWalkLimits): Promise<string[]> {
  return (await walkFolder(root, extensions, limits)).images;
}

/** walkImageFolder, its errors as ImageFolderErrors. */
async function walkFolder(root: string, extensions: readonly string[], limits?: FolderWalkLimits): Promise<FolderWalk> {
  try {
    return await walkImageFolder(root, extensions, limits);
  } catch (err) {
    if (err instanceof FolderWalkError) throw new ImageFolderError(err.message, { cause: err });
    throw err;
  }
}

/** Why a file cannot be read, in a few words: sharp's message, but plainer for an empty or a non-image file. */
async function failureReason(file: string, err: unknown): Promise<string> {
  const size = await fsp.stat(file).then((s) => s.size, () => -1);
  if (size === 0) return 'empty file';
  const opened = await fsp.open(file, 'r').then((h) => h.close().then(() => null), (e: NodeJS.ErrnoException) => e);
  if (opened?.code === 'EACCES' || opened?.code === 'EPERM') return 'permission denied';
  if (opened?.code === 'ENOENT') return 'gone since the folder was read';
  // libvips repeats itself on later lines; with decodes running at once, its warning text can go missing and
  // sharp says only that a warning (failOn 'warning') stopped the decode
  const lines = (err instanceof Error ? err.message : String(err)).split('\n').map((l) => l.trim()).filter((l) => l !== '');
  const msg = lines.find((l) => !/treated as error due to failOn/i.test(l));
  if (msg === undefined) return 'corrupt or truncated image data';
  return /unsupported image format/i.test(msg) ? 'not a PNG, JPEG or WebP image' : msg;
}

/** A short name for how an image is stored, e.g. 'RGB', 'grey+alpha', '16-bit RGBA', 'palette'. */
export function modeName(m: ImageMode): string {
  const alpha = m.alpha ? (m.colour && !m.palette ? 'A' : '+alpha') : '';
  const base = m.cmyk ? 'CMYK' : m.palette ? `palette${alpha}` : m.colour ? `RGB${alpha}` : `grey${alpha}`;
  return m.bits === 16 ? `16-bit ${base}` : base;
}

/** The mode an image needs to have to be read at `channels` unconverted: 8-bit grey or RGB. */
export function plainMode(channels: 1 | 3): string {
  return channels === 3 ? 'RGB' : 'grey';
}

/** Readable image files and their headers, as inspectImageFolder returns them. */
export interface ImageFolderInspection {
  root: string;
  /** Image files whose header reads, relative to the root, sorted; infos[i] is the header of files[i]. */
  files: string[];
  infos: (ImageHeader & { mode: ImageMode })[];
  /** Image files (by extension) whose header cannot be read, sorted. */
  corrupt: SkippedFile[];
  /** Other files (not hidden, another extension), counted by extension in lower case ('' for none). */
  ignored: Record<string, number>;
  /** Entries the walk left out (duplicates reached through links, link cycles, FIFOs, ...), by reason. */
  walkSkips: FolderWalk['skipped'];
  /** Readable images per stored size 'WxH', most common first (ties: smaller first). */
  sizes: [size: string, count: number][];
  /** Readable images per modeName, most common first (ties: by name). */
  modes: [mode: string, count: number][];
  /**
   * The model side the images suggest: the most common shorter side min(w, h) (ties: the smaller one, so that no
   * image is enlarged to break the tie), at most MAX_IMAGE_SIZE. Resize + CenterCrop to it keeps the most images
   * at their own scale.
   */
  size: number;
  /** The channels the images suggest: 3 when colour images are at least as many as grey ones, else 1. */
  channels: 1 | 3;
}

/** Count `keys`, most common first, ties broken by `tie`. */
function tally(keys: string[], tie: (a: string, b: string) => number): [string, number][] {
  const m = new Map<string, number>();
  for (const k of keys) m.set(k, (m.get(k) ?? 0) + 1);
  return [...m].sort((a, b) => b[1] - a[1] || tie(a[0], b[0]));
}

/**
 * Read the header of every image under `root` (no pixel is decoded: a few milliseconds a file), and infer the
 * model's image size and channels from them. Unreadable headers abort (onCorrupt 'error', the default) or are
 * listed in `corrupt` ('skip'). A folder without images, or none readable, is an ImageFolderError.
 */
export async function inspectImageFolder(
  root: string,
  opts: { onCorrupt?: 'error' | 'skip'; extensions?: readonly string[]; concurrency?: number; limits?: FolderWalkLimits } = {},
): Promise<ImageFolderInspection> {
  const extensions = opts.extensions ?? IMAGE_EXTENSIONS;
  const { images, others, firstOther, skipped: walkSkips } = await walkFolder(root, extensions, opts.limits);
  if (images.length === 0) {
    const n = Object.values(others).reduce((a, b) => a + b, 0);
    const seen = n > 0 ? ` (only ${n.toLocaleString('en-US')} other file${n === 1 ? '' : 's'}, such as ${firstOther})` : '';
    throw new ImageFolderError(`no images (${extensions.join(', ')}) found under ${root}${seen}`);
  }
  const infos: ((ImageHeader & { mode: ImageMode }) | undefined)[] = new Array(images.length);
  const reasons: (string | undefined)[] = new Array(images.length);
  let next = 0;
  async function worker(): Promise<void> {
    while (next < images.length) {
      const i = next++;
      const file = path.join(root, images[i]);
      try {
        infos[i] = await readImageInfo(file);
      } catch (err) {
        reasons[i] = await failureReason(file, err);
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(opts.concurrency ?? 16, images.length) }, worker));

  const files: string[] = [];
  const corrupt: SkippedFile[] = [];
  images.forEach((f, i) => (reasons[i] === undefined ? files.push(f) : corrupt.push({ file: f, reason: reasons[i]! })));
  if (corrupt.length > 0 && (opts.onCorrupt ?? 'error') === 'error') {
    throw new ImageFolderError(`cannot decode image ${path.join(root, corrupt[0].file)}: ${corrupt[0].reason}`);
  }
  if (files.length === 0) throw new ImageFolderError(`none of the ${images.length} images under ${root} could be read (${corrupt[0]!.file}: ${corrupt[0]!.reason})`);
  return summarize({ root, files, infos: infos.filter((h) => h !== undefined), corrupt, ignored: others, walkSkips });
}

type InspectionFacts = Pick<ImageFolderInspection, 'root' | 'files' | 'infos' | 'corrupt' | 'ignored' | 'walkSkips'>;

/** The sizes, modes and the model side and channels they suggest, for readable images `f.files` / `f.infos`. */
function summarize(f: InspectionFacts): ImageFolderInspection {
  const kept = f.infos;
  const side = (k: string) => Number(k);
  const [[shorter]] = tally(kept.map((h) => String(Math.min(h.width, h.height))), (a, b) => side(a) - side(b));
  const colour = kept.filter((h) => h.mode.colour).length;
  const area = (k: string) => k.split('x').reduce((a, b) => a * Number(b), 1);
  return {
    ...f,
    sizes: tally(kept.map((h) => `${h.width}x${h.height}`), (a, b) => area(a) - area(b) || (a < b ? -1 : 1)),
    modes: tally(kept.map((h) => modeName(h.mode)), (a, b) => (a < b ? -1 : 1)),
    size: Math.min(side(shorter!), MAX_IMAGE_SIZE),
    channels: 2 * colour >= kept.length ? 3 : 1,
  };
}

/**
 * The inspection of the images a load used (`data.files`, a subset of f.files): the files it skipped (unreadable
 * headers and failed decodes, with their reasons) are `corrupt`, and the sizes and modes are those of the images used.
 */
export function inspectionOfLoaded(f: ImageFolderInspection, data: Pick<ImageFolderData, 'files' | 'skipped'>): ImageFolderInspection {
  if (data.files.length === f.files.length) return f;
  const keep = new Set(data.files);
  const infos = f.infos.filter((_, i) => keep.has(f.files[i]!));
  return summarize({ ...f, files: [...data.files], infos, corrupt: [...data.skipped] });
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
  const resize = opts.resize ?? 'center-crop';
  if (!RESIZE_MODES.includes(resize)) throw new Error(`resize must be one of ${RESIZE_MODES.join(', ')}, got ${String(resize)}`);
  const onCorrupt = opts.onCorrupt ?? 'error';
  const warn = opts.warn ?? ((m: string) => console.warn(m));
  const concurrency = Math.max(1, opts.concurrency ?? 8);
  const extensions = opts.extensions ?? IMAGE_EXTENSIONS;
  const maxBytes = opts.maxBytes ?? os.totalmem() / 2;
  const seen = opts.inspection;
  if (seen !== undefined && seen.root !== root) throw new Error(`inspection of ${seen.root} given to load ${root}`);
  if (seen !== undefined && seen.corrupt.length > 0 && onCorrupt === 'error') {
    const { file, reason } = seen.corrupt[0];
    throw new ImageFolderError(`cannot decode image ${path.join(root, file)}: ${reason}`);
  }

  // 1. Find the files, and check that the dataset fits in memory before allocating it.
  const files = seen?.files ?? (await listImageFiles(root, extensions, opts.limits));
  const total = files.length + (seen?.corrupt.length ?? 0);
  if (total === 0) throw new ImageFolderError(`no images (${extensions.join(', ')}) found under ${root}`);
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
  const failed: (string | undefined)[] = new Array(files.length);
  const budget = pixelBudget(DECODE_BUDGET_PIXELS);
  let next = 0;
  // the first bad file in sorted order, whatever the order the decodes finish in (all lower ones have started)
  let failure: { index: number; error: ImageFolderError } | undefined;
  async function decodeOne(i: number): Promise<void> {
    const file = path.join(root, files[i]);
    try {
      // the header first (unless inspected): a bomb is refused before any pixel is decoded
      const pixels = seen?.infos[i].pixels ?? (await readImageInfo(file)).pixels;
      await budget.acquire(pixels);
      try {
        if (failure !== undefined && failure.index < i) return;
        const img = await decodeImage(file, { channels, size, resize, alpha: 'drop' });
        hwcToChw(img.data, channels, size, size, images, i * chw);
      } finally {
        budget.release(pixels);
      }
    } catch (err) {
      const reason = await failureReason(file, err);
      const msg = `cannot decode image ${file}: ${reason}`;
      if (onCorrupt === 'skip') {
        failed[i] = reason;
        warn(`warning: ${msg} (skipped)`);
      } else if (failure === undefined || i < failure.index) failure = { index: i, error: new ImageFolderError(msg, { cause: err }) };
    }
  }
  async function worker(): Promise<void> {
    while (failure === undefined && next < files.length) await decodeOne(next++);
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, files.length) }, worker));
  if (failure !== undefined) throw failure.error;

  const kept: string[] = [];
  const skipped: SkippedFile[] = [...(seen?.corrupt ?? [])];
  for (let i = 0; i < files.length; i++) {
    if (failed[i] === undefined) {
      if (kept.length !== i) images.copyWithin(kept.length * chw, i * chw, (i + 1) * chw);
      kept.push(files[i]);
    } else {
      skipped.push({ file: files[i], reason: failed[i]! });
    }
  }
  skipped.sort((a, b) => (a.file < b.file ? -1 : a.file > b.file ? 1 : 0));
  if (kept.length === 0) throw new ImageFolderError(`none of the ${total} images under ${root} could be read (${skipped[0]!.file}: ${skipped[0]!.reason})`);
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
