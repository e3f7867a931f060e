/**
 * Four image generators of the recipe suite (issue 27): folders that differ from each other and from the shapes of
 * `make:shapes` (shapes.ts), for choosing `ddpm train`'s defaults on data they were never tuned on. The fifth folder
 * is MNIST written out as PNGs (mnist.ts, mnistGenerator).
 *
 *   textured  one of the five shapes on a gradient, stripes, checks or soft blobs of two close colours     RGB 32
 *   multi     one, two or three small circles, squares or triangles, apart; the class is their number      RGB 32
 *   glyphs    a ring, arrow, crescent, letter A or letter E, small to large (35-90% of the side)           RGB 32
 *   grey      one of the five shapes, turned by any angle, in grey levels under film grain                 grey 32
 *
 * Deterministic: image i depends only on (seed, i): its parameters come from `new Rng(seed).fold(i)`, its class is
 * i mod (number of classes), so the classes are balanced and a prefix of a set is a smaller set. Every image has a
 * spec (its kind and parameters) for labels.json. No node:* imports.
 */
import { Rng } from '../rng.ts';
import type { GeneratedImage, ImageGenerator } from './generator.ts';
import { clampByte, contrastingColour, coverage, luma, paint, randomColour, smoothField, solid, strokes, type Inside } from './raster.ts';
import { MIN_LUMA_CONTRAST, SHAPE_INSIDE, SHAPE_KINDS } from './shapes.ts';

/** The side of every suite image but MNIST's. */
export const SUITE_SIZE = 32;

const round2 = (v: number) => Math.round(v * 100) / 100;
const between = (rng: Rng, [lo, hi]: readonly [number, number]) => lo + (hi - lo) * rng.uniform();

/** A centre for a box of side `size` whose reach (half its side, more when turned) stays a pixel inside the image. */
function centre(rng: Rng, S: number, reach: number): [number, number] {
  const [lo, hi] = [reach + 1, S - reach - 1];
  return [round2(lo + (hi - lo) * rng.uniform()), round2(lo + (hi - lo) * rng.uniform())];
}

/** A generator from its spec and its renderer; the class is i mod the number of classes. */
function generator<Spec extends { kind: string }>(
  g: Omit<ImageGenerator, 'draw' | 'size'>,
  spec: (rng: Rng, kind: number) => Spec,
  render: (spec: Spec) => Uint8Array,
): ImageGenerator & { spec(seed: number, index: number): Spec } {
  const specOf = (seed: number, index: number) => spec(new Rng(seed).fold(index), index % g.classes.length);
  return {
    ...g,
    size: SUITE_SIZE,
    spec: specOf,
    draw: (seed, index): GeneratedImage => {
      const s = specOf(seed, index);
      return { hwc: render(s), label: index % g.classes.length, spec: s };
    },
  };
}

// ---------------------------------------------------------------------------------------------------------------
// textured: a shape over a textured background of two colours close in luma, the fill far from both

const PATTERNS = ['gradient', 'stripes', 'checks', 'blobs'] as const;

export interface TexturedSpec {
  kind: (typeof SHAPE_KINDS)[number];
  pattern: (typeof PATTERNS)[number];
  /** the two background colours the pattern moves between */
  colours: [number[], number[]];
  fill: number[];
  /** the pattern's direction (gradient, stripes), radians */
  angle: number;
  /** stripe period, check side or blob grid, in pixels or cells */
  scale: number;
  /** 4 x 4 blob weights in [0, 1] (blobs only) */
  blobs?: number[];
  cx: number;
  cy: number;
  size: number;
}

/** Largest luma step between a texture's two colours; the fill keeps MIN_LUMA_CONTRAST from both. */
const TEXTURE_LUMA_SPREAD = 48;

/** The pattern's weight of the second colour at pixel (x, y), in [0, 1]. */
function patternWeight(s: TexturedSpec, S: number): (x: number, y: number) => number {
  const [dx, dy] = [Math.cos(s.angle), Math.sin(s.angle)];
  const along = (x: number, y: number) => (x + 0.5 - S / 2) * dx + (y + 0.5 - S / 2) * dy; // pixels from the centre
  if (s.pattern === 'gradient') return (x, y) => Math.max(0, Math.min(1, 0.5 + along(x, y) / (S * Math.SQRT2)));
  if (s.pattern === 'stripes') return (x, y) => 0.5 + 0.5 * Math.sin((2 * Math.PI * along(x, y)) / s.scale);
  if (s.pattern === 'checks') return (x, y) => (Math.floor(x / s.scale) + Math.floor(y / s.scale)) % 2;
  const field = smoothField(s.blobs!.map((w) => 255 * w), 4, S, 1);
  return (x, y) => field[y * S + x]! / 255;
}

