/**
 * The training config: one typed definition with defaults, from which come the JSON stored in every
 * checkpoint (validated on load: unknown keys are an error) and the CLI flags of `ddpm train`.
 *
 * The defaults are the reference recipe: `mnist-28`, ε-prediction, L_simple, linear β with T = 1000,
 * AdamW 2e-4 without weight decay, gradient clipping at norm 1, batch 64, EMA with decay
 * min(0.999, (1+n)/(10+n)) at step n.
 */
import { LOSSES, MEAN_TYPES, VAR_TYPES, defaultDiffusionConfig, validateDiffusionConfig, type DiffusionConfig } from '../diffusion/config.ts';
import { scheduleConfig, type ScheduleKind } from '../diffusion/schedule.ts';
import { LR_DECAYS, type LrSchedule } from '../engine/optim.ts';
import { UNET_CONFIGS, attnResolutionsAtSize, checkClassNames, unetConfig, type UNetConfig } from '../models/unet.ts';
import { checkConfigKeys, checkConfigType, describeValue } from '../describe.ts';
import { RESIZE_MODES, type ResizeMode } from '../io/resize.ts';
import { IMAGE_CHANNELS, MAX_BATCH_SIZE, MAX_CHANNELS, MAX_CLASSES, MAX_IMAGE_SIZE, MAX_LEVELS, MAX_RES_BLOCKS, MAX_SAMPLES, MAX_SEED, MAX_T } from '../limits.ts';

/** AdamW settings and the learning-rate schedule (warmup, constant, optional decay). */
export interface OptimConfig extends LrSchedule {
  weightDecay: number;
  beta1: number;
  beta2: number;
  eps: number;
  /** global-norm gradient clipping (0 = off) */
  clipNorm: number;
  /** EMA decay ceiling */
  emaDecay: number;
  /** EMA decay warmup min(decay, (1+n)/(10+n)) */
  emaWarmup: boolean;
  /**
   * learning-rate multiplier of a class-conditional model's class embedding (label_emb): a fine-tune from an
   * unconditional model starts it at zero, and at the network's learning rate it moves too slowly to carry the
   * classes in a short run (as textual inversion, the new embedding wants a larger rate than the weights around it)
   */
  classLrScale: number;
}

export interface DataConfig {
  /** 'mnist' or a folder of PNG/JPEG/WebP images */
  source: string;
  batchSize: number;
  /** random horizontal flips (off for digits) */
  hflip: boolean;
  /** how a folder's images are brought to the model's size (src/io/image.ts RESIZE_MODES) */
  resize: ResizeMode;
  /**
   * train a class-conditional model (classifier-free guidance, Ho & Salimans 2022) on the data's labels: MNIST's
   * digits, or a folder's subfolders (sorted, as torchvision's ImageFolder); sets model.numClasses and classNames
   */
  classCond: boolean;
  /** with classCond: probability that a training label is replaced by ∅, "no class" (label dropout) */
  pUncond: number;
  /** with classCond: the name of each class (label i is classNames[i]), from the data when training starts */
  classNames: string[];
  /** a folder's unreadable images: 'skip' them (counted, the first few named in one warning) or stop ('error') */
  onCorrupt: 'skip' | 'error';
}

export interface RunConfig {
  /** total optimisation steps (0 = until stopped or the time budget is spent) */
  steps: number;
  /** stop after this many minutes of training (0 = no limit) */
  minutes: number;
  seed: number;
  logEvery: number;
  /**
   * seconds between log lines as well (whichever comes first: --log-every steps or this); the first line comes
   * after at most FIRST_LOG_SEC. 0 = by steps only
   */
  logSeconds: number;
  /** steps between sample grids (0 = never, not even at the end of the run) */
  sampleEvery: number;
  checkpointEvery: number;
  /** images in the periodic sample grid */
  sampleCount: number;
  /** DDIM steps for the periodic sample grid */
  sampleSteps: number;
  /** every M minutes of training time, keep a copy of the checkpoint as <out>/snapshot-<k·M>min (0 = off) */
  snapshotMinutes: number;
  /**
   * start a new run from the weights of this model or checkpoint directory (its EMA weights if it has
   * them) instead of a random init: fine-tuning. '' = random init. Ignored when resuming.
   */
  initFrom: string;
}

