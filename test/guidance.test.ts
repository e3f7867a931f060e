/**
 * Class-conditional models and classifier-free guidance (issue 15): the label embedding in the U-Net, the guidance
 * wrapper (one doubled-batch call equals two separate calls), the ONNX file of a conditional model and the reader's
 * checks, label dropout and exact resume in training, the warm start from an unconditional model, and the
 * unconditional path left exactly as it was.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as ort from 'onnxruntime-node';
import onnxProto from 'onnx-proto';
import { classifierFreeGuidance, type ConditionalModel } from '../src/diffusion/guidance.ts';
import { DdimSampler, sampleLoop } from '../src/diffusion/samplers.ts';
import { GaussianDiffusion } from '../src/diffusion/gaussian-diffusion.ts';
import { compareCodePoints, folderClassNames, folderLabels } from '../src/data/folder-classes.ts';
import { uint8Dataset, type Dataset } from '../src/data/loader.ts';
import * as T from '../src/engine/tensor.ts';
import { encodePng } from '../src/io/image.ts';
import { Denoiser } from '../src/models/denoiser.ts';
import { compileDenoiser } from '../src/models/denoiser-compile.ts';
import { LABEL_EMB, MNIST_28, UNET_CONFIGS, countParams, initUNet, unet, unetConfig, unetParamCount } from '../src/models/unet.ts';
import { DDPMPipeline } from '../src/pipeline/node.ts';
import { Rng } from '../src/rng.ts';
import { exportDenoiserFile } from '../src/sample/onnx-export.ts';
import { readDenoiserFile } from '../src/sample/onnx-file.ts';
import { loadModelDir } from '../src/train/checkpoint.ts';
import { applyOptions, defaultTrainConfig, validateTrainConfig, withClasses, type TrainConfig } from '../src/train/config.ts';
import { Trainer } from '../src/train/trainer.ts';
import { assertClose } from './helpers.ts';
import { squares } from './cli-helpers.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { onnx } = onnxProto;

/** `tiny` with 3 classes (8x8, 1 channel). */
const TINY3 = unetConfig({ numClasses: 3 }, UNET_CONFIGS.tiny!);

/** 32 labelled 8x8 squares: label = position class (i mod 3), names a, b, c. */
function labelledSquares(): Dataset {
  const base = squares();
  const labels = Uint8Array.from({ length: base.n }, (_, i) => i % 3);
  return { ...base, labels, classNames: ['a', 'b', 'c'] };
}

// ---------------------------------------------------------------------------------------------
// The U-Net

test('numClasses: a label_emb of numClasses + 1 rows of 4·ch, last in the parameter list; the rest is the unconditional init', () => {
  const cond = unetConfig({ numClasses: 10 });
  assert.equal(unetParamCount(cond), 1_623_169 + 11 * 128);
  const p = initUNet(cond, new Rng(0));
  assert.equal(countParams(p), 1_624_577);
  assert.deepEqual(p[LABEL_EMB]!.shape, [11, 128]);
  assert.equal(Object.keys(p).at(-1), LABEL_EMB);
  // torch's nn.Embedding init N(0, 1)
  const e = p[LABEL_EMB]!.data;
  const mean = e.reduce((a, v) => a + v, 0) / e.length;
  const sd = Math.sqrt(e.reduce((a, v) => a + (v - mean) ** 2, 0) / e.length);
  assert.ok(Math.abs(mean) < 0.1 && Math.abs(sd - 1) < 0.1, `label_emb mean ${mean}, sd ${sd}`);
  const plain = initUNet(MNIST_28, new Rng(0));
  for (const [k, v] of Object.entries(plain)) assert.deepEqual(p[k]!.data, v.data, k);
  // configs without the key (every file written before it) are unconditional; bad values are clear errors
  const { numClasses: _, ...old } = MNIST_28;
  assert.equal(unetConfig(old).numClasses, 0);
  assert.throws(() => unetConfig({ numClasses: -1 }), /numClasses must be an integer in \[1, 256\], got -1/);
  assert.throws(() => unetConfig({ numClasses: 2.5 }), /numClasses must be an integer/);
  assert.throws(() => unetConfig({ numClasses: '10' as never }), /numClasses must be an integer.*"10"/);
  assert.throws(() => unetConfig({ numClasses: 257 }), /numClasses must be an integer in \[1, 256\]/);
});

