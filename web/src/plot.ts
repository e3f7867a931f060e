/**
 * The noise schedules as inline SVG: ᾱ_t (Ho et al. eq. 4) and SNR(t) = ᾱ_t / (1 − ᾱ_t) on a log
 * scale, for the linear (Ho et al. 2020) and cosine (Nichol & Dhariwal 2021) schedules.
 */
import { GaussianDiffusion } from '../../src/diffusion/index.ts';

export interface ScheduleCurve {
  name: string;
  color: string;
  alphasCumprod: Float64Array;
  snr: Float64Array;
}

export function scheduleCurves(T: number): ScheduleCurve[] {
  const linear = GaussianDiffusion.fromConfig({ kind: 'linear', T });
  const cosine = GaussianDiffusion.fromConfig({ kind: 'cosine', T });
  return [
    { name: 'linear', color: '#1f77b4', alphasCumprod: linear.alphasCumprod, snr: linear.snr },
    { name: 'cosine', color: '#d62728', alphasCumprod: cosine.alphasCumprod, snr: cosine.snr },
  ];
}

const SUB_T = '<tspan baseline-shift="sub" font-size="80%">t</tspan>';
const W = 340;
const H = 210;
const M = { l: 46, r: 10, t: 22, b: 34 };

interface Axis {
  min: number;
  max: number;
  ticks: number[];
  label: (v: number) => string;
}

/** `title` is SVG text content: may hold <tspan> markup. */
function panel(title: string, T: number, curves: { color: string; ys: ArrayLike<number> }[], y: Axis, markerT: number): string {
  const px = (t: number) => M.l + (t / (T - 1)) * (W - M.l - M.r);
  const py = (v: number) => M.t + (1 - (Math.min(y.max, Math.max(y.min, v)) - y.min) / (y.max - y.min)) * (H - M.t - M.b);
  const parts: string[] = [`<svg viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img">`];
  parts.push(`<text x="${M.l}" y="14" class="plot-title">${title}</text>`);
  for (const v of y.ticks) {
    parts.push(`<line x1="${M.l}" x2="${W - M.r}" y1="${py(v)}" y2="${py(v)}" class="grid"/>`);
    parts.push(`<text x="${M.l - 4}" y="${py(v) + 4}" text-anchor="end" class="tick">${y.label(v)}</text>`);
  }
  for (const t of [0, Math.round(T / 4), Math.round(T / 2), Math.round((3 * T) / 4), T - 1]) {
    parts.push(`<text x="${px(t)}" y="${H - M.b + 14}" text-anchor="middle" class="tick">${t}</text>`);
  }
  parts.push(`<text x="${(M.l + W - M.r) / 2}" y="${H - 4}" text-anchor="middle" class="tick">t</text>`);
  parts.push(`<rect x="${M.l}" y="${M.t}" width="${W - M.l - M.r}" height="${H - M.t - M.b}" class="frame"/>`);
  const step = Math.max(1, Math.floor(T / 400)); // ≤ ~400 points per curve
  for (const c of curves) {
    const pts: string[] = [];
    for (let t = 0; t < T; t += step) pts.push(`${px(t).toFixed(1)},${py(c.ys[t]).toFixed(1)}`);
    pts.push(`${px(T - 1).toFixed(1)},${py(c.ys[T - 1]).toFixed(1)}`);
    parts.push(`<polyline points="${pts.join(' ')}" fill="none" stroke="${c.color}" stroke-width="1.8"/>`);
  }
  parts.push(`<line x1="${px(markerT)}" x2="${px(markerT)}" y1="${M.t}" y2="${H - M.b}" class="marker"/>`);
  parts.push('</svg>');
  return parts.join('');
}

/** Both panels plus a legend, with a vertical marker at timestep `markerT`. */
export function schedulePlotSvg(curves: ScheduleCurve[], markerT: number): string {
  const T = curves[0]!.alphasCumprod.length;
  const abar: Axis = { min: 0, max: 1, ticks: [0, 0.25, 0.5, 0.75, 1], label: (v) => v.toFixed(2) };
  // log10 SNR over both schedules, whole decades, clipped to a readable range
  let lo = Infinity;
  let hi = -Infinity;
  for (const c of curves) {
    for (const s of c.snr) {
      if (s > 0) {
        lo = Math.min(lo, Math.log10(s));
        hi = Math.max(hi, Math.log10(s));
      }
    }
  }
  lo = Math.max(-10, Math.floor(lo));
  hi = Math.min(10, Math.ceil(hi));
  const ticks: number[] = [];
  const every = Math.ceil((hi - lo) / 6);
  for (let d = hi; d >= lo; d -= every) ticks.push(d);
  const snr: Axis = { min: lo, max: hi, ticks, label: (v) => `1e${v}` };
  const legend = curves.map((c) => `<span class="legend"><i style="background:${c.color}"></i>${c.name}</span>`).join('');
  return (
    `<div class="plots">` +
    panel(`ᾱ${SUB_T}`, T, curves.map((c) => ({ color: c.color, ys: c.alphasCumprod })), abar, markerT) +
    panel(`SNR = ᾱ${SUB_T} / (1 − ᾱ${SUB_T}), log scale`, T, curves.map((c) => ({ color: c.color, ys: Array.from(c.snr, (s) => Math.log10(Math.max(s, 1e-30))) })), snr, markerT) +
    `</div><div class="legends">${legend}</div>`
  );
}
