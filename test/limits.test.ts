/**
 * Resource limits (src/limits.ts) on the library paths: small hostile files and configs that declare something
 * huge are refused from their headers, before anything is allocated. The CLI side (one line, exit 2) is in
 * test/cli-limits.test.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import onnxProto from 'onnx-proto';
import { loadImageFolder, pixelBudget } from '../src/data/folder.ts';
import { IdxError, parseIdx } from '../src/data/mnist.ts';
import { scheduleConfig } from '../src/diffusion/schedule.ts';
import { decodeImage, readImageHeader } from '../src/io/image.ts';
import { readSafetensorsFile, readSafetensorsHeaderFile } from '../src/io/safetensors-file.ts';
import { parseSafetensorsHeader, SafetensorsError, serializeSafetensors } from '../src/io/safetensors.ts';
import { MAX_DECODE_PIXELS } from '../src/limits.ts';
import {
  MNIST_28, UNET_CONFIGS, checkUNetMemory, countParams, initUNet, unetConfig, unetParamCount, unetParamSpecs, type UNetConfig,
} from '../src/models/unet.ts';
import { Rng } from '../src/rng.ts';
import { exportDenoiserFile } from '../src/sample/onnx-export.ts';
import { META_UNET, readDenoiserFile } from '../src/sample/onnx-file.ts';
import { applyOptions, defaultTrainConfig, TRAIN_OPTIONS, parseOptionValue, validateTrainConfig } from '../src/train/config.ts';
import { idxFile, pngDeclaring, safetensorsDeclaring } from './hostile-files.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

function tempDir(prefix: string): string {
  return mkdtempSync(path.join(tmpdir(), `ddpm-limits-${prefix}-`));
}

// ---------------------------------------------------------------------------------------------
// Images

test('a PNG declaring 8388608x16 pixels is refused from its header, naming the limit', async () => {
  const bomb = await pngDeclaring(8388608, 16);
  assert.ok(bomb.length < 1024, `${bomb.length} bytes`);
  const limit = /8388608x16 = 134,217,728 pixels, over the decode limit of 33,554,432 \(MAX_DECODE_PIXELS\)/;
  await assert.rejects(readImageHeader(bomb), limit);
  await assert.rejects(decodeImage(bomb), limit);
  await assert.rejects(decodeImage(bomb, { channels: 1, size: 28 }), limit);
  // the same header at a legal size reads fine (the data is still short: decoding it fails as corrupt)
  assert.deepEqual(await readImageHeader(await pngDeclaring(4096, 16)), { width: 4096, height: 16, pixels: 65536, format: 'png' });
  await assert.rejects(decodeImage(await pngDeclaring(4096, 16)), /libpng|read error|truncated|premature/i);
  // and so does an image exactly at the limit, which is allowed by it
  const atLimit = await readImageHeader(await pngDeclaring(MAX_DECODE_PIXELS / 4096, 4096));
  assert.equal(atLimit.pixels, MAX_DECODE_PIXELS);
});

test('decodeImage refuses a resize target over MAX_IMAGE_SIZE before decoding', async () => {
  const png = new Uint8Array(await sharp({ create: { width: 4, height: 4, channels: 3, background: '#000' } }).png().toBuffer());
  await assert.rejects(decodeImage(png, { size: 20000 }), /size must be an integer in \[1, 1024\], got 20000/);
  assert.equal((await decodeImage(png, { size: 16 })).width, 16);
});

test('a folder of bombs is refused image by image, naming each file; good images around them still load', async () => {
  const dir = tempDir('folder');
  try {
    const bomb = await pngDeclaring(8388608, 16);
    for (let i = 0; i < 4; i++) writeFileSync(path.join(dir, `bomb${i}.png`), bomb);
    await sharp({ create: { width: 10, height: 10, channels: 3, background: '#fff' } }).png().toFile(path.join(dir, 'good.png'));
    await assert.rejects(
      loadImageFolder(dir, { size: 8, channels: 1 }),
      /cannot decode image .*bomb0\.png: declares 8388608x16 .* \(MAX_DECODE_PIXELS\)/,
    );
    const warnings: string[] = [];
    const data = await loadImageFolder(dir, { size: 8, channels: 1, onCorrupt: 'skip', warn: (m) => warnings.push(m) });
    assert.deepEqual(data.files, ['good.png']);
    assert.equal(warnings.length, 4);
    assert.ok(warnings.every((w) => /bomb\d\.png: declares 8388608x16/.test(w)), warnings.join('\n'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('an image folder too large for memory is refused before the dataset is allocated', async () => {
  const dir = tempDir('big');
  try {
    for (let i = 0; i < 3; i++) {
      await sharp({ create: { width: 4, height: 4, channels: 3, background: '#fff' } }).png().toFile(path.join(dir, `${i}.png`));
    }
    await assert.rejects(
      loadImageFolder(dir, { size: 1024, channels: 3, maxBytes: 1e6 }),
      /image folder .*: 3 images at 3x1024x1024 need 0\.0 GB in memory, over the 0\.0 GB allowed$/,
    );
    assert.equal((await loadImageFolder(dir, { size: 8, channels: 3, maxBytes: 3 * 192 })).n, 3);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('pixelBudget: decodes run together only while their declared pixels fit; one may always run alone', async () => {
  const budget = pixelBudget(10);
  const started: string[] = [];
  const run = async (name: string, px: number) => {
    await budget.acquire(px);
    started.push(name);
    return () => budget.release(px);
  };
  const a = await run('a', 6); // fits
  const pb = run('b', 6); // 12 > 10: waits
  const pc = run('c', 1); // behind b: waits too (first come, first served)
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(started, ['a']);
  a();
  const b = await pb;
  const c = await pc;
  assert.deepEqual(started, ['a', 'b', 'c']); // 6 + 1 fit together
  b();
  c();
  const big = await run('big', 50); // over the budget but alone: allowed
  const pd = run('d', 1);
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(started, ['a', 'b', 'c', 'big']);
  big();
  (await pd)();
  assert.deepEqual(started, ['a', 'b', 'c', 'big', 'd']);
});

test('decoding bombs (one file, then a folder of 8) keeps peak RSS within 200 MB of the baseline', () => {
  // In a child process, so that maxRSS measures only this work. Before the pixel limit one such file took
  // 3.8 GB, and a folder of 8 took 15.6 GB.
  const dir = tempDir('rss');
  try {
    const script = path.join(dir, 'rss.mts'); // .mts: an ES module outside the package
    writeFileSync(
      script,
      `
      import { writeFileSync } from 'node:fs';
      import { loadImageFolder } from ${JSON.stringify(path.join(ROOT, 'src/data/folder.ts'))};
      import { decodeImage } from ${JSON.stringify(path.join(ROOT, 'src/io/image.ts'))};
      import { pngDeclaring } from ${JSON.stringify(path.join(ROOT, 'test/hostile-files.ts'))};
      const bomb = await pngDeclaring(8388608, 16);
      for (let i = 0; i < 8; i++) writeFileSync(${JSON.stringify(dir)} + '/b' + i + '.png', bomb);
      await decodeImage(await pngDeclaring(2, 2)).catch(() => {}); // load the codecs
      const base = process.resourceUsage().maxRSS;
      let refused = 0;
      await decodeImage(bomb).catch(() => refused++);
      await loadImageFolder(${JSON.stringify(dir)}, { size: 28, channels: 1 }).catch(() => refused++);
      console.log(JSON.stringify({ growKB: process.resourceUsage().maxRSS - base, refused }));
      `,
    );
    const out = execFileSync(process.execPath, ['--import', 'tsx', script], { cwd: ROOT, encoding: 'utf8' });
    const { growKB, refused } = JSON.parse(out.trim().split('\n').at(-1)!) as { growKB: number; refused: number };
    assert.equal(refused, 2);
    assert.ok(growKB < 200 * 1024, `peak RSS grew by ${(growKB / 1024).toFixed(0)} MB`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

// ---------------------------------------------------------------------------------------------
// Model configs: shapes without allocation, bounded counts, a memory estimate

/** Ho et al.'s CIFAR-10 model: 35.7M parameters. */
const CIFAR10: Partial<UNetConfig> = {
  imageSize: 32, inChannels: 3, baseChannels: 128, channelMults: [1, 2, 2, 2], numResBlocks: 2, attnResolutions: [16], groups: 32, dropout: 0.1,
};