test('unet: labels exactly for a conditional model, int64 [N]', () => {
  const params = Object.fromEntries(Object.entries(initUNet(TINY3, new Rng(0))).map(([k, v]) => [k, T.input(k, v.shape)]));
  const x = T.input('x', ['N', 1, 8, 8]);
  const t = T.input('t', ['N']);
  assert.deepEqual(unet(TINY3, params, x, t, { labels: T.input('y', ['N'], 'int64') }).shape, ['N', 1, 8, 8]);
  assert.throws(() => unet(TINY3, params, x, t), /class-conditional model \(numClasses 3\) needs labels/);
  assert.throws(() => unet(TINY3, params, x, t, { labels: T.input('y', ['N']) }), /labels must be int64 \[N\]/);
  assert.throws(() => unet(TINY3, params, x, t, { labels: T.input('y', [2], 'int64') }), /labels must be int64 \[N\] matching x/);
  const plain = Object.fromEntries(Object.entries(initUNet(UNET_CONFIGS.tiny!, new Rng(0))).map(([k, v]) => [k, T.input(k, v.shape)]));
  assert.throws(() => unet(UNET_CONFIGS.tiny!, plain, x, t, { labels: T.input('y', ['N'], 'int64') }), /labels given to an unconditional model/);
});

// ---------------------------------------------------------------------------------------------
// Guidance

/** A deterministic conditional "model" in plain JS: out[b] = f(x, t, y) with a variance half (2 output channels). */
const dummy: ConditionalModel = (xt, t, y, shape) => {
  const [B, C, H, W] = shape as [number, number, number, number];
  const per = C * H * W;
  const out = new Float32Array(B * 2 * per);
  for (let b = 0; b < B; b++) {
    for (let i = 0; i < per; i++) {
      out[b * 2 * per + i] = Math.sin(xt[b * per + i]! * (1 + y[b]!) + t[b]! / 7);
      out[b * 2 * per + per + i] = Math.cos(0.3 * y[b]! + i) * 0.5; // "v"
    }
  }
  return out;
};

test('guidance: one doubled-batch call == ε(∅) + s·(ε(c) − ε(∅)) from two separate calls; variance from the conditional half', async () => {
  const B = 3;
  const shape = [B, 1, 4, 4];
  const per = 16;
  const xt = new Rng(1).normalFloat32(B * per);
  const t = Int32Array.from([5, 50, 99]);
  const labels = Int32Array.from([0, 2, 1]);
  const nulls = new Int32Array(B).fill(3);
  let calls = 0;
  const counted: ConditionalModel = (...a) => (calls++, dummy(...a));
  const cond = await dummy(xt, t, labels, shape);
  const uncond = await dummy(xt, t, nulls, shape);
  for (const s of [0, 1, 2.5, 4]) {
    calls = 0;
    const got = await classifierFreeGuidance(counted, { labels, numClasses: 3, scale: s })(xt, t, shape);
    assert.equal(calls, 1, `s = ${s}: one model call`);
    const want = new Float32Array(B * 2 * per);
    for (let b = 0; b < B; b++) {
      for (let i = 0; i < per; i++) {
        const o = b * 2 * per + i;
        // at s = 0 and 1 the guided model IS the unconditional / conditional one (variance included)
        want[o] = s === 0 ? uncond[o]! : s === 1 ? cond[o]! : uncond[o]! + s * (cond[o]! - uncond[o]!); // in float64, rounded once
        want[o + per] = s === 0 ? uncond[o + per]! : cond[o + per]!;
      }
    }
    assert.deepEqual(got, want, `s = ${s}`);
  }
  // a sampler runs it unchanged
  const diffusion = GaussianDiffusion.fromConfig({ kind: 'linear', T: 100 });
  const sampler = new DdimSampler(diffusion, { meanType: 'epsilon', varType: 'learnedRange', eta: 0, timesteps: 'ddim5', clipDenoised: true });
  const x = await sampleLoop(sampler, classifierFreeGuidance(dummy, { labels, numClasses: 3, scale: 2 }), shape, new Rng(0));
  assert.equal(x.length, B * per);
  assert.ok(x.every(Number.isFinite));
  // bad use is a clear error
  assert.throws(() => classifierFreeGuidance(dummy, { labels, numClasses: 0, scale: 2 }), /needs a class-conditional model/);
  assert.throws(() => classifierFreeGuidance(dummy, { labels: Int32Array.from([4]), numClasses: 3, scale: 2 }), /class label 4 is outside \[0, 3\]/);
  assert.throws(() => classifierFreeGuidance(dummy, { labels, numClasses: 3, scale: NaN }), /finite/);
  await assert.rejects(async () => classifierFreeGuidance(dummy, { labels, numClasses: 3, scale: 2 })(xt.subarray(0, 32), t.subarray(0, 2), [2, 1, 4, 4]), /a batch of 2 for 3 class labels/);
});

