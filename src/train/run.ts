/**
 * One training run without files: the compiled step (U-Net forward, loss, backward, clipping, AdamW), the EMA of the
 * weights, the data order and the step's random draws, as Algorithm 1 of Ho et al. 2020. The Node trainer
 * (trainer.ts: checkpoints, time budget, logs, sample grids on disk) and the browser's Train view
 * (web/src/train-worker.ts) both drive this class, so a run in a tab computes what `ddpm train` computes.
 *
 * All randomness derives from the seed: Rng(seed).fold(0) initialises the weights, fold(1).fold(step) draws that
 * step's t, ε and dropout, fold(2) drives the data order (per epoch), fold(3) the sample grids, and for a
 * class-conditional model fold(4).fold(step) that step's label dropout (which labels become ∅, "no class"). So the
 * step, loader position, weights, EMA and optimiser moments determine the rest of the run: training N+M steps equals
 * training N, saving, restoring, then training M.
 *
 * On onnxruntime-web's WebGPU the weights, moments and EMA stay on the device between steps: the compiled step updates
 * the EMA itself there, and `sync()` reads the state back (contents() needs it; sampleEma does it).
 */
import { GaussianDiffusion } from '../diffusion/gaussian-diffusion.ts';
import { trainingLossesGraph } from '../diffusion/graph-losses.ts';
import { BatchLoader, checkLoaderState, type Batch, type Dataset, type LoaderState } from '../data/loader.ts';
import { describeValue } from '../describe.ts';
import type { Dim } from '../engine/graph.ts';
import { adamw, learningRate } from '../engine/optim.ts';
import type { OrtModule, RuntimeOptions } from '../engine/runtime.ts';
import { input, type Tensor } from '../engine/tensor.ts';
import { TrainStep, stateOnDevice, type StepResult } from '../engine/train_step.ts';
import type { ParamValue } from '../engine/tree.ts';
import { DEFAULT_GUIDANCE_SCALE, classifierFreeGuidance } from '../diffusion/guidance.ts';
import { DEFAULT_DDIM_ETA, DdimSampler, sampleLoop } from '../diffusion/samplers.ts';
import type { Denoiser } from '../models/denoiser.ts';
import { compileDenoiser } from '../models/denoiser-compile.ts';
import { LABEL_EMB, initUNet, unet } from '../models/unet.ts';
import { Rng } from '../rng.ts';
import type { TrainConfig } from './config.ts';

export interface TrainState {
  /** optimisation steps done */
  step: number;
  /** where the next batch comes from (null before the first checkpoint of a run) */
  loader: LoaderState | null;
  /** training wall time so far, seconds (everything in the loop, sample grids and checkpoints included) */
  elapsedSec: number;
  /** training images seen */
  images: number;
}

/** What a checkpoint holds: enough to continue the run exactly. */
export interface CheckpointContents {
  config: TrainConfig;
  params: Record<string, ParamValue>;
  ema: Record<string, ParamValue>;
  optimizer: Map<string, ParamValue>;
  state: TrainState;
}

/** A saved state that does not fit the run (which part: the data position or the optimiser moments). */
export class RunStateError extends Error {
  override name = 'RunStateError';
  constructor(readonly part: 'loader' | 'optimizer', message: string) {
    super(message);
  }
}

/** Validate a parsed state (exactly the TrainState keys, types and ranges); `bad` raises the caller's error. */
export function validateTrainState(raw: unknown, bad: (msg: string) => never): TrainState {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) bad(`expected an object, got ${describeValue(raw)}`);
  const s = raw as Record<string, unknown>;
  const keys = ['step', 'loader', 'elapsedSec', 'images'];
  for (const k of Object.keys(s)) if (!keys.includes(k)) bad(`unknown key '${k}' (known: ${keys.join(', ')})`);
  for (const k of keys) if (!(k in s)) bad(`missing '${k}'`);
  const count = (k: string): number => {
    const v = s[k];
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) bad(`'${k}' must be a non-negative integer, got ${describeValue(v)}`);
    return v as number;
  };
  const step = count('step');
  const images = count('images');
  const elapsedSec = s.elapsedSec;
  if (typeof elapsedSec !== 'number' || !Number.isFinite(elapsedSec) || elapsedSec < 0) {
    bad(`'elapsedSec' must be a finite number >= 0, got ${describeValue(elapsedSec)}`);
  }
  let loader: LoaderState | null = null;
  if (s.loader !== null) {
    try {
      loader = checkLoaderState(s.loader);
    } catch (e) {
      bad(`'loader': ${(e as Error).message}`);
    }
  }
  return { step, loader, elapsedSec: elapsedSec as number, images };
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

