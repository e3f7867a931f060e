/**
 * The training images of a run as ddpm-ts decodes them, in one .safetensors file, for the PyTorch trainer
 * (python/ddpm_torch/train.py, issue 31): `images` U8 (N, C, H, W), `labels` U8 (N) for a class-conditional run,
 * metadata {format: "ddpm-ts dataset", source, classNames (JSON)}. A folder is decoded, resized and converted by the
 * code `ddpm train` uses (src/cli/train-data.ts loadTrainData, sharp), in its order, so image i here is image i of
 * the run's data order; Python never re-implements the decode.
 *
 *   node --import tsx scripts/export-dataset.ts <run or checkpoint dir | config.json> <out.safetensors>
 */
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { loadTrainData } from '../src/cli/train-data.ts';
import { writeFileAtomic } from '../src/io/atomic.ts';
import { serializeSafetensors, type TensorInput } from '../src/io/safetensors.ts';
import { validateTrainConfig, withClasses, type TrainConfig } from '../src/train/config.ts';

export const DATASET_FORMAT = 'ddpm-ts dataset';

/** The config.json of a run directory (its checkpoint/), a checkpoint directory, or the file itself. */
async function configOf(spec: string): Promise<TrainConfig> {
  let file = spec;
  if ((await stat(spec)).isDirectory()) {
    const inRun = path.join(spec, 'checkpoint', 'config.json');
    file = (await stat(inRun).catch(() => null)) ? inRun : path.join(spec, 'config.json');
  }
  return validateTrainConfig(JSON.parse(await readFile(file, 'utf8')), { stored: true });
}

/** The run's images as uint8 NCHW (read back through the Dataset interface: x = i/127.5 − 1 exactly inverts). */
export async function exportDataset(config: TrainConfig, say: (line: string) => void = (l) => process.stderr.write(l + '\n')): Promise<Uint8Array> {
  const data = await loadTrainData(config, undefined, say);
  const checked = withClasses(config, data.classNames); // a class-conditional run's classes must be the data's
  const { n, channels: C, height: H, width: W } = data;
  const chw = C * H * W;
  const images = new Uint8Array(n * chw);
  const chunk = 256;
  const x = new Float32Array(chunk * chw);
  for (let i = 0; i < n; i += chunk) {
    const idx = Array.from({ length: Math.min(chunk, n - i) }, (_, k) => i + k);
    data.getBatch(idx, x);
    for (let k = 0; k < idx.length * chw; k++) images[i * chw + k] = Math.round((x[k]! + 1) * 127.5);
  }
  const tensors: Record<string, TensorInput> = { images: { dtype: 'U8', shape: [n, C, H, W], data: images } };
  if (checked.data.classCond) tensors.labels = { dtype: 'U8', shape: [n], data: data.labels! };
  return serializeSafetensors(tensors, { format: DATASET_FORMAT, source: config.data.source, classNames: JSON.stringify(checked.data.classNames) });
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const [spec, out] = process.argv.slice(2);
  if (!spec || !out) {
    process.stderr.write('usage: node --import tsx scripts/export-dataset.ts <run or checkpoint dir | config.json> <out.safetensors>\n');
    process.exit(2);
  }
  try {
    await writeFileAtomic(out, await exportDataset(await configOf(spec)), { fsync: false });
  } catch (e) {
    process.stderr.write(`export-dataset: ${(e as Error).message}\n`);
    process.exit(2);
  }
}
