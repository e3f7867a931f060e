/**
 * Resource limits at the command line: flags and small files that declare something huge give one line on stderr
 * and exit code 2, before any work (no model built, no sampling, no training). The library side is in
 * test/limits.test.ts.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import onnxProto from 'onnx-proto';
import { writeSafetensorsFile } from '../src/io/safetensors-file.ts';
import { initUNet, unetConfig, UNET_CONFIGS } from '../src/models/unet.ts';
import { Rng } from '../src/rng.ts';
import { exportDenoiserFile } from '../src/sample/onnx-export.ts';
import { META_UNET } from '../src/sample/onnx-file.ts';
import { defaultTrainConfig } from '../src/train/config.ts';
import { assertUserError, runCli } from './cli-helpers.ts';
import { pngDeclaring, safetensorsDeclaring } from './hostile-files.ts';

let dir: string;
const at = (name: string) => path.join(dir, name);

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'ddpm-cli-limits-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** A model directory: `config` as config.json, and `weights` (default: one tiny tensor) as ema.safetensors. */
async function modelDir(name: string, config: unknown, weights?: Record<string, { shape: number[]; data: Float32Array }>): Promise<string> {
  const d = at(name);
  await mkdir(d, { recursive: true });
  await writeFile(path.join(d, 'config.json'), JSON.stringify(config));
  await writeSafetensorsFile(path.join(d, 'ema.safetensors'), weights ?? { w: { shape: [1], data: new Float32Array(1) } });
  return d;
}

test('flags that parse but would fail later (or allocate gigabytes) are one line and exit 2', async () => {
  const img = at('img.png');
  await writeFile(img, ''); // never read: every case fails at its flag
  const cases: [string[], RegExp][] = [
    [['noise', '--image', img, '--out', at('n.png'), '--T', '1e9'], /--T must be an integer in \[2, 100000\], got '1e9'/],
    [['noise', '--image', img, '--out', at('n.png'), '--size', '20000'], /--size must be an integer in \[1, 1024\], got '20000'/],
    [['noise', '--image', img, '--out', at('n.png'), '--seed', '1e300'], /--seed must be an integer in \[0, 9007199254740991\], got '1e300'/],
    [['train', '--out', at('t'), '--T', '1e9'], /--T: must be <= 100000, got '1e9'/],
    [['train', '--out', at('t'), '--base-channels', '2048'], /baseChannels 2048 x channelMult 2 = 4096 channels, over the width limit of 2048/],
    [['train', '--out', at('t'), '--base-channels', '100000'], /--base-channels: must be <= 2048/],
    [['train', '--out', at('t'), '--image-size', '100000'], /--image-size: must be <= 1024, got '100000'/],
    [['train', '--out', at('t'), '--channels', '2'], /--channels: must be 1 or 3, got '2'/],
    [['train', '--out', at('t'), '--seed', '1e300'], /--seed: must be at most 9007199254740991, got '1e300'/],
    [['train', '--out', at('t'), '--res-blocks', '1048576'], /--res-blocks: must be <= 16/],
    [['train', '--out', at('t'), '--threads', '1e9'], /--threads must be an integer in \[1, 1024\]/],
    [['sample', '--n', '1e8'], /--n must be an integer in \[1, 1000000\], got '1e8'/],
    [['sample', '--seed', '1e300'], /--seed must be an integer in \[0, 9007199254740991\], got '1e300'/],
    [['sample', '--batch-size', '1e9'], /--batch-size must be an integer in \[1, 65536\]/],
    [['eval', '--fid', '1e8'], /--fid must be an integer in \[2, 1000000\]/],
    [['export', '--out', at('m.onnx'), '--check-batch', '1e9'], /--check-batch must be an integer in \[1, 65536\]/],
  ];
  for (const [args, pattern] of cases) {
    const r = await runCli(args);
    assertUserError(r, pattern);
  }
  assert.equal(existsSync(at('t')), false, 'no run directory for a refused train');
});

test('train: a model too large for this machine at the batch size is refused before any work, naming the limit', async () => {
  const r = await runCli(['train', '--out', at('big'), '--batch-size', '65536', '--threads', '1']);
  assertUserError(r, /^error: config: model needs ~\d+ GB to train at batch 65536 \(params 1\.6e\+6\); this machine has \d+(\.\d)? GB$/m);
  assert.equal(existsSync(at('big')), false);
});

test('sample --n within MAX_SAMPLES but whose grid cannot be a PNG is refused before sampling', async () => {
  const r = await runCli(['sample', '--n', '1000000', '--out', at('s.png'), '--threads', '1']);
  assertUserError(r, /--n 1000000: the grid of 28x28 images would have [\d,]+ pixels, over the 268,402,689 a PNG grid may have \(MAX_GRID_PIXELS\)/);
  assert.doesNotMatch(r.stdout, /sampling/);
});

