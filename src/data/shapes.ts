/**
 * Synthetic labelled shapes: one filled shape (circle, square, triangle, cross or star) of a random colour on a
 * random, contrasting background, at a random position and size, anti-aliased by 4x4 supersampling. The folder
 * that `npm run make:shapes` writes from these is a dataset nobody has tuned on, with ground truth for every image,
 * and the shape classifier (models/shapes-classifier) trained on other draws of it scores samples of models trained
 * on it, as LeNet does for MNIST.
 *
 * Deterministic: image i depends only on (seed, i, size): its parameters come from `new Rng(seed).fold(i)`, and its
 * kind is i mod 5, so the classes are balanced and a prefix of a set is a smaller set. No node:* imports.
 */
import { Rng } from '../rng.ts';
import { describeValue } from '../describe.ts';
import { hwcToChw } from '../io/grid.ts';
import { renderReject, type ImageGenerator, type RejectSource } from './generator.ts';
import { clampByte, contrastingColour, coverage, inPolygon, paint, randomColour, solid, type Inside, type RGB } from './raster.ts';

export const SHAPE_KINDS = ['circle', 'square', 'triangle', 'cross', 'star'] as const;
export type ShapeKind = (typeof SHAPE_KINDS)[number];

/** Smallest and largest image side the generator draws (the shapes need a few pixels to be told apart). */
export const SHAPES_MIN_SIZE = 16;
export const SHAPES_MAX_SIZE = 256;

/** Everything that defines one image (labels.json holds one per file). */
export interface ShapeSpec {
  kind: ShapeKind;
  /** RGB of the shape */
  fill: [number, number, number];
  /** RGB of the background */
  background: [number, number, number];
  /** centre of the shape's bounding box, in pixels from the top-left corner of the image */
  cx: number;
  cy: number;
  /** side of the shape's bounding box in pixels (the circle's diameter) */
  size: number;
}

/** Bounding-box side as a fraction of the image side: [35%, 70%]. */
const SIZE_RANGE = [0.35, 0.7] as const;
/** Least |luma(fill) − luma(background)| (Rec. 601, 0..255), so the shape also stands out in grey. */
export const MIN_LUMA_CONTRAST = 80;
/**
 * Least Euclidean RGB distance (0..255 per channel) between fill and background under `colours: 'visible'`: any
 * colour pair a person sees apart, whatever its luma contrast (a yellow cross on peach, red on grey of equal luma).
 */
export const MIN_VISIBLE_RGB_DISTANCE = 48;

/**
 * How a shape's fill is drawn against its background: 'data' (what `make:shapes` writes) keeps the luma contrast
 * of MIN_LUMA_CONTRAST; 'visible' keeps only MIN_VISIBLE_RGB_DISTANCE, so the shape classifier learns shapes by
 * their outline, not by the data set's luma rule.
 */
export type ShapeColours = 'data' | 'visible';

// The 5-pointed star: outer radius 1, inner radius 0.4, a point straight up (y grows downwards, as in images).
const STAR: [number, number][] = Array.from({ length: 10 }, (_, k) => {
  const r = k % 2 === 0 ? 1 : 0.4;
  const a = -Math.PI / 2 + (k * Math.PI) / 5;
  return [r * Math.cos(a), r * Math.sin(a)];
});

/** Whether (x, y), in the shape's box coordinates [−1, 1]² (y down), is inside the shape. */
export const SHAPE_INSIDE: Record<ShapeKind, Inside> = {
  circle: (x, y) => x * x + y * y <= 1,
  square: (x, y) => Math.abs(x) <= 1 && Math.abs(y) <= 1,
  triangle: (x, y) => y >= -1 && y <= 1 && Math.abs(x) <= (y + 1) / 2, // apex up, base at the bottom
  cross: (x, y) => (Math.abs(x) <= 1 / 3 && Math.abs(y) <= 1) || (Math.abs(y) <= 1 / 3 && Math.abs(x) <= 1),
  star: (x, y) => inPolygon(x, y, STAR),
};

function checkSize(size: number): void {
  if (!Number.isInteger(size) || size < SHAPES_MIN_SIZE || size > SHAPES_MAX_SIZE) {
    throw new Error(`shapes: image size must be an integer in [${SHAPES_MIN_SIZE}, ${SHAPES_MAX_SIZE}], got ${describeValue(size)}`);
  }
}

/** The parameters of image `index` of the set drawn with `seed`, for images of side `imageSize`. */
export function shapeSpec(seed: number, index: number, imageSize: number, colours: ShapeColours = 'data'): ShapeSpec {
  checkSize(imageSize);
  const rng = new Rng(seed).fold(index);
  const kind = SHAPE_KINDS[index % SHAPE_KINDS.length]!;
  const background = randomColour(rng) as RGB;
  let fill = contrastingColour(rng, [background], MIN_LUMA_CONTRAST) as RGB; // P(accept) > 1/3 for any background
  if (colours === 'visible') {
    // from a stream of its own, so that kind, background, position and size stay those of the 'data' image
    const r = new Rng(seed).fold(index).fold(1);
    const apart = (f: number[]) => Math.hypot(f[0]! - background[0]!, f[1]! - background[1]!, f[2]! - background[2]!) >= MIN_VISIBLE_RGB_DISTANCE;
    do fill = [r.integer(256), r.integer(256), r.integer(256)];
    while (!apart(fill));
  }
  const round2 = (v: number) => Math.round(v * 100) / 100;
  const size = round2(imageSize * (SIZE_RANGE[0] + (SIZE_RANGE[1] - SIZE_RANGE[0]) * rng.uniform()));
  // the whole box inside the image, with a 1-pixel margin
  const lo = size / 2 + 1;
  const hi = imageSize - size / 2 - 1;
  const cx = round2(lo + (hi - lo) * rng.uniform());
  const cy = round2(lo + (hi - lo) * rng.uniform());
  return { kind, fill, background, cx, cy, size };
}

