/**
 * What the web page ships: the app built with Vite (web/vite.config.ts, as `npm run build:web`; empty model files,
 * the build only copies them), the modules Rollup put into the worker's and the page's chunks, and their sizes.
 * The worker runs DDPMPipeline on ONNX bytes it fetched: it must not carry the exporter and its protobuf library
 * (onnx-proto/protobufjs were ~120 KB of a 179 KB worker), nor anything from node:*.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { build, type Plugin } from 'vite';
import { webConfig } from '../web/vite.config.ts';

/** Upper bound on the worker chunk, bytes (2026-11-28: 59.5 KB with inpainting and SDEdit, 54.9 KB before; it was 179 KB with the exporter). */
const MAX_WORKER_BYTES = 80_000;

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

test('the web worker bundle holds no protobufjs, onnx-proto, exporter or node:* module, and stays under the size bound', { timeout: 120_000 }, async (t) => {
  const tmp = await mkdtemp(path.join(tmpdir(), 'ddpm-web-bundle-'));
  t.after(() => rm(tmp, { recursive: true, force: true }));
  await writeFile(path.join(tmp, 'model.onnx'), '');
  await writeFile(path.join(tmp, 'model.json'), '{}');
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
  assert.equal(worker.length, 1, `worker chunks: ${worker.map((c) => c.fileName).join(', ')}`);
  const w = worker[0]!;
  const rel = (m: string) => path.relative(process.cwd(), m);
  t.diagnostic(`worker ${w.fileName}: ${w.bytes} bytes, ${w.modules.length} modules; page: ${page.map((c) => `${c.fileName} ${c.bytes} bytes`).join(', ')}`);
  assert.ok(w.modules.some((m) => m.endsWith('src/pipeline/pipeline.ts')), 'the worker runs the library pipeline');
  for (const f of ['src/diffusion/inpaint.ts', 'src/diffusion/edit.ts']) assert.ok(w.modules.some((m) => m.endsWith(f)), `the worker runs the library's ${f}`);
  for (const c of [w, ...page]) {
    const bad = c.modules.filter((m) => /node_modules\/(protobufjs|onnx-proto|@protobufjs)\/|src\/engine\/onnx\.ts$|^(\0)?node:/.test(m));
    assert.deepEqual(bad.map(rel), [], `${c.fileName} holds the exporter, protobuf or node:* modules`);
  }
  assert.ok(w.bytes <= MAX_WORKER_BYTES, `worker bundle ${w.bytes} bytes > ${MAX_WORKER_BYTES}`);
});
