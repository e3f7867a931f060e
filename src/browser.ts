/**
 * ddpm-ts, browser-safe entry point: the pipeline (DDPMPipeline.fromPretrained(onnxBytes, { ort })), the engine
 * (tracing, autodiff, ONNX export, runtime over an injected onnxruntime), the diffusion core, the models, training
 * without files (TrainingRun, checkpoints as one safetensors file) and the RNG. Nothing here imports `node:*`.
 */
export {
  DDPMPipeline,
  pipelineSampler,
  toImages,
  type ModelSource,
  type PipelineGenerateOptions,
  type PipelineLoadOptions,
  type PipelineOutput,
} from './pipeline/pipeline.ts';
export { SAMPLER_KINDS, SPACINGS, type GenerateStep, type SamplerKind, type Trajectory } from './sample/generate.ts';
export { describeOutput, readDenoiserFile, type DenoiserFile } from './sample/onnx-file.ts';
export { UserError } from './errors.ts';
export * from './diffusion/index.ts';
export { Rng, philox4x32, type RngState } from './rng.ts';
export * as T from './engine/tensor.ts';
export { Tensor, ShapeError, type TensorLike } from './engine/tensor.ts';
export { grad, valueAndGrad, vjp } from './engine/autodiff.ts';
export { evaluate } from './engine/interp.ts';
export { toOnnx, OPSET, type OnnxExportOptions } from './engine/onnx.ts';
export { CompiledFunction, type OrtModule, type RuntimeOptions, type ExecutionProvider } from './engine/runtime.ts';
export { compile } from './engine/compile.ts';
export { adam, adamw, clipByGlobalNorm, globalNorm, type Optimizer } from './engine/optim.ts';
export { TrainStep, NonFiniteLossError } from './engine/train_step.ts';
export { treeFlatten, treeMap, type ParamValue, type Tree } from './engine/tree.ts';
export { trainingLossesGraph, vbTermsBpdGraph, normalKlGraph, discretizedGaussianLogLikelihoodGraph } from './diffusion/graph-losses.ts';
export { MNIST_28, UNET_CONFIGS, countParams, initUNet, timestepEmbedding, unet, unetConfig, type UNetConfig } from './models/unet.ts';
export { Denoiser } from './models/denoiser.ts';
export { compileDenoiser, exportDenoiserOnnx } from './models/denoiser-compile.ts';
export { parseSafetensors, serializeSafetensors } from './io/safetensors.ts';
export { makeGrid, makeStrip, toRgba, type ImageU8 } from './io/grid.ts';
export { exportDenoiserFile } from './sample/onnx-export.ts';
export { BatchLoader, uint8Dataset, type Dataset } from './data/loader.ts';
export { defaultTrainConfig, validateTrainConfig, applyOptions, type TrainConfig } from './train/config.ts';
export { TrainingRun, RunStateError, emaDecayAt, type RunStart, type RunStepResult, type TrainState, type CheckpointContents } from './train/run.ts';
export { packCheckpoint, unpackCheckpoint, CHECKPOINT_FILE_FORMAT, type CheckpointFileContents } from './train/checkpoint-file.ts';
