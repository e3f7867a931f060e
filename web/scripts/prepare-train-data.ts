/**
 * The Train view's shipped data: the first 10,000 MNIST training digits as one gzip-compressed safetensors file,
 * `web/.model/mnist-train.safetensors.gz` (tensors `images` U8 [N, 28, 28] and `labels` U8 [N]; ≈1.6 MB, 7.9 MB
 * unpacked). The page reads it with the library's safetensors parser (web/src/train-data.ts). `npm run web` and
 * `npm run build:web` write it with the model (prepare-model.ts).
 */
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { loadMnist } from '../../src/data/mnist.ts';
import { serializeSafetensors } from '../../src/io/safetensors.ts';

export const TRAIN_DATA_FILE = 'mnist-train.safetensors.gz';
/** how many MNIST training digits the page ships */
export const TRAIN_DATA_COUNT = 10_000;

/** Write `<out>/mnist-train.safetensors.gz`; returns its path and size in bytes. */
export async function prepareTrainData(out: string, n = TRAIN_DATA_COUNT): Promise<{ file: string; bytes: number }> {
  const m = loadMnist('train');
  const count = Math.min(n, m.n);
  const bytes = serializeSafetensors(
    {
      images: { dtype: 'U8', shape: [count, 28, 28], data: m.images.subarray(0, count * 784) },
      labels: { dtype: 'U8', shape: [count], data: m.labels.subarray(0, count) },
    },
    { source: `MNIST training set, images 0..${count - 1}` },
  );
  const gz = gzipSync(bytes, { level: 9 });
  const file = path.join(out, TRAIN_DATA_FILE);
  await fsp.mkdir(out, { recursive: true });
  await fsp.writeFile(file, gz);
  return { file, bytes: gz.length };
}