export interface TrainConfig {
  /** name of the model preset the U-Net config started from (informational) */
  preset: string;
  model: UNetConfig;
  diffusion: DiffusionConfig;
  optim: OptimConfig;
  data: DataConfig;
  run: RunConfig;
}

/**
 * Where a preset's training recipe differs from the reference one above: the noise schedule, optimiser and batch settings a new run
 * on that preset starts from (flags still win; a resumed run keeps its stored config). `rgb-32`'s were chosen by
 * experiment for small folders at CPU budgets: docs/shapes-experiments.md.
 */
export const PRESET_RECIPES: Readonly<Record<string, { diffusion?: Partial<DiffusionConfig>; optim?: Partial<OptimConfig>; data?: Partial<DataConfig> }>> = {
  // the cosine schedule with min-SNR-γ 5: at 6,000 steps, seeds 0-4 gave 81.5 / 70.5 / 86.3 / 86.6 / 89.1% confident
  // shapes (cosine alone 77.2 / 64.2 / 78.0 / 69.7 / 75.7%, linear 72.4 / 45.3 / 67.7 / 73.8% for seeds 0-3);
  // docs/shapes-experiments.md, rounds 5-6
  'rgb-32': { diffusion: { schedule: scheduleConfig({ kind: 'cosine', T: 1000 }), minSnrGamma: 5 }, optim: { lr: 2e-3, warmupSteps: 100, emaDecay: 0.995 }, data: { batchSize: 32 } },
  // batch 16: at an equal 38,400 images, 43.8% confident digits (DDIM-50) against 41.0% at batch 32 (README, Train in the browser)
  'mnist-small': { optim: { lr: 2e-3, warmupSteps: 100, emaDecay: 0.995 }, data: { batchSize: 16 } },
};

export function defaultTrainConfig(preset = 'mnist-28'): TrainConfig {
  const model = Object.hasOwn(UNET_CONFIGS, preset) ? UNET_CONFIGS[preset] : undefined; // not 'constructor' & co.
  if (!model) throw new Error(`unknown model config '${preset}' (known: ${Object.keys(UNET_CONFIGS).join(', ')})`);
  const recipe = Object.hasOwn(PRESET_RECIPES, preset) ? PRESET_RECIPES[preset]! : {};
  return {
    preset,
    model: { ...model, channelMults: [...model.channelMults], attnResolutions: [...model.attnResolutions] },
    diffusion: { ...defaultDiffusionConfig(), ...recipe.diffusion },
    optim: {
      ...{ lr: 2e-4, weightDecay: 0, beta1: 0.9, beta2: 0.999, eps: 1e-8, warmupSteps: 0, decay: 'none' as const, decayStart: 0, decaySteps: 0, decayTo: 0, clipNorm: 1, emaDecay: 0.999, emaWarmup: true, classLrScale: 1 },
      ...recipe.optim,
    },
    data: { ...{ source: 'mnist', batchSize: 64, hflip: false, resize: 'center-crop' as const, onCorrupt: 'skip' as const, classCond: false, pUncond: 0.1, classNames: [] }, ...recipe.data },
    run: { steps: 0, minutes: 0, seed: 0, logEvery: 50, logSeconds: 30, sampleEvery: 1000, checkpointEvery: 500, sampleCount: 64, sampleSteps: 50, snapshotMinutes: 0, initFrom: '' },
  };
}

// ---------------------------------------------------------------------------------------------
// Flags: one definition per scalar field, used for the CLI and for validation.

/** 'ints': a comma-separated list of integers (`1,2,2`), each within min/max; 'none' is the empty list where `none` allows it */
type Kind = 'number' | 'int' | 'ints' | 'string' | 'boolean';

export interface OptionDef {
  /** dotted path in TrainConfig */
  path: string;
  /** CLI flag name (without --) */
  flag: string;
  kind: Kind;
  help: string;
  choices?: readonly string[];
  /** the only values a number may take (e.g. channels 1 or 3) */
  values?: readonly number[];
  min?: number;
  /** for 'int', at most Number.MAX_SAFE_INTEGER whatever this says */
  max?: number;
  /** for 'ints': 'none' means the empty list */
  none?: boolean;
}

const SCHEDULES: readonly ScheduleKind[] = ['linear', 'cosine', 'sigmoid', 'scaledLinear'];
const ON_CORRUPT: readonly DataConfig['onCorrupt'][] = ['skip', 'error'];

