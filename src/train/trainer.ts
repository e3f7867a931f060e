/**
 * The trainer: Algorithm 1 of Ho et al. 2020 as a loop around one compiled training step
 * (U-Net forward, loss, backward, gradient clipping, AdamW), with an EMA of the weights, warmup,
 * periodic sample grids and atomic checkpoints that resume exactly.
 *
 * All randomness derives from the seed: Rng(seed).fold(0) initialises the weights, fold(1).fold(step)
 * draws that step's t and ε, fold(2) drives the data order (per epoch), fold(3) the sample grids, and for a
 * class-conditional model fold(4).fold(step) that step's label dropout (which labels become ∅, "no class").
 * So a checkpoint's step, loader position, weights, EMA and optimiser moments determine the rest
 * of the run: training N+M steps equals training N, resuming, then training M.
 */
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { GaussianDiffusion } from '../diffusion/gaussian-diffusion.ts';
import { trainingLossesGraph } from '../diffusion/graph-losses.ts';
import { DdimSampler, sampleLoop } from '../diffusion/samplers.ts';
import { adamw, learningRate } from '../engine/optim.ts';
import type { ParamValue } from '../engine/tree.ts';
import type { OrtModule, RuntimeOptions } from '../engine/runtime.ts';
import { input, type Tensor } from '../engine/tensor.ts';
import type { Dim } from '../engine/graph.ts';
import { NonFiniteLossError, TrainStep } from '../engine/train_step.ts';
import { BatchLoader, type Dataset, type LoaderState } from '../data/loader.ts';
import { writeImageGrid } from '../io/image.ts';
import type { Denoiser } from '../models/denoiser.ts';
import { compileDenoiser } from '../models/denoiser-compile.ts';
import { LABEL_EMB, initUNet, unet } from '../models/unet.ts';
import { DEFAULT_GUIDANCE_SCALE, classifierFreeGuidance } from '../diffusion/guidance.ts';
import { Rng } from '../rng.ts';
import { CheckpointError, checkWeights, loadCheckpoint, loadModelDir, saveCheckpoint, warmStartWeights, type TrainState } from './checkpoint.ts';
import type { TrainConfig } from './config.ts';

/**
 * One log event: averages over the steps since the previous one. Events come every `run.logEvery` steps and,
 * between those, whenever `run.logSeconds` have passed since the previous event (the first after at most
 * FIRST_LOG_SEC), so a slow run shows progress early and a long step count still shows it regularly.
 */
export interface StepLog {
  step: number;
  /** steps averaged in this event (logEvery, or fewer when time triggered it) */
  windowSteps: number;
  loss: number;
  mse: number;
  vb?: number;
  gradNorm: number;
  lr: number;
  imgPerSec: number;
  elapsedSec: number;
}

/** The first log event of a session comes after at most this many seconds (or `logSeconds`, if smaller). */
export const FIRST_LOG_SEC = 5;

export interface TrainerEvents {
  /** after every step */
  onStep?: (step: number, loss: number) => void;
  /** every `logEvery` steps and every `logSeconds` (see StepLog), with averages over the steps since the last */
  onLog?: (log: StepLog) => void;
  onSample?: (file: string, step: number) => void;
  onCheckpoint?: (dir: string, step: number) => void;
}

export interface TrainerOptions extends RuntimeOptions {
  /** continue from `<outDir>/checkpoint` if it exists */
  resume?: boolean;
  events?: TrainerEvents;
  /** milliseconds on a monotonic clock, for the time budget and the log's timing (default performance.now; tests pass their own) */
  clock?: () => number;
}

/** EMA decay at update n: min(decay, (1+n)/(10+n)) with warmup (as in the reference recipe). */
export function emaDecayAt(n: number, decay: number, warmup: boolean): number {
  return warmup ? Math.min(decay, (1 + n) / (10 + n)) : decay;
}

/**
 * A class-conditional run needs its classes resolved from the data (withClasses, config.ts) and a dataset with
 * labels inside them; an unconditional run ignores labels.
 */