/** Draw a shape as an 8-bit RGB image (H, W, 3), side `imageSize`, anti-aliased by its covered fraction of each pixel. */
export function renderShape(spec: ShapeSpec, imageSize: number): Uint8Array {
  checkSize(imageSize);
  const inside = SHAPE_INSIDE[spec.kind];
  if (!inside) throw new Error(`shapes: unknown kind ${describeValue(spec.kind)} (known: ${SHAPE_KINDS.join(', ')})`);
  return paint(solid(imageSize, spec.background), 3, coverage(inside, { cx: spec.cx, cy: spec.cy, half: spec.size / 2 }, imageSize), spec.fill);
}

/** Images `start .. start+n−1` of the set drawn with `seed`, as uint8 (n, 3, S, S) with their class indices. */
export function renderShapes(seed: number, start: number, n: number, imageSize: number, colours: ShapeColours = 'data'): { images: Uint8Array; labels: Uint8Array; specs: ShapeSpec[] } {
  checkSize(imageSize);
  const S = imageSize;
  const per = 3 * S * S;
  const images = new Uint8Array(n * per);
  const labels = new Uint8Array(n);
  const specs: ShapeSpec[] = [];
  for (let i = 0; i < n; i++) {
    const spec = shapeSpec(seed, start + i, S, colours);
    hwcToChw(renderShape(spec, S), 3, S, S, images, i * per);
    labels[i] = SHAPE_KINDS.indexOf(spec.kind);
    specs.push(spec);
  }
  return { images, labels, specs };
}

/**
 * What the shape classifier's reject class ('none') is trained on: images that are not one clean shape, the
 * generator.ts rejects (REJECT_KINDS) of the shapes, named for them. Image i is of kind i mod 5:
 *   uniform noise      every channel of every pixel uniform in 0..255
 *   Gaussian noise     a random mean colour plus noise of σ ∈ [0.1, 0.6] (in [−1, 1] units), clipped
 *   smooth field       a g×g grid of random colours (g ∈ 1..6) upsampled bilinearly: flat colours, gradients, blobs
 *   noisy shape        a shape under Gaussian noise of σ ∈ [0.35, 1]
 *   two shapes blended the average of two shapes of different kinds drawn about the same centre (a ghost of both)
 * Without such a class, a classifier trained on shapes only calls pure noise a shape with 100% confidence.
 */
export const NOT_SHAPE_KINDS = ['uniform noise', 'Gaussian noise', 'smooth field', 'noisy shape', 'two shapes blended'] as const;

/** The shapes as an ImageGenerator (image i = shapeSpec(seed, i) drawn), its rejects the not-shapes. */
export function shapesGenerator(imageSize = 32, colours: ShapeColours = 'data'): ImageGenerator {
  checkSize(imageSize);
  const draw = (seed: number, index: number) => {
    const spec = shapeSpec(seed, index, imageSize, colours);
    return { hwc: renderShape(spec, imageSize), label: SHAPE_KINDS.indexOf(spec.kind), spec };
  };
  const gen: ImageGenerator = {
    name: colours === 'data' ? 'shapes' : 'shapes-visible',
    description: 'one filled circle, square, triangle, cross or star on a flat background (npm run make:shapes)',
    channels: 3,
    size: imageSize,
    classes: SHAPE_KINDS,
    draw,
    reject: (seed, index) => renderNotShape(seed, index, imageSize).hwc,
  };
  return gen;
}

/** Shape indices the not-shapes borrow their shapes from: 2i and 2i+1 past this, so of different kinds. */
const NOT_SHAPE_BASE = 2 ** 30;

/** One not-a-shape image (H, W, 3) of the set drawn with `seed`; see NOT_SHAPE_KINDS. */
export function renderNotShape(seed: number, index: number, imageSize: number): { hwc: Uint8Array; kind: (typeof NOT_SHAPE_KINDS)[number] } {
  checkSize(imageSize);
  const spec = (k: number) => shapeSpec(seed, NOT_SHAPE_BASE + 2 * index + k, imageSize);
  const source: RejectSource = {
    real: (i, k) => renderShape(shapeSpec(seed, NOT_SHAPE_BASE + 2 * i + k, imageSize), imageSize),
    // about one centre: two shapes side by side at half contrast would look like two faint shapes, which a real
    // image of a low-contrast shape resembles too closely
    blend: () => {
      const first = spec(0);
      const [a, b] = [renderShape(first, imageSize), renderShape({ ...spec(1), cx: first.cx, cy: first.cy }, imageSize)];
      return a.map((v, p) => clampByte((v + b[p]!) / 2));
    },
  };
  const { hwc } = renderReject(shapesGenerator(imageSize), seed, index, source);
  return { hwc, kind: NOT_SHAPE_KINDS[index % NOT_SHAPE_KINDS.length]! };
}

/** Not-shapes `start .. start+n−1` of the set drawn with `seed`, as uint8 (n, 3, S, S). */
export function renderNotShapes(seed: number, start: number, n: number, imageSize: number): Uint8Array {
  const per = 3 * imageSize * imageSize;
  const images = new Uint8Array(n * per);
  for (let i = 0; i < n; i++) hwcToChw(renderNotShape(seed, start + i, imageSize).hwc, 3, imageSize, imageSize, images, i * per);
  return images;
}
