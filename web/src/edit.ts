/**
 * The Edit panel: a starting image (a shipped digit or an upload, at the model's size and channels), a mask brushed
 * over it (white = generate, as `ddpm inpaint --mask`), and two runs in the worker with the chosen sampler:
 * - Inpaint: the library's `inpaint` (RePaint, Lugmayr et al. 2022, with its jump length and resamplings);
 * - Edit: the library's `sdedit` (SDEdit, Meng et al. 2022) at the strength of the slider.
 * The math is src/diffusion/inpaint.ts and edit.ts, run by worker.ts; this file is the form, the brush and drawing.
 */
import { sdeditStartStep } from '../../src/diffusion/edit.ts';
import { repaintSchedule } from '../../src/diffusion/inpaint.ts';
import { makeSampler } from '../../src/sample/generate.ts';
import { bytesToFloat, drawGrid, drawRgba, gridLayout } from './image.ts';
import { ImagePicker } from './picker.ts';
import type { EditRequest, SamplerKind, WebModelInfo } from './protocol.ts';
import type { RunMessage, Runs } from './runs.ts';

const $ = <T extends HTMLElement>(id: string): T => document.getElementById(id) as T;

/** Canvas side of the input and the result, CSS pixels (about). */
const VIEW = 252;
/** Mask overlay on the input: generated pixels tinted with this colour. */
const TINT = [255, 40, 90] as const;
const TINT_ALPHA = 0.55;

/** The last finished run, for tests and the devtools console (globalThis.ddpm.edit). */
export interface EditDebug {
  /** x_0 (C, S, S) in [-1, 1] as sent to the worker */
  image(): number[];
  /** (S, S), 1 = generate */
  mask(): number[];
  setMask(mask: ArrayLike<number>): void;
  /** the request without the image (the mask as an array), the results (n, C, S, S) */
  last: { kind: 'inpaint' | 'sdedit'; request: Record<string, unknown>; samples: Float32Array; shape: number[] } | null;
}

interface Point {
  x: number;
  y: number;
}

/**
 * Set mask pixels whose centre lies within `radius` of the segment a–b (model pixel units) to `value`: a round
 * brush dragged from a to b, without gaps however fast the pointer moved.
 */
export function paintSegment(mask: Float32Array, size: number, a: Point, b: Point, radius: number, value: 0 | 1): void {
  const [dx, dy] = [b.x - a.x, b.y - a.y];
  const len2 = dx * dx + dy * dy;
  const x0 = Math.max(0, Math.floor(Math.min(a.x, b.x) - radius));
  const x1 = Math.min(size - 1, Math.ceil(Math.max(a.x, b.x) + radius));
  const y0 = Math.max(0, Math.floor(Math.min(a.y, b.y) - radius));
  const y1 = Math.min(size - 1, Math.ceil(Math.max(a.y, b.y) + radius));
  for (let y = y0; y <= y1; y++) {
    for (let x = x0; x <= x1; x++) {
      const [px, py] = [x + 0.5, y + 0.5];
      const u = len2 === 0 ? 0 : Math.min(1, Math.max(0, ((px - a.x) * dx + (py - a.y) * dy) / len2));
      const [ex, ey] = [px - (a.x + u * dx), py - (a.y + u * dy)];
      if (ex * ex + ey * ey <= radius * radius) mask[y * size + x] = value;
    }
  }
}

