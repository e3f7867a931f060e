/**
 * onnxruntime-web set-ups for the page's denoiser, side by side in headless Chromium (issue 28, docs/web-speed.md):
 * each variant runs in a fresh browser context (HTTP cache and compiled wasm cold), rounds alternated (A, B, A, B,
 * ...), and times the bundle's import, the model's fetch, the session's creation (the .wasm fetched and compiled
 * with it) and --calls calls at batch --batch, of which the first is the one the page's first step pays.
 *
 * A variant is name=build:threads:workers[:spin[:model]]: build `jsep` (ort.bundle.min.mjs with the JSEP .wasm,
 * what WebGPU needs) or `wasm` (ort.wasm.bundle.min.mjs with the wasm-only .wasm); `workers` > 1 splits the batch
 * over that many workers, each with its own session (its call time is the slowest worker's); spin 0 sets
 * onnxruntime's session.intra_op.allow_spinning to 0 (threads wait blocked, not spinning); model: an .onnx file
 * (default: models/mnist-28/model.onnx), e.g. a rewritten graph.
 *
 *   node --import tsx bench/web-variants.ts [--rounds 3] [--calls 8] [--batch 16] \
 *     [--variant jsep=jsep:2:1] [--variant wasm=wasm:2:1] ...
 *
 * Prints one line per run on stderr and one JSON object on stdout: per variant the runs, and the medians of the
 * session, the first call and the steady call (median of calls 4 and later).
 */
import { copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { chromium } from 'playwright-core';
import { CHROMIUM, CHROMIUM_FLAGS } from '../web/scripts/chromium.ts';
import { serveStatic } from '../web/scripts/serve.ts';
import { median } from './rounds.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const ORT_DIST = path.join(ROOT, 'node_modules', 'onnxruntime-web', 'dist');
const BUILDS = {
  jsep: { bundle: 'ort.bundle.min.mjs', wasm: 'ort-wasm-simd-threaded.jsep.wasm' },
  wasm: { bundle: 'ort.wasm.bundle.min.mjs', wasm: 'ort-wasm-simd-threaded.wasm' },
} as const;

const { values: args } = parseArgs({
  options: {
    rounds: { type: 'string', default: '3' },
    calls: { type: 'string', default: '8' },
    batch: { type: 'string', default: '16' },
    variant: { type: 'string', multiple: true, default: ['jsep=jsep:2:1', 'wasm=wasm:2:1'] },
  },
});

interface Variant {
  name: string;
  build: keyof typeof BUILDS;
  threads: number;
  workers: number;
  /** onnxruntime's intra-op threads spin while waiting for work (its default); off: session.intra_op.allow_spinning 0 */
  spin: boolean;
  model: string;
}

function parseVariant(s: string): Variant {
  const [name, spec] = s.split('=');
  const [build, threads, workers, spin, model] = (spec ?? '').split(':');
  if (!name || !(build === 'jsep' || build === 'wasm')) throw new Error(`--variant ${s}: expected name=jsep|wasm:threads:workers[:spin[:model.onnx]]`);
  return {
    name,
    build,
    threads: Number(threads || 2),
    workers: Number(workers || 1),
    spin: spin !== '0',
    model: path.resolve(model || path.join(ROOT, 'models/mnist-28/model.onnx')),
  };
}

/** The page: starts `workers` workers, each one session on its share of the batch; the result goes to body[data-result]. */
const PAGE = `<!doctype html><html><body><script type="module">
const q = Object.fromEntries(new URLSearchParams(location.search));
const W = Number(q.workers);
const results = await Promise.all(Array.from({ length: W }, () => new Promise((resolve) => {
  const w = new Worker('./worker.js', { type: 'module' });
  w.onmessage = (e) => resolve(e.data);
  w.postMessage({ ...q, batch: Number(q.batch) / W });
})));
const err = results.find((r) => r.error);
document.body.dataset.result = JSON.stringify(err ?? {
  importMs: Math.max(...results.map((r) => r.importMs)),
  fetchMs: Math.max(...results.map((r) => r.fetchMs)),
  sessionMs: Math.max(...results.map((r) => r.sessionMs)),
  calls: results[0].calls.map((_, i) => Math.max(...results.map((r) => r.calls[i]))),
});
</script></body></html>`;

const WORKER = `self.onmessage = async (e) => {
  const p = e.data;
  try {
    const t0 = performance.now();
    const ort = await import(new URL('./ort/' + p.bundle, location.href).href);
    ort.env.wasm.wasmPaths = { wasm: new URL('./ort/' + p.wasm, location.href).href };
    ort.env.wasm.numThreads = Number(p.threads);
    const t1 = performance.now();
    const bytes = new Uint8Array(await (await fetch('./' + p.model)).arrayBuffer());
    const t2 = performance.now();
    const opts = { executionProviders: ['wasm'], graphOptimizationLevel: 'all', executionMode: 'sequential', interOpNumThreads: 1, intraOpNumThreads: Number(p.threads) };
    if (p.spin === '0') opts.extra = { session: { intra_op: { allow_spinning: '0' } } };
    const s = await ort.InferenceSession.create(bytes, opts);
    const t3 = performance.now();
    const N = p.batch;
    const feeds = {
      x: new ort.Tensor('float32', Float32Array.from({ length: N * 784 }, (_, i) => Math.sin(i)), [N, 1, 28, 28]),
      t: new ort.Tensor('float32', Float32Array.from({ length: N }, (_, i) => 500 + i), [N]),
    };
    if (s.inputNames.includes('y')) feeds.y = new ort.Tensor('int64', new BigInt64Array(N).fill(10n), [N]);
    const calls = [];
    for (let i = 0; i < Number(p.calls); i++) {
      const a = performance.now();
      await s.run(feeds);
      calls.push(performance.now() - a);
    }
    self.postMessage({ importMs: t1 - t0, fetchMs: t2 - t1, sessionMs: t3 - t2, calls });
  } catch (err) {
    self.postMessage({ error: String((err && err.stack) || err) });
  }
};`;

interface Run {
  importMs: number;
  fetchMs: number;
  sessionMs: number;
  calls: number[];
  load: number;
}

async function main(): Promise<void> {
  const variants = args.variant!.map(parseVariant);
  const dir = await mkdtemp(path.join(tmpdir(), 'ddpm-web-variants-'));
  await mkdir(path.join(dir, 'ort'));
  for (const b of Object.values(BUILDS)) for (const f of [b.bundle, b.wasm]) await copyFile(path.join(ORT_DIST, f), path.join(dir, 'ort', f));
  const models = [...new Set(variants.map((v) => v.model))];
  for (const [i, m] of models.entries()) await copyFile(m, path.join(dir, `model-${i}.onnx`));
  await writeFile(path.join(dir, 'index.html'), PAGE);
  await writeFile(path.join(dir, 'worker.js'), WORKER);
  const server = await serveStatic(dir);
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_FLAGS });
  const runs = new Map<string, Run[]>(variants.map((v) => [v.name, []]));
  try {
    for (let r = 0; r < Number(args.rounds); r++) {
      for (const v of variants) {
        const ctx = await browser.newContext();
        try {
          const page = await ctx.newPage();
          const q = new URLSearchParams({ ...BUILDS[v.build], model: `model-${models.indexOf(v.model)}.onnx`, threads: String(v.threads), workers: String(v.workers), spin: v.spin ? '1' : '0', batch: args.batch!, calls: args.calls! });
          await page.goto(`${server.url}index.html?${q}`);
          await page.waitForSelector('body[data-result]', { state: 'attached', timeout: 900_000 });
          const out = JSON.parse((await page.getAttribute('body', 'data-result'))!) as Run & { error?: string };
          if (out.error) throw new Error(`${v.name}: ${out.error}`);
          const run = { ...out, load: loadavg()[0]! };
          runs.get(v.name)!.push(run);
          process.stderr.write(`round ${r + 1} ${v.name}: session ${run.sessionMs.toFixed(0)} ms, calls ${run.calls.map((c) => c.toFixed(0)).join(' ')} ms; load average ${run.load.toFixed(2)}\n`);
        } finally {
          await ctx.close();
        }
      }
    }
  } finally {
    await browser.close();
    await server.close();
    await rm(dir, { recursive: true, force: true });
  }
  const r1 = (x: number) => Math.round(x);
  const result = Object.fromEntries(
    variants.map((v) => {
      const rs = runs.get(v.name)!;
      return [v.name, {
        variant: { ...v, model: path.relative(ROOT, v.model) },
        sessionMsMedian: r1(median(rs.map((r) => r.sessionMs))),
        firstCallMsMedian: r1(median(rs.map((r) => r.calls[0]!))),
        steadyCallMsMedian: r1(median(rs.map((r) => median(r.calls.slice(3))))),
        runs: rs.map((r) => ({ sessionMs: r1(r.sessionMs), calls: r.calls.map(r1), load: +r.load.toFixed(2) })),
      }];
    }),
  );
  console.log(JSON.stringify({ bench: 'web-variants', date: new Date().toISOString(), batch: Number(args.batch), chromium: CHROMIUM, result }));
}

await main();
