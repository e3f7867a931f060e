/**
 * The DDPM U-Net (Ho et al. 2020, appendix B; PixelCNN++-style backbone with group norm, sinusoidal
 * timestep embeddings and self-attention at low resolution), as traced engine code.
 *
 * The model knows nothing about diffusion: it maps (x_t, t) to an output with `outChannels` channels
 * (ε, x0 or v; twice the channels when the variance is learned). A class-conditional model (`numClasses` > 0)
 * also takes a label y per image: a learned embedding of y (`label_emb`, numClasses + 1 rows, the last one the
 * "no class" token ∅ of classifier-free guidance, Ho & Salimans 2022) is added to the timestep embedding, as
 * guided-diffusion's `emb = time_embed(t) + label_emb(y)` (Dhariwal & Nichol 2021).
 *
 * Parameter names mirror the PyTorch reference (`python/ddpm_torch/unet.py`) state_dict keys, and
 * Linear weights are stored [out, in] as torch does, so a checkpoint loads into either implementation.
 */
import type { ParamValue } from '../engine/tree.ts';
import {
  add,
  concat,
  conv2d,
  cos,
  div,
  dropout as dropoutOp,
  exp,
  gather,
  groupNorm,
  groupNormSilu,
  matmul,
  mul,
  reshape,
  scalar,
  silu,
  sin,
  slice,
  softmax,
  transpose,
  upsampleNearest2x,
  constant,
  type Tensor,
} from '../engine/tensor.ts';
import type { Rng } from '../rng.ts';
import type { Dim } from '../engine/graph.ts';
import { describeValue } from '../describe.ts';
import { UserError } from '../errors.ts';
import { IMAGE_CHANNELS, MAX_CHANNELS, MAX_CLASSES, MAX_IMAGE_SIZE, MAX_LEVELS, MAX_PARAMS, MAX_RES_BLOCKS } from '../limits.ts';

export interface UNetConfig {
  imageSize: number;
  inChannels: number;
  /** output channels; default inChannels (2× for a learned variance) */
  outChannels: number;
  baseChannels: number;
  channelMults: number[];
  numResBlocks: number;
  /** resolutions (feature-map sizes) that get self-attention */
  attnResolutions: number[];
  groups: number;
  dropout: number;
  /**
   * classes of a class-conditional model (0 = unconditional). The label embedding has numClasses + 1 rows: label
   * numClasses is ∅, "no class" (what label dropout trains and guidance contrasts with).
   */
  numClasses: number;
}

/** The reference config `mnist-28` (1,623,169 parameters). */
export const MNIST_28: UNetConfig = {
  imageSize: 28,
  inChannels: 1,
  outChannels: 1,
  baseChannels: 32,
  channelMults: [1, 2, 2],
  numResBlocks: 2,
  attnResolutions: [7],
  groups: 8,
  dropout: 0,
  numClasses: 0,
};

/**
 * A small 32x32 RGB model for CPU budgets, the default for a folder of one's own images: base 16 (half mnist-28's
 * widths), one residual block per level, attention at 8x8. On synthetic shapes at equal training time (5 minutes,
 * shared 2-core VM, 2026-11-28; docs/shapes-experiments.md) it ran 2.2x the steps of base 32 and scored at least as
 * well; one block instead of two gave 1.3-1.6x the steps per second (`npm run bench:unet -- --config rgb-32`).
 */
export const RGB_32: UNetConfig = { ...MNIST_28, imageSize: 32, inChannels: 3, outChannels: 3, baseChannels: 16, numResBlocks: 1, attnResolutions: [8] };

/**
 * rgb-32's shape at MNIST's size: a 28x28 grey model small enough to train in a browser tab (the page's Train view)
 * or in minutes on a CPU (its recipe: rgb-32's optimiser at batch 16, on the linear schedule; config.ts PRESET_RECIPES).
 */
export const MNIST_SMALL: UNetConfig = { ...RGB_32, imageSize: 28, inChannels: 1, outChannels: 1, attnResolutions: [7] };

/**
 * Ho et al.'s CIFAR-10 model (appendix B): four levels 32..4 with widths 128, 256, 256, 256, two residual blocks
 * per level, self-attention at 16x16 (and in the middle), GroupNorm(32), dropout 0.1. 35,746,307 parameters, the
 * paper's "35.7M"; for a GPU.
 */