export class EditPanel {
  readonly debug: EditDebug;
  private readonly C: number;
  private readonly S: number;
  private readonly diffusion: WebModelInfo['diffusion'];
  /** x_0 as 8-bit pixels (C, S, S) and in [-1, 1] */
  private pixels: Uint8Array;
  private image: Float32Array;
  /** (S, S), 1 = generate */
  private mask: Float32Array;
  private runId: number | null = null;
  private resultShape: number[] = [];
  private resultScale = 1;
  private readonly input = $<HTMLCanvasElement>('edit-input');
  private readonly result = $<HTMLCanvasElement>('edit-result');
  private readonly form = {
    n: $<HTMLInputElement>('edit-n'),
    sampler: $<HTMLSelectElement>('edit-sampler'),
    steps: $<HTMLInputElement>('edit-steps'),
    eta: $<HTMLInputElement>('edit-eta'),
    seed: $<HTMLInputElement>('edit-seed'),
    jump: $<HTMLInputElement>('jump'),
    resample: $<HTMLInputElement>('resample'),
    strength: $<HTMLInputElement>('strength'),
    brush: $<HTMLInputElement>('brush'),
    erase: $<HTMLInputElement>('erase'),
    inpaint: $<HTMLButtonElement>('inpaint-btn'),
    sdedit: $<HTMLButtonElement>('sdedit-btn'),
    stop: $<HTMLButtonElement>('edit-stop'),
  };

  constructor(
    info: WebModelInfo,
    private readonly runs: Runs,
  ) {
    this.C = info.unet.inChannels;
    this.S = info.unet.imageSize;
    this.diffusion = info.diffusion;
    this.pixels = new Uint8Array(this.C * this.S * this.S);
    this.image = bytesToFloat(this.pixels);
    this.mask = new Float32Array(this.S * this.S);
    const self = this;
    this.debug = {
      image: () => Array.from(self.image),
      mask: () => Array.from(self.mask),
      setMask(m) {
        if (m.length !== self.mask.length) throw new Error(`the mask has ${self.mask.length} pixels, got ${m.length}`);
        self.mask.set(m);
        self.drawInput();
      },
      last: null,
    };

    new ImagePicker({
      ids: { digits: 'edit-digits', upload: 'edit-upload', invert: 'edit-invert' },
      size: this.S,
      channels: this.C === 3 ? 3 : 1,
      background: 'black', // as the CLI (sharp's flatten)
      onPick: (px, caption) => this.setImage(px, caption),
      onError: (msg) => ($('edit-input-caption').textContent = msg),
    });
    this.brushEvents();
    $<HTMLButtonElement>('mask-clear').onclick = () => this.setMaskRows(() => 0);
    $<HTMLButtonElement>('mask-half').onclick = () => this.setMaskRows((y) => (y >= this.S / 2 ? 1 : 0));
    $<HTMLButtonElement>('mask-invert').onclick = () => {
      for (let i = 0; i < this.mask.length; i++) this.mask[i] = 1 - this.mask[i];
      this.drawInput();
    };
    const syncEta = () => (this.form.eta.disabled = this.form.sampler.value !== 'ddim');
    this.form.sampler.addEventListener('change', syncEta);
    syncEta();
    for (const el of [this.form.strength, this.form.steps, this.form.sampler]) el.addEventListener('input', () => this.describeStrength());
    this.describeStrength();
    this.form.inpaint.onclick = () => this.start('inpaint');
    this.form.sdedit.onclick = () => this.start('sdedit');
    this.form.stop.onclick = () => this.runId !== null && this.runs.cancel(this.runId);
    runs.onChange(() => (this.form.inpaint.disabled = this.form.sdedit.disabled = !runs.idle));
    this.drawInput();
  }

  private setImage(px: Uint8Array, caption: string): void {
    this.pixels = px;
    this.image = bytesToFloat(px);
    $('edit-input-caption').textContent = `x₀: ${caption} · red = generate`;
    this.drawInput();
  }

  private setMaskRows(f: (y: number) => 0 | 1): void {
    for (let i = 0; i < this.mask.length; i++) this.mask[i] = f(Math.floor(i / this.S));
    this.drawInput();
  }