test('unetParamSpecs lists the names and shapes initUNet allocates, in order; counts without allocating', () => {
  for (const cfg of [MNIST_28, UNET_CONFIGS.tiny!, unetConfig({ outChannels: 2 }), unetConfig({ inChannels: 3, imageSize: 16 }, UNET_CONFIGS.tiny)]) {
    const p = initUNet(cfg, new Rng(0));
    assert.deepEqual(unetParamSpecs(cfg).map((s) => [s.name, s.shape]), Object.entries(p).map(([k, v]) => [k, v.shape]));
    assert.equal(unetParamCount(cfg), countParams(p));
  }
  assert.equal(unetParamCount(MNIST_28), 1_623_169);
  assert.equal(unetParamCount(unetConfig(CIFAR10)), 35_746_307); // "35.7M" (Ho et al., appendix B)
});

test('a 1 KB config that would allocate gigabytes is refused field by field, naming the limit', () => {
  const hostile = { numResBlocks: 1048576, channelMults: [1, 2000] };
  assert.ok(JSON.stringify(hostile).length < 1024);
  assert.throws(() => unetConfig(hostile), /numResBlocks must be an integer in \[1, 16\], got 1048576/);
  assert.throws(() => unetConfig({ channelMults: [1, 2000] }), /baseChannels 32 x channelMult 2000 = 64000 channels, over the width limit of 2048/);
  assert.throws(() => unetConfig({ baseChannels: 2048 }), /baseChannels 2048 x channelMult 2 = 4096 channels, over the width limit of 2048/);
  assert.throws(() => unetConfig({ channelMults: [1, 1, 1, 1, 1, 1, 1, 1, 1] }), /channelMults must be an array of 1 to 8 levels/);
  assert.throws(() => unetConfig({ imageSize: 29360128 }), /imageSize must be an integer in \[1, 1024\], got 29360128/);
  assert.throws(() => unetConfig({ inChannels: 2 }), /inChannels must be 1 or 3 \(grayscale or RGB\), got 2/);
  assert.throws(() => unetConfig({ attnResolutions: 7 as never }), /attnResolutions must be an array of at most 8 resolutions, got 7/);
  assert.throws(() => unetConfig({ attnResolutions: ['7'] as never }), /attnResolutions\[0\] must be an integer in \[1, 28\], got "7"/);
  assert.throws(() => unetConfig({ dropout: '0.1' as never }), /dropout must be in \[0, 1\), got "0.1"/);
  assert.throws(() => unetConfig({ groups: 1e300 }), /groups must be an integer in \[1, 2048\]/);
  // within every count and width limit, but 2.28e9 parameters: over MAX_PARAMS (2 GB of float32)
  assert.throws(() => unetConfig({ ...CIFAR10, baseChannels: 1024 }), /2\.28e\+9 parameters, over the limit of 5\.0e\+8/);
  assert.throws(() => scheduleConfig({ kind: 'linear', T: 1048576000 }), /T must be an integer in \[2, 100000\] \(MAX_T\), got 1048576000/);
  // the same through a checkpoint's config.json
  assert.throws(
    () => validateTrainConfig({ model: hostile, diffusion: { schedule: { kind: 'linear', T: 1048576000 } } }),
    /T must be an integer in \[2, 100000\]/,
  );
  assert.throws(() => validateTrainConfig({ model: { attnResolutions: 'all' } }), /attnResolutions must be an array/);
});