export const DDPM_CIFAR10: UNetConfig = {
  imageSize: 32,
  inChannels: 3,
  outChannels: 3,
  baseChannels: 128,
  channelMults: [1, 2, 2, 2],
  numResBlocks: 2,
  attnResolutions: [16],
  groups: 32,
  dropout: 0.1,
  numClasses: 0,
};

export const UNET_CONFIGS: Record<string, UNetConfig> = {
  'mnist-28': MNIST_28,
  'rgb-32': RGB_32,
  'mnist-small': MNIST_SMALL,
  'ddpm-cifar10': DDPM_CIFAR10,
  /** a tiny config for tests and smoke runs */
  tiny: { imageSize: 8, inChannels: 1, outChannels: 1, baseChannels: 8, channelMults: [1, 2], numResBlocks: 1, attnResolutions: [4], groups: 4, dropout: 0, numClasses: 0 },
};

/** The feature-map sizes of a config's levels: imageSize, halved once per extra channelMults entry (e.g. 32, 16, 8). */
export function unetLevels(cfg: Pick<UNetConfig, 'imageSize' | 'channelMults'>): number[] {
  return cfg.channelMults.map((_, i) => cfg.imageSize / 2 ** i);
}

/**
 * `base`'s attention resolutions moved to `imageSize`, each kept at its level index (attention at 7 in a 28x28
 * model, level 2, is at 8 in a 32x32 one). A resolution that is not one of base's levels is kept as it is (and
 * then refused by {@link unetConfig}).
 */
export function attnResolutionsAtSize(base: UNetConfig, imageSize: number): number[] {
  const levels = unetLevels(base);
  return base.attnResolutions.map((r) => {
    const i = levels.indexOf(r);
    const moved = imageSize / 2 ** i;
    return i >= 0 && Number.isInteger(moved) ? moved : r;
  });
}

export interface UNetConfigOptions {
  /**
   * The config was read back from a checkpoint or model file. Models trained before attention resolutions were
   * checked may list one that matches no level; no weights were made for it, so it is dropped (the same model)
   * instead of refused.
   */
  stored?: boolean;
}

/**
 * Validate a (possibly partial, possibly parsed-from-JSON) config against the defaults; unknown keys are an error.
 * Every count is bounded (src/limits.ts) and checked before anything is sized from it, and the parameter count,
 * computed from the shapes without allocating them, must stay within MAX_PARAMS.
 *
 * A partial that changes imageSize but gives no attnResolutions keeps base's attention at the same levels
 * (see {@link presetForData}). Every attention resolution must be one of the model's levels ({@link unetLevels}):
 * one that is not would silently get no attention block, so it is a UserError naming the levels.
 */
