import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as ort from 'onnxruntime-node';
import { Denoiser } from '../src/models/denoiser.ts';
import { compileDenoiser } from '../src/models/denoiser-compile.ts';
import { Rng } from '../src/rng.ts';
import { OPSET } from '../src/engine/onnx.ts';
import { checkOpset, readDenoiserFile } from '../src/sample/onnx-file.ts';
import { loadModelDir } from '../src/train/checkpoint.ts';
import { assertUserError, runCli, tinyCheckpoint } from './cli-helpers.ts';
import { assertClose } from './helpers.ts';

let dir: string;
let ckpt: string;
let onnxFile: string;

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'ddpm-cli-export-'));
  ckpt = await tinyCheckpoint(path.join(dir, 'run'), 3);
  onnxFile = path.join(dir, 'out', 'model.onnx'); // the folder does not exist yet
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

test('export writes a standalone ONNX with configs in its metadata; reloaded, it matches the compiled forward', async () => {
  const r = await runCli(['export', '--checkpoint', ckpt, '--out', onnxFile, '--threads', '1', '--opset-check']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /check: onnxruntime on .* max abs diff [\d.e+-]+/);
  assert.match(r.stdout, /opset: IR 8, ai\.onnx 17; ops: .*Conv/);
  assert.match(r.stdout, /opset: ok/);

  const bytes = new Uint8Array(await readFile(onnxFile));
  const { config, weights } = await loadModelDir(ckpt);
  const meta = readDenoiserFile(bytes);
  assert.deepEqual(meta.unet, config.model);
  assert.deepEqual(meta.diffusion, config.diffusion);
  assert.equal(meta.step, 3);
  assert.equal(meta.version, JSON.parse(await readFile(new URL('../package.json', import.meta.url), 'utf8')).version);
  assert.deepEqual(checkOpset(bytes, OPSET).problems, []);

  const live = await compileDenoiser(ort as never, config.model, weights, { threads: 1, weightsAsInputs: true });
  const file = await Denoiser.fromOnnx(ort as never, meta.unet, bytes, { threads: 1 });
  const x = new Rng(11).normalFloat32(3 * 64);
  const t = Int32Array.from([0, 42, 99]);
  assertClose(await file.predict(x, t), await live.predict(x, t), { atol: 1e-5 }, 'exported file vs compiled forward');
  await live.release();
  await file.release();
});

test('sample --checkpoint model.onnx gives the same images as the checkpoint directory', async () => {
  const a = path.join(dir, 'from-dir.png');
  const b = path.join(dir, 'from-onnx.png');
  for (const [src, out] of [[ckpt, a], [onnxFile, b]]) {
    const r = await runCli(['sample', '--checkpoint', src, '--n', '4', '--steps', '5', '--threads', '1', '--out', out]);
    assert.equal(r.code, 0, r.stderr);
  }
  assert.deepEqual(await readFile(b), await readFile(a));
});

test('checkOpset flags operators newer than the declared opset and custom domains', async () => {
  const { onnx } = (await import('onnx-proto')).default;
  const model = onnx.ModelProto.decode(new Uint8Array(await readFile(onnxFile)));
  model.graph!.node!.push(onnx.NodeProto.create({ opType: 'GroupNormalization', input: ['x'], output: ['gn'] }));
  model.graph!.node!.push(onnx.NodeProto.create({ opType: 'FusedThing', domain: 'com.example', input: ['x'], output: ['ft'] }));
  const problems = checkOpset(onnx.ModelProto.encode(model).finish(), OPSET).problems;
  assert.ok(problems.some((p) => /'GroupNormalization' needs opset 18, the model declares 17/.test(p)), problems.join('; '));
  assert.ok(problems.some((p) => /custom op com\.example::FusedThing/.test(p)), problems.join('; '));
});

test('export: bad input is one line on stderr and exit code 2', async () => {
  const out = path.join(dir, 'x.onnx');
  assertUserError(await runCli(['export', '--checkpoint', path.join(dir, 'nope'), '--out', out]), /no such file or directory/);
  assertUserError(await runCli(['export', '--checkpoint', ckpt, '--out', path.join(dir, 'x.pb')]), /--out must end in \.onnx/);
  assertUserError(await runCli(['export', '--checkpoint', onnxFile, '--out', out]), /model\.onnx is an ONNX model: export needs a checkpoint's weights: a checkpoint or run directory/);
  assertUserError(await runCli(['export', '--checkpoint', ckpt]), /required option '--out/);
  const bad = path.join(dir, 'bad');
  await cp(ckpt, bad, { recursive: true });
  await writeFile(path.join(bad, 'config.json'), JSON.stringify({ model: { imageSize: 8, wings: 2 } }));
  assertUserError(await runCli(['export', '--checkpoint', bad, '--out', out]), /bad\/config\.json: unknown U-Net config key 'wings'/);
  await rm(path.join(bad, 'config.json'));
  await cp(path.join(ckpt, 'config.json'), path.join(bad, 'config.json'));
  await rm(path.join(bad, 'ema.safetensors'));
  await writeFile(path.join(bad, 'params.safetensors'), new Uint8Array(16));
  assertUserError(await runCli(['export', '--checkpoint', bad, '--out', out]), /bad\/params\.safetensors: header is not valid JSON/);
});

test('export --help shows the Python snippet', async () => {
  const r = await runCli(['export', '--help']);
  assert.equal(r.code, 0);
  assert.match(r.stdout, /onnxruntime as ort/);
  assert.match(r.stdout, /ddpm-ts\.diffusion/);
});