test('the memory estimate refuses what cannot fit this machine, keeps the CIFAR-10 model, and names the limit', () => {
  const cifar = unetConfig(CIFAR10);
  const m = checkUNetMemory(cifar, 'train', 64, 24e9);
  assert.equal(m.params, 35_746_307);
  assert.ok(m.trainBytes > 6 * 4 * m.params && m.trainBytes < 24e9, `${m.trainBytes}`);
  assert.throws(() => checkUNetMemory(cifar, 'train', 64, 4e9), /^Error: model needs ~\d\.\d GB to train at batch 64 \(params 3\.6e\+7\); this machine has 4\.0 GB$/);
  // attention at full resolution: (H·W)^2 scores per image
  const attn = unetConfig({ imageSize: 512, attnResolutions: [512], channelMults: [1] }, UNET_CONFIGS.tiny);
  assert.throws(() => checkUNetMemory(attn, 'sample', 1, 64e9), /model needs ~\d+ GB to sample at batch 1/);
  assert.ok(checkUNetMemory(MNIST_28, 'train', 64, 4e9).trainBytes < 4e9);
});

test('flags and config values that would parse but fail later are refused, naming the flag or the field', () => {
  const def = (flag: string) => TRAIN_OPTIONS.find((d) => d.flag === flag)!;
  assert.throws(() => parseOptionValue(def('channels'), '2'), /^Error: --channels: must be 1 or 3, got '2'$/);
  assert.equal(parseOptionValue(def('channels'), '3'), 3);
  assert.throws(() => parseOptionValue(def('seed'), '1e300'), /--seed: must be at most 9007199254740991, got '1e300'/);
  assert.equal(parseOptionValue(def('seed'), String(Number.MAX_SAFE_INTEGER)), Number.MAX_SAFE_INTEGER);
  assert.throws(() => parseOptionValue(def('T'), '1e9'), /--T: must be <= 100000, got '1e9'/);
  assert.throws(() => parseOptionValue(def('image-size'), '100000'), /--image-size: must be <= 1024/);
  assert.throws(() => parseOptionValue(def('base-channels'), '4096'), /--base-channels: must be <= 2048/);
  assert.throws(() => parseOptionValue(def('steps'), '1e300'), /--steps: must be at most/);
  assert.throws(() => applyOptions(defaultTrainConfig(), { 'base-channels': '2048' }), /4096 channels, over the width limit of 2048/);
  assert.throws(() => validateTrainConfig({ run: { seed: 1e300 } }), /config: 'run.seed' must be at most 9007199254740991/);
  assert.throws(() => validateTrainConfig({ model: { inChannels: 2 } }), /inChannels must be 1 or 3/);
  assert.throws(() => validateTrainConfig({ optim: { lr: 1e999 } }), /'optim.lr' expected a finite number/);
});

