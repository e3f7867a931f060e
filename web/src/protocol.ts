/** Messages between the page (main.ts, edit.ts) and the sampling worker (worker.ts). */
import type { DiffusionConfig } from '../../src/diffusion/config.ts';
import type { UNetConfig } from '../../src/models/unet.ts';
import type { SamplerKind } from '../../src/sample/generate.ts';

export type { SamplerKind };

/** `model/model.json` (written by web/scripts/prepare-model.ts): what the page shows before the worker has the model. */
export interface WebModelInfo {
  /** the model preset of the checkpoint, or the .onnx file's name */
  name: string;
  unet: UNetConfig;
  diffusion: DiffusionConfig;
  /** training step of the weights, when known */
  step: number | null;
  /** where the model came from (relative to the repository when inside it) */
  source: string;
  /** a class-conditional model's class names (label i is classNames[i]); [] for an unconditional model */
  classNames: string[];
  /**
   * With a class-conditional model: the unconditional model that samples "any" class (and runs the Edit panel),
   * `model/model-any.onnx`, loaded first; the conditional one loads when a class is first asked for. Absent: the
   * conditional model's ∅ label samples "any".
   */
  any?: WebModelRef;
}

/** The unconditional companion of a class-conditional web model (see {@link WebModelInfo.any}). */
export interface WebModelRef {
  /** its file next to model.json */
  file: string;
  name: string;
  unet: UNetConfig;
  step: number | null;
  source: string;
}

export type BackendChoice = 'auto' | 'webgpu' | 'wasm';

/** One generation: DDPMPipeline.generate's options as the form gives them. */
export interface SampleRequest {
  /** number of images */
  n: number;
  sampler: SamplerKind;
  /** kept timesteps (respacing: `ddimS` for DDIM, S evenly spaced sections for DDPM, linspace for DPM-Solver++) */
  steps: number;
  /** DDIM η (ignored by DDPM and DPM-Solver++) */
  eta: number;
  seed: number;
  /** a class-conditional model: the class of every image, or null for "any" (unconditional, label ∅) */
  classLabel: number | null;
  /** the classifier-free guidance scale with a class (diffusers' guidance_scale: 0 unconditional, 1 conditional) */
  guidance: number;
}

/**
 * What the Edit panel's two runs share: the starting image and the sampler. Result i draws all its randomness from
 * stream i of the seed, `Rng(seed).fold(i)`, as `ddpm inpaint|edit --n --seed` (src/cli/edit-shared.ts inBatches).
 */
export interface EditRequest {
  /** number of results */
  n: number;
  sampler: SamplerKind;
  steps: number;
  /** DDIM η (ignored by DDPM and DPM-Solver++) */
  eta: number;
  seed: number;
  /** x_0 (C, S, S) in [-1, 1]: 8-bit pixels / 127.5 − 1, as the CLI reads an image */
  image: Float32Array;
}

/** Inpainting (src/diffusion/inpaint.ts), as `ddpm inpaint --jump --resample`. */
export interface InpaintRequest extends EditRequest {
  /** (S, S), 1 = generate, 0 = keep */
  mask: Float32Array;
  /** RePaint's jump length */
  jump: number;
  /** RePaint's jump_n_sample: 1 = no resampling */
  resample: number;
}

/** Image-to-image (SDEdit, src/diffusion/edit.ts), as `ddpm edit --strength`. */
export interface SdeditRequest extends EditRequest {
  /** in (0, 1] */
  strength: number;
}

/** Where the worker's start-up went, ms, in order (the first two overlap: their wall time is `fetchMs`). */
export interface LoadParts {
  /** onnxruntime-web's bundle imported (after the WebGPU adapter check) and the model's bytes fetched, in parallel */
  fetchMs: number;
  /** the onnxruntime session: the runtime's .wasm fetched and compiled (first session only), the graph optimised */
  sessionMs: number;
  /** the first model call (batch 1): its kernels compiled by the browser, its buffers planned */
  firstCallMs: number;
}

/**
 * Times since navigation (performance.now()) of the worker's ready message and of the first Generate's click and
 * finished samples on screen, with the worker's start-up parts: what `npm run bench:web` reports as first images
 * (the page's `globalThis.ddpm.startup`).
 */
export interface StartupTimes {
  readyAt: number | null;
  /** the ready message's loadMs: from the worker's init message to ready */
  loadMs: number | null;
  parts: LoadParts | null;
  firstClickAt: number | null;
  firstImagesAt: number | null;
}

export type ToWorker =
  /**
   * modelUrl: the model; anyModelUrl: its unconditional companion, loaded first (WebModelInfo.any); ortUrl/wasmUrl:
   * onnxruntime-web with WebGPU, wasmOnly: its wasm-only build, used when the backend is wasm
   */
  | { type: 'init'; modelUrl: string; anyModelUrl?: string; ortUrl: string; wasmUrl: string; wasmOnly?: { ortUrl: string; wasmUrl: string }; backend: BackendChoice; threads: number }
  | ({ type: 'sample'; id: number } & SampleRequest)
  | ({ type: 'inpaint'; id: number } & InpaintRequest)
  | ({ type: 'sdedit'; id: number } & SdeditRequest)
  /** replace the model with ONNX bytes (`ddpm export`'s format; the Train view's EMA weights) */
  | { type: 'load'; id: number; bytes: Uint8Array }
  | { type: 'cancel'; id: number };

export type FromWorker =
  /** loadMs: from the init message to ready, in the parts of {@link LoadParts} */
  | { type: 'ready'; backend: 'webgpu' | 'wasm'; threads: number; note: string; loadMs: number; parts: LoadParts }
  /** stepMs: the step's model call and sampler update */
  | { type: 'step'; id: number; step: number; total: number; t: number; xt: Float32Array; predX0: Float32Array; stepMs: number }
  /** inpaint / sdedit: the current x of all results after a move (for inpaint a reverse step or a resampling q step) */
  | { type: 'edit-step'; id: number; step: number; total: number; t: number; x: Float32Array; stepMs: number }
  /** steps: model calls made; stepMs: their time with the sampler's; modelLoadMs: loading the class-conditional model first (included in totalMs) */
  | { type: 'done'; id: number; samples: Float32Array; totalMs: number; stepMs: number; steps: number; cancelled: boolean; modelLoadMs?: number }
  /** the model of a 'load' is in use */
  | { type: 'loaded'; id: number; backend: 'webgpu' | 'wasm'; note: string; loadMs: number }
  | { type: 'error'; id: number | null; message: string };