export function unetConfig(partial: Partial<UNetConfig> = {}, base: UNetConfig = MNIST_28, opts: UNetConfigOptions = {}): UNetConfig {
  if (partial === null || typeof partial !== 'object' || Array.isArray(partial)) throw new Error('U-Net config must be an object');
  for (const k of Object.keys(partial)) {
    if (!Object.hasOwn(base, k)) throw new Error(`unknown U-Net config key '${k}' (known: ${Object.keys(base).join(', ')})`);
  }
  const c = { ...base, ...partial } as UNetConfig;
  if (partial.inChannels !== undefined && partial.outChannels === undefined) c.outChannels = c.inChannels;
  const int = (v: unknown, name: string, max: number) => {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > max) {
      throw new Error(`U-Net config: ${name} must be an integer in [1, ${max}], got ${describeValue(v)}`);
    }
  };
  int(c.imageSize, 'imageSize', MAX_IMAGE_SIZE);
  if (!IMAGE_CHANNELS.includes(c.inChannels)) {
    throw new Error(`U-Net config: inChannels must be ${IMAGE_CHANNELS.join(' or ')} (grayscale or RGB), got ${describeValue(c.inChannels)}`);
  }
  int(c.outChannels, 'outChannels', 2 * Math.max(...IMAGE_CHANNELS)); // 2x for a learned variance
  int(c.baseChannels, 'baseChannels', MAX_CHANNELS);
  int(c.numResBlocks, 'numResBlocks', MAX_RES_BLOCKS);
  int(c.groups, 'groups', MAX_CHANNELS);
  if (!Array.isArray(c.channelMults) || c.channelMults.length === 0 || c.channelMults.length > MAX_LEVELS) {
    throw new Error(`U-Net config: channelMults must be an array of 1 to ${MAX_LEVELS} levels, got ${describeValue(c.channelMults)}`);
  }
  c.channelMults.forEach((m, i) => int(m, `channelMults[${i}]`, MAX_CHANNELS));
  if (partial.imageSize !== undefined && partial.attnResolutions === undefined && c.imageSize !== base.imageSize) {
    c.attnResolutions = attnResolutionsAtSize(base, c.imageSize);
  }
  if (!Array.isArray(c.attnResolutions) || c.attnResolutions.length > MAX_LEVELS) {
    throw new Error(`U-Net config: attnResolutions must be an array of at most ${MAX_LEVELS} resolutions, got ${describeValue(c.attnResolutions)}`);
  }
  // a whole number that is no level gets the message below, which names the levels
  c.attnResolutions.forEach((r, i) => (Number.isSafeInteger(r) && r >= 1) || int(r, `attnResolutions[${i}]`, c.imageSize));
  if (typeof c.dropout !== 'number' || !(c.dropout >= 0 && c.dropout < 1)) throw new Error(`U-Net config: dropout must be in [0, 1), got ${describeValue(c.dropout)}`);
  if (c.numClasses !== 0) int(c.numClasses, 'numClasses', MAX_CLASSES);
  if (c.imageSize % 2 ** (c.channelMults.length - 1) !== 0) {
    throw new Error(`U-Net config: imageSize ${c.imageSize} is not divisible by 2^${c.channelMults.length - 1} (one halving per extra level)`);
  }
  for (const m of [1, ...c.channelMults]) {
    const width = c.baseChannels * m;
    if (width > MAX_CHANNELS) {
      throw new Error(`U-Net config: baseChannels ${c.baseChannels} x channelMult ${m} = ${width} channels, over the width limit of ${MAX_CHANNELS}`);
    }
    if (width % c.groups !== 0) throw new Error(`U-Net config: channels ${width} not divisible by ${c.groups} groups`);
  }
  const params = unetParamCount(c);
  if (params > MAX_PARAMS) {
    throw new Error(
      `U-Net config: ${params.toExponential(2)} parameters, over the limit of ${MAX_PARAMS.toExponential(1)} (float32 weights over 2 GB do not fit an ONNX model)`,
    );
  }
  // last, after the size limits: attention at a size no level has would silently build no attention block
  const levels = unetLevels(c);
  if (opts.stored) c.attnResolutions = c.attnResolutions.filter((r) => levels.includes(r));
  const stray = c.attnResolutions.find((r) => !levels.includes(r));
  if (stray !== undefined) {
    throw new UserError(
      `U-Net config: attnResolutions (--attn-resolutions) has ${stray}, which is not a level of this ${c.imageSize}x${c.imageSize} model ` +
        `(its levels: ${levels.join(', ')}; pick from those, or 'none')`,
    );
  }
  return c;
}

/** Longest class name accepted (class names are folder names: 255 bytes on common file systems). */
const MAX_CLASS_NAME = 255;

/**
 * Check the class names of a model of `numClasses` classes (label i is named names[i]): exactly numClasses distinct,
 * non-empty strings of at most 255 characters. Returns a copy; throws a message describing the first problem.
 */
export function checkClassNames(names: unknown, numClasses: number): string[] {
  if (!Array.isArray(names)) throw new Error(`class names must be an array of strings, got ${describeValue(names)}`);
  if (names.length !== numClasses) throw new Error(`${names.length} class names for a model of ${numClasses} classes`);
  const seen = new Set<string>();
  names.forEach((v, i) => {
    if (typeof v !== 'string' || v.length === 0 || v.length > MAX_CLASS_NAME) {
      throw new Error(`class name ${i} must be a non-empty string of at most ${MAX_CLASS_NAME} characters, got ${describeValue(v)}`);
    }
    if (seen.has(v)) throw new Error(`class name ${describeValue(v)} appears twice`);
    seen.add(v);
  });
  return [...(names as string[])];
}