test('guidance on a compiled conditional U-Net: the doubled batch equals two separate calls; predict() is label ∅', async () => {
  const cfg = unetConfig({ numClasses: 3, outChannels: 2 }, UNET_CONFIGS.tiny!); // learned variances: 2 channels
  const den = await compileDenoiser(ort as never, cfg, initUNet(cfg, new Rng(2)), { threads: 1 });
  try {
    const B = 4;
    const xt = new Rng(3).normalFloat32(B * 64);
    const t = Int32Array.from([0, 30, 60, 99]);
    const labels = Int32Array.from([0, 1, 2, 1]);
    const cond = await den.predictClass(xt, t, labels);
    const uncond = await den.predictClass(xt, t, new Int32Array(B).fill(3));
    assert.deepEqual(await den.predict(xt, t), uncond);
    let differs = 0;
    for (let i = 0; i < cond.length; i++) if (cond[i] !== uncond[i]) differs++;
    assert.ok(differs > cond.length / 2, 'the label changes the output');
    const s = 3;
    const got = await classifierFreeGuidance(den.predictClass, { labels, numClasses: 3, scale: s })(xt, t, [B, 1, 8, 8]);
    const want = new Float32Array(cond.length);
    for (let b = 0; b < B; b++) {
      for (let i = 0; i < 128; i++) {
        const o = b * 128 + i;
        want[o] = i < 64 ? uncond[o]! + s * (cond[o]! - uncond[o]!) : cond[o]!;
      }
    }
    // onnxruntime may round a batch of 8 differently from one of 4
    assertClose(got, want, { atol: 1e-5, rtol: 1e-5 }, 'doubled batch vs two calls');
    await assert.rejects(den.predictClass(xt, t, Int32Array.from([0, 1, 2, 4])), /class label 4 is outside \[0, 3\]/);
  } finally {
    await den.release();
  }
});

// ---------------------------------------------------------------------------------------------
// The exported file

/** Decode, edit, encode an exported file. */
function edit(bytes: Uint8Array, f: (m: InstanceType<typeof onnx.ModelProto>) => void): Uint8Array {
  const m = onnx.ModelProto.decode(bytes);
  f(m);
  return onnx.ModelProto.encode(m).finish();
}
const setMeta = (m: InstanceType<typeof onnx.ModelProto>, key: string, value: string | null) => {
  m.metadataProps = m.metadataProps!.filter((p) => p.key !== key);
  if (value !== null) m.metadataProps.push(onnx.StringStringEntryProto.create({ key, value }));
};

