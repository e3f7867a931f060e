/**
 * The Train view: a DDPM trained in this tab by the training worker (train-worker.ts), with a loss curve, the speed,
 * sample grids from the EMA weights, and checkpoints downloaded and uploaded as one safetensors file (`ddpm sample
 * --checkpoint` reads it). Data: the shipped MNIST digits, or images the user picks (decoded here to the preset's
 * size and channels, as the CLI reads a folder: shorter side scaled, centre-cropped, Rec. 601 luma for grey).
 *
 * body[data-training] is idle | starting | running | paused | error (for tests). The worker starts on first use.
 */
import { parseSafetensorsHeader } from '../../src/io/safetensors.ts';
import type { DiffusionConfig } from '../../src/diffusion/config.ts';
import { UNET_CONFIGS, type UNetConfig } from '../../src/models/unet.ts';
import { PRESET_RECIPES } from '../../src/train/config.ts';
import { collectDropped, collectPicked, describeCollected, type CollectedFiles, type EntryLike } from './folder-files.ts';
import { decodeImage, drawGrid, gridLayout } from './image.ts';
import type { BackendChoice } from './protocol.ts';
import { TRAIN_PRESETS, type FromTrainWorker, type ToTrainWorker, type TrainData, type TrainPreset } from './train-protocol.ts';

/** The model config in a checkpoint file's metadata, to read images at its size. */
function checkpointModel(bytes: Uint8Array, name: string): { inChannels: number; imageSize: number } {
  try {
    const { metadata } = parseSafetensorsHeader(bytes);
    const m = (JSON.parse(metadata.config ?? 'null') as { model?: { inChannels?: unknown; imageSize?: unknown } } | null)?.model;
    if (typeof m?.inChannels === 'number' && typeof m.imageSize === 'number') return { inChannels: m.inChannels, imageSize: m.imageSize };
  } catch (e) {
    throw new Error(`${name}: ${(e as Error).message}`);
  }
  throw new Error(`${name}: not a ddpm-ts checkpoint file (no model config in its metadata)`);
}

const $ = <T extends HTMLElement>(id: string): T => document.getElementById(id) as T;

/** The loss curve keeps at most this many points (older ones are merged pairwise). */
const MAX_POINTS = 600;

export interface TrainPanelOptions {
  ortUrl: string;
  wasmUrl: string;
  dataUrl: string;
  backend: BackendChoice;
  threads: number;
  /** hand ONNX bytes of the EMA weights to the Generate view */
  useModel: (bytes: Uint8Array, step: number, unet: UNetConfig, diffusion: DiffusionConfig) => void;
  showError: (msg: string) => void;
}

/** What tests and the console may read: the last checkpoint bytes and progress. */
export interface TrainDebug {
  lastCheckpoint: { bytes: Uint8Array; fileName: string } | null;
  step: number;
  losses: number[];
  /** how many of the state's tensors (weights, moments, EMA) are in each location, after the last step */
  state: Record<string, number>;
}

export class TrainPanel {
  readonly debug: TrainDebug = { lastCheckpoint: null, step: 0, losses: [], state: {} };
  private worker: Worker | null = null;
  private readonly el = {
    form: $<HTMLFormElement>('train-form'),
    preset: $<HTMLSelectElement>('train-preset'),
    data: $<HTMLSelectElement>('train-data'),
    imagesLabel: $<HTMLElement>('train-images-label'),
    images: $<HTMLInputElement>('train-images'),
    folder: $<HTMLInputElement>('train-folder'),
    batch: $<HTMLInputElement>('train-batch'),
    seed: $<HTMLInputElement>('train-seed'),
    sampleEvery: $<HTMLInputElement>('train-sample-every'),
    stopAt: $<HTMLInputElement>('train-stop-at'),
    start: $<HTMLButtonElement>('train-start'),
    pause: $<HTMLButtonElement>('train-pause'),
    sample: $<HTMLButtonElement>('train-sample'),
    download: $<HTMLButtonElement>('train-download'),
    upload: $<HTMLInputElement>('train-upload'),
    use: $<HTMLButtonElement>('train-use'),
    status: $('train-status'),
    loss: $('train-loss'),
    grid: $<HTMLCanvasElement>('train-grid'),
    gridCaption: $('train-grid-caption'),
  };
  private losses: { step: number; loss: number }[] = [];
  /** the images of the last pick or drop, sorted out as a folder walk sorts them (folder-files.ts) */
  private chosen: Promise<CollectedFiles> | null = null;
  private ready: Promise<void> | null = null;
  private resolveReady: (() => void) | null = null;
  private backendLine = '';
  private startLine = '';

