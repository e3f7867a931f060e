/**
 * The Train view's shipped digits (web/scripts/prepare-train-data.ts) as a training Dataset: safetensors bytes (already
 * unpacked from gzip) holding `images` U8 [N, H, W] and `labels` U8 [N]. The worker and the tests read it alike.
 */
import { uint8Dataset, type Dataset } from '../../src/data/loader.ts';
import { parseSafetensors } from '../../src/io/safetensors.ts';

export function trainDataset(bytes: Uint8Array, name: string): Dataset {
  const { tensors } = parseSafetensors(bytes);
  const images = tensors.images;
  const labels = tensors.labels;
  if (!images || images.dtype !== 'U8' || images.shape.length !== 3 || !labels || labels.dtype !== 'U8' || labels.shape[0] !== images.shape[0]) {
    throw new Error(`${name}: expected U8 tensors 'images' [N, H, W] and 'labels' [N]`);
  }
  const [n, h, w] = images.shape as [number, number, number];
  return uint8Dataset(images.data as Uint8Array, { n, channels: 1, height: h, width: w }, labels.data as Uint8Array);
}
