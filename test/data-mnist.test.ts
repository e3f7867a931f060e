import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { gzipSync } from 'node:zlib';
import { IdxError, loadMnist, mnistDataset, mnistToFloat, parseIdx, readMnistDir } from '../src/data/mnist.ts';

// Digit counts of the official MNIST files (LeCun et al.), 0..9.
const TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949];
const TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009];

function histogram(labels: Uint8Array): number[] {
  const h = new Array<number>(10).fill(0);
  for (const l of labels) h[l]++;
  return h;
}

test('real MNIST: sizes, first labels, label histograms, pixel range', () => {
  const train = loadMnist('train');
  const testSplit = loadMnist('test');
  assert.deepEqual([train.n, train.height, train.width, train.channels], [60000, 28, 28, 1]);
  assert.equal(testSplit.n, 10000);
  assert.equal(train.images.length, 60000 * 784);
  assert.equal(testSplit.images.length, 10000 * 784);
  assert.equal(train.labels[0], 5);
  assert.equal(testSplit.labels[0], 7);
  assert.deepEqual(histogram(train.labels), TRAIN_COUNTS);
  assert.deepEqual(histogram(testSplit.labels), TEST_COUNTS);
  assert.equal(histogram(train.labels).reduce((a, b) => a + b), 60000);
  let min = 255;
  let max = 0;
  for (const v of testSplit.images) {
    if (v < min) min = v;
    if (v > max) max = v;
  }
  assert.deepEqual([min, max], [0, 255]);
  assert.equal(loadMnist('train'), train, 'cached per process');
});

test('mnistToFloat: x / 127.5 - 1 in NCHW, optional mirror', () => {
  const m = loadMnist('test');
  const idx = [0, 9999, 17];
  const out = mnistToFloat(m, idx, new Float32Array(3 * 784), [0, 0, 1]);
  for (let k = 0; k < 784; k++) {
    assert.equal(out[k], Math.fround(m.images[k] / 127.5 - 1));
    assert.equal(out[784 + k], Math.fround(m.images[9999 * 784 + k] / 127.5 - 1));
    const y = Math.floor(k / 28);
    const x = k % 28;
    assert.equal(out[2 * 784 + k], Math.fround(m.images[17 * 784 + y * 28 + (27 - x)] / 127.5 - 1));
  }
  assert.throws(() => mnistToFloat(m, [10000], new Float32Array(784)), /index 10000 out of range/);
  assert.throws(() => mnistToFloat(m, [0, 1], new Float32Array(784)), /need 2\*1\*28\*28/);
  const ds = mnistDataset('test');
  assert.deepEqual([ds.n, ds.channels, ds.height, ds.width, ds.labels?.[0]], [10000, 1, 28, 28, 7]);
});

function idx(dims: number[], data: ArrayLike<number>, type = 0x08): Uint8Array {
  const out = new Uint8Array(4 + 4 * dims.length + data.length);
  const v = new DataView(out.buffer);
  out[2] = type;
  out[3] = dims.length;
  dims.forEach((d, i) => v.setUint32(4 + 4 * i, d, false));
  out.set(data as ArrayLike<number>, 4 + 4 * dims.length);
  return out;
}

test('parseIdx validates magic, type, rank and length', () => {
  const ok = idx([2, 3], [1, 2, 3, 4, 5, 6]);
  assert.deepEqual(parseIdx(ok), { dims: [2, 3], data: new Uint8Array([1, 2, 3, 4, 5, 6]) });
  const bad = ok.slice();
  bad[0] = 0x1f;
  assert.throws(() => parseIdx(bad, 'x.idx'), (e: Error) => e instanceof IdxError && /x\.idx: bad magic number 0x1f000802/.test(e.message));
  assert.throws(() => parseIdx(idx([1], [0], 0x0d)), /element type 0xd \(float32\) unsupported/);
  assert.throws(() => parseIdx(ok.subarray(0, 10)), /too short for a rank-2 header/);
  assert.throws(() => parseIdx(ok.subarray(0, 15)), /dims \[2,3\] need 18 bytes, file has 15 \(truncated\?\)/);
  assert.throws(() => parseIdx(new Uint8Array([...ok, 0])), /trailing bytes/);
  assert.throws(() => parseIdx(new Uint8Array(2)), /too short for an IDX header/);
});

test('readMnistDir: gzipped files, mismatched counts, corrupt files name the file', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'ddpm-mnist-'));
  try {
    const images = idx([2, 28, 28], new Uint8Array(2 * 784).fill(3));
    writeFileSync(path.join(dir, 't10k-images-idx3-ubyte.gz'), gzipSync(images));
    writeFileSync(path.join(dir, 't10k-labels-idx1-ubyte'), idx([2], [4, 2]));
    const m = readMnistDir(dir, 'test');
    assert.deepEqual([m.n, m.labels[1], m.images[783]], [2, 2, 3]);

    writeFileSync(path.join(dir, 't10k-labels-idx1-ubyte'), idx([3], [4, 2, 1]));
    assert.throws(() => readMnistDir(dir, 'test'), /t10k-labels-idx1-ubyte: dims \[3\], expected \[2\]/);
    writeFileSync(path.join(dir, 't10k-labels-idx1-ubyte'), idx([2], [4, 12]));
    assert.throws(() => readMnistDir(dir, 'test'), /label 12 at index 1 is not a digit/);
    writeFileSync(path.join(dir, 't10k-images-idx3-ubyte.gz'), gzipSync(idx([2, 28, 27], new Uint8Array(2 * 28 * 27))));
    assert.throws(() => readMnistDir(dir, 'test'), /dims \[2,28,27\], expected \[N, 28, 28\]/);
    const gz = gzipSync(images);
    writeFileSync(path.join(dir, 't10k-images-idx3-ubyte.gz'), gz.subarray(0, gz.length - 6));
    assert.throws(() => readMnistDir(dir, 'test'), /t10k-images-idx3-ubyte\.gz: corrupt gzip data/);
    assert.throws(() => readMnistDir(dir, 'train'), /cannot read MNIST file .*train-images-idx3-ubyte/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
