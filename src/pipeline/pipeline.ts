/**
 * DDPMPipeline: a trained model and its diffusion config, ready to generate images in one call, like diffusers'
 * `DDPMPipeline` / `DDIMPipeline`. The sampler (DDPM, Ho et al. 2020 Algorithm 2; DDIM, Song et al. 2021;
 * DPM-Solver++(2M), Lu et al. 2022), the respacing of the timesteps, clipping x̂_0 and a learned variance (the
 * model's second C output channels, Nichol & Dhariwal eq. 15) are handled inside: a caller gets images.
 *
 * This file runs anywhere onnxruntime does: onnxruntime is injected (`ort`), and a model comes as the ONNX bytes
 * written by `ddpm export`, whose metadata carries its configs. In Node, `DDPMPipeline` from node.ts adds loading
 * a path (a checkpoint directory, a model directory, an .onnx; the shipped model without one) and onnxruntime-node
 * by default. No node:* imports, no exporter: the web worker bundles this file.
 *
 *   diffusers                         ddpm-ts
 *   DDPMPipeline.from_pretrained(id)  DDPMPipeline.fromPretrained(path | bytes | url)
 *   pipe(batch_size, generator,       pipe.generate({ n, seed, steps, sampler, eta, ... })
 *        num_inference_steps, eta)
 *   scheduler (DDPM/DDIM/DPMSolver)   sampler: 'ddpm' | 'ddim' | 'dpm++'
 *   class_labels, guidance_scale      classLabels, guidanceScale (class-conditional models, diffusion/guidance.ts)
 *   callback_on_step_end              onStep
 *   output.images (PIL)               output.images (8-bit HWC), output.samples (float NCHW)
 */
import type { DiffusionConfig } from '../diffusion/config.ts';
import type { DiffusionModel, VarType } from '../diffusion/batch.ts';
import type { Sampler } from '../diffusion/samplers.ts';
import type { OrtModule, RuntimeOptions } from '../engine/runtime.ts';
import { makeGrid, type ImageU8 } from '../io/grid.ts';
import { Denoiser } from '../models/denoiser.ts';
import type { UNetConfig } from '../models/unet.ts';
import { DEFAULT_GUIDANCE_SCALE, classifierFreeGuidance } from '../diffusion/guidance.ts';
import { MAX_GUIDANCE_SCALE } from '../limits.ts';
import { evenSteps, generate, makeSampler, type GenerateStep, type SamplerKind, type Trajectory } from '../sample/generate.ts';
import { readDenoiserFile } from '../sample/onnx-file.ts';

/** Where a pipeline's model came from. */
export interface ModelSource {
  /** the file the weights came from (a path in Node, a URL in the browser), when known */
  file?: string;
  /** training step of the weights, when known */
  step?: number;
  /** the ddpm-ts version that exported the file, when known */
  version?: string;
}

/** How to open a model: onnxruntime and its session options (execution provider, threads). */
export interface PipelineLoadOptions extends RuntimeOptions {
  /** the onnxruntime module: onnxruntime-web in the browser; in Node, onnxruntime-node unless given */
  ort: OrtModule;
}

/** The options of {@link DDPMPipeline.generate}; all have defaults. */
export interface PipelineGenerateOptions {
  /** number of images (diffusers' batch_size); default 1 */
  n?: number;
  /** 'ddpm' (ancestral, Algorithm 2), 'ddim' or 'dpm++' (DPM-Solver++(2M)); default 'ddim' */
  sampler?: SamplerKind;
  /** sampling steps, respaced from T (num_inference_steps); default T for ddpm, min(50, T) for ddim, min(20, T) for dpm++ */
  steps?: number;
  /** DDIM η in [0, 1] (Song et al. eq. 16): 1 the DDPM posterior variance (default), 0 deterministic; ddim only */
  eta?: number;
  /** which timesteps are kept: 'auto' (default), 'uniform', 'ddim', 'leading', 'trailing', 'linspace' or counts 'a,b,c' */
  spacing?: string;
  /** clip x̂_0 to [−1, 1] at every step; default true */
  clip?: boolean;
  /** random seed (diffusers' generator); image i draws from stream i, whatever n and batchSize; default 0 */
  seed?: number;
  /** images per model call; default 64 */
  batchSize?: number;
  /**
   * class-conditional models only: the class of every image (one number) or of each image (n numbers), in
   * [0, numClasses); left out, the images are unconditional (label ∅). See {@link DDPMPipeline.classNames}.
   */
  classLabels?: number | ArrayLike<number>;
  /**
   * classifier-free guidance scale s with `classLabels` (diffusers' guidance_scale): 0 unconditional, 1 conditional,
   * > 1 stronger; default {@link DEFAULT_GUIDANCE_SCALE}
   */
  guidanceScale?: number;
  /** the reverse-process variance of a fixed-variance model: its own (default) or the other fixed one */
  varType?: Exclude<VarType, 'learnedRange'>;
  /** also record x_t and x̂_0 of the first `samples` images at `frames` evenly spaced steps (first and last included) */
  trajectory?: { samples: number; frames: number };
  /** after every model call: `done` of `total` (batches × steps) */
  onProgress?: (done: number, total: number) => void;
  /** after every step of every batch, awaited (callback_on_step_end): x_t and x̂_0; throwing stops the generation */
  onStep?: (s: GenerateStep) => void | Promise<void>;
  /** stops the generation (with `signal.reason`) at the next step once aborted */
  signal?: AbortSignal;
}

