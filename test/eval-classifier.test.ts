import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as ort from 'onnxruntime-node';
import { loadMnist, mnistImages } from '../src/data/mnist.ts';
import { compile } from '../src/engine/compile.ts';
import { input } from '../src/engine/tensor.ts';
import { loadClassifierDir } from '../src/eval/classifier-dir.ts';
import { accuracy, classify, featureStats, frechetDistance } from '../src/eval/fid.ts';
import { LENET_MNIST, LeNet, initLeNet, maxPool2x2 } from '../src/models/classifier.ts';
import { Rng } from '../src/rng.ts';
import { assertClose } from './helpers.ts';

const rt = { threads: 1 };

test('maxPool2x2 (reshape + max) matches a direct 2x2 max', async () => {
  const [N, C, H, W] = [2, 3, 4, 6];
  const x = new Rng(1).normalFloat32(N * C * H * W);
  const fn = await compile(ort as never, { y: maxPool2x2(input('x', ['N', C, H, W])) }, rt);
  const y = (await fn.run({ x })).y!.data as Float32Array;
  const want: number[] = [];
  for (let n = 0; n < N; n++)
    for (let c = 0; c < C; c++)
      for (let i = 0; i < H / 2; i++)
        for (let j = 0; j < W / 2; j++) {
          const at = (di: number, dj: number) => x[((n * C + c) * H + 2 * i + di) * W + 2 * j + dj]!;
          want.push(Math.max(at(0, 0), at(0, 1), at(1, 0), at(1, 1)));
        }
  assertClose(y, want, { atol: 0 }, 'maxpool');
  await fn.release();
});

test('LeNet forward: (N,1,28,28) -> features (N,128) >= 0 and logits (N,10), any N; wrong weights are rejected', async () => {
  const params = initLeNet(LENET_MNIST, new Rng(0));
  const net = await LeNet.create(ort as never, LENET_MNIST, params, rt);
  for (const n of [1, 3]) {
    const out = await net.run(new Rng(n).normalFloat32(n * 784));
    assert.equal(out.features.length, n * 128);
    assert.equal(out.logits.length, n * 10);
    assert.ok(out.features.every((v) => v >= 0) && out.logits.every(Number.isFinite));
  }
  await assert.rejects(net.run(new Float32Array(100)), /not a batch/);
  await net.release();
  const bad = { ...params, 'fc1.weight': { shape: [128, 10], data: new Float32Array(1280) } };
  await assert.rejects(LeNet.create(ort as never, LENET_MNIST, bad, rt), /'fc1.weight' has shape \[128,10\]/);
});

test('shipped classifier: >= 99% test accuracy recorded; FID-LeNet sanity on real MNIST (golden = the training run)', async (t) => {
  const c = await loadClassifierDir();
  assert.ok(c.info.testAccuracy >= 0.99, `recorded test accuracy ${c.info.testAccuracy}`);
  assert.equal(c.testStats.n, 10000);
  const net = await LeNet.create(ort as never, c.info.model, c.weights, rt);
  try {
    const test2k = await classify(net, mnistImages('test', 0, 2000));
    const labels = loadMnist('test').labels.subarray(0, 2000);
    const acc = accuracy(test2k.logits, labels, 10);
    assert.ok(acc >= 0.985, `accuracy on test[0:2000] ${acc}`);
    const train2k = await classify(net, mnistImages('train', 0, 2000));
    const d = c.info.model.featureDim;
    const sTest = featureStats(test2k.features, 2000, d);
    const sTrain = featureStats(train2k.features, 2000, d);
    const self = frechetDistance(sTest, sTest);
    const trainTest = frechetDistance(sTrain, sTest).fid;
    const trainFull = frechetDistance(sTrain, c.testStats).fid;
    t.diagnostic(`test[0:2000] accuracy ${(100 * acc).toFixed(2)}%; FID-LeNet: self ${(self.meanTerm + self.covTerm).toExponential(2)}, train2k vs test2k ${trainTest.toFixed(4)}, train2k vs test10k (stored stats) ${trainFull.toFixed(4)}`);
    assert.ok(Math.abs(self.meanTerm + self.covTerm) < 1e-8, `FID(test, test) = ${self.meanTerm + self.covTerm}`);
    const ref = c.info.referenceFid as Record<string, number>;
    // the same computation as at training time (1 thread): pins the weights, the stored statistics and the FID code
    assertClose(trainTest, ref['train[0:2000] vs test[0:2000]']!, { rtol: 1e-4 }, 'train2k vs test2k');
    assertClose(trainFull, ref['train[0:2000] vs test (10000)']!, { rtol: 1e-4 }, 'train2k vs stored test stats');
    assert.ok(trainFull < trainTest, 'more reference images, less small-sample bias');
  } finally {
    await net.release();
  }
});

test('loadClassifierDir reads the newest complete version after a write interrupted between its renames', async () => {
  const { cp, mkdtemp, rm } = await import('node:fs/promises');
  const { tmpdir } = await import('node:os');
  const path = await import('node:path');
  const { DEFAULT_CLASSIFIER_DIR } = await import('../src/eval/classifier-dir.ts');
  const tmp = await mkdtemp(path.join(tmpdir(), 'ddpm-lenet-'));
  try {
    const dir = path.join(tmp, 'lenet');
    // dir renamed to .old, complete .new not yet renamed into place
    await cp(DEFAULT_CLASSIFIER_DIR, `${dir}.old`, { recursive: true });
    await cp(DEFAULT_CLASSIFIER_DIR, `${dir}.new`, { recursive: true });
    const c = await loadClassifierDir(dir);
    assert.equal(c.info.model.featureDim, (await loadClassifierDir()).info.model.featureDim);
    await assert.rejects(loadClassifierDir(path.join(tmp, 'none')), /no such directory/);
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
});

test('loadClassifierDir: a config.json that is not an object is one clear error naming the file', async () => {
  const { cp, mkdtemp, rm, writeFile } = await import('node:fs/promises');
  const { tmpdir } = await import('node:os');
  const path = await import('node:path');
  const { DEFAULT_CLASSIFIER_DIR } = await import('../src/eval/classifier-dir.ts');
  const tmp = await mkdtemp(path.join(tmpdir(), 'ddpm-lenet-'));
  try {
    await cp(DEFAULT_CLASSIFIER_DIR, tmp, { recursive: true, force: true });
    for (const text of ['null', '[1]', '3']) {
      await writeFile(path.join(tmp, 'config.json'), text);
      await assert.rejects(loadClassifierDir(tmp), (e: Error) => e.name === 'ClassifierDirError' && /config\.json: expected a JSON object/.test(e.message));
    }
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
});