/**
 * The config as JSON, as stored in an exported model's metadata: `numClasses` is left out when 0, so an
 * unconditional model's file is the same bytes as before class conditioning existed (and older readers accept it);
 * {@link unetConfig} fills it in again.
 */
export function unetConfigJson(cfg: UNetConfig): string {
  if (cfg.numClasses !== 0) return JSON.stringify(cfg);
  const { numClasses: _, ...rest } = cfg;
  return JSON.stringify(rest);
}

/**
 * A preset (by name, or a config) adapted to images of `size`x`size` with `channels` channels: the same widths and
 * depth, attention kept at the same level index (rgb-32's attention at 8 is at 16 for 64x64 images), the output
 * widened as the preset's is (2C for a learned variance). A size the levels cannot halve is a UserError.
 */
export function presetForData(preset: string | UNetConfig, size: number, channels: number): UNetConfig {
  const base = typeof preset === 'string' ? (Object.hasOwn(UNET_CONFIGS, preset) ? UNET_CONFIGS[preset] : undefined) : preset;
  if (!base) throw new UserError(`unknown model preset '${String(preset)}' (known: ${Object.keys(UNET_CONFIGS).join(', ')})`);
  const outPerIn = base.outChannels / base.inChannels;
  try {
    return unetConfig({ imageSize: size, inChannels: channels, outChannels: channels * outPerIn }, base);
  } catch (e) {
    if (e instanceof UserError) throw e;
    throw new UserError((e as Error).message);
  }
}

/** Parameter count for people: 35.7M, 1.6M, 20k. */
export function formatParamCount(n: number): string {
  return n >= 1e6 ? `${(n / 1e6).toFixed(1)}M` : n >= 1e3 ? `${Math.round(n / 1e3)}k` : String(n);
}

/** The architecture in one line: `3x32x32, base 32, mults 1,2,2, 2 res blocks, attn 8; 1.6M params`. */
export function describeUNet(cfg: UNetConfig): string {
  const attn = cfg.attnResolutions.length > 0 ? cfg.attnResolutions.join(',') : 'none';
  return (
    `${cfg.inChannels}x${cfg.imageSize}x${cfg.imageSize}, base ${cfg.baseChannels}, mults ${cfg.channelMults.join(',')}, ` +
    `${cfg.numResBlocks} res block${cfg.numResBlocks === 1 ? '' : 's'}, attn ${attn}${cfg.dropout > 0 ? `, dropout ${cfg.dropout}` : ''}` +
    `${cfg.numClasses > 0 ? `, ${cfg.numClasses} classes` : ''}; ` +
    `${formatParamCount(unetParamCount(cfg))} params`
  );
}

// ---------------------------------------------------------------------------------------------
// Architecture as a list of modules, shared by the initialiser and the forward pass.

// r: the (square) feature-map size the module reads, for the memory estimate
type ResSpec = { kind: 'res'; cin: number; cout: number; r: number };
type AttnSpec = { kind: 'attn'; c: number; r: number };
type DownSpec = { kind: 'down'; c: number; r: number };
type UpSpec = { kind: 'up'; c: number; r: number };
type Spec = ResSpec | AttnSpec | DownSpec | UpSpec;

interface Layout {
  down: Spec[];
  mid: Spec[];
  up: Spec[];
  outC: number;
}

function layout(cfg: UNetConfig): Layout {
  const ch = cfg.baseChannels;
  const down: Spec[] = [];
  const chans = [ch];
  let c = ch;
  let r = cfg.imageSize;
  cfg.channelMults.forEach((m, i) => {
    for (let k = 0; k < cfg.numResBlocks; k++) {
      down.push({ kind: 'res', cin: c, cout: ch * m, r });
      c = ch * m;
      if (cfg.attnResolutions.includes(r)) down.push({ kind: 'attn', c, r });
      chans.push(c);
    }
    if (i !== cfg.channelMults.length - 1) {
      down.push({ kind: 'down', c, r });
      chans.push(c);
      r /= 2;
    }
  });
  const mid: Spec[] = [{ kind: 'res', cin: c, cout: c, r }, { kind: 'attn', c, r }, { kind: 'res', cin: c, cout: c, r }];
  const up: Spec[] = [];
  for (let i = cfg.channelMults.length - 1; i >= 0; i--) {
    const m = cfg.channelMults[i]!;
    for (let k = 0; k < cfg.numResBlocks + 1; k++) {
      up.push({ kind: 'res', cin: c + chans.pop()!, cout: ch * m, r });
      c = ch * m;
      if (cfg.attnResolutions.includes(r)) up.push({ kind: 'attn', c, r });
    }
    if (i !== 0) {
      up.push({ kind: 'up', c, r });
      r *= 2;
    }
  }
  return { down, mid, up, outC: c };
}