function checkLabels(config: TrainConfig, dataset: Dataset): void {
  const K = config.model.numClasses;
  if (!config.data.classCond) return;
  if (K === 0) throw new Error('class-conditional config without classes: set them from the data first (withClasses)');
  const labels = dataset.labels;
  if (!labels) throw new Error(`--class-cond: the data '${config.data.source}' has no class labels`);
  if (labels.length !== dataset.n) throw new Error(`dataset: ${labels.length} labels for ${dataset.n} images`);
  for (const c of labels) if (c >= K) throw new Error(`dataset: label ${c} is outside the model's ${K} classes`);
}

async function exists(file: string): Promise<boolean> {
  return fsp.access(file).then(
    () => true,
    () => false,
  );
}

export class Trainer {
  private stopRequested = false;
  private sampler: Denoiser | null = null;
  private lastSavedStep = -1;

  private constructor(
    private readonly ort: OrtModule,
    readonly config: TrainConfig,
    readonly outDir: string,
    readonly diffusion: GaussianDiffusion,
    readonly step: TrainStep,
    readonly ema: Map<string, ParamValue>,
    readonly loader: BatchLoader,
    public state: TrainState,
    private readonly opts: TrainerOptions,
  ) {}

  static async create(ort: OrtModule, config: TrainConfig, outDir: string, dataset: Dataset, opts: TrainerOptions = {}): Promise<Trainer> {
    const m = config.model;
    if (dataset.channels !== m.inChannels || dataset.height !== m.imageSize || dataset.width !== m.imageSize) {
      throw new Error(
        `data is ${dataset.channels}x${dataset.height}x${dataset.width} but the model expects ${m.inChannels}x${m.imageSize}x${m.imageSize} ` +
          '(set --channels / --image-size, or pick a matching config)',
      );
    }
    checkLabels(config, dataset);
    const diffusion = GaussianDiffusion.fromConfig(config.diffusion.schedule);
    const ckptDir = path.join(outDir, 'checkpoint');
    let params: Record<string, ParamValue>;
    let ema: Map<string, ParamValue>;
    let optState: Map<string, ParamValue> | null = null;
    let state: TrainState;
    const resumed = opts.resume ? await loadCheckpoint(ckptDir, { expectConfig: config }) : null;
    if (resumed) {
      // the model's own parameter order: it fixes the graph's summation order, so a resumed run
      // computes bit for bit what an uninterrupted one does
      const reference = initUNet(m, new Rng(config.run.seed).fold(0));
      checkWeights(path.join(ckptDir, 'params.safetensors'), resumed.params, reference);
      params = Object.fromEntries(Object.keys(reference).map((k) => [k, resumed.params[k]!]));
      ema = new Map(Object.keys(reference).map((k) => [k, resumed.ema[k]!]));
      optState = resumed.optimizer;
      state = resumed.state;
    } else {
      params = initUNet(m, new Rng(config.run.seed).fold(0));
      if (config.run.initFrom) {
        const source = await loadModelDir(config.run.initFrom);
        params = warmStartWeights(source.file, source.weights, params);
      }
      ema = new Map(Object.entries(params).map(([k, v]) => [k, { shape: [...v.shape], data: v.data.slice() }]));
      state = { step: 0, loader: null, elapsedSec: 0, images: 0 };
    }

    const B = config.data.batchSize;
    let loader: BatchLoader;
    try {
      loader = new BatchLoader(
        dataset,
        { batchSize: B, shuffle: true, flip: config.data.hflip, rng: new Rng(config.run.seed).fold(2) },
        state.loader ?? undefined,
      );
    } catch (e) {
      // before compiling anything: a loader state that does not fit this dataset (the options were checked by the config)
      if (state.loader) throw new CheckpointError(`${path.join(ckptDir, 'state.json')}: ${(e as Error).message}`);
      throw e;
    }
    const xShape = [B, m.inChannels, m.imageSize, m.imageSize];
    const { meanType, varType, minSnrGamma } = config.diffusion;
    // dropout uniforms become extra graph inputs (dropout0, dropout1, ...) fed from the step's RNG
    const dropoutSource = m.dropout > 0 ? { dropoutSource: (name: string, shape: readonly Dim[]) => input(name, shape) } : {};
    // a class-conditional model takes the (partly dropped) labels as one more int64 input
    const inputs: Record<string, { shape: Dim[]; dtype?: 'int64' }> = { x0: { shape: xShape }, t: { shape: [B], dtype: 'int64' }, noise: { shape: xShape } };
    if (m.numClasses > 0) inputs.y = { shape: [B], dtype: 'int64' };
    const step = await TrainStep.create(
      ort,
      {
        params,
        inputs,
        loss: (p, inp: Record<string, Tensor>) => {
          const labels = inp.y ? { labels: inp.y } : {};
          const losses = trainingLossesGraph(
            diffusion,
            (xt, tf) => unet(m, p as unknown as Record<string, Tensor>, xt, tf, { ...dropoutSource, ...labels }),
            inp.x0!,
            inp.t!,
            inp.noise!,
            { meanType, varType, minSnrGamma: minSnrGamma > 0 ? minSnrGamma : undefined },
          );
          const aux: Record<string, Tensor> = { mse: losses.mse };
          if (losses.vb) aux.vb = losses.vb;
          return { loss: losses.loss, aux };
        },
        optimizer: adamw({ b1: config.optim.beta1, b2: config.optim.beta2, eps: config.optim.eps, weightDecay: config.optim.weightDecay }),
        clipNorm: config.optim.clipNorm > 0 ? config.optim.clipNorm : undefined,
        lrScale: m.numClasses > 0 ? { [LABEL_EMB]: config.optim.classLrScale } : undefined,
      },
      opts,
    );
    if (optState) {
      for (const [k, v] of step.state) {
        const saved = optState.get(k);
        if (!saved || saved.data.length !== v.data.length) {
          await step.release();
          throw new CheckpointError(`${path.join(ckptDir, 'optimizer.safetensors')}: lacks or mis-sizes '${k}'`);
        }
        v.data = saved.data;
      }
    }
    const trainer = new Trainer(ort, config, outDir, diffusion, step, ema, loader, state, opts);
    if (resumed) trainer.lastSavedStep = state.step;
    return trainer;
  }