  constructor(private readonly opts: TrainPanelOptions) {
    const e = this.el;
    for (const p of TRAIN_PRESETS) {
      const m = UNET_CONFIGS[p]!;
      e.preset.add(new Option(`${p} · ${m.inChannels}×${m.imageSize}×${m.imageSize}`, p));
    }
    e.preset.onchange = () => this.presetChanged();
    e.data.onchange = () => this.dataChanged();
    this.presetChanged();
    e.form.onsubmit = (ev) => {
      ev.preventDefault();
      this.start().catch((err) => this.fail(err));
    };
    e.pause.onclick = () => {
      if (document.body.dataset.training === 'running') this.send({ type: 'pause' });
      else this.resume();
    };
    e.sample.onclick = () => this.send({ type: 'sample' });
    e.download.onclick = () => this.send({ type: 'download' });
    e.use.onclick = () => this.send({ type: 'export' });
    e.upload.onchange = () => this.start(e.upload.files?.[0]).catch((err) => this.fail(err));
    const picked = (input: HTMLInputElement, what: string) => {
      this.choose(collectPicked([...(input.files ?? [])]), what);
    };
    e.images.onchange = () => picked(e.images, 'picked');
    e.folder.onchange = () => picked(e.folder, 'in the picked folder');
    // images dropped anywhere on the view train the next run
    const view = $('train');
    view.addEventListener('dragover', (ev) => {
      ev.preventDefault();
      view.classList.add('dropping');
    });
    view.addEventListener('dragleave', () => view.classList.remove('dropping'));
    view.addEventListener('drop', (ev) => {
      ev.preventDefault();
      view.classList.remove('dropping');
      // folders arrive as entries (walked, links and all, by collectDropped); plain files as Files
      const items = [...(ev.dataTransfer?.items ?? [])].filter((i) => i.kind === 'file');
      const entries = items.map((i) => i.webkitGetAsEntry?.()).filter((x): x is FileSystemEntry => x != null);
      const files = [...(ev.dataTransfer?.files ?? [])];
      if (entries.length === 0 && files.length === 0) return;
      e.data.value = 'images';
      this.dataChanged();
      this.choose(entries.length > 0 ? collectDropped(entries as unknown as EntryLike[]) : collectPicked(files), 'dropped');
    });
    e.start.disabled = false;
    this.setState('idle');
    this.drawLoss();
  }

  private presetChanged(): void {
    const p = this.el.preset.value as TrainPreset;
    const m = UNET_CONFIGS[p]!;
    this.el.batch.value = String(PRESET_RECIPES[p]?.data?.batchSize ?? 64);
    // MNIST is 1×28×28: other presets train on the user's images
    const mnistFits = m.inChannels === 1 && m.imageSize === 28;
    this.el.data.options[0]!.disabled = !mnistFits;
    if (!mnistFits) this.el.data.value = 'images';
    this.dataChanged();
  }

  private dataChanged(): void {
    this.el.imagesLabel.hidden = this.el.data.value !== 'images';
  }