/** Where a run starts: nothing (a fresh init from the seed), another model's weights, or a saved state. */
export interface RunStart {
  /** the weights to start from, in any order (default: the U-Net's init from Rng(seed).fold(0)) */
  params?: Record<string, ParamValue>;
  /** the EMA to continue (default: a copy of the starting weights) */
  ema?: Record<string, ParamValue>;
  /** AdamW moments and update count, as `optimizer` of a checkpoint (default: zero) */
  optimizer?: Map<string, ParamValue>;
  /** step, data position, images, time (default: the start) */
  state?: TrainState;
}

/** What one step did. */
export interface RunStepResult extends StepResult {
  /** the learning rate it used */
  lr: number;
  /** the batch it trained on */
  batch: Batch;
}

export class TrainingRun {
  private readonly x0: Float32Array;
  private sampler: Denoiser | null = null;

  private constructor(
    readonly config: TrainConfig,
    readonly diffusion: GaussianDiffusion,
    readonly step: TrainStep,
    readonly ema: Map<string, ParamValue>,
    readonly loader: BatchLoader,
    public state: TrainState,
  ) {
    const m = config.model;
    this.x0 = new Float32Array(config.data.batchSize * m.inChannels * m.imageSize * m.imageSize);
  }

  /**
   * Compile the run's training step on `ort` and set its state from `start`. A loader state or optimiser moments
   * that do not fit throw RunStateError, the loader's before anything is compiled.
   */
  static async create(ort: OrtModule, config: TrainConfig, dataset: Dataset, start: RunStart = {}, runtime: RuntimeOptions = {}): Promise<TrainingRun> {
    const m = config.model;
    if (dataset.channels !== m.inChannels || dataset.height !== m.imageSize || dataset.width !== m.imageSize) {
      throw new Error(
        `data is ${dataset.channels}x${dataset.height}x${dataset.width} but the model expects ${m.inChannels}x${m.imageSize}x${m.imageSize} ` +
          '(set --channels / --image-size, or pick a matching config)',
      );
    }
    checkLabels(config, dataset);
    const diffusion = GaussianDiffusion.fromConfig(config.diffusion.schedule);
    // the model's own parameter order: it fixes the graph's summation order, so a resumed run computes bit for bit
    // what an uninterrupted one does
    const reference = initUNet(m, new Rng(config.run.seed).fold(0));
    const params = start.params ? Object.fromEntries(Object.keys(reference).map((k) => [k, start.params![k]!])) : reference;
    const ema = new Map(
      Object.keys(reference).map((k) => {
        const v = start.ema?.[k] ?? params[k]!;
        return [k, start.ema ? v : { shape: [...v.shape], data: v.data.slice() }];
      }),
    );
    const state: TrainState = start.state ?? { step: 0, loader: null, elapsedSec: 0, images: 0 };

    const B = config.data.batchSize;
    let loader: BatchLoader;
    try {
      loader = new BatchLoader(dataset, { batchSize: B, shuffle: true, flip: config.data.hflip, rng: new Rng(config.run.seed).fold(2) }, state.loader ?? undefined);
    } catch (e) {
      if (state.loader) throw new RunStateError('loader', (e as Error).message);
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
        // with the state on the device, the EMA is updated there too (in float32: last-bit differences from the CPU's)
        ...(stateOnDevice(ort, runtime) ? { ema } : {}),
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
      runtime,
    );
    if (start.optimizer) {
      for (const [k, v] of step.state) {
        const saved = start.optimizer.get(k);
        if (!saved || saved.data.length !== v.data.length) {
          await step.release();
          throw new RunStateError('optimizer', `lacks or mis-sizes '${k}'`);
        }
        v.data = saved.data;
      }
    }
    return new TrainingRun(config, diffusion, step, ema, loader, state);
  }

