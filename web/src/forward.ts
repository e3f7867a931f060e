/**
 * The forward-process panel: a test digit (or an uploaded image) x_0, a t slider, and x_t from the
 * closed form q(x_t | x_0) (Ho et al. eq. 4) with one fixed ε, via the library's `qSample`.
 */
import { GaussianDiffusion, type ScheduleConfig } from '../../src/diffusion/index.ts';
import { Rng } from '../../src/rng.ts';
import { bytesToFloat, drawImage } from './image.ts';
import { DIGIT_SIZE, ImagePicker } from './picker.ts';
import { scheduleCurves, schedulePlotSvg, type ScheduleCurve } from './plot.ts';

const SIZE = DIGIT_SIZE;
const SCALE = 6;

const $ = <T extends HTMLElement>(id: string): T => document.getElementById(id) as T;

const fmt = (v: number): string => (v === 0 || (Math.abs(v) >= 1e-3 && Math.abs(v) < 1e4) ? v.toFixed(4) : v.toExponential(3));

export class ForwardPanel {
  private schedules = new Map<string, GaussianDiffusion>();
  private diffusion: GaussianDiffusion;
  private curves: ScheduleCurve[];
  private x0: Float32Array = new Float32Array(SIZE * SIZE);
  private noiseSeed = 0;
  private noise: Float32Array;
  private readonly slider = $<HTMLInputElement>('t-slider');

  /** @param modelSchedule the loaded model's schedule (listed first); null while there is none */
  constructor(modelSchedule: ScheduleConfig | null) {
    const T = modelSchedule?.T ?? 1000;
    if (modelSchedule) this.schedules.set(`model (${modelSchedule.kind}, T=${T})`, GaussianDiffusion.fromConfig(modelSchedule));
    this.schedules.set('linear', GaussianDiffusion.fromConfig({ kind: 'linear', T }));
    this.schedules.set('cosine', GaussianDiffusion.fromConfig({ kind: 'cosine', T }));
    const select = $<HTMLSelectElement>('fwd-schedule');
    select.replaceChildren(...[...this.schedules.keys()].map((k) => new Option(k, k)));
    select.onchange = () => {
      this.diffusion = this.schedules.get(select.value)!;
      this.update();
    };
    this.diffusion = this.schedules.values().next().value!;
    this.curves = scheduleCurves(T);
    this.noise = new Rng(this.noiseSeed).normalFloat32(SIZE * SIZE);
    this.slider.max = String(T - 1);
    this.slider.oninput = () => this.update();
    $<HTMLButtonElement>('noise-btn').onclick = () => {
      this.noise = new Rng(++this.noiseSeed).normalFloat32(SIZE * SIZE);
      this.update();
    };
    new ImagePicker({
      ids: { digits: 'digits', upload: 'upload', invert: 'invert' },
      size: SIZE,
      channels: 1,
      background: 'white', // a drawing's transparent paper
      onPick: (px, caption) => this.setX0(bytesToFloat(px), `x₀: ${caption}`),
      onError: (msg) => ($('fwd-x0-caption').textContent = msg),
    });
  }

  private setX0(x0: Float32Array, caption: string): void {
    this.x0 = x0;
    $('fwd-x0-caption').textContent = caption;
    drawImage($<HTMLCanvasElement>('fwd-x0'), x0, SIZE, SCALE);
    this.update();
  }

  /** Redraw x_t, the numbers and the plot marker for the slider's t. */
  update(): void {
    const d = this.diffusion;
    const t = Math.min(d.numTimesteps - 1, Number(this.slider.value));
    // eq. (4): x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε
    const xt = d.qSample({ data: this.x0, shape: [1, 1, SIZE, SIZE] }, t, this.noise);
    drawImage($<HTMLCanvasElement>('fwd-xt'), xt, SIZE, SCALE);
    const abar = d.alphasCumprod[t];
    $('stat-t').textContent = String(t);
    $('stat-abar').textContent = fmt(abar);
    $('stat-sqrt-abar').textContent = fmt(d.sqrtAlphasCumprod[t]);
    $('stat-sqrt-1m-abar').textContent = fmt(d.sqrtOneMinusAlphasCumprod[t]);
    $('stat-snr').textContent = fmt(d.snr[t]);
    $('schedule-plot').innerHTML = schedulePlotSvg(this.curves, t);
  }
}