export const TRAIN_OPTIONS: readonly OptionDef[] = [
  { path: 'data.source', flag: 'data', kind: 'string', help: "training images: 'mnist' or a folder of PNG/JPEG/WebP" },
  { path: 'data.batchSize', flag: 'batch-size', kind: 'int', min: 1, max: MAX_BATCH_SIZE, help: 'images per step' },
  { path: 'data.hflip', flag: 'hflip', kind: 'boolean', help: 'random horizontal flips' },
  { path: 'data.resize', flag: 'resize', kind: 'string', choices: RESIZE_MODES, help: "how folder images become --image-size squares: center-crop (shorter side resized, then cropped: torchvision's Resize + CenterCrop), stretch (both sides resized), pad (longer side resized, black bars)" },
  { path: 'data.onCorrupt', flag: 'on-corrupt', kind: 'string', choices: ON_CORRUPT, help: 'unreadable files in a folder: skip (counted; the first few named in one warning) or error (stop at the first)' },
  { path: 'data.classCond', flag: 'class-cond', kind: 'boolean', help: "class-conditional model for classifier-free guidance: labels are MNIST's digits or a folder's subfolder names" },
  { path: 'data.pUncond', flag: 'p-uncond', kind: 'number', min: 0, max: 1, help: 'with --class-cond: probability of dropping a label to "no class" (trains the unconditional model too)' },
  { path: 'optim.classLrScale', flag: 'class-lr-scale', kind: 'number', min: 0, max: 1000, help: "with --class-cond: learning-rate multiplier of the class embedding (e.g. 20 when fine-tuning an unconditional model, whose new embedding starts at zero)" },
  { path: 'diffusion.schedule.kind', flag: 'schedule', kind: 'string', choices: SCHEDULES, help: 'β schedule' },
  { path: 'diffusion.schedule.T', flag: 'T', kind: 'int', min: 2, max: MAX_T, help: 'diffusion steps T' },
  { path: 'diffusion.meanType', flag: 'objective', kind: 'string', choices: MEAN_TYPES, help: 'what the model predicts' },
  { path: 'diffusion.loss', flag: 'loss', kind: 'string', choices: LOSSES, help: 'L_simple, or L_simple + λ·L_vlb with learned variances' },
  { path: 'diffusion.varType', flag: 'var-type', kind: 'string', choices: VAR_TYPES, help: 'reverse-process variance (hybrid forces learnedRange)' },
  { path: 'diffusion.minSnrGamma', flag: 'min-snr-gamma', kind: 'number', min: 0, help: 'min-SNR-γ loss weighting (0 = off)' },
  { path: 'optim.lr', flag: 'lr', kind: 'number', min: 0, help: 'AdamW learning rate' },
  { path: 'optim.weightDecay', flag: 'weight-decay', kind: 'number', min: 0, help: 'AdamW decoupled weight decay' },
  { path: 'optim.beta1', flag: 'beta1', kind: 'number', min: 0, max: 0.999999, help: 'Adam β1' },
  { path: 'optim.beta2', flag: 'beta2', kind: 'number', min: 0, max: 0.999999, help: 'Adam β2' },
  { path: 'optim.warmupSteps', flag: 'warmup', kind: 'int', min: 0, help: 'linear learning-rate warmup steps' },
  { path: 'optim.decay', flag: 'lr-decay', kind: 'string', choices: LR_DECAYS, help: 'learning-rate decay after --decay-start (none = constant)' },
  { path: 'optim.decayStart', flag: 'decay-start', kind: 'int', min: 0, help: 'step at which the learning-rate decay starts' },
  { path: 'optim.decaySteps', flag: 'decay-steps', kind: 'int', min: 0, help: 'steps over which the learning rate decays to --min-lr' },
  { path: 'optim.decayTo', flag: 'min-lr', kind: 'number', min: 0, help: 'learning rate at the end of the decay' },
  { path: 'optim.clipNorm', flag: 'clip-norm', kind: 'number', min: 0, help: 'global gradient-norm clipping (0 = off)' },
  { path: 'optim.emaDecay', flag: 'ema-decay', kind: 'number', min: 0, max: 1, help: 'EMA decay' },
  { path: 'run.steps', flag: 'steps', kind: 'int', min: 0, help: 'training steps (0 = until Ctrl-C or --minutes)' },
  { path: 'run.minutes', flag: 'minutes', kind: 'number', min: 0, help: 'time budget in minutes (0 = none)' },
  { path: 'run.seed', flag: 'seed', kind: 'int', min: 0, max: MAX_SEED, help: 'random seed' },
  { path: 'run.logEvery', flag: 'log-every', kind: 'int', min: 1, help: 'steps between log lines' },
  { path: 'run.logSeconds', flag: 'log-seconds', kind: 'number', min: 0, help: 'seconds between log lines too, whichever comes first (the first within 5 s; 0 = by steps only)' },
  { path: 'run.sampleEvery', flag: 'sample-every', kind: 'int', min: 0, help: 'steps between sample grids; one is also written when the run ends (0 = never)' },
  { path: 'run.checkpointEvery', flag: 'checkpoint-every', kind: 'int', min: 1, help: 'steps between checkpoints' },
  { path: 'run.sampleCount', flag: 'sample-count', kind: 'int', min: 1, max: MAX_SAMPLES, help: 'images per sample grid' },
  { path: 'run.sampleSteps', flag: 'sample-steps', kind: 'int', min: 1, max: MAX_T, help: 'DDIM steps for sample grids' },
  { path: 'run.snapshotMinutes', flag: 'snapshot-minutes', kind: 'number', min: 0, help: 'every this many minutes of training time, keep a checkpoint copy as <out>/snapshot-<minutes>min (0 = off)' },
  { path: 'run.initFrom', flag: 'init-from', kind: 'string', help: "start from a model/checkpoint directory's weights (fine-tuning; '' = random init); with --loss hybrid on a fixed-variance model, the new variance outputs start at zero" },
  { path: 'model.imageSize', flag: 'image-size', kind: 'int', min: 4, max: MAX_IMAGE_SIZE, help: "image side; for a folder, inferred from its images (the most common shorter side) unless given; see --resize" },
  { path: 'model.inChannels', flag: 'channels', kind: 'int', values: IMAGE_CHANNELS, help: 'image channels: 1 (grayscale) or 3 (RGB); for a folder, inferred (3 when colour images are at least half) unless given' },
  { path: 'model.baseChannels', flag: 'base-channels', kind: 'int', min: 1, max: MAX_CHANNELS, help: 'U-Net base channels (the width of the first level)' },
  { path: 'model.channelMults', flag: 'channel-mults', kind: 'ints', min: 1, max: MAX_CHANNELS, help: 'width of each level as a multiple of --base-channels, e.g. 1,2,2,2 (one level per entry; each after the first halves the size)' },
  { path: 'model.numResBlocks', flag: 'res-blocks', kind: 'int', min: 1, max: MAX_RES_BLOCKS, help: 'residual blocks per level' },
  { path: 'model.attnResolutions', flag: 'attn-resolutions', kind: 'ints', min: 1, max: MAX_IMAGE_SIZE, none: true, help: "feature-map sizes with self-attention, e.g. 16 or 16,8, each a level of the model, or 'none' (the middle block always has it); --image-size alone keeps the preset's attention levels" },
  { path: 'model.dropout', flag: 'dropout', kind: 'number', min: 0, max: 0.99, help: 'dropout in residual blocks' },
];