  /** Learning rate of update `step`: warmup, constant, then the configured decay. */
  lrAt(step: number): number {
    return learningRate(this.config.optim, step);
  }

  /**
   * The batch inputs of one step: data, t ~ U{0..T−1}, ε ~ N(0, I) (Algorithm 1, lines 2–4); for a class-conditional
   * model its labels, each replaced by ∅ (label numClasses) with probability pUncond (Ho & Salimans 2022, Algorithm 1).
   */
  stepInputs(step: number, x0: Float32Array, labels: Uint8Array | undefined): Record<string, Float32Array | BigInt64Array> {
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

  /**
   * One training step: the next batch, the compiled step at this step's learning rate, the EMA update. A non-finite
   * loss throws NonFiniteLossError (train_step.ts) and changes nothing but the loader's position. `elapsedSec` is
   * the caller's to keep.
   */
  async next(): Promise<RunStepResult> {
    const batch = this.loader.next(this.x0);
    const n = this.state.step;
    const lr = this.lrAt(n);
    const decay = emaDecayAt(n, this.config.optim.emaDecay, this.config.optim.emaWarmup);
    const inputs = this.stepInputs(n, this.x0, batch.labels);
    const res = this.step.keepsEma ? await this.step.step(inputs, lr, decay) : await this.step.step(inputs, lr);
    if (!this.step.keepsEma) this.updateEma(decay);
    this.state.step = n + 1;
    this.state.images += this.config.data.batchSize;
    return { ...res, lr, batch };
  }

  private updateEma(d: number): void {
    for (const [k, p] of this.step.paramsByPath()) {
      const e = this.ema.get(k)!.data;
      const w = p.data;
      for (let i = 0; i < e.length; i++) e[i] = d * e[i]! + (1 - d) * w[i]!;
    }
  }

  /** Read the state from the device (WebGPU) into `ema` and the step's maps; nothing to do elsewhere. */
  async sync(): Promise<void> {
    await this.step.sync();
  }

  /**
   * The run as a checkpoint holds it (the loader's position taken now). The arrays are the run's own, not copies.
   * With the state on a device, `sync()` first.
   */
  contents(): CheckpointContents {
    if (this.step.stale) throw new Error('TrainingRun.contents: the state is on the device: sync() first');
    this.state.loader = this.loader.state() as LoaderState;
    return {
      config: this.config,
      params: Object.fromEntries(this.step.paramsByPath()),
      ema: Object.fromEntries(this.ema),
      optimizer: this.step.state,
      state: this.state,
    };
  }

  /**
   * `n` DDIM samples (`steps` steps, η and clipping as `ddpm sample`'s defaults) from the EMA weights, from Rng(seed).fold(3): the same images for
   * the same weights. A class-conditional model draws image i of class i mod K, guided as `ddpm sample --class` is
   * by default. The denoiser is compiled on first use (weights as inputs) and kept.
   */
  async sampleEma(ort: OrtModule, n: number, steps: number, runtime: RuntimeOptions = {}): Promise<Float32Array> {
    const m = this.config.model;
    await this.sync();
    if (!this.sampler) this.sampler = await compileDenoiser(ort, m, Object.fromEntries(this.ema), { ...runtime, weightsAsInputs: true });
    this.sampler.setWeights(this.ema);
    const sampler = new DdimSampler(this.diffusion, {
      meanType: this.config.diffusion.meanType,
      varType: this.config.diffusion.varType,
      eta: DEFAULT_DDIM_ETA,
      timesteps: `ddim${steps}`,
      clipDenoised: true,
    });
    const K = m.numClasses;
    const model = K > 0
      ? classifierFreeGuidance(this.sampler.predictClass, { labels: Int32Array.from({ length: n }, (_, i) => i % K), numClasses: K, scale: DEFAULT_GUIDANCE_SCALE })
      : this.sampler.predict;
    return sampleLoop(sampler, model, [n, m.inChannels, m.imageSize, m.imageSize], new Rng(this.config.run.seed).fold(3));
  }

  async release(): Promise<void> {
    await this.step.release();
    await this.sampler?.release();
  }
}
