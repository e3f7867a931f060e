/**
 * A seeded image generator with ground truth (the shapes of shapes.ts, the folders of suite.ts, MNIST's digits), the
 * sets drawn from it, and the images a judge of its samples learns to reject.
 *
 * A judge is a LeNet with one class per kind of image and a last class, 'none', trained on images that are not one
 * clean image of the generator (renderReject): without it, a classifier calls pure noise one of its classes with
 * 100% confidence. Deterministic: image i depends only on (seed, i). No node:* imports.
 */
import { describeValue } from '../describe.ts';
import { hwcToChw } from '../io/grid.ts';
import { Rng } from '../rng.ts';
import { clampByte, randomColour, smoothField } from './raster.ts';

/** One image of a generator: its pixels, its class, and what defines it (labels.json holds the spec). */
export interface GeneratedImage {
  /** (H, W, C) uint8 */
  hwc: Uint8Array;
  /** index into the generator's classes */
  label: number;
  /** the parameters of the image; `kind` is its class name */
  spec: { kind: string };
}

export interface ImageGenerator {
  readonly name: string;
  /** one line: what the images show */
  readonly description: string;
  readonly channels: 1 | 3;
  /** side of the square images */
  readonly size: number;
  readonly classes: readonly string[];
  /** image `index` of the set drawn with `seed`; depends on (seed, index) only */
  draw(seed: number, index: number): GeneratedImage;
  /** how many images a seed holds, for a finite set (MNIST's splits); unbounded when absent */
  count?(seed: number): number;
  /** reject image `index` of `seed`; renderReject's when absent */
  reject?(seed: number, index: number): Uint8Array;
}

/** Images `start .. start+n−1` of the set drawn with `seed`, as uint8 (n, C, S, S), with their class indices. */
export function renderSet(gen: ImageGenerator, seed: number, start: number, n: number): { images: Uint8Array; labels: Uint8Array } {
  const { channels: C, size: S } = gen;
  const per = C * S * S;
  const images = new Uint8Array(n * per);
  const labels = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    const im = gen.draw(seed, start + i);
    if (im.hwc.length !== per) throw new Error(`${gen.name}: image ${start + i} has ${im.hwc.length} bytes, expected ${S}x${S}x${C}`);
    hwcToChw(im.hwc, C, S, S, images, i * per);
    labels[i] = im.label;
  }
  return { images, labels };
}

/** Reject images `start .. start+n−1` of `seed`, as uint8 (n, C, S, S). */
export function renderRejectSet(gen: ImageGenerator, seed: number, start: number, n: number): Uint8Array {
  const { channels: C, size: S } = gen;
  const per = C * S * S;
  const images = new Uint8Array(n * per);
  for (let i = 0; i < n; i++) hwcToChw(gen.reject ? gen.reject(seed, start + i) : renderReject(gen, seed, start + i).hwc, C, S, S, images, i * per);
  return images;
}

/**
 * What a judge's reject class ('none') is trained on: images that are not one clean image of the generator.
 * Reject i is of kind i mod 5:
 *   uniform noise      every channel of every pixel uniform in 0..255
 *   Gaussian noise     a random mean colour plus noise of σ ∈ [0.1, 0.6] (in [−1, 1] units), clipped
 *   smooth field       a g×g grid of random colours (g ∈ 1..6) upsampled bilinearly: flat colours, gradients, blobs
 *   noisy image        an image of the generator under Gaussian noise of σ ∈ [0.35, 1]
 *   two images blended the average of two images of different classes (a ghost of both)
 */
export const REJECT_KINDS = ['uniform noise', 'Gaussian noise', 'smooth field', 'noisy image', 'two images blended'] as const;

/** Image indices the rejects borrow their images from: far past any folder, for an unbounded generator. */
export const REJECT_BASE = 2 ** 30;

/** What renderReject borrows from a generator: its image `k` ∈ {0, 1} for reject `index`, and their blend. */
export interface RejectSource {
  real(index: number, k: 0 | 1): Uint8Array;
  blend(index: number): Uint8Array;
}

/**
 * A generator's two images for reject `index`: images REJECT_BASE + 2·index + k, or for a finite set images
 * (2·index + k) mod count; consecutive indices, so of different classes when the classes cycle; blended by averaging.
 */
export function rejectSource(gen: ImageGenerator, seed: number): RejectSource {
  const count = gen.count?.(seed);
  const real = (index: number, k: 0 | 1) => gen.draw(seed, count === undefined ? REJECT_BASE + 2 * index + k : (2 * index + k) % count).hwc;
  return {
    real,
    blend: (index) => {
      const [a, b] = [real(index, 0), real(index, 1)];
      return a.map((v, p) => clampByte((v + b[p]!) / 2));
    },
  };
}

/** Reject image `index` of `seed` for `gen` (H, W, C), borrowing its images from `source`; see REJECT_KINDS. */
export function renderReject(
  gen: ImageGenerator,
  seed: number,
  index: number,
  source: RejectSource = rejectSource(gen, seed),
): { hwc: Uint8Array; kind: (typeof REJECT_KINDS)[number] } {
  if (!Number.isSafeInteger(index) || index < 0) throw new Error(`${gen.name}: reject index must be a non-negative integer, got ${describeValue(index)}`);
  const { channels: C, size: S } = gen;
  const kind = REJECT_KINDS[index % REJECT_KINDS.length]!;
  const rng = new Rng(seed).fold(REJECT_BASE + index);
  let hwc: Uint8Array = new Uint8Array(S * S * C);
  if (kind === 'uniform noise') {
    for (let p = 0; p < hwc.length; p++) hwc[p] = rng.integer(256);
  } else if (kind === 'Gaussian noise' || kind === 'noisy image') {
    const sigma = 127.5 * (kind === 'noisy image' ? 0.35 + 0.65 * rng.uniform() : 0.1 + 0.5 * rng.uniform());
    const base = kind === 'noisy image' ? source.real(index, 0) : undefined;
    const mean = randomColour(rng, C);
    for (let p = 0; p < hwc.length; p++) hwc[p] = clampByte((base ? base[p]! : mean[p % C]!) + sigma * rng.normal());
  } else if (kind === 'smooth field') {
    const g = 1 + rng.integer(6);
    hwc = smoothField(Array.from({ length: g * g * C }, () => rng.integer(256)), g, S, C);
  } else {
    hwc = source.blend(index);
  }
  return { hwc, kind };
}