function getPath(obj: unknown, path: string): unknown {
  return path.split('.').reduce<unknown>((o, k) => (o as Record<string, unknown> | undefined)?.[k], obj);
}

function setPath(obj: Record<string, unknown>, path: string, value: unknown): void {
  const keys = path.split('.');
  let o = obj;
  for (const k of keys.slice(0, -1)) o = o[k] as Record<string, unknown>;
  o[keys[keys.length - 1]!] = value;
}

/** Why `v` is not a valid value of a numeric option (undefined when it is). */
function numberProblem(def: OptionDef, v: number): string | undefined {
  if (!Number.isFinite(v)) return 'expected a finite number';
  if (def.kind === 'int' && !Number.isSafeInteger(v)) {
    return Number.isInteger(v) ? `must be at most ${Number.MAX_SAFE_INTEGER}` : 'expected an integer';
  }
  if (def.values && !def.values.includes(v)) return `must be ${def.values.join(' or ')}`;
  if (def.min !== undefined && v < def.min) return `must be >= ${def.min}`;
  if (def.max !== undefined && v > def.max) return `must be <= ${def.max}`;
  return undefined;
}

/** Parse a CLI string for one option; throws a message naming the flag. */
export function parseOptionValue(def: OptionDef, raw: string | boolean): string | number | boolean | number[] {
  if (def.kind === 'boolean') {
    if (typeof raw === 'boolean') return raw;
    if (raw === 'true' || raw === '1') return true;
    if (raw === 'false' || raw === '0') return false;
    throw new Error(`--${def.flag}: expected true or false, got '${raw}'`);
  }
  const s = String(raw);
  if (def.kind === 'string') {
    if (def.choices && !def.choices.includes(s)) throw new Error(`--${def.flag}: '${s}' is not one of ${def.choices.join(', ')}`);
    return s;
  }
  if (def.kind === 'ints') {
    if (def.none && s.trim() === 'none') return [];
    const parts = s.split(',');
    const expected = `expected comma-separated integers${def.none ? " or 'none'" : ''}`;
    if (parts.length > MAX_LEVELS) throw new Error(`--${def.flag}: at most ${MAX_LEVELS} values, got '${s}'`);
    return parts.map((p) => {
      const v = Number(p);
      if (p.trim() === '' || !Number.isFinite(v)) throw new Error(`--${def.flag}: ${expected}, got '${s}'`);
      const problem = numberProblem({ ...def, kind: 'int' }, v);
      if (problem) throw new Error(`--${def.flag}: ${p.trim()} ${problem}, got '${s}'`);
      return v;
    });
  }
  const v = Number(s);
  if (s.trim() === '' || !Number.isFinite(v)) throw new Error(`--${def.flag}: expected a number, got '${s}'`);
  const problem = numberProblem(def, v);
  if (problem) throw new Error(`--${def.flag}: ${problem}, got '${s}'`);
  return v;
}

