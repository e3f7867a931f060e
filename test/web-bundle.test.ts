/**
 * What the web page ships: the app built with Vite (web/vite.config.ts, as `npm run build:web`; empty model files,
 * the build only copies them), the modules Rollup put into the worker's and the page's chunks, and their sizes.
 * The worker runs DDPMPipeline on ONNX bytes it fetched: it must not carry the exporter and its protobuf library
 * (onnx-proto/protobufjs were ~120 KB of a 179 KB worker), nor anything from node:*. The training worker (the Train
 * view, loaded on first use) compiles the training step in the page, so it carries the exporter, but nothing from
 * node:* either.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { build, type Plugin } from 'vite';
import { webConfig } from '../web/vite.config.ts';

/** Upper bound on the sampling worker chunk, bytes (2026-11-28: 65.3 KB with loading a model from the Train view, 59.5 KB with inpainting and SDEdit, 54.9 KB before; it was 179 KB with the exporter). */
const MAX_WORKER_BYTES = 80_000;
/** Upper bound on the training worker chunk, bytes (2026-11-28: 234 KB, of which the exporter's protobuf ~120 KB). */
const MAX_TRAIN_WORKER_BYTES = 300_000;

interface Chunk {
  fileName: string;
  bytes: number;
  modules: string[];
}

/** Records every chunk of the build it is added to. */
function recorder(into: Chunk[]): Plugin {
  return {
    name: 'record-chunks',
    generateBundle(_, bundle) {
      for (const c of Object.values(bundle)) {
        if (c.type === 'chunk') into.push({ fileName: c.fileName, bytes: Buffer.byteLength(c.code), modules: c.moduleIds });
      }
    },
  };
}

test('the sampling worker and the page hold no protobufjs, onnx-proto, exporter or node:* module; the training worker no node:* module; both under their size bounds', { timeout: 120_000 }, async (t) => {
  const tmp = await mkdtemp(path.join(tmpdir(), 'ddpm-web-bundle-'));
  t.after(() => rm(tmp, { recursive: true, force: true }));
  await writeFile(path.join(tmp, 'model.onnx'), '');
  await writeFile(path.join(tmp, 'model.json'), '{}');
  await writeFile(path.join(tmp, 'mnist-train.safetensors.gz'), '');
  const worker: Chunk[] = [];
  const page: Chunk[] = [];
  const cfg = webConfig(tmp);
  await build({
    ...cfg,
    configFile: false,
    logLevel: 'warn',
    plugins: [...(cfg.plugins ?? []), recorder(page)],
    worker: { ...cfg.worker, plugins: () => [recorder(worker)] },
    build: { ...cfg.build, outDir: path.join(tmp, 'dist') },
  });
  assert.deepEqual(worker.map((c) => c.fileName.replace(/-[\w-]{8}\.js$/, '')).sort(), ['assets/train-worker', 'assets/worker'], `worker chunks: ${worker.map((c) => c.fileName).join(', ')}`);
  const w = worker.find((c) => c.fileName.startsWith('assets/worker-'))!;
  const tw = worker.find((c) => c.fileName.startsWith('assets/train-worker-'))!;
  const rel = (m: string) => path.relative(process.cwd(), m);
  t.diagnostic(`worker ${w.fileName}: ${w.bytes} bytes, ${w.modules.length} modules; training worker ${tw.bytes} bytes; page: ${page.map((c) => `${c.fileName} ${c.bytes} bytes`).join(', ')}`);
  assert.ok(w.modules.some((m) => m.endsWith('src/pipeline/pipeline.ts')), 'the worker runs the library pipeline');
  for (const f of ['src/diffusion/inpaint.ts', 'src/diffusion/edit.ts']) assert.ok(w.modules.some((m) => m.endsWith(f)), `the worker runs the library's ${f}`);
  for (const c of [w, ...page]) {
    const bad = c.modules.filter((m) => /node_modules\/(protobufjs|onnx-proto|@protobufjs)\/|src\/engine\/onnx\.ts$|^(\0)?node:/.test(m));
    assert.deepEqual(bad.map(rel), [], `${c.fileName} holds the exporter, protobuf or node:* modules`);
  }
  assert.ok(w.bytes <= MAX_WORKER_BYTES, `worker bundle ${w.bytes} bytes > ${MAX_WORKER_BYTES}`);
  assert.ok(tw.modules.some((m) => m.endsWith('src/train/run.ts')), 'the training worker runs the library TrainingRun');
  assert.deepEqual(tw.modules.filter((m) => /^(\0)?node:/.test(m)).map(rel), [], 'the training worker holds node:* modules');
  assert.ok(tw.bytes <= MAX_TRAIN_WORKER_BYTES, `training worker bundle ${tw.bytes} bytes > ${MAX_TRAIN_WORKER_BYTES}`);
});
