/**
 * The ONNX export against the reference interpreter: every op (forward and its autodiff gradient)
 * runs on onnxruntime-node and must agree with the interpreter in float32; a model graph also runs on
 * onnxruntime-web (wasm, in Node). Export is deterministic, and execution-provider errors are clear.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as ortNode from 'onnxruntime-node';
import * as ortWeb from 'onnxruntime-web';
import * as T from '../src/engine/tensor.ts';
import { vjp } from '../src/engine/autodiff.ts';
import { evaluate } from '../src/engine/interp.ts';
import { PRIMITIVES, topoSort } from '../src/engine/graph.ts';
import { WEBGPU_EXPORT, toOnnx } from '../src/engine/onnx.ts';
import onnxProto from 'onnx-proto';
import { compile } from '../src/engine/compile.ts';
import { CompiledFunction, type OrtModule } from '../src/engine/runtime.ts';
import { UNET_CONFIGS, initUNet, unet } from '../src/models/unet.ts';
import { Rng } from '../src/rng.ts';
import { assertClose } from './helpers.ts';

const ort = ortNode as unknown as OrtModule;
type Fn = (...xs: T.Tensor[]) => T.Tensor;

/** Every op that some `agree` call ran, forward or in a gradient. */
const checked = new Set<string>();

/** Forward and gradients (seeded with a fixed random cotangent) of f on ORT vs the interpreter in float32. */
async function agree(name: string, f: Fn, shapes: number[][], gen: (r: Rng) => number = (r) => r.normal()) {
  const rng = new Rng(name.length * 7919);
  const xs = shapes.map((s, i) => T.input(`x${i}`, s));
  const y = f(...xs);
  const seedShape = y.shape as number[];
  const seed = T.input('seed', seedShape);
  const grads = vjp(y, xs, seed);
  const outputs: Record<string, T.Tensor> = { y };
  grads.forEach((g, i) => {
    if (g) outputs[`g${i}`] = g;
  });
  const feeds: Record<string, Float32Array> = {};
  shapes.forEach((s, i) => (feeds[`x${i}`] = Float32Array.from({ length: s.reduce((a, b) => a * b, 1) }, () => gen(rng))));
  feeds.seed = rng.normalFloat32(seedShape.reduce((a, b) => a * b, 1));
  for (const n of topoSort(Object.values(outputs).map((t) => t.node))) checked.add(n.op);
  const fn = await compile(ort, outputs, { threads: 1 });
  const got = await fn.run(Object.fromEntries(fn.info.inputs.map((i) => [i.name, feeds[i.name]!])));
  const names = Object.keys(outputs);
  const ref = evaluate(names.map((k) => outputs[k]!), feeds, { precision: 'float32' });
  names.forEach((k, i) => {
    assert.deepEqual(got[k]!.dims, ref[i]!.shape, `${name}: shape of ${k}`);
    assertClose(got[k]!.data as Float32Array, ref[i]!.data as Float64Array, { atol: 2e-5, rtol: 2e-4 }, `${name}: ${k}`);
  });
  await fn.release();
}

const positive = (r: Rng) => 0.5 + 1.5 * r.uniform();
const awayFromZero = (r: Rng) => (r.uniform() < 0.5 ? -1 : 1) * (0.2 + r.uniform());

test('onnxruntime agrees with the interpreter: elementwise and unary ops', async () => {
  await agree('add', T.add, [[2, 3], [3]]);
  await agree('sub', T.sub, [[3, 1], [1, 4]]);
  await agree('mul', T.mul, [[2, 1, 3], [4, 3]]);
  await agree('div', T.div, [[2, 3], [2, 1]], positive);
  await agree('maximum', T.maximum, [[2, 3], [3]]);
  await agree('minimum', T.minimum, [[2, 3], [2, 1]]);
  await agree('pow', (a) => T.pow(a, 3), [[5]]);
  await agree('pow tensor', T.pow, [[2, 3], [3]], positive);
  await agree('where', (a, b) => T.where(T.greater(a, 0), a, b), [[2, 3], [3]]);
  for (const [n, f] of [['neg', T.neg], ['exp', T.exp], ['tanh', T.tanh], ['sigmoid', T.sigmoid], ['silu', T.silu], ['sin', T.sin], ['cos', T.cos], ['erf', T.erf]] as const) {
    await agree(n, f, [[3, 4]]);
  }
  await agree('log', T.log, [[3, 4]], positive);
  await agree('sqrt', T.sqrt, [[3, 4]], positive);
  await agree('abs', T.abs, [[3, 4]], awayFromZero);
  await agree('relu', T.relu, [[3, 4]], awayFromZero);
  await agree('clip', (a) => T.clip(a, -0.5, 0.5), [[3, 4]], (r) => (r.uniform() < 0.5 ? -1 : 1) * (r.uniform() < 0.5 ? 0.1 + 0.3 * r.uniform() : 0.7 + r.uniform()));
  await agree('cast + stopGradient', (a) => T.mul(T.stopGradient(a), T.cast(T.greater(a, 0), 'float32')), [[6]]);
});

