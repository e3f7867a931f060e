/**
 * Where a denoiser call goes on onnxruntime-web's wasm backend: the shipped model's model.onnx at batch 16 run by
 * onnxruntime-web in Node (the same onnxruntime build and MLAS kernels the page runs, compiled to wasm SIMD128,
 * 2 threads), under onnxruntime's profiler. Reports the kernel time per op type, the GFLOP/s of the convolutions
 * (2 · MACs from the profiled shapes), and, as the ceiling those kernels could reach here, the GFLOP/s of one
 * large MatMul (1024 x 1024 x 1024) in the same build. `bench/web.ts --profile` prints it.
 *
 * Run directly, it times the levers tried on those kernels, rounds alternated (one JSON object, ms per call or
 * GFLOP/s per round): session options and batch splits of the shipped model, and a 3x3 convolution against the same
 * work as one im2col MatMul:
 *
 *   node --import tsx bench/wasm-profile.ts --variants [--threads 2] [--rounds 3]
 */
import { execFileSync } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { toOnnx } from '../src/engine/onnx.ts';
import { conv2d, input, matmul } from '../src/engine/tensor.ts';
import { kernelTimeByOp, type ProfileEvent } from './ort-profile.ts';

export interface OpShare { ms_per_call: number; share: number; nodes: number }
export interface WasmProfile {
  what: string;
  ms_per_call: number;
  by_op: Record<string, OpShare>;
  conv_gflop_per_call: number;
  conv_gflop_per_s: number;
  matmul_1024_gflop_per_s: number;
}

const dims = (s: Record<string, number[]> | undefined) => (s ? Object.values(s)[0]! : []);

/** 2 · MACs of one Conv event from its profiled shapes (input [N,C,H,W], weight [M,C/g,kh,kw], output [N,M,Ho,Wo]). */
function convFlops(e: ProfileEvent): number {
  const w = dims(e.args?.input_type_shape?.[1]);
  const y = dims(e.args?.output_type_shape?.[0]);
  if (w.length !== 4 || y.length !== 4) return 0;
  return 2 * y.reduce((a, b) => a * b, 1) * w[1]! * w[2]! * w[3]!;
}

/**
 * The child process: `runs` profiled calls (after `warm`) of modelPath on onnxruntime-web wasm. onnxruntime-web
 * writes the profile (Chrome trace JSON, one event per line) to the process's stdout, where the parent reads it.
 */
async function child(modelPath: string, threads: number, batch: number, runs: number): Promise<void> {
  const ort = await import('onnxruntime-web');
  ort.env.wasm.numThreads = threads;
  const bytes = new Uint8Array(await readFile(modelPath));
  const session = await ort.InferenceSession.create(bytes, { executionProviders: ['wasm'], graphOptimizationLevel: 'all', enableProfiling: true });
  const feeds: Record<string, InstanceType<typeof ort.Tensor>> = {};
  for (const meta of session.inputMetadata) {
    if (!meta.isTensor) throw new Error(`input ${meta.name} is not a tensor`);
    const shape = meta.shape.map((d) => (typeof d === 'number' ? d : batch));
    const n = shape.reduce((a, b) => a * b, 1);
    if (meta.type === 'float32') feeds[meta.name] = new ort.Tensor('float32', Float32Array.from({ length: n }, (_, i) => Math.sin(i) * 0.5), shape);
    else if (meta.type === 'int64') feeds[meta.name] = new ort.Tensor('int64', new BigInt64Array(n), shape);
    else throw new Error(`input ${meta.name}: type ${meta.type} not handled`);
  }
  for (let i = 0; i < WARM + runs; i++) await session.run(feeds);
  session.endProfiling();
  await session.release();

  // the ceiling: one large square MatMul in the same build
  const { bytes: mmBytes } = toOnnx({ c: matmul(input('a', [K, K]), input('b', [K, K])) });
  const mm = await ort.InferenceSession.create(mmBytes, { executionProviders: ['wasm'], graphOptimizationLevel: 'all' });
  const a = new ort.Tensor('float32', Float32Array.from({ length: K * K }, (_, i) => Math.sin(i)), [K, K]);
  await mm.run({ a, b: a });
  const t0 = performance.now();
  const reps = 3;
  for (let i = 0; i < reps; i++) await mm.run({ a, b: a });
  const mmSec = (performance.now() - t0) / 1000 / reps;
  await mm.release();
  console.log(`\n${MARK}${JSON.stringify({ version: ort.env.versions.web, matmul_1024_gflop_per_s: (2 * K ** 3) / mmSec / 1e9 })}`);
}