export const texturedGenerator = generator<TexturedSpec>(
  {
    name: 'textured',
    description: 'one circle, square, triangle, cross or star on a gradient, stripes, checks or soft blobs of two close colours',
    channels: 3,
    classes: SHAPE_KINDS,
  },
  (rng, k) => {
    const pattern = PATTERNS[rng.integer(PATTERNS.length)]!;
    const a = randomColour(rng);
    let b = a.map((v) => clampByte(v + rng.integer(2 * TEXTURE_LUMA_SPREAD + 1) - TEXTURE_LUMA_SPREAD));
    while (Math.abs(luma(a) - luma(b)) > TEXTURE_LUMA_SPREAD) b = a.map((v) => clampByte(v + rng.integer(2 * TEXTURE_LUMA_SPREAD + 1) - TEXTURE_LUMA_SPREAD));
    // one exists: the colours span at most 48 of luma, so white or black is 80 from both
    const fill = contrastingColour(rng, [a, b], MIN_LUMA_CONTRAST);
    const angle = round2(2 * Math.PI * rng.uniform());
    const scale = pattern === 'stripes' ? round2(between(rng, [4, 9])) : pattern === 'checks' ? 3 + rng.integer(4) : 4;
    const blobs = pattern === 'blobs' ? Array.from({ length: 16 }, () => round2(rng.uniform())) : undefined;
    const size = round2(SUITE_SIZE * between(rng, [0.35, 0.7]));
    const [cx, cy] = centre(rng, SUITE_SIZE, size / 2);
    return { kind: SHAPE_KINDS[k]!, pattern, colours: [a, b], fill, angle, scale, ...(blobs ? { blobs } : {}), cx, cy, size };
  },
  (s) => {
    const S = SUITE_SIZE;
    const w = patternWeight(s, S);
    const canvas = new Uint8Array(S * S * 3);
    const [a, b] = s.colours;
    for (let y = 0; y < S; y++) for (let x = 0; x < S; x++) for (let c = 0; c < 3; c++) canvas[(y * S + x) * 3 + c] = clampByte(a[c]! + w(x, y) * (b[c]! - a[c]!));
    return paint(canvas, 3, coverage(SHAPE_INSIDE[s.kind], { cx: s.cx, cy: s.cy, half: s.size / 2 }, S), s.fill);
  },
);

// ---------------------------------------------------------------------------------------------------------------
// multi: 1-3 small objects, apart, each of its own colour; the class is how many

const COUNT_CLASSES = ['one', 'two', 'three'] as const;
const SMALL_KINDS = ['circle', 'square', 'triangle'] as const;
/** Least gap in pixels between two objects' boxes. */
const OBJECT_GAP = 2;

export interface MultiSpec {
  kind: (typeof COUNT_CLASSES)[number];
  background: number[];
  objects: { kind: (typeof SMALL_KINDS)[number]; fill: number[]; cx: number; cy: number; size: number }[];
}

export const multiGenerator = generator<MultiSpec>(
  {
    name: 'multi',
    description: 'one, two or three small circles, squares or triangles, apart, each in its own colour; the class is how many',
    channels: 3,
    classes: COUNT_CLASSES,
  },
  (rng, k) => {
    const background = randomColour(rng);
    const objects: MultiSpec['objects'] = [];
    // rejection sampling of positions: boxes of ≤ 9.6 px with 2 px gaps always fit three times in 32 px; a failed
    // object is drawn again with a new size
    while (objects.length < k + 1) {
      const kind = SMALL_KINDS[rng.integer(SMALL_KINDS.length)]!;
      const fill = contrastingColour(rng, [background], MIN_LUMA_CONTRAST);
      const size = round2(SUITE_SIZE * between(rng, [0.2, 0.3]));
      const [cx, cy] = centre(rng, SUITE_SIZE, size / 2);
      const apart = objects.every((o) => Math.max(Math.abs(o.cx - cx), Math.abs(o.cy - cy)) >= (o.size + size) / 2 + OBJECT_GAP);
      if (apart) objects.push({ kind, fill, cx, cy, size });
    }
    return { kind: COUNT_CLASSES[k]!, background, objects };
  },
  (s) => {
    const canvas = solid(SUITE_SIZE, s.background);
    for (const o of s.objects) paint(canvas, 3, coverage(SHAPE_INSIDE[o.kind], { cx: o.cx, cy: o.cy, half: o.size / 2 }, SUITE_SIZE), o.fill);
    return canvas;
  },
);

// ---------------------------------------------------------------------------------------------------------------
// glyphs: other kinds, small to large; arrows and crescents point any of four ways

const GLYPH_KINDS = ['ring', 'arrow', 'crescent', 'letter-a', 'letter-e'] as const;
type GlyphKind = (typeof GLYPH_KINDS)[number];