// ---------------------------------------------------------------------------------------------
// Parameters: names and shapes first (no allocation, so a config's size can be checked before building
// anything), then the initialiser fills them with PyTorch's defaults (kaiming_uniform(a=√5) ⇒ U(±1/√fan_in) for
// weights and biases; GroupNorm scale 1, shift 0), so the equal-budget comparison with the PyTorch peer is fair.

type Params = Record<string, ParamValue>;

/** One parameter: torch-style name, shape, and how it is initialised (U(±bound), N(0, std²), or the constant `fill`). */
export interface ParamSpec {
  name: string;
  shape: number[];
  init: { bound: number } | { std: number } | { fill: number };
}

function convSpecs(out: ParamSpec[], name: string, cin: number, cout: number, k: number): void {
  const bound = 1 / Math.sqrt(cin * k * k);
  out.push({ name: `${name}.weight`, shape: [cout, cin, k, k], init: { bound } });
  out.push({ name: `${name}.bias`, shape: [cout], init: { bound } });
}

function linearSpecs(out: ParamSpec[], name: string, cin: number, cout: number): void {
  const bound = 1 / Math.sqrt(cin);
  out.push({ name: `${name}.weight`, shape: [cout, cin], init: { bound } });
  out.push({ name: `${name}.bias`, shape: [cout], init: { bound } });
}

function normSpecs(out: ParamSpec[], name: string, c: number): void {
  out.push({ name: `${name}.weight`, shape: [c], init: { fill: 1 } });
  out.push({ name: `${name}.bias`, shape: [c], init: { fill: 0 } });
}

function moduleSpecs(out: ParamSpec[], name: string, s: Spec, tembDim: number): void {
  switch (s.kind) {
    case 'res':
      normSpecs(out, `${name}.n1`, s.cin);
      convSpecs(out, `${name}.c1`, s.cin, s.cout, 3);
      linearSpecs(out, `${name}.t`, tembDim, s.cout);
      normSpecs(out, `${name}.n2`, s.cout);
      convSpecs(out, `${name}.c2`, s.cout, s.cout, 3);
      if (s.cin !== s.cout) convSpecs(out, `${name}.skip`, s.cin, s.cout, 1);
      return;
    case 'attn':
      normSpecs(out, `${name}.n`, s.c);
      convSpecs(out, `${name}.qkv`, s.c, 3 * s.c, 1);
      convSpecs(out, `${name}.proj`, s.c, s.c, 1);
      return;
    case 'down':
      convSpecs(out, name, s.c, s.c, 3);
      return;
    case 'up':
      convSpecs(out, `${name}.1`, s.c, s.c, 3); // index 1 of torch's Sequential(Upsample, Conv2d)
      return;
  }
}

/**
 * Every parameter's name and shape, in the initialiser's order, without allocating any of them. Call it on a
 * config that passed {@link unetConfig} (its counts are bounded, so the list is short).
 */
/** The parameter names and shapes of a config, without building the weights (a 1 KB config may describe gigabytes). */
export function unetParamShapes(cfg: UNetConfig): Record<string, { shape: readonly number[] }> {
  return Object.fromEntries(unetParamSpecs(cfg).map((s) => [s.name, s]));
}

export function unetParamSpecs(cfg: UNetConfig): ParamSpec[] {
  const out: ParamSpec[] = [];
  const ch = cfg.baseChannels;
  const tembDim = 4 * ch;
  const lay = layout(cfg);
  linearSpecs(out, 'temb.0', ch, tembDim);
  linearSpecs(out, 'temb.2', tembDim, tembDim);
  convSpecs(out, 'cin', cfg.inChannels, ch, 3);
  lay.down.forEach((s, i) => moduleSpecs(out, `down.${i}`, s, tembDim));
  lay.mid.forEach((s, i) => moduleSpecs(out, `mid.${i}`, s, tembDim));
  lay.up.forEach((s, i) => moduleSpecs(out, `up.${i}`, s, tembDim));
  normSpecs(out, 'out.0', lay.outC);
  convSpecs(out, 'out.2', lay.outC, cfg.outChannels, 3);
  // last, so that every other weight of a conditional model starts as the unconditional model's with the same seed;
  // torch's nn.Embedding initialises N(0, 1)
  if (cfg.numClasses > 0) out.push({ name: LABEL_EMB, shape: [cfg.numClasses + 1, tembDim], init: { std: 1 } });
  return out;
}