  private setState(s: 'idle' | 'starting' | 'running' | 'paused' | 'error'): void {
    document.body.dataset.training = s;
    const e = this.el;
    const has = s === 'running' || s === 'paused';
    e.start.disabled = s === 'starting' || s === 'running';
    e.upload.disabled = s === 'starting' || s === 'running';
    e.pause.disabled = !has;
    e.pause.textContent = s === 'paused' ? 'Resume' : 'Pause';
    e.sample.disabled = !has;
    e.download.disabled = !has;
    e.use.disabled = !has;
  }

  private fail(err: unknown): void {
    this.setState('error');
    this.opts.showError(`training: ${err instanceof Error ? err.message : String(err)}`);
  }

  private send(msg: ToTrainWorker): void {
    this.worker!.postMessage(msg);
  }

  private ensureWorker(): Promise<void> {
    if (this.ready) return this.ready;
    this.ready = new Promise((resolve) => (this.resolveReady = resolve));
    const w = new Worker(new URL('./train-worker.ts', import.meta.url), { type: 'module' });
    this.worker = w;
    w.onerror = (ev) => this.fail(`the training worker failed: ${ev.message || 'could not start'}`);
    w.onmessage = (ev: MessageEvent<FromTrainWorker>) => this.onMessage(ev.data);
    const { ortUrl, wasmUrl, dataUrl, backend, threads } = this.opts;
    this.send({ type: 'init', ortUrl, wasmUrl, dataUrl, backend, threads });
    return this.ready;
  }

  private int(el: HTMLInputElement, lo: number, hi: number): number {
    const v = Math.min(hi, Math.max(lo, Math.round(Number(el.value) || 0)));
    el.value = String(v);
    return v;
  }

  /** Start a run: from the form, or continuing `checkpoint` (a file the user picked). */
  private async start(checkpoint?: File): Promise<void> {
    this.setState('starting');
    const e = this.el;
    const preset = e.preset.value as TrainPreset;
    const bytes = checkpoint ? new Uint8Array(await checkpoint.arrayBuffer()) : undefined;
    // a checkpoint's model decides the size of the images (the worker checks the file in full)
    const m = bytes ? checkpointModel(bytes, checkpoint!.name) : UNET_CONFIGS[preset]!;
    this.status('preparing data…');
    const data = await this.readData(m);
    e.upload.value = '';
    await this.ensureWorker();
    this.status('compiling the training step (trace, autodiff, ONNX)…');
    this.losses = [];
    this.debug.losses = [];
    this.drawLoss();
    this.send({
      type: 'start',
      preset,
      seed: this.int(e.seed, 0, 2 ** 32 - 1),
      batchSize: this.int(e.batch, 1, 256),
      sampleEvery: this.int(e.sampleEvery, 0, 1e9),
      stopAt: this.int(e.stopAt, 0, 1e9),
      data,
      checkpoint: bytes,
    });
  }

  /** The images of a pick or drop replace the earlier ones; the status line counts them as the CLI counts a folder. */
  private choose(collecting: Promise<CollectedFiles>, what: string): void {
    this.chosen = collecting;
    this.status('reading the file list…');
    collecting.then(
      (c) => {
        if (this.chosen === collecting) this.status(`${describeCollected(c.images.length, c, [])} ${what}: Start trains on them`);
      },
      (err) => this.fail(err),
    );
  }

  private resume(): void {
    this.setState('running');
    this.send({ type: 'resume', stopAt: this.int(this.el.stopAt, 0, 1e9) });
  }

