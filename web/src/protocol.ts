/** Messages between the page (main.ts) and the sampling worker (worker.ts). */
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
}

export type ToWorker =
  | { type: 'init'; modelUrl: string; ortUrl: string; wasmUrl: string; backend: BackendChoice; threads: number }
  | ({ type: 'sample'; id: number } & SampleRequest)
  | { type: 'cancel'; id: number };

export type FromWorker =
  | { type: 'ready'; backend: 'webgpu' | 'wasm'; threads: number; note: string; loadMs: number }
  /** stepMs: the step's model call and sampler update */
  | { type: 'step'; id: number; step: number; total: number; t: number; xt: Float32Array; predX0: Float32Array; stepMs: number }
  | { type: 'done'; id: number; samples: Float32Array; totalMs: number; stepMs: number; steps: number; cancelled: boolean }
  | { type: 'error'; id: number | null; message: string };