test('onnxruntime agrees with the interpreter: matmul, conv (strides, pads, groups), convTranspose', async () => {
  await agree('matmul', T.matmul, [[3, 4], [4, 2]]);
  await agree('matmul batched', T.matmul, [[2, 1, 3, 4], [3, 4, 2]]);
  await agree('matmul fold', T.matmul, [[2, 3, 4], [4, 5]]);
  await agree('conv 3x3 p1', (x, w, b) => T.conv2d(x, w, b, { padding: 1 }), [[2, 3, 6, 6], [4, 3, 3, 3], [4]]);
  await agree('conv 3x3 s2 p1 odd', (x, w) => T.conv2d(x, w, null, { padding: 1, stride: 2 }), [[2, 2, 7, 7], [3, 2, 3, 3]]);
  await agree('conv 3x3 s2 even', (x, w) => T.conv2d(x, w, null, { stride: 2 }), [[1, 2, 8, 8], [2, 2, 3, 3]]);
  await agree('conv 1x1', (x, w, b) => T.conv2d(x, w, b), [[2, 4, 3, 3], [5, 4, 1, 1], [5]]);
  await agree('conv groups 2', (x, w) => T.conv2d(x, w, null, { padding: 1, groups: 2 }), [[1, 4, 5, 5], [6, 2, 3, 3]]);
  const ct = { strides: [2, 2] as [number, number], pads: [1, 1, 1, 1] as [number, number, number, number], group: 2, outputPadding: [1, 1] as [number, number] };
  await agree('convTranspose s2', (y, w) => T.convTranspose2d(y, w, ct), [[1, 4, 3, 3], [4, 2, 3, 3]]);
});

test('onnxruntime agrees with the interpreter: shape ops, reductions, softmax, composites', async () => {
  await agree('reshape/transpose', (a) => T.transpose(T.reshape(a, [3, 4]), [1, 0]), [[2, 6]]);
  await agree('expand', (a) => T.expand(a, [2, 3, 4]), [[3, 1]]);
  await agree('concat', (a, b) => T.concat([a, b], 1), [[2, 1, 3], [2, 3, 3]]);
  await agree('slice step 2', (a) => T.slice(a, 1, 1, undefined, 2), [[2, 7]]);
  await agree('pad', (a) => T.pad(a, [1, 0, 2, 1]), [[2, 3]]);
  const idx = T.constant([2, 0, 2, 1], [4], 'int64');
  await agree('gather (repeated rows)', (a) => T.gather(a, idx), [[3, 5]]);
  await agree('sum/mean', (a) => T.add(T.sum(a, [0, 2], true), T.mean(a, 1, true)), [[2, 3, 4]]);
  await agree('max', (a) => T.max(a, 1), [[3, 4]]);
  await agree('softmax', (a) => T.softmax(a, -1), [[3, 5]]);
  await agree('logSoftmax', (a) => T.logSoftmax(a, -1), [[3, 5]]);
  await agree('groupNorm', (x, g, b) => T.groupNorm(x, 2, g, b), [[2, 4, 3, 3], [4], [4]]);
  await agree('upsample', T.upsampleNearest2x, [[1, 2, 3, 3]]);
  const u = T.constant(Array.from({ length: 12 }, (_, i) => ((i * 7) % 12) / 12), [3, 4]);
  await agree('dropout', (a) => T.dropout(a, 0.3, u), [[3, 4]]);
});

test('every primitive was checked above: its shape rule, VJP, interpreter and lowering all ran', () => {
  const unchecked = PRIMITIVES.filter((op) => !checked.has(op));
  assert.deepEqual(unchecked, [], `no agree() case reaches ${unchecked.join(', ')}: add one`);
});

test('export is deterministic: the same function traced twice gives the same bytes', () => {
  const cfg = UNET_CONFIGS.tiny!;
  const p = initUNet(cfg, new Rng(0));
  const trace = () => {
    const params: Record<string, T.Tensor> = {};
    for (const [k, v] of Object.entries(p)) params[k] = T.input(k, v.shape);
    return toOnnx({ out: unet(cfg, params, T.input('x', ['N', 1, 8, 8]), T.input('t', ['N'])) }).bytes;
  };
  const a = trace();
  const b = trace();
  assert.equal(a.length, b.length);
  assert.ok(a.every((v, i) => v === b[i]), 'bytes differ');
});

