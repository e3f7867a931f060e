/**
 * `ddpm train`'s data step: the default run directory, a folder's headers read before anything else (its image
 * size and channels inferred for a new run), and the folder loaded with one summary line whose counts add up (the
 * images used, unreadable files skipped or refused with --on-corrupt error, other files, and what the walk left
 * out: duplicates reached through links, link cycles, special files) and its conversions counted.
 */
import { access } from 'node:fs/promises';
import path from 'node:path';
import {
  ImageFolderError,
  imageFolderDataset,
  inspectImageFolder,
  inspectionOfLoaded,
  loadImageFolder,
  modeName,
  plainMode,
  type ImageFolderInspection,
} from '../data/folder.ts';
import type { FolderWalkLimits } from '../data/folder-walk.ts';
import { describeLeftOut } from '../data/folder-summary.ts';
import { labelledFolderDataset } from '../data/folder-classes.ts';
import type { Dataset } from '../data/loader.ts';
import { mnistDataset } from '../data/mnist.ts';
import { presetForData } from '../models/unet.ts';
import type { TrainConfig } from '../train/config.ts';
import { UserError } from './common.ts';

const count = (n: number) => n.toLocaleString('en-US');

/** --out when none is given: runs/<name of the --data folder>, runs/mnist for MNIST. */
export function defaultOut(data: string | undefined): string {
  if (data === undefined || data === 'mnist') return path.join('runs', 'mnist');
  return path.join('runs', path.basename(path.resolve(data)) || 'data');
}

/** The folder's headers; a missing folder, one without images, or (with --on-corrupt error) a bad file is a UserError. */
async function inspect(src: string, onCorrupt: 'skip' | 'error', limits?: FolderWalkLimits): Promise<ImageFolderInspection> {
  try {
    await access(src);
  } catch {
    throw new UserError(`--data: '${src}' is neither 'mnist' nor an existing folder`);
  }
  try {
    return await inspectImageFolder(src, { onCorrupt, limits });
  } catch (e) {
    throw folderError(e);
  }
}

function folderError(e: unknown): unknown {
  if (!(e instanceof ImageFolderError)) return e;
  const hint = /^cannot decode image/.test(e.message) ? ' (--on-corrupt skip leaves such files out, with a warning)' : '';
  return new UserError(`--data: ${e.message}${hint}`);
}

/**
 * The one summary line of a folder, once it is loaded (`f` as inspectionOfLoaded gives it): the images used, their
 * sizes and modes, then everything left out by reason, so that the counts add up to what the folder holds:
 * `10 images in 3 sizes (most often 4x4; shorter side most often 4), 6 RGB, 4 grey; left out: 3 unreadable image
 * files (zero.png: empty file, ...), 1 other file (.txt), 1 link cycle skipped (sub/loop -> ..)`.
 */
export function describeFolder(f: ImageFolderInspection): string {
  const n = f.files.length;
  const rest = f.modes.slice(6).reduce((a, [, k]) => a + k, 0);
  const modes = f.modes.length === 1 ? f.modes[0]![0] : f.modes.slice(0, 6).map(([m, k]) => `${count(k)} ${m}`).join(', ') + (rest > 0 ? `, ${count(rest)} other` : '');
  const images =
    f.sizes.length === 1
      ? `${count(n)} image${n === 1 ? '' : 's'}, all ${f.sizes[0]![0]}${f.modes.length === 1 ? ` ${modes}` : `, ${modes}`}`
      : `${count(n)} images in ${count(f.sizes.length)} sizes (most often ${f.sizes[0]![0]}; shorter side most often ${f.size}), ${f.modes.length === 1 ? `all ${modes}` : modes}`;
  return images + describeLeftOut(f.corrupt, f.ignored, f.walkSkips);
}

type ModelShape = Pick<TrainConfig['model'], 'inChannels' | 'imageSize'>;

/** A folder inspected for a run: its headers, and the end of its summary line for the final model (`-> training 3x32x32 (...)`). */
export interface PlannedFolder {
  inspection: ImageFolderInspection;
  fit: (model: ModelShape) => string;
}

