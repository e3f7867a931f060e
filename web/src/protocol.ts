/** Messages between the page (main.ts) and the sampling worker (worker.ts). */
import type { UNetConfig } from '../../src/models/unet.ts';
import type { DiffusionConfig } from '../../src/diffusion/config.ts';
import type { TrainConfig } from '../../src/train/config.ts';

/** `model/model.json` (written by web/scripts/prepare-model.ts): what the page needs besides model.onnx. */
export interface WebModelInfo {
  /** a TrainConfig, or the part of one the ONNX metadata holds (valid input of validateTrainConfig) */
  config: { preset: string; model: UNetConfig; diffusion: DiffusionConfig } | TrainConfig;
  /** training step of the weights, when known */
  step: number | null;
  /** where the model came from (relative to the repository when inside it) */
  source: string;
}

export type BackendChoice = 'auto' | 'webgpu' | 'wasm';
export type SamplerKind = 'ddpm' | 'ddim';

export interface SampleRequest {
  /** number of images */
  n: number;
  sampler: SamplerKind;
  /** kept timesteps (respacing: `ddimS` for DDIM, S evenly spaced sections for DDPM) */
  steps: number;
  /** DDIM η (ignored by DDPM) */
  eta: number;
  seed: number;
}

export type ToWorker =
  | { type: 'init'; config: TrainConfig; modelUrl: string; ortUrl: string; wasmUrl: string; backend: BackendChoice; threads: number }
  | ({ type: 'sample'; id: number } & SampleRequest)
  | { type: 'cancel'; id: number };

export type FromWorker =
  | { type: 'ready'; backend: 'webgpu' | 'wasm'; threads: number; note: string; loadMs: number }
  | { type: 'step'; id: number; step: number; total: number; t: number; xt: Float32Array; predX0: Float32Array; modelMs: number }
  | { type: 'done'; id: number; samples: Float32Array; totalMs: number; modelMs: number; steps: number; cancelled: boolean }
  | { type: 'error'; id: number | null; message: string };
