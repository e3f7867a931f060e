/**
 * `ddpm train`'s data step: the default run directory, a folder's headers read before anything else (its image
 * size and channels inferred for a new run, one note), and the folder loaded with its conversions counted and its
 * unreadable files skipped (one warning), or refused with --on-corrupt error.
 */
import { access } from 'node:fs/promises';
import path from 'node:path';
import {
  ImageFolderError,
  imageFolderDataset,
  inspectImageFolder,
  loadImageFolder,
  modeName,
  plainMode,
  type ImageFolderInspection,
  type SkippedFile,
} from '../data/folder.ts';
import { labelledFolderDataset } from '../data/folder-classes.ts';
import type { Dataset } from '../data/loader.ts';
import { mnistDataset } from '../data/mnist.ts';
import { presetForData } from '../models/unet.ts';
import type { TrainConfig } from '../train/config.ts';
import { UserError } from './common.ts';

/** Unreadable files named in the skip warning; the rest are counted. */
const NAMED_SKIPS = 3;

const count = (n: number) => n.toLocaleString('en-US');

/** --out when none is given: runs/<name of the --data folder>, runs/mnist for MNIST. */
export function defaultOut(data: string | undefined): string {
  if (data === undefined || data === 'mnist') return path.join('runs', 'mnist');
  return path.join('runs', path.basename(path.resolve(data)) || 'data');
}

/** The folder's headers; a missing folder, one without images, or (with --on-corrupt error) a bad file is a UserError. */
async function inspect(src: string, onCorrupt: 'skip' | 'error'): Promise<ImageFolderInspection> {
  try {
    await access(src);
  } catch {
    throw new UserError(`--data: '${src}' is neither 'mnist' nor an existing folder`);
  }
  try {
    return await inspectImageFolder(src, { onCorrupt });
  } catch (e) {
    throw folderError(e);
  }
}

function folderError(e: unknown): unknown {
  if (!(e instanceof ImageFolderError)) return e;
  const hint = /^cannot decode image/.test(e.message) ? ' (--on-corrupt skip leaves such files out, with a warning)' : '';
  return new UserError(`--data: ${e.message}${hint}`);
}

/** `9 images in 4 sizes (most often 10x12; shorter side most often 12), 6 RGB, 2 grey, 1 RGBA` */
function describeFolder(f: ImageFolderInspection): string {
  const n = f.files.length;
  const others = Object.values(f.ignored).reduce((a, b) => a + b, 0);
  const ignored = others > 0 ? ` (${count(others)} other file${others === 1 ? '' : 's'} ignored: ${Object.keys(f.ignored).map((e) => e || 'no extension').join(', ')})` : '';
  const rest = f.modes.slice(6).reduce((a, [, k]) => a + k, 0);
  const modes = f.modes.length === 1 ? f.modes[0]![0] : f.modes.slice(0, 6).map(([m, k]) => `${count(k)} ${m}`).join(', ') + (rest > 0 ? `, ${count(rest)} other` : '');
  if (f.sizes.length === 1) return `${count(n)} images${ignored}, all ${f.sizes[0]![0]}${f.modes.length === 1 ? ` ${modes}` : `, ${modes}`}`;
  const sizes = `${count(n)} images${ignored} in ${count(f.sizes.length)} sizes (most often ${f.sizes[0]![0]}; shorter side most often ${f.size})`;
  return `${sizes}, ${f.modes.length === 1 ? `all ${modes}` : modes}`;
}

export interface FolderPlan {
  /** The config to apply the flags to: for a new run on a built-in preset, its model fitted to the folder. */
  base: TrainConfig;
  /** The folder's headers (undefined for MNIST), for loadDataset. */
  inspection?: ImageFolderInspection;
  /** The batch size is the preset's default (a new run, no --batch-size): fitBatchToData may lower it. */
  batchIsDefault: boolean;
}

/**
 * Before the flags are applied: read a folder's headers and, for a new run on a built-in preset, fit the model to
 * the images (presetForData): the most common shorter side, rounded down to what the model's levels can halve,
 * and 3 channels when colour images are at least half; --image-size / --channels, applied afterwards, win. A
 * config file's model and a resumed checkpoint's are never changed. Prints one note on stderr.
 */