const WARM = 2;
const K = 1024;
const MARK = 'WASM-PROFILE-RESULT ';

/** Profile `runs` calls of modelPath at `batch` on onnxruntime-web wasm (a child process), plus the MatMul ceiling. */
export function wasmProfile(modelPath: string, threads: number, batch = 16, runs = 4): WasmProfile {
  const out = execFileSync(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), '--child', modelPath, String(threads), String(batch), String(runs)], {
    encoding: 'utf8', maxBuffer: 256 << 20, stdio: ['ignore', 'pipe', 'inherit'],
  });
  const events: ProfileEvent[] = [];
  let tail: { version: string; matmul_1024_gflop_per_s: number } | null = null;
  for (const line of out.split('\n')) {
    const s = line.trim().replace(/,$/, '');
    if (s.startsWith(MARK)) tail = JSON.parse(s.slice(MARK.length));
    else if (s.startsWith('{"cat"')) events.push(JSON.parse(s) as ProfileEvent);
  }
  if (!tail) throw new Error('wasm profile: the child printed no result');
  const warm = WARM;
  const calls = events.filter((e) => e.name === 'model_run').sort((a, b) => a.ts - b.ts);
  if (calls.length < warm + runs) throw new Error(`profile: ${calls.length} model runs found, expected ${warm + runs}`);
  const { byOp, totalUs: total, kernels } = kernelTimeByOp(events, warm);
  let convFlop = 0;
  let convUs = 0;
  for (const e of kernels) {
    if (e.args?.op_name === 'Conv' || e.args?.op_name === 'FusedConv') {
      convFlop += convFlops(e);
      convUs += e.dur;
    }
  }
  const by_op: Record<string, OpShare> = {};
  for (const [op, r] of byOp) {
    by_op[op] = { ms_per_call: +(r.us / runs / 1000).toFixed(2), share: +(r.us / total).toFixed(3), nodes: Math.round(r.n / runs) };
  }
  const ms = calls.slice(warm).reduce((a, e) => a + e.dur, 0) / runs / 1000;

  return {
    what: `${modelPath} at batch ${batch} on onnxruntime-web ${tail.version} wasm (SIMD128, ${threads} threads) in Node, ${runs} profiled calls after ${warm}`,
    ms_per_call: +ms.toFixed(1),
    by_op,
    conv_gflop_per_call: +(convFlop / runs / 1e9).toFixed(3),
    conv_gflop_per_s: +(convFlop / (convUs / 1e6) / 1e9).toFixed(1),
    matmul_1024_gflop_per_s: +tail.matmul_1024_gflop_per_s.toFixed(1),
  };
}