// ---------------------------------------------------------------------------------------------
// Data files: every declared size is checked against the file's length before allocating

test('parseIdx: a rank-37 header, or dims whose product overflows (NaN with a zero dim), is refused', () => {
  const rank37 = idxFile(Array.from({ length: 37 }, (_, i) => (i === 36 ? 0 : 0xffffffff)));
  assert.throws(() => parseIdx(rank37, 'x.idx'), (e: Error) => e instanceof IdxError && /x\.idx: rank 37, expected 1 to 8 dimensions \(MAX_IDX_RANK\)/.test(e.message));
  // rank 8, all dims 2^32 - 1 but the last: the product overflowed to Infinity (NaN times a zero dim, which
  // passed both length checks); now it stops as soon as it exceeds the file, and a zero dim means no data
  assert.throws(() => parseIdx(idxFile([...Array(7).fill(0xffffffff), 1])), /need more than the 36 bytes the file has/);
  assert.equal(parseIdx(idxFile([...Array(7).fill(0xffffffff), 0])).data.length, 0);
  assert.throws(() => parseIdx(idxFile([...Array(7).fill(0xffffffff), 0], 1)), /need 36 bytes, file has 37 \(trailing bytes\)/);
  assert.throws(() => parseIdx(idxFile([0xffffffff, 0xffffffff, 0xffffffff], 16)), /need more than the 32 bytes/);
  assert.deepEqual(parseIdx(idxFile([0, 5, 7])).dims, [0, 5, 7]); // a genuinely empty file
  assert.deepEqual(parseIdx(idxFile([2, 3], 6)).dims, [2, 3]);
});