/** What {@link DDPMPipeline.generate} returns. */
export interface PipelineOutput {
  /** one 8-bit image per sample, rows top to bottom, channels interleaved (H, W, C), for PNG encoders and canvases */
  images: ImageU8[];
  /** the float batch [n, C, H, W], in [−1, 1] when clipping */
  samples: Float32Array;
  shape: [n: number, channels: number, height: number, width: number];
  /** the kept timesteps, in sampling order (original indices 0..T−1) */
  timesteps: number[];
  trajectory?: Trajectory;
  /** model calls made (batches × steps) */
  modelCalls: number;
}

/**
 * The class label of each of `n` images from {@link PipelineGenerateOptions.classLabels} (one for all, or one per
 * image), checked against the model's `numClasses`; throws a plain Error naming the problem.
 */
export function classLabelsFor(numClasses: number, labels: number | ArrayLike<number>, n: number): Int32Array {
  if (numClasses === 0) throw new Error('class labels given to an unconditional model (numClasses 0; train one with --class-cond)');
  const out = typeof labels === 'number' ? new Int32Array(n).fill(labels) : Int32Array.from(labels);
  if (typeof labels !== 'number' && labels.length !== n) throw new Error(`${labels.length} class labels for ${n} images`);
  const bad = Array.from(typeof labels === 'number' ? [labels] : labels).find((c) => !(Number.isInteger(c) && c >= 0 && c < numClasses));
  if (bad !== undefined) throw new Error(`class ${bad} is out of range: the model has classes 0..${numClasses - 1}`);
  return out;
}

/** One model call at batch 1 (x = 0, t = 0); throws when it fails or returns the wrong number of values. */
export async function checkDenoiserRuns(d: Denoiser): Promise<void> {
  const { inChannels: c, outChannels: o, imageSize: s } = d.cfg;
  const out = await d.predict(new Float32Array(c * s * s), new Int32Array(1));
  if (out.length !== o * s * s) throw new Error(`it returns ${out.length} values for one image, expected ${o}x${s}x${s}`);
}

/**
 * The sampler a generation with `opts` runs: the model's schedule, prediction and variance, respaced to `opts.steps`.
 * Throws a plain Error naming the option at fault (steps out of range, eta with ddpm, ...), before any model call.
 */
export function pipelineSampler(diffusion: DiffusionConfig, opts: PipelineGenerateOptions = {}): Sampler {
  let varType: VarType = diffusion.varType;
  if (opts.varType !== undefined) {
    if (varType === 'learnedRange') throw new Error(`varType '${opts.varType}': the model learned its variance, it cannot be swapped for a fixed one`);
    varType = opts.varType;
  }
  return makeSampler({ ...diffusion, varType }, { sampler: opts.sampler ?? 'ddim', steps: opts.steps, spacing: opts.spacing, eta: opts.eta, clip: opts.clip });
}

/** A batch [n, C, H, W] in [−1, 1] as n 8-bit images (H, W, C), quantised as PNGs are (torchvision's save_image). */
export function toImages(samples: Float32Array, shape: readonly [number, number, number, number]): ImageU8[] {
  const [n, c, h, w] = shape;
  const per = c * h * w;
  return Array.from({ length: n }, (_, i) => makeGrid(samples.subarray(i * per, (i + 1) * per), [1, c, h, w], { nrow: 1, padding: 0 }));
}

async function fetchBytes(url: string): Promise<Uint8Array> {
  const res = await fetch(url);
  if (!res.ok) throw new Error(`could not fetch ${url}: HTTP ${res.status}`);
  return new Uint8Array(await res.arrayBuffer());
}

/** A denoiser and its diffusion config: `generate()` turns them into images. */
export class DDPMPipeline {
  /** the U-Net config of the model (its input is C×S×S; its output has 2C channels when it learned its variance) */
  readonly unet: UNetConfig;

