/**
 * Drawing for the synthetic image generators (shapes.ts, suite.ts): a region given by an inside test, anti-aliased
 * by the fraction of 4x4 sub-pixel samples it covers, painted over an 8-bit (H, W, C) canvas; colours picked with a
 * least luma contrast; smooth colour fields. Pure functions of their arguments (the randomness comes in through an
 * explicit Rng). No node:* imports.
 */
import type { Rng } from '../rng.ts';

export type RGB = [number, number, number];

/** An inside test in a shape's box coordinates: [−1, 1]², y down, as in images. */
export type Inside = (x: number, y: number) => boolean;

/** Samples per pixel side for anti-aliasing. */
export const SUPERSAMPLE = 4;

/** Luma (Rec. 601, 0..255) of an RGB colour; a grey level is its own. */
export const luma = (c: readonly number[]) => (c.length === 1 ? c[0]! : 0.299 * c[0]! + 0.587 * c[1]! + 0.114 * c[2]!);

export const clampByte = (v: number) => (v <= 0 ? 0 : v >= 255 ? 255 : Math.round(v));

/** A random colour of `channels` values in 0..255. */
export const randomColour = (rng: Rng, channels = 3): number[] => Array.from({ length: channels }, () => rng.integer(256));

/**
 * A random colour at least `minContrast` in luma from every one of `backgrounds` (rejection sampling, so the colours
 * stay uniform over the allowed set); the caller makes sure one exists.
 */
export function contrastingColour(rng: Rng, backgrounds: readonly (readonly number[])[], minContrast: number, channels = 3): number[] {
  let c = randomColour(rng, channels);
  while (backgrounds.some((b) => Math.abs(luma(c) - luma(b)) < minContrast)) c = randomColour(rng, channels);
  return c;
}

/** Where a shape sits: `inside` on the box of side 2·half about (cx, cy), turned clockwise by `angle` radians. */
export interface Placement {
  cx: number;
  cy: number;
  half: number;
  /** clockwise rotation in radians (default 0) */
  angle?: number;
}

/**
 * The fraction of each pixel of an S x S image that `inside` covers at `p` (S·S values, each a multiple of 1/16):
 * the sub-pixel samples of the pixels that the (turned) box can reach are tested, the others are 0.
 */
export function coverage(inside: Inside, p: Placement, S: number): Float32Array {
  const { cx, cy, half } = p;
  const angle = p.angle ?? 0;
  const [cos, sin] = [Math.cos(angle), Math.sin(angle)];
  const reach = angle === 0 ? half : half * Math.SQRT2; // a turned box reaches out to its corners
  const x0 = Math.max(0, Math.floor(cx - reach));
  const x1 = Math.min(S - 1, Math.ceil(cx + reach));
  const y0 = Math.max(0, Math.floor(cy - reach));
  const y1 = Math.min(S - 1, Math.ceil(cy + reach));
  const out = new Float32Array(S * S);
  const n = SUPERSAMPLE * SUPERSAMPLE;
  for (let py = y0; py <= y1; py++) {
    for (let px = x0; px <= x1; px++) {
      let covered = 0;
      for (let sy = 0; sy < SUPERSAMPLE; sy++) {
        const y = (py + (sy + 0.5) / SUPERSAMPLE - cy) / half;
        for (let sx = 0; sx < SUPERSAMPLE; sx++) {
          const x = (px + (sx + 0.5) / SUPERSAMPLE - cx) / half;
          // the box's own coordinates: the image point turned back by −angle
          if (angle === 0 ? inside(x, y) : inside(cos * x + sin * y, -sin * x + cos * y)) covered++;
        }
      }
      out[py * S + px] = covered / n;
    }
  }
  return out;
}

/** Blend `colour` over the (H, W, C) canvas in place, by `alpha` per pixel: canvas + α (colour − canvas), rounded. */
export function paint(canvas: Uint8Array, channels: number, alpha: Float32Array, colour: readonly number[]): Uint8Array {
  for (let p = 0; p < alpha.length; p++) {
    const a = alpha[p]!;
    if (a === 0) continue;
    for (let c = 0; c < channels; c++) {
      const o = p * channels + c;
      canvas[o] = Math.round(canvas[o]! + a * (colour[c]! - canvas[o]!));
    }
  }
  return canvas;
}

/** An S x S canvas of one colour. */
export function solid(S: number, colour: readonly number[]): Uint8Array {
  const C = colour.length;
  const out = new Uint8Array(S * S * C);
  for (let p = 0; p < S * S; p++) for (let c = 0; c < C; c++) out[p * C + c] = colour[c]!;
  return out;
}

/**
 * A g x g grid of values (g·g·C, row-major, channels last) upsampled bilinearly to S x S: pixel centres mapped onto
 * the grid's cell centres (align_corners = false), clamped at the border. Flat colours (g = 1), gradients, blobs.
 */
export function smoothField(grid: ArrayLike<number>, g: number, S: number, C: number): Uint8Array {
  const out = new Uint8Array(S * S * C);
  const at = (gy: number, gx: number, c: number) => grid[(Math.min(gy, g - 1) * g + Math.min(gx, g - 1)) * C + c]!;
  for (let y = 0; y < S; y++) {
    for (let x = 0; x < S; x++) {
      const fy = Math.max(0, ((y + 0.5) * g) / S - 0.5);
      const fx = Math.max(0, ((x + 0.5) * g) / S - 0.5);
      const [y0, x0] = [Math.floor(fy), Math.floor(fx)];
      const [wy, wx] = [fy - y0, fx - x0];
      for (let c = 0; c < C; c++) {
        const top = at(y0, x0, c) * (1 - wx) + at(y0, x0 + 1, c) * wx;
        const bottom = at(y0 + 1, x0, c) * (1 - wx) + at(y0 + 1, x0 + 1, c) * wx;
        out[(y * S + x) * C + c] = clampByte(top * (1 - wy) + bottom * wy);
      }
    }
  }
  return out;
}

/** Even-odd point-in-polygon test. */
export function inPolygon(x: number, y: number, poly: readonly [number, number][]): boolean {
  let inside = false;
  for (let i = 0, j = poly.length - 1; i < poly.length; j = i++) {
    const [xi, yi] = poly[i]!;
    const [xj, yj] = poly[j]!;
    if (yi > y !== yj > y && x < ((xj - xi) * (y - yi)) / (yj - yi) + xi) inside = !inside;
  }
  return inside;
}

/** Strokes of half-width `w` along segments [x0, y0, x1, y1]: a glyph of a stroke font. */
export function strokes(segments: readonly (readonly [number, number, number, number])[], w: number): Inside {
  return (x, y) =>
    segments.some(([x0, y0, x1, y1]) => {
      const [dx, dy] = [x1 - x0, y1 - y0];
      const t = Math.max(0, Math.min(1, ((x - x0) * dx + (y - y0) * dy) / (dx * dx + dy * dy)));
      return Math.hypot(x - x0 - t * dx, y - y0 - t * dy) <= w;
    });
}