test('export: a conditional model has input y int64 [N] and its class names; the reader refuses files whose y or names do not fit', async () => {
  const diffusion = defaultTrainConfig('tiny').diffusion;
  const weights = initUNet(TINY3, new Rng(0));
  const bytes = exportDenoiserFile(TINY3, weights, { diffusion, version: 'test', classNames: ['a', 'b', 'c'] });
  const meta = readDenoiserFile(bytes);
  assert.equal(meta.unet.numClasses, 3);
  assert.deepEqual(meta.classNames, ['a', 'b', 'c']);
  assert.match(meta.metadata['ddpm-ts.io']!, /y: int64 \[N\] \(class label 0\.\.2, 3 = no class/);
  assert.deepEqual(readDenoiserFile(exportDenoiserFile(TINY3, weights, { diffusion, version: 'test' })).classNames, ['0', '1', '2']);
  // the file runs in onnxruntime as the compiled model does
  const live = await compileDenoiser(ort as never, TINY3, weights, { threads: 1, weightsAsInputs: true });
  const file = await Denoiser.fromOnnx(ort as never, meta.unet, bytes, { threads: 1 });
  const xt = new Rng(4).normalFloat32(3 * 64);
  const t = Int32Array.from([1, 50, 99]);
  const y = Int32Array.from([2, 0, 3]);
  assertClose(await file.predictClass(xt, t, y), await live.predictClass(xt, t, y), { atol: 1e-5, rtol: 1e-4 }, 'exported vs compiled');
  await file.release();
  await live.release();

  const plain = exportDenoiserFile(UNET_CONFIGS.tiny!, initUNet(UNET_CONFIGS.tiny!, new Rng(0)), { diffusion, version: 'test' });
  assert.equal(readDenoiserFile(plain).classNames, undefined);
  const cases: [string, Uint8Array, RegExp][] = [
    ['metadata says 3 classes, graph has no y', edit(plain, (m) => setMeta(m, 'ddpm-ts.unet', JSON.stringify(TINY3))), /says the model has 3 classes, but the graph has no class-label input 'y'/],
    ['graph has y, metadata unconditional', edit(bytes, (m) => setMeta(m, 'ddpm-ts.unet', JSON.stringify({ ...TINY3, numClasses: 0 }))), /ONNX metadata \(ddpm-ts.unet\) says the model is unconditional \(numClasses 0\), but the graph has a class-label input 'y'/],
    ['y declared float', edit(bytes, (m) => (m.graph!.input!.find((i) => i.name === 'y')!.type!.tensorType!.elemType = 1)), /says input 'y' is int64 \(element type 7\), the graph declares element type 1/],
    ['t declared int64', edit(bytes, (m) => (m.graph!.input!.find((i) => i.name === 't')!.type!.tensorType!.elemType = 7)), /says input 't' is float32 \(element type 1\), the graph declares element type 7/],
    ['an extra input', edit(plain, (m) => m.graph!.input!.push(onnx.ValueInfoProto.create({ name: 'z' }))), /describes the inputs x, t, the graph also has an input 'z'/],
    ['names not JSON', edit(bytes, (m) => setMeta(m, 'ddpm-ts.classes', '[a, b')), /'ddpm-ts.classes' is not valid JSON/],
    ['two names for three classes', edit(bytes, (m) => setMeta(m, 'ddpm-ts.classes', '["a","b"]')), /2 class names for a model of 3 classes/],
    ['a repeated name', edit(bytes, (m) => setMeta(m, 'ddpm-ts.classes', '["a","b","a"]')), /class name "a" appears twice/],
    ['a name that is no string', edit(bytes, (m) => setMeta(m, 'ddpm-ts.classes', '["a",2,"c"]')), /class name 1 must be a non-empty string/],
    ['names on an unconditional model', edit(plain, (m) => setMeta(m, 'ddpm-ts.classes', '["a","b"]')), /names classes, but ddpm-ts.unet says the model is unconditional/],
    ['numClasses out of range', edit(bytes, (m) => setMeta(m, 'ddpm-ts.unet', JSON.stringify({ ...TINY3, numClasses: 1e9 }))), /numClasses must be an integer in \[1, 256\]/],
  ];
  for (const [what, b, re] of cases) assert.throws(() => readDenoiserFile(b), re, what);
  // without names, a conditional file is still fine (labels are their own names)
  assert.equal(readDenoiserFile(edit(bytes, (m) => setMeta(m, 'ddpm-ts.classes', null))).classNames, undefined);
  assert.throws(() => exportDenoiserFile(UNET_CONFIGS.tiny!, initUNet(UNET_CONFIGS.tiny!, new Rng(0)), { diffusion, version: 't', classNames: ['a'] }), /class names for an unconditional model/);
});

// ---------------------------------------------------------------------------------------------
// The unconditional path: unchanged

test('unconditional models are unchanged: re-exporting models/mnist-28 gives the shipped model.onnx byte for byte, and samples are pinned', async () => {
  const dir = path.join(ROOT, 'models', 'mnist-28');
  const m = await loadModelDir(dir);
  assert.equal(m.config.model.numClasses, 0);
  const bytes = exportDenoiserFile(m.config.model, m.weights, { diffusion: m.config.diffusion, version: '0.1.0', step: 1300 });
  const shipped = new Uint8Array(readFileSync(path.join(dir, 'model.onnx')));
  assert.equal(bytes.length, shipped.length);
  assert.ok(Buffer.from(bytes).equals(Buffer.from(shipped)), 'the export differs from the shipped model.onnx');
  // samples of the shipped model (DDIM-10 and DDPM-10, seed 3, two images), pinned before class conditioning existed
  const golden = {
    ddim: { sum: -1220.3331571212038, a: [-0.99373496, -0.99049342, -0.98622876, -0.5179261, 0.94252342, 0.93392283], b: [-0.98055327, -0.98500896, -0.97733200, -0.97217524, -0.98054004, -0.94806939] },
    ddpm: { sum: -1160.9945876700804, a: [-0.97595912, 0.04450477, 0.89006752, -0.65995204, -0.99861401, -0.99325407], b: [-0.99855018, -0.82496846, 0.50214154, 0.99070621, 0.86878514, 0.9590171] },
  };
  const pipe = await DDPMPipeline.fromPretrained(undefined, { threads: 1 });
  try {
    for (const sampler of ['ddim', 'ddpm'] as const) {
      const s = (await pipe.generate({ n: 2, steps: 10, sampler, seed: 3, ...(sampler === 'ddim' ? { eta: 0 } : {}) })).samples; // pinned when η's default was 0
      const g = golden[sampler];
      assertClose(s.subarray(400, 406), g.a, { atol: 2e-5 }, `${sampler} image 0`);
      assertClose(s.subarray(784 + 400, 784 + 406), g.b, { atol: 2e-5 }, `${sampler} image 1`);
      assertClose([s.reduce((a, v) => a + v, 0)], [g.sum], { atol: 1e-2 }, `${sampler} sum`);
    }
    // DDIM's η defaults to 1 (DEFAULT_DDIM_ETA): the stochastic chain, not the pinned deterministic one
    const dflt = (await pipe.generate({ n: 2, steps: 10, seed: 3 })).samples;
    assert.deepEqual(dflt, (await pipe.generate({ n: 2, steps: 10, seed: 3, sampler: 'ddim', eta: 1 })).samples, 'the default is DDIM with eta 1');
    assert.notDeepEqual(dflt.subarray(400, 406), Float32Array.from(golden.ddim.a), 'the default is not eta 0');
    await assert.rejects(pipe.generate({ n: 1, steps: 10, classLabels: 3 }), /class labels given to an unconditional model/);
    await assert.rejects(pipe.generate({ n: 1, steps: 10, guidanceScale: 2 }), /guidanceScale needs classLabels/);
  } finally {
    await pipe.release();
  }
});

// ---------------------------------------------------------------------------------------------
// Training

function tinyCond(extra: Record<string, string> = {}): TrainConfig {
  const cfg = applyOptions(defaultTrainConfig('tiny'), {
    'batch-size': '8', T: '100', 'log-every': '1', 'checkpoint-every': '3', 'sample-every': '0', lr: '1e-3', 'class-cond': 'true', ...extra,
  });
  return withClasses(cfg, ['a', 'b', 'c']);
}

async function run(cfg: TrainConfig, out: string, resume = false, data = labelledSquares()) {
  const losses: number[] = [];
  const tr = await Trainer.create(ort as never, cfg, out, data, { threads: 1, resume, events: { onStep: (_s, l) => losses.push(l) } });
  await tr.train();
  const params = tr.step.paramsByPath();
  await tr.release();
  return { losses, params };
}

test('class-conditional training: resume is exact (6 steps == 3 + resume + 3), classes stored in the checkpoint', async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'ddpm-cond-resume-'));
  try {
    const full = await run(tinyCond({ steps: '6' }), path.join(dir, 'a'));
    const first = await run(tinyCond({ steps: '3' }), path.join(dir, 'b'));
    const second = await run(tinyCond({ steps: '6' }), path.join(dir, 'b'), true);
    assert.deepEqual([...first.losses, ...second.losses], full.losses);
    for (const [k, v] of full.params) assert.deepEqual(second.params.get(k)!.data, v.data, `param ${k} differs`);
    assert.ok(full.params.has(LABEL_EMB));
    const ckpt = await loadModelDir(path.join(dir, 'b', 'checkpoint'));
    assert.equal(ckpt.config.model.numClasses, 3);
    assert.deepEqual(ckpt.config.data.classNames, ['a', 'b', 'c']);
    assert.equal(ckpt.config.data.pUncond, 0.1);
    // the class embedding's learning-rate multiplier may change on resume, as the learning-rate schedule may
    const faster = await run(tinyCond({ steps: '7', 'class-lr-scale': '10' }), path.join(dir, 'b'), true);
    assert.equal(faster.losses.length, 1);
    assert.equal((await loadModelDir(path.join(dir, 'b', 'checkpoint'))).config.optim.classLrScale, 10);
    // the label dropout is part of the run: another p_uncond trains differently from the first step that drops a label
    const other = await run(tinyCond({ steps: '6', 'p-uncond': '0.5' }), path.join(dir, 'c'));
    assert.notDeepEqual(other.losses, full.losses);
    // an unlabelled dataset is refused before any work
    await assert.rejects(Trainer.create(ort as never, tinyCond({ steps: '1' }), path.join(dir, 'd'), squares(), { threads: 1 }), /has no class labels/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('label dropout: each label becomes ∅ with probability p_uncond, drawn per step from the seed', async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'ddpm-cond-drop-'));
  try {
    const tr = await Trainer.create(ort as never, tinyCond({ 'batch-size': '32', 'p-uncond': '0.25' }), path.join(dir, 'a'), labelledSquares(), { threads: 1 });
    const stepInputs = (n: number, x0: Float32Array, l: Uint8Array) => tr.run.stepInputs(n, x0, l) as Record<string, BigInt64Array>;
    const labels = Uint8Array.from({ length: 32 }, (_, i) => i % 3);
    const x0 = new Float32Array(32 * 64);
    let dropped = 0;
    for (let step = 0; step < 50; step++) {
      const y = stepInputs(step, x0, labels).y!;
      assert.deepEqual(stepInputs(step, x0, labels).y, y, 'the same step draws the same labels');
      y.forEach((v, i) => {
        if (v === 3n) dropped++;
        else assert.equal(v, BigInt(labels[i]!));
      });
    }
    const frac = dropped / (50 * 32);
    assert.ok(Math.abs(frac - 0.25) < 0.04, `dropped fraction ${frac}`);
    await tr.release();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('--init-from an unconditional model: label_emb starts at zero, so every label starts as the source model', async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'ddpm-cond-init-'));
  try {
    const src = applyOptions(defaultTrainConfig('tiny'), { 'batch-size': '8', T: '100', steps: '2', 'checkpoint-every': '100', 'sample-every': '0', lr: '1e-3' });
    await run(src, path.join(dir, 'src'), false, squares());
    const source = await loadModelDir(path.join(dir, 'src', 'checkpoint'));
    const cfg = tinyCond({ steps: '1', 'init-from': path.join(dir, 'src', 'checkpoint') });
    const tr = await Trainer.create(ort as never, cfg, path.join(dir, 'ft'), labelledSquares(), { threads: 1 });
    const params = Object.fromEntries(tr.step.paramsByPath());
    await tr.release();
    assert.ok(params[LABEL_EMB]!.data.every((v) => v === 0));
    assert.deepEqual(params[LABEL_EMB]!.shape, [4, 32]);
    for (const [k, v] of Object.entries(source.weights)) assert.deepEqual(params[k]!.data, v.data, k);
    const before = await compileDenoiser(ort as never, source.config.model, source.weights, { threads: 1 });
    const after = await compileDenoiser(ort as never, cfg.model, params, { threads: 1 });
    const xt = new Rng(6).normalFloat32(4 * 64);
    const t = Int32Array.from([0, 33, 66, 99]);
    const want = await before.predict(xt, t);
    assertClose(await after.predictClass(xt, t, Int32Array.from([0, 1, 2, 3])), want, { atol: 1e-6 }, 'conditional start vs source');
    await before.release();
    await after.release();
    // a conditional source with other classes is refused (its ∅ row would move)
    await run(cfg, path.join(dir, 'ft'));
    const five = withClasses(applyOptions(defaultTrainConfig('tiny'), { T: '100', 'class-cond': 'true', 'init-from': path.join(dir, 'ft', 'checkpoint') }), ['a', 'b', 'c', 'd', 'e']);
    await assert.rejects(
      Trainer.create(ort as never, five, path.join(dir, 'bad'), { ...labelledSquares(), classNames: ['a', 'b', 'c', 'd', 'e'] }, { threads: 1 }),
      /'label_emb.weight' has shape \[4,32\], the model needs \[6,32\]/,
    );
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('config: --class-cond, --p-uncond and the classes agree with the model, or one clear error', () => {
  const base = defaultTrainConfig('tiny');
  const cond = applyOptions(base, { 'class-cond': 'true' });
  assert.equal(cond.model.numClasses, 0, 'classes come from the data');
  assert.throws(() => applyOptions(base, { 'p-uncond': '1.5' }), /--p-uncond: must be <= 1/);
  assert.equal(applyOptions(base, { 'class-cond': 'true', 'class-lr-scale': '20' }).optim.classLrScale, 20);
  assert.throws(() => applyOptions(base, { 'class-lr-scale': '20' }), /--class-lr-scale\) needs data.classCond true/);
  assert.throws(() => applyOptions(base, { 'class-cond': 'true', 'class-lr-scale': '-1' }), /--class-lr-scale: must be >= 0/);
  const ten = withClasses(cond, ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9']);
  assert.equal(ten.model.numClasses, 10);
  assert.deepEqual(JSON.parse(JSON.stringify(validateTrainConfig(JSON.parse(JSON.stringify(ten))))), JSON.parse(JSON.stringify(ten)), 'round trip');
  assert.throws(() => withClasses(ten, ['a', 'b']), /trained on the classes \[0, 1, 2, 3, 4, 5, 6, 7, 8, 9\], the data 'mnist' now has \[a, b\]/);
  assert.throws(() => withClasses(cond, undefined), /has no class labels/);
  assert.throws(() => withClasses(cond, ['only']), /only one class/);
  assert.equal(withClasses(base, ['a', 'b']), base, 'unconditional runs ignore labels');
  const bad: [unknown, RegExp][] = [
    [{ ...base, model: { ...base.model, numClasses: 10 } }, /model.numClasses 10 needs data.classCond true/],
    [{ ...base, data: { ...base.data, classNames: ['a'] } }, /data.classNames needs data.classCond true/],
    [{ ...ten, data: { ...ten.data, classNames: ['a'] } }, /1 class names for a model of 10 classes/],
    [{ ...ten, data: { ...ten.data, classNames: 'abc' } }, /'data.classNames' must be a/],
    [{ ...base, data: { ...base.data, classNames: {} } }, /'data.classNames' must be an array/],
  ];
  for (const [c, re] of bad) assert.throws(() => validateTrainConfig(c), re);
});

// ---------------------------------------------------------------------------------------------
// Folder labels

test('folder labels: subfolders sorted by code point as torchvision ImageFolder; images outside a class folder and empty classes are errors', async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'ddpm-classes-'));
  try {
    const png = await encodePng({ data: new Uint8Array(16).fill(200), width: 4, height: 4, channels: 1 });
    const root = path.join(dir, 'ok');
    // names that sort differently by code unit and by code point, a nested image, a hidden folder, a plain file
    for (const f of ['b/1.png', 'B/x/2.png', 'a/3.png', '\u{1F600}/4.png', '\uFF5E/5.png', '.hidden/6.png']) {
      await mkdir(path.dirname(path.join(root, f)), { recursive: true });
      await writeFile(path.join(root, f), png);
    }
    await writeFile(path.join(root, 'notes.txt'), 'x');
    assert.deepEqual(await folderClassNames(root), ['B', 'a', 'b', '\uFF5E', '\u{1F600}']);
    assert.ok('\u{1F600}' < '\uFF5E', 'JS sorts by code unit the other way round');
    assert.ok(compareCodePoints('\u{1F600}', '\uFF5E') > 0);
    const files = ['B/x/2.png', 'a/3.png', 'b/1.png', '\u{1F600}/4.png', '\uFF5E/5.png'].map((f) => f.split('/').join(path.sep));
    const { labels, classNames } = await folderLabels(root, { files });
    assert.deepEqual([...labels], [0, 1, 2, 4, 3]);
    assert.equal(classNames.length, 5);
    await assert.rejects(folderLabels(root, { files: [...files, 'top.png'] }), /top.png is not inside a class folder/);
    await assert.rejects(folderLabels(root, { files: files.slice(1) }), /class folder\(s\) 'B' of .* hold no usable image/);
    await mkdir(path.join(dir, 'flat'));
    await writeFile(path.join(dir, 'flat', 'x.png'), png);
    await assert.rejects(folderLabels(path.join(dir, 'flat'), { files: ['x.png'] }), /has no subfolders/);
    // as a Dataset
    const data = uint8Dataset(new Uint8Array(5 * 16), { n: 5, channels: 1, height: 4, width: 4 });
    assert.equal(data.labels, undefined);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
