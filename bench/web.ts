/**
 * The page against onnxruntime-node, in one run, rounds interleaved (page, node, page, node, ...) so that load
 * changing on a shared machine hits both alike. The app is built as `npm run build:web` builds it (the shipped
 * class-conditional model with the unconditional one for "any" digit) and opened with the page's defaults:
 *
 *   first images  --loads fresh page loads (a new browser and profile each: HTTP cache and compiled wasm cold), the
 *             Generate button clicked as soon as it is enabled, the form as the page sets it: first_images_ms, the
 *             time from navigation to the finished samples drawn (the page's performance.now()), with its parts:
 *             page (navigation to the worker's init), fetch (onnxruntime-web's bundle and the model's bytes), session
 *             (the .wasm compiled, the graph optimised), first call (batch 1), click (ready to the click), sampling
 *             (the click to the samples drawn); against the same sampling by DDPMPipeline.generate on
 *             onnxruntime-node in the same round
 *   sampling  16 DDIM-50 samples of the shipped model (models/mnist-28, the page's model for "any" digit): the page's
 *             Generate view on wasm in headless Chromium (time from the click to the last step, the page's own
 *             #timings) and DDPMPipeline.generate on onnxruntime-node; img-steps/s = 16 · 50 / seconds
 *   training  the Train view's default (mnist-small, batch 32, the shipped 10,000 digits): img/s over --train-steps
 *             steps after a warm-up, in the page (wasm) and in Node (TrainingRun on onnxruntime-node)
 *
 * With --profile, where a denoiser call goes on wasm (bench/wasm-profile.ts: onnxruntime-web's kernels in Node under
 * its profiler, op shares, the convolutions' GFLOP/s against one large MatMul's in the same build) goes in the JSON too.
 *
 * Both sides use --threads intra-op threads (default 2; the first-image loads use the page's default, min(4, cores)).
 * Prints one line per round on stderr and one JSON object on the last line of stdout: first_images_ms (median),
 * ddim50_page_ms and ddim50_node_ms (medians), the per-round values and parts, the page/node ratios, and the load
 * average before and after.
 *
 *   npm run bench:web -- [--loads 5] [--rounds 3] [--threads 2] [--train-steps 30] [--skip-first-images]
 *                        [--skip-sampling] [--skip-training] [--profile]
 */
import { execFileSync } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { gunzipSync } from 'node:zlib';
import * as ort from 'onnxruntime-node';
import { chromium, type Page } from 'playwright-core';
import { DDPMPipeline } from '../src/pipeline/node.ts';
import type { SamplerKind } from '../src/sample/generate.ts';
import { applyOptions, defaultTrainConfig } from '../src/train/config.ts';
import { TrainingRun } from '../src/train/run.ts';
import { CHROMIUM, CHROMIUM_FLAGS, buildApp, openApp } from '../web/scripts/chromium.ts';
import { SHIPPED_MODEL_DIR, defaultModel, prepareModel } from '../web/scripts/prepare-model.ts';
import { TRAIN_DATA_FILE } from '../web/scripts/prepare-train-data.ts';
import type { StartupTimes } from '../web/src/protocol.ts';
import { trainDataset } from '../web/src/train-data.ts';
import { median } from './rounds.ts';
import { wasmProfile } from './wasm-profile.ts';

