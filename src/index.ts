/**
 * ddpm-ts for Node: everything in the browser entry plus data loading, image and checkpoint files,
 * the trainer and onnxruntime-node.
 */
export * from './browser.ts';
export { ort, nodeRuntime } from './node/ort.ts';
export { loadMnist, mnistDataset } from './data/mnist.ts';
export { loadImageFolder, imageFolderDataset } from './data/folder.ts';
export { BatchLoader, uint8Dataset, type Dataset } from './data/loader.ts';
export { readImage, writeImageGrid, writePng, writeGif } from './io/image.ts';
export { readSafetensorsFile, writeSafetensorsFile } from './io/safetensors-file.ts';
export { Trainer, type TrainerEvents } from './train/trainer.ts';
export { defaultTrainConfig, validateTrainConfig, applyOptions, type TrainConfig } from './train/config.ts';
export { loadCheckpoint, loadModelDir, saveCheckpoint } from './train/checkpoint.ts';