test('safetensors: a header declaring 2^60 bytes, or offsets past the file, is refused before reading data', async () => {
  assert.throws(() => parseSafetensorsHeader(safetensorsDeclaring({}, 2n ** 60n)), /header length 1\d{18} exceeds the 100000000-byte limit/);
  assert.throws(() => parseSafetensorsHeader(safetensorsDeclaring({}, 2n ** 64n - 1n)), /exceeds the 100000000-byte limit/);
  const huge = { w: { dtype: 'F32', shape: [2 ** 24, 2 ** 24], data_offsets: [0, 2 ** 50] } };
  assert.throws(() => parseSafetensorsHeader(safetensorsDeclaring(huge)), (e: Error) => e instanceof SafetensorsError && /out of range, the data buffer has 0 bytes/.test(e.message));
  // the header alone, from a file: shapes and offsets checked against the file's length, no data read
  const dir = tempDir('st');
  try {
    const file = path.join(dir, 'w.safetensors');
    writeFileSync(file, serializeSafetensors({ a: { shape: [2, 3], data: new Float32Array(6) } }));
    const h = await readSafetensorsHeaderFile(file);
    assert.deepEqual(h.entries.map((e) => [e.name, e.shape, e.end - e.begin]), [['a', [2, 3], 24]]);
    writeFileSync(file, safetensorsDeclaring(huge));
    await assert.rejects(readSafetensorsHeaderFile(file), /w\.safetensors: tensor 'w': data_offsets \[0,1125899906842624\] out of range/);
    writeFileSync(file, safetensorsDeclaring({}, 2n ** 60n));
    await assert.rejects(readSafetensorsHeaderFile(file), /w\.safetensors: header length \d+ exceeds the 100000000-byte limit/);
    writeFileSync(file, new Uint8Array(3));
    await assert.rejects(readSafetensorsHeaderFile(file), /file of 3 bytes is too small/);
    // a whole file over 2 GiB (sparse: no disk used) cannot be read at once: the error names it
    truncateSync(file, 2 ** 31 + 8);
    await assert.rejects(readSafetensorsFile(file), (e: Error) => e instanceof SafetensorsError && /w\.safetensors: File size \(2147483656\) is greater than 2 GiB/.test(e.message));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('ONNX metadata is checked against the limits and against the graph it describes', () => {
  const tiny = UNET_CONFIGS.tiny!;
  const diffusion = defaultTrainConfig('tiny').diffusion;
  const bytes = exportDenoiserFile(tiny, initUNet(tiny, new Rng(0)), { diffusion, version: 'test' });
  assert.deepEqual(readDenoiserFile(bytes).unet, tiny);
  const withUnet = (patch: Record<string, unknown>) => {
    const m = onnxProto.onnx.ModelProto.decode(bytes);
    for (const p of m.metadataProps ?? []) if (p.key === META_UNET) p.value = JSON.stringify({ ...tiny, ...patch });
    return onnxProto.onnx.ModelProto.encode(m).finish();
  };
  // loaded, then failed with "Invalid typed array length" when sampling
  assert.throws(() => readDenoiserFile(withUnet({ imageSize: 29360128 })), /ONNX metadata: U-Net config: imageSize must be an integer in \[1, 1024\]/);
  // legal, but not the graph's size
  assert.throws(() => readDenoiserFile(withUnet({ imageSize: 16 })), /says input 'x' is \[N, 1, 16, 16\], the graph declares \[N, 1, 8, 8\]/);
  assert.throws(() => readDenoiserFile(withUnet({ inChannels: 3, outChannels: 3 })), /input 'x' is \[N, 3, 8, 8\], the graph declares \[N, 1, 8, 8\]/);
});