export async function planFolderData(
  base: TrainConfig,
  flags: Record<string, string | boolean | undefined>,
  how: { resuming: boolean; preset: boolean; configName: string },
): Promise<FolderPlan> {
  const src = String(flags.data ?? base.data.source);
  const batchIsDefault = !how.resuming && how.preset && flags['batch-size'] === undefined;
  if (src === 'mnist') return { base, batchIsDefault };
  const onCorrupt = (flags['on-corrupt'] ?? base.data.onCorrupt) as 'skip' | 'error';
  const f = await inspect(src, onCorrupt);
  const given = { size: flags['image-size'] !== undefined, channels: flags.channels !== undefined };
  const m = base.model;
  let tail: string;
  let fitted = base;
  if (how.resuming || !how.preset) {
    // the model stays as it is; the images are brought to it
    const whose = how.resuming ? "the checkpoint's model" : `the model of ${how.configName}`;
    tail = ` -> ${whose}, ${m.inChannels}x${m.imageSize}x${m.imageSize}${given.size || given.channels ? ' before the flags' : ''}`;
  } else {
    // 1. The side the levels can halve: each of the L levels after the first halves the image.
    const step = 2 ** (m.channelMults.length - 1);
    const size = given.size ? m.imageSize : Math.max(step, Math.floor(f.size / step) * step);
    const channels = given.channels ? m.inChannels : f.channels;
    if (size !== m.imageSize || channels !== m.inChannels) fitted = { ...base, model: presetForData(m, size, channels) };
    const rounded = !given.size && size !== f.size ? `; ${f.size} rounded down to a multiple of ${step} for ${how.configName}'s ${m.channelMults.length} levels` : '';
    const left = [given.size ? '' : '--image-size', given.channels ? '' : '--channels'].filter(Boolean);
    const override = left.length > 0 ? `override with ${left.join(', ')}` : 'as --image-size and --channels say';
    tail = ` -> training ${channels}x${size}x${size} (${override}${rounded})`;
  }
  process.stderr.write(`note: ${src}: ${describeFolder(f)}${tail}\n`);
  return { base: fitted, inspection: f, batchIsDefault };
}

/** One line naming the first few skipped files, with the count of the rest. */
export function skipWarning(root: string, skipped: SkippedFile[], total: number): string {
  const oneLine = (s: string) => s.replace(/\s+/g, ' ').trim();
  const named = skipped.slice(0, NAMED_SKIPS).map(({ file, reason }) => `${file} (${oneLine(reason)})`);
  const more = skipped.length > NAMED_SKIPS ? `, and ${count(skipped.length - NAMED_SKIPS)} more` : '';
  return (
    `warning: skipped ${count(skipped.length)} of ${count(total)} image files under ${root} that cannot be read: ` +
    `${named.join(', ')}${more} (--on-corrupt error stops instead)`
  );
}

/** `converted 12 RGBA, 3 16-bit RGB, 40 grey images to RGB (alpha dropped)`, or '' when none was. */
export function conversionNote(f: ImageFolderInspection, kept: readonly string[], channels: 1 | 3): string {
  const mode = new Map(f.files.map((file, i) => [file, f.infos[i]!.mode]));
  const counts = new Map<string, number>();
  let alpha = false;
  for (const file of kept) {
    const m = mode.get(file);
    if (m === undefined) continue;
    const name = modeName(m);
    if (name === plainMode(channels)) continue;
    counts.set(name, (counts.get(name) ?? 0) + 1);
    alpha ||= m.alpha;
  }
  if (counts.size === 0) return '';
  const list = [...counts].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)).map(([m, k]) => `${count(k)} ${m}`);
  const how = [alpha ? 'alpha dropped' : '', channels === 1 && [...counts.keys()].some((k) => !k.includes('grey')) ? 'Rec. 601 luma' : ''].filter(Boolean);
  return `note: converted ${list.join(', ')} image${list.length === 1 && list[0]!.startsWith('1 ') ? '' : 's'} to ${channels === 3 ? 'RGB' : 'grey'}${how.length ? ` (${how.join('; ')}, as PIL's convert)` : ''}`;
}

/**
 * The training images: MNIST, or the folder (its inspection reused when given), brought to the model's size and
 * channels; notes and the skip warning go to `say` (default stderr).
 */
export async function loadTrainData(
  config: TrainConfig,
  inspection?: ImageFolderInspection,
  say: (line: string) => void = (line) => process.stderr.write(line + '\n'),
): Promise<Dataset> {
  const { source: src, onCorrupt, resize } = config.data;
  const { imageSize, inChannels } = config.model;
  if (src === 'mnist') {
    if (imageSize !== 28 || inChannels !== 1) {
      throw new UserError(`MNIST is 1x28x28 but the model is ${inChannels}x${imageSize}x${imageSize}`);
    }
    return mnistDataset('train');
  }
  const f = inspection ?? (await inspect(src, onCorrupt));
  const channels = inChannels as 1 | 3;
  let data;
  try {
    data = await loadImageFolder(src, { size: imageSize, channels, resize, onCorrupt, inspection: f, warn: () => {} });
  } catch (e) {
    throw folderError(e);
  }
  const note = conversionNote(f, data.files, channels);
  if (note) say(note);
  if (data.skipped.length > 0) say(skipWarning(src, data.skipped, data.n + data.skipped.length));
  // --class-cond: labels from the class subfolders (data/folder-classes.ts)
  return config.data.classCond ? labelledFolderDataset(src, data) : imageFolderDataset(data);
}

/**
 * A folder with fewer images than the batch size: with the default batch size (FolderPlan.batchIsDefault), the
 * whole folder per step, with a note; with one from --batch-size, a config file or a checkpoint, a UserError.
 */
export function fitBatchToData(config: TrainConfig, n: number, batchIsDefault: boolean): TrainConfig {
  const { batchSize, source } = config.data;
  if (n >= batchSize) return config;
  if (!batchIsDefault) {
    throw new UserError(`--batch-size ${batchSize} is more than the ${count(n)} readable images under ${source}: pass --batch-size ${n} or less`);
  }
  process.stderr.write(`note: batch ${n}, the whole folder (fewer images than the default --batch-size ${batchSize})\n`);
  return { ...config, data: { ...config.data, batchSize: n } };
}