  /** a class-conditional model's class names, label i named classNames[i] (its digits "0".."9" for MNIST); [] when unconditional */
  readonly classNames: readonly string[];

  /**
   * @param denoiser the compiled model ε_θ(x_t, t) (or x̂_0 / v, with the variance channels when learned)
   * @param diffusion its schedule, prediction type and variance
   * @param source where it came from
   * @param classNames a class-conditional model's class names (default: "0", "1", ...)
   */
  constructor(
    readonly denoiser: Denoiser,
    readonly diffusion: DiffusionConfig,
    readonly source: ModelSource = {},
    classNames?: readonly string[],
  ) {
    this.unet = denoiser.cfg;
    const K = this.unet.numClasses;
    if (classNames !== undefined && classNames.length > 0 && classNames.length !== K) throw new Error(`${classNames.length} class names for a model of ${K} classes`);
    this.classNames = classNames?.length ? [...classNames] : Array.from({ length: K }, (_, i) => String(i));
  }

  /**
   * The pipeline of an exported model: its ONNX bytes (or a URL to fetch them from), whose metadata carries the
   * configs (`ddpm export`, or the shipped models/mnist-28/model.onnx), opened on the injected onnxruntime and run
   * once at batch 1. In the browser: `await DDPMPipeline.fromPretrained(bytes, { ort })` with onnxruntime-web.
   */
  static async fromPretrained(source: Uint8Array | ArrayBuffer | string, opts: PipelineLoadOptions): Promise<DDPMPipeline> {
    const file = typeof source === 'string' ? source : undefined;
    const bytes = typeof source === 'string' ? await fetchBytes(source) : source instanceof Uint8Array ? source : new Uint8Array(source);
    const { ort, ...runtime } = opts;
    const meta = readDenoiserFile(bytes);
    const denoiser = await Denoiser.fromOnnx(ort, meta.unet, bytes, runtime);
    try {
      await checkDenoiserRuns(denoiser);
    } catch (e) {
      await denoiser.release();
      throw e;
    }
    return new this(denoiser, meta.diffusion, { file, step: meta.step, version: meta.version }, meta.classNames);
  }

  /** [C, H, W] of one image. */
  get imageShape(): [number, number, number] {
    return [this.unet.inChannels, this.unet.imageSize, this.unet.imageSize];
  }

  /** Generate `n` images (see {@link PipelineGenerateOptions} for the options and their defaults). */
  async generate(opts: PipelineGenerateOptions = {}): Promise<PipelineOutput> {
    const sampler = pipelineSampler(this.diffusion, opts);
    const n = opts.n ?? 1;
    const modelForBatch = this.guidedModels(n, opts);
    const tr = opts.trajectory;
    const res = await generate({
      model: this.denoiser.predict,
      modelForBatch,
      sampler,
      imageShape: this.imageShape,
      n,
      seed: opts.seed ?? 0,
      batchSize: opts.batchSize,
      trajectory: tr ? { samples: tr.samples, steps: evenSteps(sampler.timesteps.length, tr.frames) } : undefined,
      onProgress: opts.onProgress,
      onStep: opts.onStep,
      signal: opts.signal,
    });
    return {
      images: toImages(res.samples, res.shape),
      samples: res.samples,
      shape: res.shape,
      timesteps: Array.from(sampler.timesteps),
      trajectory: res.trajectory,
      modelCalls: res.modelCalls,
    };
  }

  /**
   * The guided model of each batch for a request with class labels (undefined without: the denoiser itself, label ∅
   * for a conditional model). Checks the labels and the scale before any model call.
   */
  private guidedModels(n: number, opts: PipelineGenerateOptions): ((start: number, size: number) => DiffusionModel) | undefined {
    if (opts.classLabels === undefined) {
      if (opts.guidanceScale !== undefined) throw new Error('guidanceScale needs classLabels (the class to guide towards)');
      return undefined;
    }
    const numClasses = this.unet.numClasses;
    const labels = classLabelsFor(numClasses, opts.classLabels, n);
    const scale = opts.guidanceScale ?? DEFAULT_GUIDANCE_SCALE;
    if (!(scale >= 0 && scale <= MAX_GUIDANCE_SCALE)) throw new Error(`guidance scale must be in [0, ${MAX_GUIDANCE_SCALE}], got ${scale}`);
    return (start, size) => classifierFreeGuidance(this.denoiser.predictClass, { labels: labels.subarray(start, start + size), numClasses, scale });
  }

  /** Release the onnxruntime session. */
  async release(): Promise<void> {
    await this.denoiser.release();
  }
}