const { values: args } = parseArgs({
  options: {
    loads: { type: 'string', default: '5' },
    rounds: { type: 'string', default: '3' },
    threads: { type: 'string', default: '2' },
    'train-steps': { type: 'string', default: '30' },
    'skip-first-images': { type: 'boolean', default: false },
    'skip-sampling': { type: 'boolean', default: false },
    'skip-training': { type: 'boolean', default: false },
    profile: { type: 'boolean', default: false },
  },
});
const LOADS = Number(args.loads);
const ROUNDS = Number(args.rounds);
const THREADS = Number(args.threads);
const TRAIN_STEPS = Number(args['train-steps']);
const N = 16;
const STEPS = 50;
const WARMUP = 3;
const TIMEOUT = 600_000;
const log = (s: string) => process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${s}\n`);
const round = (x: number, d = 4) => Number(x.toPrecision(d));
/** The checkout's commit (with `+` when the working tree differs), or null outside a git checkout. */
function commit(): string | null {
  try {
    const head = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--untracked-files=no', '--', 'web', 'src', 'bench'], { encoding: 'utf8' }).trim() !== '';
    return head + (dirty ? '+' : '');
  } catch {
    return null;
  }
}

async function pageSample(page: Page): Promise<number> {
  await page.evaluate(() => (document.body.dataset.sampling = 'idle'));
  await page.fill('#n', String(N));
  await page.selectOption('#sampler', 'ddim');
  await page.fill('#steps', String(STEPS));
  await page.fill('#eta', '0');
  await page.click('#generate-btn');
  await page.waitForSelector('body[data-sampling=done], body[data-sampling=error]', { timeout: TIMEOUT });
  if ((await page.getAttribute('body', 'data-sampling')) !== 'done') throw new Error(`page sampling failed: ${await page.textContent('#error')}`);
  return Number(await page.getAttribute('#timings', 'data-total-ms')) / 1000;
}

/** The Generate form as the page fills it. */
interface FormDefaults {
  n: number;
  sampler: SamplerKind;
  steps: number;
  eta: number;
  seed: number;
  classLabel: string;
}

/** One fresh page load to its first images: a new browser with an empty profile, the defaults, Generate when enabled. */
async function firstImages(url: string, profileDir: string): Promise<{ t: StartupTimes; form: FormDefaults; backend: string }> {
  const ctx = await chromium.launchPersistentContext(profileDir, { executablePath: CHROMIUM, headless: true, args: CHROMIUM_FLAGS });
  try {
    const page = ctx.pages()[0] ?? (await ctx.newPage());
    await page.goto(url);
    await page.waitForSelector('#generate-btn:not([disabled]), body[data-model=error]', { timeout: TIMEOUT });
    if ((await page.getAttribute('body', 'data-model')) !== 'ready') throw new Error(`model failed to load: ${await page.textContent('#error')}`);
    const form: FormDefaults = {
      n: Number(await page.inputValue('#n')),
      sampler: (await page.inputValue('#sampler')) as SamplerKind,
      steps: Number(await page.inputValue('#steps')),
      eta: Number(await page.inputValue('#eta')),
      seed: Number(await page.inputValue('#seed')),
      classLabel: await page.inputValue('#class'),
    };
    await page.click('#generate-btn');
    await page.waitForSelector('body[data-sampling=done], body[data-sampling=error]', { timeout: TIMEOUT });
    if ((await page.getAttribute('body', 'data-sampling')) !== 'done') throw new Error(`page sampling failed: ${await page.textContent('#error')}`);
    const t = await page.evaluate(() => (globalThis as unknown as { ddpm: { startup: StartupTimes } }).ddpm.startup);
    return { t, form, backend: (await page.textContent('#backend')) ?? '' };
  } finally {
    await ctx.close();
  }
}

/** The parts of one load, ms (see the header). */
function startupParts(t: StartupTimes): Record<string, number> {
  const [ready, click, done, load, p] = [t.readyAt!, t.firstClickAt!, t.firstImagesAt!, t.loadMs!, t.parts!];
  return { page: ready - load, fetch: p.fetchMs, session: p.sessionMs, firstCall: p.firstCallMs, click: click - ready, sampling: done - click };
}

const trainStep = (page: Page) => page.evaluate(() => (globalThis as unknown as { ddpm: { train: { step: number } } }).ddpm.train.step);

/** Run the page's training from its current step for `steps` steps (after it reaches `from`); img/s over them. */
async function pageTrain(page: Page, batch: number, first: boolean): Promise<number> {
  const s0 = first ? 0 : await trainStep(page);
  const from = s0 + WARMUP;
  await page.fill('#train-stop-at', String(from + TRAIN_STEPS));
  if (first) await page.click('#train-start');
  else await page.click('#train-pause'); // Resume
  await page.waitForFunction((s) => (globalThis as unknown as { ddpm: { train: { step: number } } }).ddpm.train.step >= s, from, { timeout: TIMEOUT, polling: 20 });
  const t0 = performance.now();
  await page.waitForSelector('body[data-training=paused], body[data-training=error]', { timeout: TIMEOUT });
  const t1 = performance.now();
  if ((await page.getAttribute('body', 'data-training')) !== 'paused') throw new Error(`page training failed: ${await page.textContent('#error')}`);
  return ((await trainStep(page)) - from) * batch / ((t1 - t0) / 1000);
}

async function main(): Promise<void> {
  const tmp = await mkdtemp(path.join(tmpdir(), 'ddpm-bench-web-'));
  const load0 = loadavg();
  const def = defaultModel();
  if (def === null) throw new Error('no shipped model (models/mnist-28-cond, models/mnist-28)');
  const { server, ctx } = await (async () => {
    const model = path.join(tmp, 'model');
    await prepareModel(def.source, model, def);
    await buildApp(model, path.join(tmp, 'dist'));
    return openApp(path.join(tmp, 'dist'), path.join(tmp, 'profile'));
  })();
  const result: Record<string, unknown> = { date: new Date().toISOString(), commit: commit(), threads: THREADS, rounds: ROUNDS, chromium: ctx.browser()?.version() ?? null, model: { source: path.relative(process.cwd(), def.source), any: def.any && path.relative(process.cwd(), def.any) } };
  try {
    if (!args['skip-first-images']) {
      // Node's time for the same samples, from models/mnist-28 ("any" digit): the load's yardstick in each round
      const pipe = await DDPMPipeline.fromPretrained(path.join(SHIPPED_MODEL_DIR, 'model.onnx'), { threads: THREADS });
      await pipe.generate({ n: 2, sampler: 'ddim', steps: 2 }); // warm
      const rows: { parts: Record<string, number>; total: number; node: number }[] = [];
      let form: FormDefaults | null = null;
      let backend = '';
      for (let i = 0; i < LOADS; i++) {
        const r = await firstImages(server.url, path.join(tmp, `profile-first-${i}`));
        ({ form, backend } = r);
        if (form.classLabel !== 'any') throw new Error(`the page's default class is ${form.classLabel}, not any`);
        const t0 = performance.now();
        await pipe.generate({ n: form.n, sampler: form.sampler, steps: form.steps, eta: form.sampler === 'ddim' ? form.eta : undefined, seed: form.seed, batchSize: form.n });
        const node = performance.now() - t0;
        const parts = startupParts(r.t);
        rows.push({ parts, total: r.t.firstImagesAt!, node });
        const fmt = Object.entries(parts).map(([k, v]) => `${k} ${v.toFixed(0)}`).join(', ');
        log(`first images, load ${i + 1}: ${r.t.firstImagesAt!.toFixed(0)} ms (${fmt}); node sampling ${node.toFixed(0)} ms; load average ${loadavg()[0]!.toFixed(2)}`);
      }
      await pipe.release();
      const keys = Object.keys(rows[0]!.parts);
      result.first_images_ms = round(median(rows.map((r) => r.total)));
      result.firstImages = {
        what: `navigation to ${form!.n} finished samples on screen with the page's defaults (${form!.sampler}-${form!.steps}, seed ${form!.seed}, any digit), Generate clicked when enabled; ${LOADS} fresh browsers`,
        backend,
        ms: rows.map((r) => round(r.total)),
        partsMedianMs: Object.fromEntries(keys.map((k) => [k, round(median(rows.map((r) => r.parts[k]!)))])),
        parts: rows.map((r) => Object.fromEntries(Object.entries(r.parts).map(([k, v]) => [k, round(v)]))),
        nodeSamplingMs: rows.map((r) => round(r.node)),
        pageOverNodeSamplingMedian: round(median(rows.map((r) => r.parts.sampling! / r.node))),
      };
    }

    const page = ctx.pages()[0] ?? (await ctx.newPage());
    await page.goto(`${server.url}?ep=wasm&threads=${THREADS}`);
    await page.waitForSelector('body[data-model=ready], body[data-model=error]', { timeout: TIMEOUT });
    if ((await page.getAttribute('body', 'data-model')) !== 'ready') throw new Error(`model failed to load: ${await page.textContent('#error')}`);
    log(`page: ${await page.textContent('#backend')}`);

    if (!args['skip-sampling']) {
      const pipe = await DDPMPipeline.fromPretrained(path.join(SHIPPED_MODEL_DIR, 'model.onnx'), { threads: THREADS });
      await pipe.generate({ n: N, sampler: 'ddim', steps: 2 }); // warm
      await pageSample(page); // warm
      const rows: { page: number; node: number }[] = [];
      for (let r = 0; r < ROUNDS; r++) {
        const p = await pageSample(page);
        const t0 = performance.now();
        await pipe.generate({ n: N, sampler: 'ddim', steps: STEPS, eta: 0, seed: 0, batchSize: N });
        const n = (performance.now() - t0) / 1000;
        rows.push({ page: p, node: n });
        log(`sampling round ${r + 1}: page ${p.toFixed(2)} s, node ${n.toFixed(2)} s (${(p / n).toFixed(2)}x)`);
      }
      await pipe.release();
      const pageS = median(rows.map((r) => r.page));
      const nodeS = median(rows.map((r) => r.node));
      result.ddim50_page_ms = round(pageS * 1000);
      result.ddim50_node_ms = round(nodeS * 1000);
      result.sampling = {
        what: `${N} DDIM-${STEPS} samples of models/mnist-28, one batch`,
        pageSeconds: rows.map((r) => round(r.page)),
        nodeSeconds: rows.map((r) => round(r.node)),
        pageSecondsMedian: round(pageS),
        nodeSecondsMedian: round(nodeS),
        pageImgStepsPerSec: round((N * STEPS) / pageS),
        nodeImgStepsPerSec: round((N * STEPS) / nodeS),
        pageOverNodeTimeMedian: round(median(rows.map((r) => r.page / r.node))),
      };
    }

    if (!args['skip-training']) {
      const cfg = applyOptions(defaultTrainConfig('mnist-small'), { seed: '0', 'sample-count': '16' });
      const B = cfg.data.batchSize;
      const data = trainDataset(gunzipSync(await readFile(path.join(tmp, 'model', TRAIN_DATA_FILE))), TRAIN_DATA_FILE);
      const run = await TrainingRun.create(ort as never, cfg, data, {}, { threads: THREADS });
      await page.selectOption('#train-preset', 'mnist-small');
      await page.selectOption('#train-data', 'mnist');
      await page.fill('#train-batch', String(B));
      await page.fill('#train-sample-every', '0');
      const rows: { page: number; node: number }[] = [];
      for (let r = 0; r < ROUNDS; r++) {
        const p = await pageTrain(page, B, r === 0);
        for (let i = 0; i < WARMUP; i++) await run.next();
        const t0 = performance.now();
        for (let i = 0; i < TRAIN_STEPS; i++) await run.next();
        const n = (TRAIN_STEPS * B) / ((performance.now() - t0) / 1000);
        rows.push({ page: p, node: n });
        log(`training round ${r + 1}: page ${p.toFixed(1)} img/s, node ${n.toFixed(1)} img/s (${(p / n).toFixed(2)}x)`);
      }
      await run.release();
      result.training = {
        what: `mnist-small (280k params), batch ${B}, ${TRAIN_STEPS} steps per round after ${WARMUP} warm-up steps`,
        pageImgPerSec: rows.map((r) => round(r.page)),
        nodeImgPerSec: rows.map((r) => round(r.node)),
        pageImgPerSecMedian: round(median(rows.map((r) => r.page))),
        nodeImgPerSecMedian: round(median(rows.map((r) => r.node))),
        pageOverNodeMedian: round(median(rows.map((r) => r.page / r.node))),
      };
    }
    if (args.profile) {
      log('profiling a denoiser call on onnxruntime-web wasm');
      result.wasmProfile = wasmProfile(path.join(SHIPPED_MODEL_DIR, 'model.onnx'), THREADS, N);
    }
  } finally {
    await ctx.close();
    await server.close();
    await rm(tmp, { recursive: true, force: true });
  }
  result.loadavg = { start: load0.map((v) => round(v, 3)), end: loadavg().map((v) => round(v, 3)) };
  console.log(JSON.stringify(result));
}

await main();