  /** Ask the loop to stop after the current step (it then writes a checkpoint). */
  requestStop(): void {
    this.stopRequested = true;
  }

  /** Learning rate of update `step`: warmup, constant, then the configured decay. */
  lrAt(step: number): number {
    return learningRate(this.config.optim, step);
  }

  /**
   * The batch inputs of one step: data, t ~ U{0..T−1}, ε ~ N(0, I) (Algorithm 1, lines 2–4); for a class-conditional
   * model its labels, each replaced by ∅ (label numClasses) with probability pUncond (Ho & Salimans 2022, Algorithm 1).
   */
  private stepInputs(step: number, x0: Float32Array, labels: Uint8Array | undefined): Record<string, Float32Array | BigInt64Array> {
    const B = this.config.data.batchSize;
    const r = new Rng(this.config.run.seed).fold(1).fold(step);
    const t = r.integers(this.diffusion.numTimesteps, B);
    const noise = r.normalFloat32(x0.length);
    const feeds: Record<string, Float32Array | BigInt64Array> = { x0, t: BigInt64Array.from(t, (v) => BigInt(v)), noise };
    for (const inp of this.step.fn.info.inputs) {
      if (inp.name.startsWith('dropout')) feeds[inp.name] = r.uniformFloat32(inp.shape.reduce<number>((a, d) => a * (d as number), 1));
    }
    const K = this.config.model.numClasses;
    if (K > 0) {
      const u = new Rng(this.config.run.seed).fold(4).fold(step).uniformFloat32(B);
      const p = this.config.data.pUncond;
      feeds.y = BigInt64Array.from(labels!, (c, i) => BigInt(u[i]! < p ? K : c));
    }
    return feeds;
  }