/** The class embedding's parameter name (guided-diffusion's `label_emb`, an nn.Embedding). */
export const LABEL_EMB = 'label_emb.weight';

/** Parameter count of a config, from the shapes alone. */
export function unetParamCount(cfg: UNetConfig): number {
  return unetParamSpecs(cfg).reduce((n, p) => n + p.shape.reduce((a, b) => a * b, 1), 0);
}

/** Fresh parameters, keyed by torch-style names (e.g. `down.3.c1.weight`), in a fixed order. */
export function initUNet(cfg: UNetConfig, rng: Rng): Params {
  const p: Params = {};
  for (const { name, shape, init } of unetParamSpecs(cfg)) {
    const n = shape.reduce((a, b) => a * b, 1);
    let data: Float32Array;
    if ('fill' in init) {
      data = new Float32Array(n).fill(init.fill);
    } else if ('std' in init) {
      data = rng.normalFloat32(n);
      for (let i = 0; i < n; i++) data[i] = data[i]! * init.std;
    } else {
      data = rng.uniformFloat32(n);
      for (let i = 0; i < n; i++) data[i] = (data[i]! * 2 - 1) * init.bound;
    }
    p[name] = { shape, data };
  }
  return p;
}

export function countParams(params: Record<string, ParamValue>): number {
  return Object.values(params).reduce((n, p) => n + p.data.length, 0);
}

// ---------------------------------------------------------------------------------------------
// Memory estimate: enough to refuse a config that cannot fit before building it, not a prediction of RSS.

/** float32 copies of the weights while training: params, gradients, Adam m and v, EMA, the packed update. */
const TRAIN_STATE_COPIES = 6;
/** float32 copies of the weights while sampling: the ONNX model bytes and the session's initialisers. */
const SAMPLE_STATE_COPIES = 2;

export interface UNetMemory {
  params: number;
  /** bytes to train at the batch size: weights and optimiser state, plus activations kept for the backward pass */
  trainBytes: number;
  /** bytes to sample at the batch size: the weights, the skip connections and the largest module's tensors */
  sampleBytes: number;
}

/**
 * A lower-side estimate of the memory a config needs at `batch` images per call, counting the float32 feature
 * maps of every module (per image: a residual block writes ~2·cin + 8·cout channels, attention ~9·c channels plus
 * three (H·W)² score tensors) and the weights. Real use is higher (runtime arenas, the data set), so a config this
 * function says does not fit surely does not.
 */
export function unetMemoryEstimate(cfg: UNetConfig, batch: number): UNetMemory {
  const params = unetParamCount(cfg);
  const lay = layout(cfg);
  const R = cfg.imageSize;
  let total = cfg.baseChannels * R * R; // cin conv, per image (elements)
  let skips = total;
  let largest = total;
  const tensors = (elems: number, skip = 0) => {
    total += elems;
    skips += skip;
    largest = Math.max(largest, elems);
  };
  for (const [part, specs] of [['down', lay.down], ['mid', lay.mid], ['up', lay.up]] as const) {
    for (const s of specs) {
      const px = s.r * s.r;
      if (s.kind === 'res') tensors((2 * s.cin + 8 * s.cout) * px, part === 'down' ? s.cout * px : 0);
      else if (s.kind === 'attn') tensors(9 * s.c * px + 3 * px * px);
      else if (s.kind === 'down') tensors(s.c * (px / 4), s.c * (px / 4));
      else tensors(2 * s.c * px * 4);
    }
  }
  tensors((3 * lay.outC + cfg.outChannels) * R * R);
  return {
    params,
    trainBytes: 4 * (TRAIN_STATE_COPIES * params + 2 * batch * total),
    sampleBytes: 4 * (SAMPLE_STATE_COPIES * params + batch * (skips + 3 * largest)),
  };
}

