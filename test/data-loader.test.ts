import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BatchLoader, epochPlan, gatherUint8Batch, uint8Dataset, type FoldableRng, type LoaderState } from '../src/data/loader.ts';
import { Rng } from '../src/rng.ts';

// 10 images of 1x2x3 whose bytes encode (image, pixel): image i, pixel k -> 10*i + k.
const N = 10;
const images = Uint8Array.from({ length: N * 6 }, (_, j) => 10 * Math.floor(j / 6) + (j % 6));
const labels = Uint8Array.from({ length: N }, (_, i) => i % 3);
const dataset = uint8Dataset(images, { n: N, channels: 1, height: 2, width: 3 }, labels);
const rng: FoldableRng = new Rng(1234); // src/rng.ts's Philox stream fits the loader's interface

/** Image index and whether it was mirrored, recovered from the float pixels. */
function decode(x: Float32Array, b: number): { index: number; flipped: boolean } {
  const px = (k: number) => Math.round((x[b * 6 + k] + 1) * 127.5);
  const first = px(0);
  return first % 10 === 0 ? { index: first / 10, flipped: false } : { index: (first - 2) / 10, flipped: true };
}

test('gatherUint8Batch scales to [-1, 1] and mirrors rows', () => {
  const out = new Float32Array(12);
  gatherUint8Batch(images, dataset, [3, 0], out, [1, 0]);
  const bytes = Array.from(out, (v) => Math.round((v + 1) * 127.5));
  assert.deepEqual(bytes, [32, 31, 30, 35, 34, 33, 0, 1, 2, 3, 4, 5]);
  gatherUint8Batch(new Uint8Array([0, 255]), { n: 2, channels: 1, height: 1, width: 1 }, [0, 1], out);
  assert.deepEqual([out[0], out[1]], [-1, 1]);
});

test('every epoch visits each image once; order differs between epochs and equals epochPlan(fold(epoch))', () => {
  const loader = new BatchLoader(dataset, { batchSize: 4, dropLast: false, rng });
  assert.equal(loader.batchesPerEpoch, 3);
  const epochs: number[][] = [];
  for (let b = 0; b < 9; b++) {
    const batch = loader.next();
    assert.equal(batch.size, b % 3 === 2 ? 2 : 4);
    (epochs[batch.epoch] ??= []).push(...batch.indices);
    for (let i = 0; i < batch.size; i++) {
      assert.deepEqual(decode(batch.x, i), { index: batch.indices[i], flipped: false });
      assert.equal(batch.labels![i], batch.indices[i] % 3);
    }
  }
  assert.equal(epochs.length, 3);
  for (const [e, order] of epochs.entries()) {
    assert.deepEqual([...order].sort((a, b) => a - b), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    assert.deepEqual(order, Array.from(epochPlan(N, new Rng(1234).fold(e), { shuffle: true, flip: false }).order));
  }
  assert.notDeepEqual(epochs[0], epochs[1]);
});

test('dropLast keeps batches full; no shuffle is sequential', () => {
  const loader = new BatchLoader(dataset, { batchSize: 4, shuffle: false });
  assert.equal(loader.batchesPerEpoch, 2);
  const seen = Array.from({ length: 4 }, () => {
    const b = loader.next();
    return [b.epoch, ...b.indices];
  });
  assert.deepEqual(seen, [[0, 0, 1, 2, 3], [0, 4, 5, 6, 7], [1, 0, 1, 2, 3], [1, 4, 5, 6, 7]]);
});

test('flips: about half, applied to the pixels, reproducible', () => {
  const big = uint8Dataset(new Uint8Array(2000 * 6), { n: 2000, channels: 1, height: 2, width: 3 });
  const loader = new BatchLoader(big, { batchSize: 2000, flip: true, rng });
  const f = loader.next().flips.reduce((a, b) => a + b, 0);
  assert.ok(Math.abs(f - 1000) < 4 * Math.sqrt(500), `${f} flips of 2000`);
  const small = new BatchLoader(dataset, { batchSize: 5, flip: true, rng });
  const again = new BatchLoader(dataset, { batchSize: 5, flip: true, rng });
  for (let k = 0; k < 4; k++) {
    const b = small.next();
    assert.deepEqual(again.next(), b);
    for (let i = 0; i < b.size; i++) assert.deepEqual(decode(b.x, i), { index: b.indices[i], flipped: b.flips[i] === 1 });
  }
});

test('resume from a saved state (through JSON) replays exactly, across epoch boundaries', () => {
  const opts = { batchSize: 3, flip: true, dropLast: false, rng: new Rng(7) };
  const reference = new BatchLoader(dataset, opts);
  const run = Array.from({ length: 12 }, () => reference.next());
  for (const cut of [0, 1, 3, 4, 7]) {
    const first = new BatchLoader(dataset, { ...opts, rng: new Rng(7) });
    for (let k = 0; k < cut; k++) first.next();
    const saved: LoaderState = JSON.parse(JSON.stringify(first.state()));
    const resumed = new BatchLoader(dataset, { ...opts, rng: new Rng(7) }, saved);
    for (let k = cut; k < 12; k++) assert.deepEqual(resumed.next(), run[k], `cut ${cut}, batch ${k}`);
  }
  // The batch written into a caller's buffer is the same batch.
  const out = new Float32Array(3 * 6);
  const l = new BatchLoader(dataset, { ...opts, rng: new Rng(7) });
  assert.equal(l.next(out).x, out);
  assert.deepEqual(out, run[0].x);
});

test('invalid options and states are rejected', () => {
  assert.throws(() => new BatchLoader(dataset, { batchSize: 2 }), /need opts\.rng/);
  assert.throws(() => new BatchLoader(dataset, { batchSize: 0, rng }), /positive integer/);
  assert.throws(() => new BatchLoader(dataset, { batchSize: 11, rng }), /fewer than batchSize 11/);
  const state = { epoch: 1, position: 4, n: 10 };
  assert.throws(() => new BatchLoader(dataset, { batchSize: 2, rng }, { ...state, n: 11 }), /saved for 11 images/);
  assert.throws(() => new BatchLoader(dataset, { batchSize: 2, rng }, { ...state, position: 12 }), /position 12 out of range/);
  assert.throws(() => new BatchLoader(dataset, { batchSize: 2, rng }, { ...state, seed: 1 } as LoaderState), /unknown key 'seed'/);
  assert.throws(() => uint8Dataset(images, { n: 11, channels: 1, height: 2, width: 3 }), /60 bytes for shape/);
});