  /** The run's data: MNIST, or the chosen images decoded to the model's size and channels (unreadable files skipped and counted). */
  private async readData(m: { inChannels: number; imageSize: number }): Promise<TrainData> {
    if (this.el.data.value === 'mnist') return { kind: 'mnist' };
    const chosen = await (this.chosen ?? collectPicked([...(this.el.images.files ?? [])]));
    const files = chosen.images;
    if (files.length === 0) {
      const why = describeCollected(0, chosen, []);
      throw new Error(`pick or drop some images (PNG, JPEG or WebP) first, or choose the MNIST digits${this.chosen ? ` (found ${why})` : ''}`);
    }
    if (m.inChannels !== 1 && m.inChannels !== 3) throw new Error(`a model of ${m.inChannels} channels cannot train on pictures (1 or 3)`);
    const channels = m.inChannels as 1 | 3;
    const size = m.imageSize;
    const plane = channels * size * size;
    const pixels = new Uint8Array(files.length * plane);
    let n = 0;
    const unreadable: { file: string; reason: string }[] = [];
    for (const { path, file } of files) {
      try {
        const img = await decodeImage(file as File, { size, channels, background: 'black', invert: false });
        pixels.set(img.pixels, n * plane);
        n++;
      } catch (err) {
        unreadable.push({ file: path, reason: file.size === 0 ? 'empty file' : 'not a readable image' });
      }
      if ((n + unreadable.length) % 50 === 0) this.status(`reading images… ${n + unreadable.length}/${files.length}`);
    }
    if (n === 0) throw new Error(`none of the ${files.length} image files could be read (${unreadable[0]!.file}: ${unreadable[0]!.reason})`);
    const leftOut = describeCollected(n, chosen, unreadable).replace(/^[\d,]+ images?/, '');
    return { kind: 'images', pixels: pixels.slice(0, n * plane), n, channels, size, leftOut };
  }

  private status(text: string): void {
    this.el.status.textContent = text;
  }

