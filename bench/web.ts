/**
 * The page against onnxruntime-node, in one run, rounds interleaved (page, node, page, node, ...) so that load
 * changing on a shared machine hits both alike:
 *
 *   sampling  16 DDIM-50 samples of the shipped model (models/mnist-28): the page's Generate view on wasm in headless
 *             Chromium (time from the click to the last step, the page's own #timings) and DDPMPipeline.generate on
 *             onnxruntime-node; img-steps/s = 16 · 50 / seconds
 *   training  the Train view's default (mnist-small, batch 32, the shipped 10,000 digits): img/s over --train-steps
 *             steps after a warm-up, in the page (wasm) and in Node (TrainingRun on onnxruntime-node)
 *
 * With --profile, where a denoiser call goes on wasm (bench/wasm-profile.ts: onnxruntime-web's kernels in Node under
 * its profiler, op shares, the convolutions' GFLOP/s against one large MatMul's in the same build) goes in the JSON too.
 *
 * Both sides use --threads intra-op threads (default 2). Prints one line per round on stderr and one JSON object on
 * the last line of stdout: per-round values, medians, and the page/node ratios.
 *
 *   npm run bench:web -- [--rounds 3] [--threads 2] [--train-steps 30] [--skip-sampling] [--skip-training] [--profile]
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { gunzipSync } from 'node:zlib';
import * as ort from 'onnxruntime-node';
import type { Page } from 'playwright-core';
import { DDPMPipeline } from '../src/pipeline/node.ts';
import { applyOptions, defaultTrainConfig } from '../src/train/config.ts';
import { TrainingRun } from '../src/train/run.ts';
import { buildApp, openApp } from '../web/scripts/chromium.ts';
import { SHIPPED_MODEL_DIR, prepareModel } from '../web/scripts/prepare-model.ts';
import { TRAIN_DATA_FILE } from '../web/scripts/prepare-train-data.ts';
import { trainDataset } from '../web/src/train-data.ts';
import { median } from './rounds.ts';
import { wasmProfile } from './wasm-profile.ts';

const { values: args } = parseArgs({
  options: {
    rounds: { type: 'string', default: '3' },
    threads: { type: 'string', default: '2' },
    'train-steps': { type: 'string', default: '30' },
    'skip-sampling': { type: 'boolean', default: false },
    'skip-training': { type: 'boolean', default: false },
    profile: { type: 'boolean', default: false },
  },
});
const ROUNDS = Number(args.rounds);
const THREADS = Number(args.threads);
const TRAIN_STEPS = Number(args['train-steps']);
const N = 16;
const STEPS = 50;
const WARMUP = 3;
const TIMEOUT = 600_000;
const log = (s: string) => process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${s}\n`);
const round = (x: number, d = 4) => Number(x.toPrecision(d));

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
  const { server, ctx } = await (async () => {
    const model = path.join(tmp, 'model');
    await prepareModel(SHIPPED_MODEL_DIR, model);
    await buildApp(model, path.join(tmp, 'dist'));
    return openApp(path.join(tmp, 'dist'), path.join(tmp, 'profile'));
  })();
  const result: Record<string, unknown> = { date: new Date().toISOString(), threads: THREADS, rounds: ROUNDS, chromium: ctx.browser()?.version() ?? null };
  try {
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
  console.log(JSON.stringify(result));
}

await main();
