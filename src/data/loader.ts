// Mini-batches for training: a dataset of uint8 images served as float32 NCHW in [-1, 1] (Ho et al. 2020, §4:
// "data scaled linearly to [-1, 1]"), shuffled once per epoch, with optional random horizontal flips (used for
// CIFAR10 / CelebA-HQ / LSUN in the paper, not for MNIST digits).
//
// Reproducible and resumable: epoch e's order and flips come only from `rng.fold(e)`, a child stream that depends on
// the key of `rng` and on e, never on how much was drawn before. The loader's whole state is therefore
// (epoch, position), and a run restarted from `loader.state()` sees exactly the batches it would have seen.

import { describeValue } from '../describe.ts';

/** A random stream, as much of it as the loader needs: a uniform integer in [0, n). */
export interface IntegerRng {
  integer(n: number): number;
}

/**
 * The loader's RNG: a keyed generator with `fold(i)` giving independent child streams (src/rng.ts's Philox `Rng`
 * fits: `new Rng(seed)`). Stream for epoch e = `fold(e)`.
 */
export interface FoldableRng {
  fold(i: number): IntegerRng;
}

/** Images of one shape, read as float32 in [-1, 1]. */
export interface Dataset {
  readonly n: number;
  readonly channels: number;
  readonly height: number;
  readonly width: number;
  /** Class labels (MNIST digits), one per image, when the source has them. */
  readonly labels?: Uint8Array;
  /** The name of each label value (label i is classNames[i]), when the source has labels. */
  readonly classNames?: readonly string[];
  /**
   * Write images `indices` into `out` (NCHW, at least indices.length*C*H*W floats) scaled to [-1, 1];
   * images with flips[i] != 0 are mirrored left-right.
   */
  getBatch(indices: ArrayLike<number>, out: Float32Array, flips?: ArrayLike<number>): void;
}

// x / 127.5 - 1 for every byte: 0 -> -1, 255 -> 1 exactly.
const U8_TO_UNIT = new Float32Array(256).map((_, i) => i / 127.5 - 1);

/**
 * Gather images from a uint8 NCHW array into float32 NCHW in [-1, 1] (the shared fast path of every dataset).
 * @param images (N, C, H, W) uint8
 */
export function gatherUint8Batch(
  images: Uint8Array,
  shape: { n: number; channels: number; height: number; width: number },
  indices: ArrayLike<number>,
  out: Float32Array,
  flips?: ArrayLike<number>,
): void {
  const { n, channels: C, height: H, width: W } = shape;
  const chw = C * H * W;
  const b = indices.length;
  if (out.length < b * chw) throw new Error(`getBatch: out has ${out.length} floats, need ${b}*${C}*${H}*${W} = ${b * chw}`);
  if (flips !== undefined && flips.length < b) throw new Error(`getBatch: ${flips.length} flips for ${b} images`);
  const lut = U8_TO_UNIT;
  for (let i = 0; i < b; i++) {
    const idx = indices[i];
    if (!Number.isInteger(idx) || idx < 0 || idx >= n) throw new Error(`getBatch: index ${idx} out of range [0, ${n})`);
    const src = idx * chw;
    const dst = i * chw;
    if (flips !== undefined && flips[i]) {
      for (let row = 0; row < C * H; row++) {
        const s = src + row * W;
        const d = dst + row * W + W - 1;
        for (let x = 0; x < W; x++) out[d - x] = lut[images[s + x]];
      }
    } else {
      for (let k = 0; k < chw; k++) out[dst + k] = lut[images[src + k]];
    }
  }
}

/** A Dataset over uint8 images held in memory, (N, C, H, W). */
export function uint8Dataset(
  images: Uint8Array,
  shape: { n: number; channels: number; height: number; width: number },
  labels?: Uint8Array,
): Dataset {
  const { n, channels, height, width } = shape;
  if (images.length !== n * channels * height * width) {
    throw new Error(`uint8Dataset: ${images.length} bytes for shape (${n}, ${channels}, ${height}, ${width})`);
  }
  if (labels !== undefined && labels.length !== n) throw new Error(`uint8Dataset: ${labels.length} labels for ${n} images`);
  return {
    n, channels, height, width, labels,
    getBatch: (indices, out, flips) => gatherUint8Batch(images, shape, indices, out, flips),
  };
}

export interface LoaderOptions {
  batchSize: number;
  /** Shuffle every epoch (default true); needs `rng`. */
  shuffle?: boolean;
  /** Random horizontal flip with probability 1/2 (default false); needs `rng`. */
  flip?: boolean;
  /** Drop the last incomplete batch of each epoch so every batch has batchSize images (default true). */
  dropLast?: boolean;
  /** Source of the per-epoch streams: src/rng.ts `Rng`, e.g. a child `new Rng(seed).fold(k)` kept for data order. */
  rng?: FoldableRng;
}

/** Everything needed to resume a loader exactly (JSON-serialisable). */
export interface LoaderState {
  /** Epoch of the next batch. */
  epoch: number;
  /** Position of the next batch in the epoch's order. */
  position: number;
  /** Dataset size when saved; resuming on a different dataset is an error. */
  n: number;
}

/**
 * Check that `s` (e.g. parsed from a checkpoint's JSON) is a LoaderState: exactly its keys, non-negative safe
 * integers, n >= 1, position in [0, n]. Whether n fits the dataset is checked on restore. Returns a clean copy.
 */