/**
 * Apply parsed flag values (keyed by flag name) to a config; returns a validated copy. --image-size without
 * --attn-resolutions keeps the base model's attention at the same levels (attnResolutionsAtSize).
 */
export function applyOptions(base: TrainConfig, values: Record<string, string | boolean | undefined>): TrainConfig {
  const c = JSON.parse(JSON.stringify(base)) as Record<string, unknown>;
  const moveAttention = values['image-size'] !== undefined && values['attn-resolutions'] === undefined;
  for (const def of TRAIN_OPTIONS) {
    const raw = values[def.flag];
    if (raw === undefined) continue;
    if (def.path === 'diffusion.schedule.kind') {
      // a new schedule kind takes that kind's defaults (keeping T)
      const T = (getPath(c, 'diffusion.schedule.T') as number) ?? 1000;
      setPath(c, 'diffusion.schedule', { kind: parseOptionValue(def, raw), T });
      continue;
    }
    setPath(c, def.path, parseOptionValue(def, raw));
  }
  if (moveAttention) {
    const model = c.model as UNetConfig;
    model.attnResolutions = attnResolutionsAtSize(base.model, model.imageSize);
  }
  return validateTrainConfig(c);
}

/** Options of {@link validateTrainConfig}. */
export interface ValidateOptions {
  /** read back from a checkpoint training wrote (see UNetConfigOptions.stored); user-written configs are checked strictly */
  stored?: boolean;
}

/**
 * Validate a full config (e.g. parsed from a checkpoint's config.json): every section must be present
 * with known keys and the right types; unknown keys are an error.
 */