  private onMessage(msg: FromTrainWorker): void {
    if (msg.type === 'ready') {
      this.backendLine = `${msg.backend}${msg.backend === 'wasm' ? ` · ${msg.threads} thread${msg.threads === 1 ? '' : 's'}` : ''}${msg.note ? ` · ${msg.note}` : ''}`;
      this.resolveReady?.();
    } else if (msg.type === 'started') {
      this.startLine =
        `${msg.description} · ${msg.data}${msg.step > 0 ? ` · from step ${msg.step}` : ''} · compiled in ${(msg.compileMs / 1000).toFixed(1)} s` +
        ` · ${this.backendLine}${msg.note ? ` · ${msg.note}` : ''}`;
      this.status(this.startLine);
      this.setState('running');
    } else if (msg.type === 'progress') {
      this.debug.step = msg.step;
      this.debug.state = msg.state;
      this.debug.losses.push(msg.loss);
      this.losses.push({ step: msg.step, loss: msg.loss });
      if (this.losses.length > MAX_POINTS) this.losses = this.thin(this.losses);
      const min = Math.floor(msg.elapsedSec / 60);
      const sec = Math.floor(msg.elapsedSec % 60);
      const onGpu = Object.keys(msg.state).join() === 'gpu-buffer' ? ' · weights, moments and EMA stay on the GPU' : '';
      this.status(
        `step ${msg.step} · loss ${msg.loss.toFixed(4)} · ${msg.imgPerSec.toFixed(1)} img/s · lr ${msg.lr.toExponential(2)} · ` +
          `${min}m${String(sec).padStart(2, '0')}s of training${onGpu}\n${this.startLine}`,
      );
      this.el.status.dataset.step = String(msg.step);
      this.el.status.dataset.imgPerSec = msg.imgPerSec.toFixed(2);
      this.drawLoss();
    } else if (msg.type === 'paused') {
      this.setState('paused');
    } else if (msg.type === 'samples') {
      const { cols, pad } = gridLayout(msg.shape[0]);
      const scale = Math.max(1, Math.floor(260 / (cols * (msg.shape[3] + pad) + pad)));
      drawGrid(this.el.grid, msg.samples, msg.shape, scale);
      this.el.gridCaption.textContent = `${msg.shape[0]} DDIM-20 samples from the EMA weights at step ${msg.step} (${(msg.ms / 1000).toFixed(1)} s)`;
      this.el.grid.dataset.step = String(msg.step);
    } else if (msg.type === 'checkpoint') {
      this.debug.lastCheckpoint = { bytes: msg.bytes, fileName: msg.fileName };
      const a = document.createElement('a');
      a.href = URL.createObjectURL(new Blob([msg.bytes as Uint8Array<ArrayBuffer>], { type: 'application/octet-stream' }));
      a.download = msg.fileName;
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(a.href), 60_000);
    } else if (msg.type === 'model') {
      this.opts.useModel(msg.bytes, msg.step, msg.unet, msg.diffusion);
    } else if (msg.type === 'error') {
      this.fail(msg.message);
    }
  }

  /** Halve the points: each pair becomes its mean at the later step. */
  private thin(points: { step: number; loss: number }[]): { step: number; loss: number }[] {
    const out: { step: number; loss: number }[] = [];
    for (let i = 0; i + 1 < points.length; i += 2) out.push({ step: points[i + 1]!.step, loss: (points[i]!.loss + points[i + 1]!.loss) / 2 });
    if (points.length % 2) out.push(points.at(-1)!);
    return out;
  }

  /** The loss per step on a log scale, with a running mean over ~2% of the points. */
  private drawLoss(): void {
    const W = 340;
    const H = 210;
    const M = { l: 46, r: 10, t: 12, b: 30 };
    const pts = this.losses.filter((p) => Number.isFinite(p.loss) && p.loss > 0);
    let body = `<rect class="frame" x="${M.l}" y="${M.t}" width="${W - M.l - M.r}" height="${H - M.t - M.b}"/>`;
    if (pts.length >= 2) {
      const x0 = pts[0]!.step;
      const x1 = Math.max(x0 + 1, pts.at(-1)!.step);
      const logs = pts.map((p) => Math.log10(p.loss));
      const lo = Math.floor(Math.min(...logs) * 2) / 2;
      const hi = Math.max(lo + 0.5, Math.ceil(Math.max(...logs) * 2) / 2);
      const X = (s: number) => M.l + ((s - x0) / (x1 - x0)) * (W - M.l - M.r);
      const Y = (l: number) => M.t + ((hi - l) / (hi - lo)) * (H - M.t - M.b);
      for (let l = lo; l <= hi + 1e-9; l += 0.5) {
        body += `<line class="grid" x1="${M.l}" x2="${W - M.r}" y1="${Y(l)}" y2="${Y(l)}"/><text class="tick" x="${M.l - 4}" y="${Y(l) + 3}" text-anchor="end">${Number((10 ** l).toPrecision(2))}</text>`;
      }
      body += `<text class="tick" x="${M.l}" y="${H - 12}">${x0}</text><text class="tick" x="${W - M.r}" y="${H - 12}" text-anchor="end">${x1}</text>`;
      body += `<polyline fill="none" stroke="#aec7e8" stroke-width="1" points="${pts.map((p, i) => `${X(p.step).toFixed(1)},${Y(logs[i]!).toFixed(1)}`).join(' ')}"/>`;
      const k = Math.max(1, Math.round(pts.length / 50));
      const smooth: string[] = [];
      for (let i = k - 1; i < pts.length; i++) {
        let s = 0;
        for (let j = i - k + 1; j <= i; j++) s += pts[j]!.loss;
        smooth.push(`${X(pts[i]!.step).toFixed(1)},${Y(Math.log10(s / k)).toFixed(1)}`);
      }
      body += `<polyline fill="none" stroke="#1f77b4" stroke-width="2" points="${smooth.join(' ')}"/>`;
    }
    body += `<text class="tick" x="${(W + M.l) / 2}" y="${H - 2}" text-anchor="middle">step</text>`;
    this.el.loss.innerHTML = `<svg width="${W}" height="${H}" viewBox="0 0 ${W} ${H}">${body}</svg>`;
  }
}
