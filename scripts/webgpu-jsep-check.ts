/**
 * The onnxruntime-web WebGPU (JSEP) limits that WEBGPU_EXPORT (src/engine/onnx.ts) works around, as minimal
 * reproductions run in headless Chromium (its software adapter, SwiftShader, where there is no GPU) on the
 * onnxruntime-web in node_modules, each against the same graph on wasm. After an onnxruntime-web upgrade, a
 * reproduction that no longer differs means its workaround may go.
 *
 *   node --import tsx scripts/webgpu-jsep-check.ts
 *
 * - slice:  Slice([10, 20, 30], starts -1, ends -10, steps -1) is [30, 20, 10]; onnxruntime-web 1.30 on WebGPU
 *           gives [30, 20] (a negative step's end clamped to 0 instead of -1)
 * - concat: Concat of 8 vectors; 1.30 on WebGPU gives zeros (one storage buffer per input, 8 per shader stage)
 *
 * Prints one JSON object: per case, the wasm and WebGPU results and whether they differ.
 */
import { copyFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import onnxProto from 'onnx-proto';
import { chromium } from 'playwright-core';
import { toOnnx } from '../src/engine/onnx.ts';
import { concat, input } from '../src/engine/tensor.ts';
import { CHROMIUM, CHROMIUM_FLAGS } from '../web/scripts/chromium.ts';
import { serveStatic } from '../web/scripts/serve.ts';
import { ORT_FILES } from '../web/vite.config.ts';

const { onnx } = onnxProto;

/** Slice with steps -1 over a whole axis, written directly (the tracer's slice takes positive steps only). */
function reverseSlice(): Uint8Array {
  const i64 = (name: string, v: number) => onnx.TensorProto.create({ name, dataType: onnx.TensorProto.DataType.INT64, dims: [1], int64Data: [v] });
  const vec = (name: string, n: number) => onnx.ValueInfoProto.create({ name, type: { tensorType: { elemType: onnx.TensorProto.DataType.FLOAT, shape: { dim: [{ dimValue: n }] } } } });
  const graph = onnx.GraphProto.create({
    name: 'reverse',
    node: [onnx.NodeProto.create({ opType: 'Slice', input: ['x', 'starts', 'ends', 'axes', 'steps'], output: ['y'], name: 'flip' })],
    initializer: [i64('starts', -1), i64('ends', -10), i64('axes', 0), i64('steps', -1)],
    input: [vec('x', 3)],
    output: [vec('y', 3)],
  });
  return onnx.ModelProto.encode(onnx.ModelProto.create({ irVersion: 8, opsetImport: [{ domain: '', version: 17 }], graph })).finish();
}

const CASES: Record<string, { bytes: Uint8Array; feeds: Record<string, { data: number[]; dims: number[] }> }> = {
  slice: { bytes: reverseSlice(), feeds: { x: { data: [10, 20, 30], dims: [3] } } },
  concat: {
    bytes: toOnnx({ y: concat(Array.from({ length: 8 }, (_, i) => input(`x${i}`, [2])), 0) }).bytes,
    feeds: Object.fromEntries(Array.from({ length: 8 }, (_, i) => [`x${i}`, { data: [i + 1, -(i + 1)], dims: [2] }])),
  },
};

const dir = await mkdtemp(path.join(tmpdir(), 'ddpm-jsep-'));
const ortDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'node_modules', 'onnxruntime-web');
const ortDist = path.join(ortDir, 'dist');
for (const f of ORT_FILES) await copyFile(path.join(ortDist, f), path.join(dir, f));
await writeFile(path.join(dir, 'index.html'), '<!doctype html><title>jsep check</title>');
const server = await serveStatic(dir);
const args = CHROMIUM_FLAGS.filter((f) => f !== '--disable-gpu').concat(['--enable-unsafe-webgpu']);
const ctx = await chromium.launchPersistentContext(path.join(dir, 'profile'), { executablePath: CHROMIUM, headless: true, args });
const result: Record<string, unknown> = { onnxruntimeWeb: (JSON.parse(await readFile(path.join(ortDir, 'package.json'), 'utf8')) as { version: string }).version };
try {
  const page = ctx.pages()[0] ?? (await ctx.newPage());
  await page.goto(server.url);
  result.adapter = await page.evaluate(async () => {
    const gpu = (navigator as unknown as { gpu?: { requestAdapter(): Promise<{ info?: Record<string, string> } | null> } }).gpu;
    const a = gpu ? await gpu.requestAdapter() : null;
    return a ? `${a.info?.vendor ?? ''} ${a.info?.architecture ?? ''} ${a.info?.description ?? ''}`.trim() : null;
  });
  for (const [name, c] of Object.entries(CASES)) {
    const got: Record<string, unknown> = {};
    for (const ep of ['wasm', 'webgpu']) {
      got[ep] = await page.evaluate(
        async ({ bytes, feeds, ep, ortFile, wasmFile }) => {
          const ort = await import(`/${ortFile}`);
          ort.env.wasm.wasmPaths = { wasm: `/${wasmFile}` };
          ort.env.wasm.numThreads = 1;
          try {
            const s = await ort.InferenceSession.create(new Uint8Array(bytes), { executionProviders: [ep] });
            const inputs = Object.fromEntries(Object.entries(feeds).map(([k, f]) => [k, new ort.Tensor('float32', Float32Array.from(f.data), f.dims)]));
            const y = (await s.run(inputs)).y;
            const out = Array.from((await y.getData()) as Float32Array);
            await s.release();
            return out;
          } catch (e) {
            return `error: ${String((e as Error).message ?? e).slice(0, 300)}`;
          }
        },
        { bytes: Array.from(c.bytes), feeds: c.feeds, ep, ortFile: ORT_FILES[0], wasmFile: ORT_FILES[1] },
      );
    }
    result[name] = { ...got, differs: JSON.stringify(got.wasm) !== JSON.stringify(got.webgpu) };
  }
} finally {
  await ctx.close();
  await server.close();
  await rm(dir, { recursive: true, force: true });
}
console.log(JSON.stringify(result));