export function validateTrainConfig(input: unknown, opts: ValidateOptions = {}): TrainConfig {
  const d = defaultTrainConfig();
  const top = checkConfigKeys(input, d, '');
  const preset = top.preset ?? d.preset;
  checkConfigType(preset, d.preset, 'preset');
  const section = <K extends 'optim' | 'data' | 'run'>(name: K): TrainConfig[K] => {
    const raw = checkConfigKeys(top[name] ?? {}, d[name], name);
    const out = { ...d[name] } as Record<string, unknown>;
    for (const [k, v] of Object.entries(raw)) {
      checkConfigType(v, (d[name] as unknown as Record<string, unknown>)[k], `${name}.${k}`);
      out[k] = v;
    }
    return out as unknown as TrainConfig[K];
  };
  const diffusion = validateDiffusionConfig(top.diffusion ?? {});
  const optim = section('optim');
  if (!LR_DECAYS.includes(optim.decay)) throw new Error(`config: optim.decay '${optim.decay}' is not one of ${LR_DECAYS.join(', ')}`);
  const data = section('data');
  if (!RESIZE_MODES.includes(data.resize)) throw new Error(`config: data.resize '${data.resize}' is not one of ${RESIZE_MODES.join(', ')}`);
  if (!ON_CORRUPT.includes(data.onCorrupt)) throw new Error(`config: data.onCorrupt '${data.onCorrupt}' is not one of ${ON_CORRUPT.join(', ')}`);
  const run = section('run');
  const presetModel = Object.hasOwn(UNET_CONFIGS, preset as string) ? UNET_CONFIGS[preset as string]! : d.model;
  let model = unetConfig((top.model ?? {}) as Partial<UNetConfig>, presetModel, { stored: opts.stored });
  const learned = diffusion.varType === 'learnedRange';
  if (model.outChannels !== model.inChannels * (learned ? 2 : 1)) model = { ...model, outChannels: model.inChannels * (learned ? 2 : 1) };
  checkClasses(data, model, optim);
  for (const def of TRAIN_OPTIONS) {
    const v = getPath({ diffusion, optim, data, run, model }, def.path);
    if (def.kind === 'int' && !Number.isInteger(v)) throw new Error(`config: '${def.path}' must be an integer, got ${describeValue(v)}`);
    const problem = typeof v === 'number' ? numberProblem(def, v) : undefined;
    if (problem) throw new Error(`config: '${def.path}' ${problem}, got ${v}`);
  }
  return { preset: preset as string, model, diffusion, optim, data, run };
}

/**
 * data.classCond, model.numClasses and data.classNames must agree: an unconditional run has no classes; a
 * class-conditional one has numClasses 0 and no names until the data is read ({@link withClasses}), then numClasses
 * names.
 */
function checkClasses(data: DataConfig, model: UNetConfig, optim: OptimConfig): void {
  if (!Array.isArray(data.classNames)) throw new Error(`config: 'data.classNames' must be an array of strings, got ${describeValue(data.classNames)}`);
  if (!data.classCond) {
    if (optim.classLrScale !== 1) throw new Error(`config: optim.classLrScale ${optim.classLrScale} (--class-lr-scale) needs data.classCond true (--class-cond)`);
    if (model.numClasses > 0) throw new Error(`config: model.numClasses ${model.numClasses} needs data.classCond true (--class-cond)`);
    if (data.classNames.length > 0) throw new Error('config: data.classNames needs data.classCond true (--class-cond)');
    return;
  }
  if (model.numClasses === 0 && data.classNames.length === 0) return; // classes not known yet
  try {
    data.classNames = checkClassNames(data.classNames, model.numClasses);
  } catch (e) {
    throw new Error(`config: data.classNames: ${(e as Error).message}`);
  }
}

/**
 * The config of a class-conditional run with the classes of its data: model.numClasses = classNames.length and the
 * names stored. A config that already has classes (a resumed run) must have these ones. Unconditional configs are
 * returned as they are. Throws a message naming both sets of classes when they differ.
 */
export function withClasses(config: TrainConfig, classNames: readonly string[] | undefined): TrainConfig {
  if (!config.data.classCond) return config;
  const src = config.data.source;
  if (!classNames || classNames.length === 0) throw new Error(`--class-cond: the data '${src}' has no class labels`);
  if (classNames.length < 2) throw new Error(`--class-cond: the data '${src}' has only one class ('${classNames[0]}'); conditioning needs at least 2`);
  if (classNames.length > MAX_CLASSES) throw new Error(`--class-cond: the data '${src}' has ${classNames.length} classes, over the limit of ${MAX_CLASSES} (MAX_CLASSES)`);
  const had = config.data.classNames;
  if (had.length > 0 && JSON.stringify(had) !== JSON.stringify(classNames)) {
    const show = (l: readonly string[]) => (l.length > 12 ? `${l.slice(0, 12).join(', ')}, ... (${l.length})` : l.join(', '));
    throw new Error(`--class-cond: the run was trained on the classes [${show(had)}], the data '${src}' now has [${show(classNames)}]`);
  }
  return validateTrainConfig({ ...config, model: { ...config.model, numClasses: classNames.length }, data: { ...config.data, classNames: [...classNames] } });
}