test('the WebGPU form of a graph (WEBGPU_EXPORT) computes the same values: Concats of at most 7 inputs, leading sums as MatMul, no negative-step Slice', async () => {
  const xs = Array.from({ length: 20 }, (_, i) => T.input(`x${i}`, [2, 3]));
  const w = T.input('w', [4, 3, 3, 3]);
  const y = T.input('y', [2, 4, 5, 5]);
  const outputs = {
    cat: T.concat(xs, 0),
    lead: T.sum(T.input('s', [4, 3, 5]), [0, 1]),
    // a stride-1 transposed conv: exported as a Conv with the kernel flipped
    ct: T.convTranspose2d(y, w, { strides: [1, 1], pads: [1, 1, 1, 1], group: 1, outputPadding: [0, 0] }),
  };
  const rng = new Rng(5);
  const feeds: Record<string, Float32Array> = { w: rng.normalFloat32(4 * 27), y: rng.normalFloat32(200), s: rng.normalFloat32(60) };
  xs.forEach((_, i) => (feeds[`x${i}`] = rng.normalFloat32(6)));
  const results = [];
  for (const opts of [{}, WEBGPU_EXPORT]) {
    const { bytes, info } = toOnnx(outputs, opts);
    const nodes = onnxProto.onnx.ModelProto.decode(bytes).graph!.node!;
    if (opts === WEBGPU_EXPORT) {
      const wide = nodes.filter((n) => n.opType === 'Concat' && n.input!.length > 7).map((n) => `${n.name} (${n.input!.length} inputs)`);
      assert.deepEqual(wide, []);
      assert.deepEqual(nodes.filter((n) => n.opType === 'ReduceSum').map((n) => n.name), []);
    }
    assert.deepEqual(nodes.filter((n) => n.opType === 'Slice').map((n) => n.name), [], 'the kernel flip is a Gather');
    const fn = await CompiledFunction.fromOnnx(ort, bytes, info, { threads: 1 });
    results.push(await fn.run(feeds));
    await fn.release();
  }
  const [plain, gpu] = results as [Awaited<ReturnType<CompiledFunction['run']>>, Awaited<ReturnType<CompiledFunction['run']>>];
  assert.deepEqual(gpu.cat!.data, plain.cat!.data);
  assert.deepEqual(gpu.ct!.data, plain.ct!.data);
  assertClose(gpu.lead!.data as Float32Array, plain.lead!.data as Float32Array, { atol: 1e-6, rtol: 1e-6 }, 'leading sum');
  assert.deepEqual(gpu.lead!.dims, [5]);
});

test('a symbolic-batch model runs on onnxruntime-node and onnxruntime-web (wasm) with the same result', async () => {
  const cfg = UNET_CONFIGS.tiny!;
  const p = initUNet(cfg, new Rng(1));
  const params: Record<string, T.Tensor> = {};
  for (const [k, v] of Object.entries(p)) params[k] = T.input(k, v.shape);
  const out = unet(cfg, params, T.input('x', ['N', 1, 8, 8]), T.input('t', ['N']));
  const { bytes, info } = toOnnx({ out }, { initializers: new Map(Object.entries(p).map(([k, v]) => [k, v.data])) });
  ortWeb.env.wasm.numThreads = 1;
  const node = await CompiledFunction.fromOnnx(ort, bytes, info, { threads: 1 });
  const web = await CompiledFunction.fromOnnx(ortWeb as unknown as OrtModule, bytes, info, { executionProvider: 'wasm', threads: 1 });
  const rng = new Rng(3);
  for (const n of [1, 3]) {
    const feeds = { x: rng.normalFloat32(n * 64), t: Float32Array.from({ length: n }, (_, i) => 10 * i + 5) };
    const a = await node.run(feeds);
    const b = await web.run(feeds);
    assert.deepEqual(a.out!.dims, [n, 1, 8, 8]);
    assertClose(b.out!.data as Float32Array, a.out!.data as Float32Array, { atol: 1e-5, rtol: 1e-4 }, `web vs node, N=${n}`);
  }
  await node.release();
  await web.release();
});

test('an execution provider missing from this onnxruntime build is a clear error', async () => {
  const y = T.exp(T.input('x', [2]));
  await assert.rejects(compile(ort, { y }, { executionProvider: 'cuda' }), /execution provider 'cuda'|could not create an onnxruntime session on 'cuda'/);
});

test('run() names missing, unknown and mis-sized inputs', async () => {
  const fn = await compile(ort, { y: T.exp(T.input('x', [2, 3])) }, { threads: 1 });
  await assert.rejects(fn.run({}), /missing input 'x'/);
  await assert.rejects(fn.run({ x: new Float32Array(5) }), /input 'x': expected 6 values/);
  await assert.rejects(fn.run({ x: new Float32Array(6), z: new Float32Array(1) }), /unknown input 'z'/);
  await fn.release();
});