  /** x_0 with the mask tinted over it. */
  private drawInput(): void {
    const { C, S } = this;
    const plane = S * S;
    const rgba = new Uint8ClampedArray(4 * plane);
    for (let i = 0; i < plane; i++) {
      const rgb = C === 3 ? [this.pixels[i], this.pixels[plane + i], this.pixels[2 * plane + i]] : [this.pixels[i], this.pixels[i], this.pixels[i]];
      const a = this.mask[i] * TINT_ALPHA;
      for (let k = 0; k < 3; k++) rgba[4 * i + k] = (1 - a) * rgb[k] + a * TINT[k];
      rgba[4 * i + 3] = 255;
    }
    drawRgba(this.input, rgba, S, S, Math.max(1, Math.floor(VIEW / S)));
    const painted = this.mask.reduce((s, v) => s + v, 0);
    this.input.dataset.maskPixels = String(painted);
    $('mask-info').textContent = `${painted} of ${plane} pixels to generate`;
  }

  /** Mouse, pen and touch through pointer events; the canvas has `touch-action: none`, so a finger paints, not scrolls. */
  private brushEvents(): void {
    const c = this.input;
    let pointer: number | null = null;
    let last: Point = { x: 0, y: 0 };
    const at = (e: PointerEvent): Point => {
      const r = c.getBoundingClientRect();
      return { x: ((e.clientX - r.left) / r.width) * this.S, y: ((e.clientY - r.top) / r.height) * this.S };
    };
    const paint = (to: Point) => {
      paintSegment(this.mask, this.S, last, to, Number(this.form.brush.value) / 2, this.form.erase.checked ? 0 : 1);
      last = to;
      this.drawInput();
    };
    c.addEventListener('pointerdown', (e) => {
      if (pointer !== null || (e.pointerType === 'mouse' && e.button !== 0)) return;
      e.preventDefault();
      pointer = e.pointerId;
      try {
        c.setPointerCapture(e.pointerId); // keep the stroke when it leaves the canvas
      } catch {
        // a synthetic event's pointer cannot be captured; the stroke still works inside the canvas
      }
      last = at(e);
      paint(last);
    });
    c.addEventListener('pointermove', (e) => {
      if (e.pointerId === pointer) paint(at(e));
    });
    const end = (e: PointerEvent) => {
      if (e.pointerId === pointer) pointer = null;
    };
    c.addEventListener('pointerup', end);
    c.addEventListener('pointercancel', end);
  }

  private readCommon(): EditRequest {
    const f = this.form;
    const int = (el: HTMLInputElement, lo: number, hi: number) => {
      const v = Math.min(hi, Math.max(lo, Math.round(Number(el.value) || 0)));
      el.value = String(v);
      return v;
    };
    const eta = Math.min(1, Math.max(0, Number(f.eta.value) || 0));
    f.eta.value = String(eta);
    return {
      n: int(f.n, 1, 16),
      sampler: f.sampler.value as SamplerKind,
      steps: int(f.steps, 2, this.diffusion.schedule.T),
      eta,
      seed: int(f.seed, 0, 2 ** 32 - 1),
      image: this.image.slice(),
    };
  }

  /** "0.60: the last 12 of 20 steps, from t = 599", or why the strength keeps no step. */
  private describeStrength(): void {
    const strength = Number(this.form.strength.value);
    let text: string;
    try {
      const sampler = makeSampler(this.diffusion, { sampler: this.form.sampler.value as SamplerKind, steps: Number(this.form.steps.value) });
      const n = sampler.timesteps.length;
      const start = sdeditStartStep(n, strength);
      text = `${strength.toFixed(2)}: the last ${n - start} of ${n} steps, from t = ${sampler.timesteps[start]}`;
    } catch (e) {
      text = `${strength.toFixed(2)}: ${e instanceof Error ? e.message : String(e)}`;
    }
    $('strength-out').textContent = text;
  }