  private updateEma(): void {
    const d = emaDecayAt(this.state.step, this.config.optim.emaDecay, this.config.optim.emaWarmup);
    for (const [k, p] of this.step.paramsByPath()) {
      const e = this.ema.get(k)!.data;
      const w = p.data;
      for (let i = 0; i < e.length; i++) e[i] = d * e[i]! + (1 - d) * w[i]!;
    }
  }

  /**
   * Run until `run.steps` (or the time budget, or a stop request); writes checkpoints on the way. However it
   * stops, it ends with a checkpoint and (unless `sampleEvery` is 0, or no step was ever taken) a sample grid of
   * the last step, written once: the checkpoint first, as it is the one that matters when the user is waiting.
   */
  async train(): Promise<{ steps: number; stopped: 'done' | 'requested' | 'budget' }> {
    const { run } = this.config;
    const ev = this.opts.events ?? {};
    const B = this.config.data.batchSize;
    const x0 = new Float32Array(B * this.config.model.inChannels * this.config.model.imageSize ** 2);
    const budgetSec = run.minutes > 0 ? run.minutes * 60 : Infinity;
    const now = this.opts.clock ?? (() => performance.now());
    const sessionStart = now();
    const elapsedBase = this.state.elapsedSec;
    let window = { loss: 0, mse: 0, vb: 0, gradNorm: 0, n: 0, t0: now() };
    let nextLogSec = run.logSeconds > 0 ? Math.min(FIRST_LOG_SEC, run.logSeconds) : Infinity;
    // one log event: the averages over the steps since the previous one
    const log = () => {
      const dt = (now() - window.t0) / 1000;
      ev.onLog?.({
        step: this.state.step,
        windowSteps: window.n,
        loss: window.loss / window.n,
        mse: window.mse / window.n,
        vb: this.config.diffusion.varType === 'learnedRange' ? window.vb / window.n : undefined,
        gradNorm: window.gradNorm / window.n,
        lr: this.lrAt(this.state.step - 1),
        imgPerSec: (window.n * B) / dt,
        elapsedSec: this.state.elapsedSec,
      });
      window = { loss: 0, mse: 0, vb: 0, gradNorm: 0, n: 0, t0: now() };
    };
    let stopped: 'done' | 'requested' | 'budget' = 'done';
    while (run.steps === 0 || this.state.step < run.steps) {
      if (this.stopRequested) {
        stopped = 'requested';
        break;
      }
      const elapsed = elapsedBase + (now() - sessionStart) / 1000;
      if (elapsed >= budgetSec) {
        stopped = 'budget';
        break;
      }
      const elapsedBefore = this.state.elapsedSec;
      const batch = this.loader.next(x0);
      const n = this.state.step;
      let res;
      try {
        res = await this.step.step(this.stepInputs(n, x0, batch.labels), this.lrAt(n));
      } catch (e) {
        if (e instanceof NonFiniteLossError) {
          await this.checkpoint();
          throw new NonFiniteLossError(`step ${n}: ${e.message}. The last good state was saved to ${path.join(this.outDir, 'checkpoint')}; try a lower --lr or --clip-norm.`);
        }
        throw e;
      }
      this.updateEma();
      this.state.step = n + 1;
      this.state.images += B;
      this.state.elapsedSec = elapsedBase + (now() - sessionStart) / 1000;
      ev.onStep?.(this.state.step, res.loss);
      window.loss += res.loss;
      window.mse += res.aux.mse ?? res.loss;
      window.vb += res.aux.vb ?? 0;
      window.gradNorm += res.gradNorm;
      window.n++;
      if (this.state.step % run.logEvery === 0 || (now() - window.t0) / 1000 >= nextLogSec) {
        log();
        nextLogSec = run.logSeconds > 0 ? run.logSeconds : Infinity;
      }
      if (run.sampleEvery > 0 && this.state.step % run.sampleEvery === 0) await this.sampleGrid();
      // the snapshot before the step's checkpoint: killed while writing it, the run resumes from a checkpoint taken
      // before the time mark and writes the snapshot again
      // every snapshotMinutes of training time: snapshot-<M>min, snapshot-<2M>min, ...; a step that passes several
      // marks (a period shorter than a step) writes one, named after the first it passed
      const snap = run.snapshotMinutes;
      const period = snap * 60; // seconds; marks compared with a 1 µs tolerance, so that k·period needs no exact float
      const mark = snap > 0 ? Math.floor(elapsedBefore / period + 1e-6 / period) + 1 : 0;
      if (snap > 0 && this.state.elapsedSec >= mark * period - 1e-6) {
        await this.snapshot(`snapshot-${Number((mark * snap).toPrecision(12))}min`);
      }
      if (this.state.step % run.checkpointEvery === 0) await this.checkpoint();
    }
    if (window.n > 0) log(); // the steps since the last event (a run stopped by time or by the user)
    if (this.lastSavedStep !== this.state.step) await this.checkpoint();
    if (run.sampleEvery > 0 && this.state.step > 0 && !(await exists(this.gridFile()))) await this.sampleGrid();
    return { steps: this.state.step, stopped };
  }

