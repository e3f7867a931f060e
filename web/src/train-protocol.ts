/** Messages between the page's Train view (train.ts) and the training worker (train-worker.ts). */
import type { DiffusionConfig } from '../../src/diffusion/config.ts';
import type { UNetConfig } from '../../src/models/unet.ts';
import type { BackendChoice } from './protocol.ts';

/** The presets the Train view offers: small enough to train in a tab. */
export const TRAIN_PRESETS = ['mnist-small', 'rgb-32'] as const;
export type TrainPreset = (typeof TRAIN_PRESETS)[number];

/** What to train on: the shipped MNIST digits, or the user's images already converted to the preset's size and channels. */
export type TrainData =
  | { kind: 'mnist' }
  /** n images (n, channels, size, size) as 8-bit pixels */
  | { kind: 'images'; pixels: Uint8Array; n: number; channels: number; size: number; leftOut: string };

export interface TrainStart {
  preset: TrainPreset;
  seed: number;
  batchSize: number;
  /** steps between sample grids from the EMA weights (0 = only on request) */
  sampleEvery: number;
  /** pause when the run reaches this step (0 = run until paused) */
  stopAt: number;
  data: TrainData;
  /** a checkpoint file (src/train/checkpoint-file.ts) to continue from; its config wins over preset, seed and batch */
  checkpoint?: Uint8Array;
}

export type ToTrainWorker =
  | { type: 'init'; ortUrl: string; wasmUrl: string; dataUrl: string; backend: BackendChoice; threads: number }
  | ({ type: 'start' } & TrainStart)
  | { type: 'pause' }
  /** continue; `stopAt` as in TrainStart */
  | { type: 'resume'; stopAt: number }
  /** a sample grid now */
  | { type: 'sample' }
  /** the checkpoint file of the current state */
  | { type: 'download' }
  /** the EMA weights as ONNX bytes, for the Generate view */
  | { type: 'export' };

export type FromTrainWorker =
  | { type: 'ready'; backend: 'webgpu' | 'wasm'; threads: number; note: string }
  /** a run is compiled and about to step; `note` says what was kept from a checkpoint */
  | { type: 'started'; description: string; params: number; step: number; images: number; compileMs: number; data: string; note: string }
  /** `state`: how many of the state's tensors (weights, moments, EMA) are in each location ('cpu', 'gpu-buffer') */
  | { type: 'progress'; step: number; loss: number; mse: number; lr: number; imgPerSec: number; elapsedSec: number; state: Record<string, number> }
  | { type: 'paused'; step: number }
  /** n samples (n, C, S, S) in [-1, 1] from the EMA weights at `step` */
  | { type: 'samples'; step: number; samples: Float32Array; shape: [number, number, number, number]; ms: number }
  | { type: 'checkpoint'; bytes: Uint8Array; fileName: string; step: number }
  | { type: 'model'; bytes: Uint8Array; step: number; unet: UNetConfig; diffusion: DiffusionConfig }
  | { type: 'error'; message: string };