/**
 * Throw when the estimate for `mode` at `batch` exceeds `memoryBytes` (the caller passes the machine's memory,
 * e.g. os.totalmem(); this module imports nothing from node:*). The message names the limit.
 */
export function checkUNetMemory(cfg: UNetConfig, mode: 'train' | 'sample', batch: number, memoryBytes: number): UNetMemory {
  const m = unetMemoryEstimate(cfg, batch);
  const need = mode === 'train' ? m.trainBytes : m.sampleBytes;
  if (need > memoryBytes) {
    const gb = (b: number) => (b >= 10e9 ? (b / 1e9).toFixed(0) : (b / 1e9).toPrecision(2));
    throw new Error(
      `model needs ~${gb(need)} GB to ${mode} at batch ${batch} (params ${m.params.toPrecision(2)}); this machine has ${gb(memoryBytes)} GB`,
    );
  }
  return m;
}

// ---------------------------------------------------------------------------------------------
// Forward pass

/** Source of the uniform [0,1) tensors that drive dropout (graph inputs fed from the RNG). */
export type DropoutSource = (name: string, shape: readonly Dim[]) => Tensor;

/**
 * Sinusoidal timestep embedding (Vaswani et al. 2017, as in DDPM): [sin(t·f_i), cos(t·f_i)] with
 * f_i = exp(−ln(10000)·i/(half−1)), i = 0..half−1.
 */
export function timestepEmbedding(t: Tensor, dim: number): Tensor {
  const half = dim / 2;
  if (!Number.isInteger(half) || half < 2) throw new Error(`timestepEmbedding: dim must be even and >= 4, got ${dim}`);
  const freqs = constant(Array.from({ length: half }, (_, i) => Math.exp((-Math.log(10000) * i) / (half - 1))), [1, half]);
  const args = mul(reshape(t, [t.shape[0]!, 1]), freqs); // (N, half)
  return concat([sin(args), cos(args)], 1); // (N, dim)
}

/**
 * ε_θ(x_t, t) (or whatever the model was trained to predict); ε_θ(x_t, t, y) for a class-conditional model.
 * @param params tensors keyed like `initUNet`'s output
 * @param x (N, C, H, W) noisy images
 * @param t (N) timesteps as float32 (the model's own index, 0..T−1)
 * @param opts.labels (N) int64 class labels in [0, numClasses] (numClasses = ∅, no class); required exactly when
 *   cfg.numClasses > 0
 * @param opts.dropoutSource needed when cfg.dropout > 0 and training
 */