export interface FolderPlan {
  /** The config to apply the flags to: for a new run on a built-in preset, its model fitted to the folder. */
  base: TrainConfig;
  /** The folder's headers and how the model takes them (undefined for MNIST), for loadTrainData. */
  folder?: PlannedFolder;
  /** The batch size is the preset's default (a new run, no --batch-size): fitBatchToData may lower it. */
  batchIsDefault: boolean;
}

/**
 * Before the flags are applied: read a folder's headers and, for a new run on a built-in preset, fit the model to
 * the images (presetForData): the most common shorter side, rounded down to what the model's levels can halve,
 * and 3 channels when colour images are at least half; --image-size / --channels, applied afterwards, win. A
 * config file's model and a resumed checkpoint's are never changed. Prints nothing: loadTrainData prints the
 * folder's one summary line once the images are loaded and every count is known.
 */
export async function planFolderData(
  base: TrainConfig,
  flags: Record<string, string | boolean | undefined>,
  how: { resuming: boolean; preset: boolean; configName: string; limits?: FolderWalkLimits },
): Promise<FolderPlan> {
  const src = String(flags.data ?? base.data.source);
  const batchIsDefault = !how.resuming && how.preset && flags['batch-size'] === undefined;
  if (src === 'mnist') return { base, batchIsDefault };
  const onCorrupt = (flags['on-corrupt'] ?? base.data.onCorrupt) as 'skip' | 'error';
  const f = await inspect(src, onCorrupt, how.limits);
  const given = { size: flags['image-size'] !== undefined, channels: flags.channels !== undefined };
  const m = base.model;
  let fit: PlannedFolder['fit'];
  let fitted = base;
  const shape = (m: ModelShape) => `${m.inChannels}x${m.imageSize}x${m.imageSize}`;
  if (how.resuming || !how.preset) {
    // the model stays as it is; the images are brought to it
    const whose = how.resuming ? "the checkpoint's model" : `the model of ${how.configName}`;
    const flagged = [given.size ? '--image-size' : '', given.channels ? '--channels' : ''].filter(Boolean);
    fit = (final) => ` -> ${whose}${flagged.length > 0 ? ` with ${flagged.join(' and ')}` : ''}, ${shape(final)}`;
  } else {
    // 1. The side the levels can halve: each of the L levels after the first halves the image.
    const step = 2 ** (m.channelMults.length - 1);
    const size = given.size ? m.imageSize : Math.max(step, Math.floor(f.size / step) * step);
    const channels = given.channels ? m.inChannels : f.channels;
    if (size !== m.imageSize || channels !== m.inChannels) fitted = { ...base, model: presetForData(m, size, channels) };
    const rounded = !given.size && size !== f.size ? `; ${f.size} rounded down to a multiple of ${step} for ${how.configName}'s ${m.channelMults.length} levels` : '';
    const left = [given.size ? '' : '--image-size', given.channels ? '' : '--channels'].filter(Boolean);
    const override = left.length > 0 ? `override with ${left.join(', ')}` : 'as --image-size and --channels say';
    fit = (final) => ` -> training ${shape(final)} (${override}${rounded})`;
  }
  return { base: fitted, folder: { inspection: f, fit }, batchIsDefault };
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
 * The training images: MNIST, or the folder (its plan reused when given), brought to the model's size and channels.
 * A folder's summary line (a warning when unreadable files were skipped) and its conversion note go to `say`
 * (default stderr).
 */
export async function loadTrainData(
  config: TrainConfig,
  folder?: PlannedFolder,
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
  const f = folder?.inspection ?? (await inspect(src, onCorrupt));
  const channels = inChannels as 1 | 3;
  let data;
  try {
    data = await loadImageFolder(src, { size: imageSize, channels, resize, onCorrupt, inspection: f, warn: () => {} });
  } catch (e) {
    throw folderError(e);
  }
  const used = inspectionOfLoaded(f, data);
  const skipped = used.corrupt.length > 0 ? ' (--on-corrupt error stops at the first unreadable file instead)' : '';
  say(`${skipped ? 'warning' : 'note'}: ${src}: ${describeFolder(used)}${folder?.fit(config.model) ?? ''}${skipped}`);
  const note = conversionNote(f, data.files, channels);
  if (note) say(note);
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