export function checkLoaderState(s: unknown): LoaderState {
  if (typeof s !== 'object' || s === null || Array.isArray(s)) {
    throw new Error(`expected an object {epoch, position, n}, got ${describeValue(s)}`);
  }
  const allowed = ['epoch', 'position', 'n'];
  const o = s as Record<string, unknown>;
  for (const k of Object.keys(o)) if (!allowed.includes(k)) throw new Error(`unknown key '${k}'`);
  for (const k of allowed) {
    const v = o[k];
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw new Error(`bad ${k} ${describeValue(v)} (expected a non-negative integer)`);
  }
  const { epoch, position, n } = o as unknown as LoaderState;
  if (n < 1) throw new Error(`bad n ${n} (a dataset has at least one image)`);
  if (position > n) throw new Error(`position ${position} out of range [0, ${n}]`);
  return { epoch, position, n };
}

export interface Batch {
  /** (B, C, H, W) float32 in [-1, 1]. */
  x: Float32Array;
  /** Dataset index of each image. */
  indices: Int32Array;
  /** Labels of the images, when the dataset has labels. */
  labels?: Uint8Array;
  /** 1 where the image was mirrored. */
  flips: Uint8Array;
  /** Epoch this batch belongs to. */
  epoch: number;
  size: number;
}

/**
 * The order and flips of one epoch, a pure function of (n, epoch stream): a Fisher-Yates shuffle drawing n-1
 * integers, then one integer(2) per position for the flips (drawn only when flipping, identity order when not
 * shuffling).
 */
export function epochPlan(
  n: number,
  stream: IntegerRng | undefined,
  opts: { shuffle: boolean; flip: boolean },
): { order: Int32Array; flips: Uint8Array } {
  const order = new Int32Array(n);
  for (let i = 0; i < n; i++) order[i] = i;
  const flips = new Uint8Array(n);
  if (!opts.shuffle && !opts.flip) return { order, flips };
  if (stream === undefined) throw new Error('epochPlan: shuffle/flip need an rng');
  if (opts.shuffle) {
    for (let i = n - 1; i > 0; i--) {
      const j = stream.integer(i + 1);
      const t = order[i];
      order[i] = order[j];
      order[j] = t;
    }
  }
  if (opts.flip) for (let i = 0; i < n; i++) flips[i] = stream.integer(2);
  return { order, flips };
}

/** Endless mini-batches over a dataset, epoch after epoch; see the module header for reproducibility. */
export class BatchLoader {
  readonly batchSize: number;
  readonly shuffle: boolean;
  readonly flip: boolean;
  readonly dropLast: boolean;
  private readonly rng?: FoldableRng;
  private epoch = 0;
  private position = 0;
  private plan: { epoch: number; order: Int32Array; flips: Uint8Array } | undefined;

  constructor(readonly dataset: Dataset, opts: LoaderOptions, resume?: LoaderState) {
    const { batchSize } = opts;
    if (!Number.isInteger(batchSize) || batchSize < 1) throw new Error(`batchSize must be a positive integer, got ${batchSize}`);
    this.batchSize = batchSize;
    this.shuffle = opts.shuffle ?? true;
    this.flip = opts.flip ?? false;
    this.dropLast = opts.dropLast ?? true;
    this.rng = opts.rng;
    if ((this.shuffle || this.flip) && this.rng === undefined) throw new Error('BatchLoader: shuffle/flip need opts.rng');
    if (dataset.n < 1) throw new Error('BatchLoader: dataset is empty');
    if (this.dropLast && dataset.n < batchSize) {
      throw new Error(`BatchLoader: dataset has ${dataset.n} images, fewer than batchSize ${batchSize} (set dropLast: false)`);
    }
    if (resume !== undefined) this.restore(resume);
  }

  /** Batches per epoch. */
  get batchesPerEpoch(): number {
    const { n } = this.dataset;
    return this.dropLast ? Math.floor(n / this.batchSize) : Math.ceil(n / this.batchSize);
  }

  /** Where the next batch comes from; save it with a checkpoint and pass it back to the constructor to resume. */
  state(): LoaderState {
    return { epoch: this.epoch, position: this.position, n: this.dataset.n };
  }

  private restore(s: LoaderState): void {
    try {
      checkLoaderState(s);
    } catch (e) {
      throw new Error(`LoaderState: ${(e as Error).message}`);
    }
    if (s.n !== this.dataset.n) throw new Error(`LoaderState: saved for ${s.n} images, dataset has ${this.dataset.n}`);
    this.epoch = s.epoch;
    this.position = s.position;
  }

  private planFor(epoch: number): { order: Int32Array; flips: Uint8Array } {
    if (this.plan?.epoch !== epoch) {
      const stream = this.shuffle || this.flip ? this.rng!.fold(epoch) : undefined;
      this.plan = { epoch, ...epochPlan(this.dataset.n, stream, { shuffle: this.shuffle, flip: this.flip }) };
    }
    return this.plan;
  }

  /**
   * The next batch. `out`, when given, receives the images (reuse one buffer per training step to avoid
   * allocation); otherwise a new array is allocated.
   */
  next(out?: Float32Array): Batch {
    const { n, channels, height, width, labels } = this.dataset;
    // 1. Move to the next epoch when this one has no (full) batch left.
    const remaining = n - this.position;
    if (remaining <= 0 || (this.dropLast && remaining < this.batchSize)) {
      this.epoch++;
      this.position = 0;
    }
    // 2. Slice the epoch's plan.
    const plan = this.planFor(this.epoch);
    const size = Math.min(this.batchSize, n - this.position);
    const indices = plan.order.slice(this.position, this.position + size);
    const flips = plan.flips.slice(this.position, this.position + size);
    // 3. Gather.
    const x = out ?? new Float32Array(size * channels * height * width);
    this.dataset.getBatch(indices, x, this.flip ? flips : undefined);
    const batch: Batch = { x, indices, flips, epoch: this.epoch, size };
    if (labels !== undefined) batch.labels = Uint8Array.from(indices, (i) => labels[i]);
    this.position += size;
    return batch;
  }
}