  /** `<outDir>/samples/step_XXXXXXX.png` for the current step. */
  private gridFile(): string {
    return path.join(this.outDir, 'samples', `step_${String(this.state.step).padStart(7, '0')}.png`);
  }

  /** Write `<outDir>/checkpoint` atomically. */
  async checkpoint(): Promise<string> {
    const dir = await this.snapshot('checkpoint');
    this.lastSavedStep = this.state.step;
    return dir;
  }

  /** Write the current state as a checkpoint under `<outDir>/<name>` (kept, never overwritten by training). */
  async snapshot(name: string): Promise<string> {
    const dir = path.join(this.outDir, name);
    this.state.loader = this.loader.state() as LoaderState;
    await saveCheckpoint(dir, {
      config: this.config,
      params: Object.fromEntries(this.step.paramsByPath()),
      ema: Object.fromEntries(this.ema),
      optimizer: this.step.state,
      state: this.state,
    });
    this.opts.events?.onCheckpoint?.(dir, this.state.step);
    return dir;
  }

  /** A DDIM sample grid from the EMA weights, written to `<outDir>/samples/step_XXXXXXX.png`. */
  async sampleGrid(): Promise<string> {
    const m = this.config.model;
    if (!this.sampler) this.sampler = await compileDenoiser(this.ort, m, Object.fromEntries(this.ema), { ...this.opts, weightsAsInputs: true });
    this.sampler.setWeights(this.ema);
    const n = this.config.run.sampleCount;
    const sampler = new DdimSampler(this.diffusion, {
      meanType: this.config.diffusion.meanType,
      varType: this.config.diffusion.varType,
      eta: 0,
      timesteps: `ddim${this.config.run.sampleSteps}`,
      clipDenoised: true,
    });
    const shape = [n, m.inChannels, m.imageSize, m.imageSize];
    // a class-conditional model draws image i of class i mod K, guided as `ddpm sample --class` is by default,
    // one class per column when the classes fit a row
    const K = m.numClasses;
    const model = K > 0
      ? classifierFreeGuidance(this.sampler.predictClass, { labels: Int32Array.from({ length: n }, (_, i) => i % K), numClasses: K, scale: DEFAULT_GUIDANCE_SCALE })
      : this.sampler.predict;
    const x = await sampleLoop(sampler, model, shape, new Rng(this.config.run.seed).fold(3));
    const file = this.gridFile();
    await fsp.mkdir(path.dirname(file), { recursive: true });
    await writeImageGrid(file, x, shape as [number, number, number, number], { nrow: K > 0 && K <= 16 ? K : Math.ceil(Math.sqrt(n)) });
    this.opts.events?.onSample?.(file, this.state.step);
    return file;
  }

  async release(): Promise<void> {
    await this.step.release();
    await this.sampler?.release();
  }
}