/** In box coordinates [−1, 1]², y down; the arrow points right, the crescent opens to the right. */
const GLYPH_INSIDE: Record<GlyphKind, Inside> = {
  ring: (x, y) => x * x + y * y <= 1 && x * x + y * y >= 0.55 * 0.55,
  arrow: (x, y) => (x >= -1 && x <= 0.15 && Math.abs(y) <= 0.2) || (x >= 0.15 && x <= 1 && Math.abs(y) <= (0.8 * (1 - x)) / 0.85),
  crescent: (x, y) => x * x + y * y <= 1 && (x - 0.45) ** 2 + y * y > 0.75 * 0.75,
  'letter-a': strokes([[-0.75, 0.85, 0, -0.85], [0, -0.85, 0.75, 0.85], [-0.4, 0.3, 0.4, 0.3]], 0.16),
  'letter-e': strokes([[-0.6, -0.82, -0.6, 0.82], [-0.6, -0.82, 0.65, -0.82], [-0.6, 0, 0.45, 0], [-0.6, 0.82, 0.65, 0.82]], 0.16),
};
/** Kinds drawn in any of four directions (a quarter turn each). */
const TURNED: readonly GlyphKind[] = ['arrow', 'crescent'];

export interface GlyphSpec {
  kind: GlyphKind;
  fill: number[];
  background: number[];
  /** quarter turns clockwise */
  turns: number;
  cx: number;
  cy: number;
  size: number;
}

export const glyphsGenerator = generator<GlyphSpec>(
  {
    name: 'glyphs',
    description: 'a ring, arrow, crescent, letter A or letter E, 35-90% of the side; arrows and crescents point any of four ways',
    channels: 3,
    classes: GLYPH_KINDS,
  },
  (rng, k) => {
    const kind = GLYPH_KINDS[k]!;
    const background = randomColour(rng);
    const fill = contrastingColour(rng, [background], MIN_LUMA_CONTRAST);
    const turns = TURNED.includes(kind) ? rng.integer(4) : 0;
    const size = round2(SUITE_SIZE * between(rng, [0.35, 0.9]));
    const [cx, cy] = centre(rng, SUITE_SIZE, size / 2);
    return { kind, fill, background, turns, cx, cy, size };
  },
  (s) => {
    const inside = GLYPH_INSIDE[s.kind];
    // a quarter turn clockwise maps the box onto itself: (x, y) -> (y, −x) read back
    const turned: Inside = (x, y) => {
      let [u, v] = [x, y];
      for (let t = 0; t < s.turns; t++) [u, v] = [v, -u];
      return inside(u, v);
    };
    return paint(solid(SUITE_SIZE, s.background), 3, coverage(turned, { cx: s.cx, cy: s.cy, half: s.size / 2 }, SUITE_SIZE), s.fill);
  },
);

// ---------------------------------------------------------------------------------------------------------------
// grey: a shape turned by any angle, grey on grey, under film grain

export interface GreySpec {
  kind: (typeof SHAPE_KINDS)[number];
  fill: number;
  background: number;
  /** clockwise, radians */
  angle: number;
  /** σ of the grain, in grey levels */
  grain: number;
  /** the seed of the grain's noise */
  grainSeed: number;
  cx: number;
  cy: number;
  size: number;
}

export const greyGenerator = generator<GreySpec>(
  {
    name: 'grey',
    description: 'one circle, square, triangle, cross or star turned by any angle, grey on grey, under film grain (σ 2-10 grey levels)',
    channels: 1,
    classes: SHAPE_KINDS,
  },
  (rng, k) => {
    const [background] = randomColour(rng, 1) as [number];
    const [fill] = contrastingColour(rng, [[background]], MIN_LUMA_CONTRAST, 1) as [number];
    const angle = round2(2 * Math.PI * rng.uniform());
    const grain = round2(between(rng, [2, 10]));
    const grainSeed = rng.integer(2 ** 32);
    const size = round2(SUITE_SIZE * between(rng, [0.3, 0.55]));
    const [cx, cy] = centre(rng, SUITE_SIZE, (size / 2) * Math.SQRT2); // turned, the box reaches its corners
    return { kind: SHAPE_KINDS[k]!, fill, background, angle, grain, grainSeed, cx, cy, size };
  },
  (s) => {
    const img = paint(solid(SUITE_SIZE, [s.background]), 1, coverage(SHAPE_INSIDE[s.kind], { cx: s.cx, cy: s.cy, half: s.size / 2, angle: s.angle }, SUITE_SIZE), [s.fill]);
    const rng = new Rng(s.grainSeed);
    return img.map((v) => clampByte(v + s.grain * rng.normal()));
  },
);

/** The suite's synthetic generators by name. */
export const SUITE_GENERATORS: Record<string, ImageGenerator> = {
  textured: texturedGenerator,
  multi: multiGenerator,
  glyphs: glyphsGenerator,
  grey: greyGenerator,
};
