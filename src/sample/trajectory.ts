/**
 * Pictures of a reverse process (a {@link Trajectory} from `generate`): x_t next to the x̂_0 the model
 * predicts from it, as one PNG grid or as GIF frames. Pure pixel work, no node:* imports.
 */
import { makeGrid, type ImageU8 } from '../io/grid.ts';
import type { Trajectory } from './generate.ts';

/**
 * One image: for each recorded sample two rows, x_t above and x̂_0 below, one column per recorded step
 * (left = start, x_T; right = last step, whose x̂_0 is the final sample).
 */
export function trajectoryGrid(tr: Trajectory, imageShape: readonly [number, number, number]): ImageU8 {
  const [C, H, W] = imageShape;
  const per = C * H * W;
  const F = tr.steps.length;
  const data = new Float32Array(2 * tr.samples * F * per);
  let o = 0;
  for (let s = 0; s < tr.samples; s++) {
    for (const rows of [tr.xt, tr.predX0]) {
      for (let f = 0; f < F; f++, o += per) data.set(rows[f].subarray(s * per, (s + 1) * per), o);
    }
  }
  return makeGrid(data, [2 * tr.samples * F, C, H, W], { nrow: F });
}

/** Nearest-neighbour upscaling by an integer factor (small images are unreadable in a GIF viewer). */
export function upscale(img: ImageU8, factor: number): ImageU8 {
  if (factor === 1) return img;
  const { width, height, channels } = img;
  const W = width * factor;
  const out = new Uint8Array(W * height * factor * channels);
  for (let y = 0; y < height * factor; y++) {
    const sy = Math.floor(y / factor);
    for (let x = 0; x < W; x++) {
      const s = (sy * width + Math.floor(x / factor)) * channels;
      const d = (y * W + x) * channels;
      for (let c = 0; c < channels; c++) out[d + c] = img.data[s + c];
    }
  }
  return { data: out, width: W, height: height * factor, channels };
}

/**
 * One frame per recorded step: x_t of the recorded samples in the top row, their x̂_0 below.
 * Images smaller than 64 px are scaled up by an integer factor.
 */
export function trajectoryFrames(tr: Trajectory, imageShape: readonly [number, number, number]): ImageU8[] {
  const [C, H, W] = imageShape;
  const per = C * H * W;
  const k = tr.samples;
  const factor = Math.max(1, Math.ceil(64 / Math.max(H, W)));
  return tr.steps.map((_, f) => {
    const data = new Float32Array(2 * k * per);
    data.set(tr.xt[f]);
    data.set(tr.predX0[f], k * per);
    return upscale(makeGrid(data, [2 * k, C, H, W], { nrow: k }), factor);
  });
}