test('a 1 KB config.json next to tiny weights is refused from the config alone (it once built a 3 GB model)', async () => {
  const hostile = {
    preset: 'tiny',
    model: { numResBlocks: 1048576, channelMults: [1, 2000] },
    diffusion: { schedule: { kind: 'linear', T: 1048576000 } },
  };
  assert.ok(JSON.stringify(hostile).length < 1024);
  const d = await modelDir('hostile', hostile);
  const r = await runCli(['sample', '--checkpoint', d, '--out', at('h.png')]);
  assertUserError(r, /config\.json: .*(numResBlocks must be an integer in \[1, 16\]|T must be an integer in \[2, 100000\])/);
  for (const model of [{ numResBlocks: 1048576 }, { channelMults: [1, 2000] }, { attnResolutions: 4 }]) {
    const one = await modelDir('one', { preset: 'tiny', model });
    assertUserError(await runCli(['sample', '--checkpoint', one, '--out', at('h.png')]), /one[/\\]config\.json: U-Net config: (numResBlocks|baseChannels 8 x channelMult 2000|attnResolutions must be an array)/);
  }
  // a legal config whose weights do not match: names the tensor, without building the model
  const mismatch = await modelDir('mismatch', { preset: 'tiny' });
  assertUserError(await runCli(['sample', '--checkpoint', mismatch, '--out', at('h.png')]), /ema\.safetensors: missing tensor 'temb\.0\.weight'/);
});

test('weights whose header does not fit the config are refused from the header, before the data is read', async () => {
  // a sparse 2.1 GB file (no disk used): reading its data would fail (or take 2 GB); its header is enough
  const d = await modelDir('sparse', { preset: 'tiny' });
  const n = 2 ** 29 + 2 ** 20;
  const st = safetensorsDeclaring({ w: { dtype: 'F32', shape: [n], data_offsets: [0, 4 * n] } });
  const file = path.join(d, 'ema.safetensors');
  await writeFile(file, st);
  await truncate(file, st.length + 4 * n);
  const r = await runCli(['sample', '--checkpoint', d, '--out', at('x.png')]);
  assertUserError(r, /sparse[/\\]ema\.safetensors: missing tensor 'temb\.0\.weight'/);
});

test('sample: a legal config that cannot sample in this memory (attention at 512x512) is refused before the session', async () => {
  const cfg = unetConfig({ imageSize: 512, channelMults: [1], attnResolutions: [512] }, UNET_CONFIGS.tiny);
  const weights = initUNet(cfg, new Rng(0)); // 12k parameters: small files, a (512·512)² attention map
  const d = await modelDir('attn512', { preset: 'tiny', model: cfg }, weights);
  const r = await runCli(['sample', '--checkpoint', d, '--n', '1', '--out', at('a.png')]);
  assertUserError(r, /attn512[/\\]ema\.safetensors: model needs ~\d+ GB to sample at batch 1 \(params 1\.2e\+4\); this machine has \d+ GB$/m);
  assert.doesNotMatch(r.stdout, /sampling/);
});

test('an exported .onnx whose metadata disagrees with its graph, or breaks a limit, is refused at load', async () => {
  const tiny = UNET_CONFIGS.tiny!;
  const bytes = exportDenoiserFile(tiny, initUNet(tiny, new Rng(0)), { diffusion: defaultTrainConfig('tiny').diffusion, version: 'test' });
  const withUnet = async (name: string, patch: Record<string, unknown>) => {
    const m = onnxProto.onnx.ModelProto.decode(bytes);
    for (const p of m.metadataProps ?? []) if (p.key === META_UNET) p.value = JSON.stringify({ ...tiny, ...patch });
    await writeFile(at(name), onnxProto.onnx.ModelProto.encode(m).finish());
    return at(name);
  };
  const big = await withUnet('big.onnx', { imageSize: 29360128 });
  assertUserError(await runCli(['sample', '--checkpoint', big, '--out', at('o.png')]), /big\.onnx: ONNX metadata: U-Net config: imageSize must be an integer in \[1, 1024\]/);
  const other = await withUnet('other.onnx', { imageSize: 16 });
  assertUserError(await runCli(['sample', '--checkpoint', other, '--out', at('o.png')]), /other\.onnx: .*input 'x' is \[N, 1, 16, 16\], the graph declares \[N, 1, 8, 8\]/);
});

test('eval --samples over a folder of decompression bombs is refused from the first header', async () => {
  const folder = at('bombs');
  await mkdir(folder);
  const bomb = await pngDeclaring(8388608, 16);
  for (let i = 0; i < 8; i++) await writeFile(path.join(folder, `b${i}.png`), bomb);
  const r = await runCli(['eval', '--samples', folder]);
  assertUserError(r, /--samples: cannot decode image .*b\d\.png: declares 8388608x16 = 134,217,728 pixels, over the decode limit of 33,554,432 \(MAX_DECODE_PIXELS\)/);
});
