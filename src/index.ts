/**
 * ddpm-ts for Node: everything in the browser entry plus data loading, image and checkpoint files,
 * the trainer and onnxruntime-node. DDPMPipeline here also loads paths (the shipped model by default).
 */
export * from './browser.ts';
export { DDPMPipeline, savePngs, type NodePipelineLoadOptions } from './pipeline/node.ts';
export {
  DEFAULT_COND_MODEL_DIR, DEFAULT_MODEL_DIR, SHIPPED_MODELS, SHIPPED_MODEL_NAMES, loadModel, type LoadedModel, type ShippedModelName,
} from './pipeline/load.ts';
export { resolveModelPath } from './io/model-path.ts';
export { sniffPath, type FileKind } from './io/sniff-file.ts';
export { ort, nodeRuntime } from './node/ort.ts';
export { loadMnist, mnistDataset } from './data/mnist.ts';
export { inspectImageFolder, loadImageFolder, imageFolderDataset, type ImageFolderInspection } from './data/folder.ts';
export { encodePng, readImage, writeImageGrid, writePng, writeGif } from './io/image.ts';
export { readSafetensorsFile, writeSafetensorsFile } from './io/safetensors-file.ts';
export { Trainer, type TrainerEvents } from './train/trainer.ts';
export { RUN_LOCK_FILE, RunLock, RunLockedError, acquireRunLock, type RunLockOptions, type RunLockOwner } from './io/run-lock.ts';
export { loadCheckpoint, loadModelDir, saveCheckpoint } from './train/checkpoint.ts';