export function unet(
  cfg: UNetConfig,
  params: Record<string, Tensor>,
  x: Tensor,
  t: Tensor,
  opts: { labels?: Tensor; dropoutSource?: DropoutSource } = {},
): Tensor {
  const P = (name: string): Tensor => {
    const v = params[name];
    if (!v) throw new Error(`unet: missing parameter '${name}'`);
    return v;
  };
  if (x.rank !== 4 || x.shape[1] !== cfg.inChannels || x.shape[2] !== cfg.imageSize || x.shape[3] !== cfg.imageSize) {
    throw new Error(`unet: x must be [N, ${cfg.inChannels}, ${cfg.imageSize}, ${cfg.imageSize}], got [${x.shape}]`);
  }
  if (t.rank !== 1 || t.shape[0] !== x.shape[0]) throw new Error(`unet: t must be [N] matching x, got [${t.shape}] for x [${x.shape}]`);
  const y = opts.labels;
  if ((cfg.numClasses > 0) !== (y !== undefined)) {
    throw new Error(cfg.numClasses > 0 ? `unet: a class-conditional model (numClasses ${cfg.numClasses}) needs labels` : 'unet: labels given to an unconditional model (numClasses 0)');
  }
  if (y && (y.rank !== 1 || y.shape[0] !== x.shape[0] || y.dtype !== 'int64')) {
    throw new Error(`unet: labels must be int64 [N] matching x, got ${y.dtype} [${y.shape}] for x [${x.shape}]`);
  }
  const lay = layout(cfg);
  const linear = (h: Tensor, name: string) => add(matmul(h, transpose(P(`${name}.weight`), [1, 0])), P(`${name}.bias`));
  const conv = (h: Tensor, name: string, opts: { stride?: number; padding?: number } = {}) =>
    conv2d(h, P(`${name}.weight`), P(`${name}.bias`), opts);
  const norm = (h: Tensor, name: string) => groupNorm(h, cfg.groups, P(`${name}.weight`), P(`${name}.bias`));
  // SiLU(GroupNorm(h)) as one composite: the same forward graph, a gradient that keeps less (tensor.ts)
  const normSilu = (h: Tensor, name: string) => groupNormSilu(h, cfg.groups, P(`${name}.weight`), P(`${name}.bias`));
  let dropCount = 0;
  const drop = (h: Tensor): Tensor => {
    if (cfg.dropout === 0 || !opts.dropoutSource) return h;
    return dropoutOp(h, cfg.dropout, opts.dropoutSource(`dropout${dropCount++}`, h.shape));
  };

  // 1. timestep embedding: sinusoidal(ch) -> Linear -> SiLU -> Linear, plus the class embedding when conditional
  let temb = linear(silu(linear(timestepEmbedding(t, cfg.baseChannels), 'temb.0')), 'temb.2'); // (N, 4ch)
  if (y) temb = add(temb, gather(P(LABEL_EMB), y)); // (N, 4ch): row y of label_emb
  const tembAct = silu(temb);

  const resBlock = (h: Tensor, name: string, s: ResSpec): Tensor => {
    let y = conv(normSilu(h, `${name}.n1`), `${name}.c1`, { padding: 1 });
    const tproj = linear(tembAct, `${name}.t`); // (N, cout)
    y = add(y, reshape(tproj, [tproj.shape[0]!, s.cout, 1, 1]));
    y = conv(drop(normSilu(y, `${name}.n2`)), `${name}.c2`, { padding: 1 });
    const skip = s.cin !== s.cout ? conv(h, `${name}.skip`) : h;
    return add(skip, y);
  };

  const attnBlock = (h: Tensor, name: string, c: number): Tensor => {
    const [N, , H, W] = h.shape as [Dim, number, number, number];
    const hw = H * W;
    const qkv = reshape(conv(norm(h, `${name}.n`), `${name}.qkv`), [N, 3, c, hw]);
    const q = reshape(slice(qkv, 1, 0, 1), [N, c, hw]);
    const k = reshape(slice(qkv, 1, 1, 2), [N, c, hw]);
    const v = reshape(slice(qkv, 1, 2, 3), [N, c, hw]);
    // w[n,i,j] = Σ_c q[n,c,i] k[n,c,j] / √C, softmax over j (positions)
    const w = softmax(div(matmul(transpose(q, [0, 2, 1]), k), scalar(Math.sqrt(c))), -1); // (N, hw, hw)
    const o = matmul(v, transpose(w, [0, 2, 1])); // (N, c, hw): o[n,c,i] = Σ_j w[n,i,j] v[n,c,j]
    return add(h, conv(reshape(o, [N, c, H, W]), `${name}.proj`));
  };

  // 2. down path, pushing skips
  let h = conv(x, 'cin', { padding: 1 });
  const hs: Tensor[] = [h];
  lay.down.forEach((s, i) => {
    const name = `down.${i}`;
    if (s.kind === 'res') {
      h = resBlock(h, name, s);
      hs.push(h);
    } else if (s.kind === 'attn') {
      h = attnBlock(h, name, s.c);
      hs[hs.length - 1] = h; // the skip is taken after the attention
    } else {
      h = conv(h, name, { stride: 2, padding: 1 });
      hs.push(h);
    }
  });
  // 3. middle
  lay.mid.forEach((s, i) => {
    h = s.kind === 'res' ? resBlock(h, `mid.${i}`, s) : attnBlock(h, `mid.${i}`, (s as AttnSpec).c);
  });
  // 4. up path, consuming skips
  lay.up.forEach((s, i) => {
    const name = `up.${i}`;
    if (s.kind === 'res') h = resBlock(concat([h, hs.pop()!], 1), name, s);
    else if (s.kind === 'attn') h = attnBlock(h, name, s.c);
    else h = conv(upsampleNearest2x(h), `${name}.1`, { padding: 1 });
  });
  // 5. output
  return conv(normSilu(h, 'out.0'), 'out.2', { padding: 1 });
}