  private start(kind: 'inpaint' | 'sdedit'): void {
    if (!this.runs.idle) return;
    const common = this.readCommon();
    const f = this.form;
    const extra =
      kind === 'inpaint'
        ? { jump: Math.max(1, Math.round(Number(f.jump.value) || 1)), resample: Math.max(1, Math.round(Number(f.resample.value) || 1)) }
        : { strength: Number(f.strength.value) };
    // the library's own checks, before the worker: a jump as long as the run, a strength that keeps no step
    try {
      if (kind === 'inpaint' && !this.mask.some((v) => v > 0)) throw new Error('the mask is empty: brush over the part to generate');
      const sampler = makeSampler(this.diffusion, { sampler: common.sampler, steps: common.steps, eta: common.sampler === 'ddim' ? common.eta : undefined });
      if (extra.jump !== undefined) repaintSchedule(sampler.timesteps.length, extra.jump, extra.resample);
      else sdeditStartStep(sampler.timesteps.length, extra.strength);
    } catch (e) {
      $('edit-step-info').textContent = `cannot ${kind === 'inpaint' ? 'inpaint' : 'edit'}: ${e instanceof Error ? e.message : String(e)}`;
      return;
    }
    const request = { ...common, ...extra };
    const { C, S } = this;
    this.resultShape = [common.n, C, S, S];
    const { cols, pad } = gridLayout(common.n);
    this.resultScale = Math.max(1, Math.floor(VIEW / (cols * (S + pad) + pad)));
    document.body.dataset.editing = 'running';
    $<HTMLProgressElement>('edit-progress').value = 0;
    $('edit-step-info').textContent = '';
    $('edit-timings').textContent = `${kind}: –`;
    $('edit-result-caption').textContent = kind === 'inpaint' ? 'inpainting…' : 'editing…';
    const mask = this.mask.slice();
    this.runId = this.runs.start(
      (id) => (kind === 'inpaint' ? { type: 'inpaint', id, ...common, mask, jump: extra.jump!, resample: extra.resample! } : { type: 'sdedit', id, ...common, strength: extra.strength! }),
      (msg) => this.onMessage(kind, { ...request, image: undefined, mask: kind === 'inpaint' ? Array.from(mask) : undefined }, msg),
    );
    f.stop.disabled = false;
  }

  private onMessage(kind: 'inpaint' | 'sdedit', request: Record<string, unknown>, msg: RunMessage): void {
    if (msg.type === 'edit-step') {
      drawGrid(this.result, msg.x, this.resultShape, this.resultScale);
      $<HTMLProgressElement>('edit-progress').value = (msg.step + 1) / msg.total;
      $('edit-step-info').textContent = `step ${msg.step + 1}/${msg.total} · ${msg.t < 0 ? 'x₀' : `t = ${msg.t}`} · ${msg.stepMs.toFixed(1)} ms`;
      return;
    }
    if (msg.type !== 'done' && msg.type !== 'error') return;
    this.runId = null;
    this.form.stop.disabled = true;
    if (msg.type === 'error') {
      document.body.dataset.editing = 'error';
      $('edit-result-caption').textContent = `${kind} failed: ${msg.message}`;
      console.error(`${kind} failed: ${msg.message}`);
      return;
    }
    document.body.dataset.editing = msg.cancelled ? 'cancelled' : 'done';
    if (msg.cancelled) {
      $('edit-step-info').textContent += ' · stopped';
      $('edit-result-caption').textContent = 'stopped';
      return;
    }
    drawGrid(this.result, msg.samples, this.resultShape, this.resultScale);
    this.debug.last = { kind, request, samples: msg.samples, shape: this.resultShape };
    const n = this.resultShape[0];
    $('edit-result-caption').textContent = `${kind === 'inpaint' ? 'inpainted' : 'edited'}: ${n} result${n === 1 ? '' : 's'}`;
    const el = $('edit-timings');
    el.textContent = `${kind}: ${msg.steps} model calls (batch ${n}) in ${(msg.totalMs / 1000).toFixed(2)} s · ${(msg.totalMs / msg.steps).toFixed(1)} ms per call with the sampler`;
    el.dataset.totalMs = msg.totalMs.toFixed(1);
    el.dataset.modelCalls = String(msg.steps);
  }
}
