/**
 * Data benchmark: MNIST parse time, loader throughput (batches of 64 into a reused Float32Array, with per-epoch
 * Philox shuffle and random flips, i.e. everything a training step asks of the loader), and the preload time of an
 * image folder (PNG + JPEG written to a temp dir, resized and centre-cropped by sharp). Prints one JSON object as its
 * last line.
 *
 *   npm run bench:data [-- --epochs 3 --batch 64 --folder-images 512]
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import * as path from 'node:path';
import sharp from 'sharp';
import { loadImageFolder } from '../src/data/folder.ts';
import { BatchLoader } from '../src/data/loader.ts';
import { loadMnist, mnistDataset } from '../src/data/mnist.ts';
import { Rng } from '../src/rng.ts';

const args = process.argv.slice(2);
const flag = (name: string, dflt: number) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : dflt;
};
const epochs = flag('epochs', 3);
const batchSize = flag('batch', 64);
const folderImages = flag('folder-images', 512);

// 1. MNIST parse (first load in this process; the OS page cache may already hold the files).
let t0 = performance.now();
const train = loadMnist('train');
const mnistParseMs = performance.now() - t0;

// 2. Loader throughput: `epochs` full epochs of shuffled, flipped batches.
const loader = new BatchLoader(mnistDataset(train), { batchSize, flip: true, rng: new Rng(0) });
const out = new Float32Array(batchSize * 784);
for (let i = 0; i < 50; i++) loader.next(out); // warm-up (JIT)
const batches = epochs * loader.batchesPerEpoch;
t0 = performance.now();
let checksum = 0;
for (let i = 0; i < batches; i++) checksum += loader.next(out).x[0];
const loaderS = (performance.now() - t0) / 1000;
const mnistImagesPerS = (batches * batchSize) / loaderS;

// 3. Image folder preload: half 64x48 PNG, half 48x64 JPEG, smooth gradients plus texture.
const dir = mkdtempSync(path.join(os.tmpdir(), 'ddpm-bench-folder-'));
let folder: { n: number; seconds: number; imagesPerS: number };
try {
  mkdirSync(path.join(dir, 'jpg'));
  for (let i = 0; i < folderImages; i++) {
    const [w, h] = i % 2 ? [48, 64] : [64, 48];
    const px = new Uint8Array(w * h * 3);
    for (let p = 0; p < w * h; p++) {
      const x = p % w;
      const y = Math.floor(p / w);
      px[3 * p] = (x * 4 + i) & 255;
      px[3 * p + 1] = (y * 4) & 255;
      px[3 * p + 2] = ((x ^ y) * 8) & 255;
    }
    const img = sharp(px, { raw: { width: w, height: h, channels: 3 } });
    if (i % 2) await img.jpeg({ quality: 90 }).toFile(path.join(dir, 'jpg', `${i}.jpg`));
    else await img.png().toFile(path.join(dir, `${i}.png`));
  }
  t0 = performance.now();
  const data = await loadImageFolder(dir, { size: 32, channels: 3 });
  const seconds = (performance.now() - t0) / 1000;
  folder = { n: data.n, seconds: +seconds.toFixed(3), imagesPerS: Math.round(data.n / seconds) };
} finally {
  rmSync(dir, { recursive: true, force: true });
}

const result = {
  bench: 'data',
  date: new Date().toISOString(),
  machine: `${os.cpus()[0]?.model ?? 'cpu'} x${os.cpus().length}`,
  node: process.version,
  mnist_parse_ms: +mnistParseMs.toFixed(1),
  loader: { dataset: 'mnist-train', batch: batchSize, shuffle: true, flip: true, epochs, batches },
  mnist_loader_images_per_s: Math.round(mnistImagesPerS),
  mnist_loader_us_per_batch: +((loaderS / batches) * 1e6).toFixed(1),
  // Ratio to the ~100 img/s a CPU training run consumes: how far the loader is from being the bottleneck.
  headroom_vs_100_img_per_s: Math.round(mnistImagesPerS / 100),
  folder_preload: { images: folder.n, size: 32, channels: 3, seconds: folder.seconds, images_per_s: folder.imagesPerS },
  checksum: +checksum.toFixed(3),
};
console.log(JSON.stringify(result));