/** The levers tried on the wasm kernels, rounds alternated; ms per call (model) or GFLOP/s (convolution). */
async function variants(modelPath: string, threads: number, rounds: number): Promise<Record<string, number[]>> {
  const ort = await import('onnxruntime-web');
  ort.env.wasm.numThreads = threads;
  const make = (bytes: Uint8Array, opts: Record<string, unknown> = {}) =>
    ort.InferenceSession.create(bytes, { executionProviders: ['wasm'], graphOptimizationLevel: 'all', ...opts });
  const model = new Uint8Array(await readFile(modelPath));
  const sessions: Record<string, Awaited<ReturnType<typeof make>>> = {
    all: await make(model),
    extended: await make(model, { graphOptimizationLevel: 'extended' }),
    basic: await make(model, { graphOptimizationLevel: 'basic' }),
    'arena off': await make(model, { enableCpuMemArena: false }),
    'batch fixed (freeDimensionOverrides)': await make(model, { freeDimensionOverrides: { N: 16 } }),
  };
  const fill = (dims: number[]) => new ort.Tensor('float32', Float32Array.from({ length: dims.reduce((a, b) => a * b, 1) }, (_, i) => Math.sin(i) * 0.5), dims);
  const feeds = (s: (typeof sessions)[string], b: number) => {
    const f: Record<string, InstanceType<typeof ort.Tensor>> = {};
    for (const m of s.inputMetadata) if (m.isTensor) f[m.name] = fill(m.shape.map((d) => (typeof d === 'number' ? d : b)));
    return f;
  };
  const msPerCall = async (s: (typeof sessions)[string], b: number, calls: number, reps = 4) => {
    await s.run(feeds(s, b));
    const t0 = performance.now();
    for (let r = 0; r < reps; r++) for (let c = 0; c < calls; c++) await s.run(feeds(s, b));
    return (performance.now() - t0) / reps;
  };
  // a 3x3 convolution (batch 16, 32 -> 32 channels, 28x28) and the same multiply-adds as one im2col MatMul
  const [N, C, H] = [16, 32, 28];
  const conv = await make(toOnnx({ y: conv2d(input('x', [N, C, H, H]), input('w', [C, C, 3, 3]), undefined, { padding: 1 }) }).bytes);
  const mmBatched = await make(toOnnx({ y: matmul(input('w', [C, 9 * C]), input('x', [N, 9 * C, H * H])) }).bytes);
  const mmFlat = await make(toOnnx({ y: matmul(input('w', [C, 9 * C]), input('x', [9 * C, N * H * H])) }).bytes);
  const flop = 2 * N * C * H * H * 9 * C;
  const gflops = async (s: (typeof sessions)[string], f: Record<string, InstanceType<typeof ort.Tensor>>, reps = 5) => {
    await s.run(f);
    const t0 = performance.now();
    for (let r = 0; r < reps; r++) await s.run(f);
    return (flop * reps) / ((performance.now() - t0) / 1000) / 1e9;
  };
  const out: Record<string, number[]> = {};
  const add = (k: string, v: number) => (out[k] ??= []).push(+v.toFixed(1));
  for (let r = 0; r < rounds; r++) {
    for (const [k, s] of Object.entries(sessions)) add(`${k}: ms per call of batch 16`, await msPerCall(s, 16, 1));
    add('all, two calls of batch 8: ms', await msPerCall(sessions.all!, 8, 2));
    add('all, four calls of batch 4: ms', await msPerCall(sessions.all!, 4, 4));
    add('conv 3x3 (16x32x28x28, 32 out): GFLOP/s', await gflops(conv, { x: fill([N, C, H, H]), w: fill([C, C, 3, 3]) }));
    add('im2col MatMul [32,288] x [16,288,784]: GFLOP/s', await gflops(mmBatched, { w: fill([C, 9 * C]), x: fill([N, 9 * C, H * H]) }));
    add('im2col MatMul [32,288] x [288,12544]: GFLOP/s', await gflops(mmFlat, { w: fill([C, 9 * C]), x: fill([9 * C, N * H * H]) }));
  }
  return out;
}

if (process.argv[2] === '--variants') {
  const { parseArgs } = await import('node:util');
  const { values } = parseArgs({ args: process.argv.slice(3), options: { threads: { type: 'string', default: '2' }, rounds: { type: 'string', default: '3' }, model: { type: 'string', default: 'models/mnist-28/model.onnx' } } });
  const [threads, rounds] = [Number(values.threads), Number(values.rounds)];
  if (!(Number.isInteger(threads) && threads >= 1) || !(Number.isInteger(rounds) && rounds >= 1)) {
    console.error(`error: --threads and --rounds must be positive integers, got '${values.threads}' and '${values.rounds}'`);
    process.exit(2);
  }
  try {
    await readFile(values.model!);
  } catch (e) {
    console.error(`error: --model ${values.model}: ${(e as Error).message}`);
    process.exit(2);
  }
  const res = await variants(values.model!, threads, rounds);
  console.log(JSON.stringify({ bench: 'wasm-variants', date: new Date().toISOString(), threads, model: values.model, rounds: res }));
  process.exit(0);
}

if (process.argv[2] === '--child') {
  const [modelPath, threads, batch, runs] = process.argv.slice(3);
  await child(modelPath!, Number(threads), Number(batch), Number(runs));
  process.exit(0);
}
