/**
 * WorkerDenoiser (src/node/denoiser-workers.ts) splits the batch across worker threads, each with a 1-thread session
 * of the same ONNX bytes: its output must be the single session's, for batches that split evenly, unevenly, and
 * smaller than the number of workers, and for a class-conditional model (run with the label ∅).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { compileDenoiser, exportDenoiserOnnx } from '../src/models/denoiser-compile.ts';
import { UNET_CONFIGS, initUNet, unetConfig } from '../src/models/unet.ts';
import { WorkerDenoiser } from '../src/node/denoiser-workers.ts';
import { ort } from '../src/node/ort.ts';
import { Rng } from '../src/rng.ts';
import { assertClose } from './helpers.ts';

for (const [name, cfg] of [
  ['tiny', UNET_CONFIGS.tiny!],
  ['tiny with 3 classes', unetConfig({ numClasses: 3 }, UNET_CONFIGS.tiny!)],
] as const) {
  test(`WorkerDenoiser agrees with one session: ${name}`, async () => {
    const params = initUNet(cfg, new Rng(3));
    const one = await compileDenoiser(ort, cfg, params, { threads: 1 });
    const split = await WorkerDenoiser.create(cfg, exportDenoiserOnnx(cfg, params).bytes, 3);
    try {
      const rng = new Rng(4);
      for (const B of [7, 3, 2, 1]) {
        const x = rng.normalFloat32(B * cfg.inChannels * cfg.imageSize ** 2);
        const t = Int32Array.from(rng.integers(1000, B));
        assertClose(await split.predict(x, t), await one.predict(x, t), { atol: 1e-5 }, `${name}, batch ${B} on 3 workers`);
      }
      await assert.rejects(split.predict(new Float32Array(5), new Int32Array(2)), /5 values and 2 timesteps do not form a batch/);
    } finally {
      await split.release();
      await one.release();
    }
  });
}

test('WorkerDenoiser: one predict at a time; bad worker counts are refused', async () => {
  const cfg = UNET_CONFIGS.tiny!;
  await assert.rejects(WorkerDenoiser.create(cfg, new Uint8Array(0), 0), /workers must be an integer >= 1, got 0/);
  await assert.rejects(WorkerDenoiser.create(cfg, new Uint8Array([1, 2, 3]), 1), /denoiser worker:/);
  const split = await WorkerDenoiser.create(cfg, exportDenoiserOnnx(cfg, initUNet(cfg, new Rng(0))).bytes, 2);
  try {
    const x = new Float32Array(2 * 64);
    const first = split.predict(x, new Int32Array(2));
    await assert.rejects(split.predict(x, new Int32Array(2)), /one predict at a time/);
    await first;
  } finally {
    await split.release();
  }
});
