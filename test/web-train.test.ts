/**
 * The page's Train view (web/src/train.ts, train-worker.ts) in headless Chromium, off the network, on the built app:
 * 20 steps of mnist-small on the shipped digits from a fixed seed on wasm; the weights, EMA and AdamW moments equal
 * the Node trainer's (TrainingRun on onnxruntime-node, same config and data) after the same 20 steps within a stated
 * float32 tolerance; the downloaded checkpoint loads in the CLI; uploading it continues the run; "Use in Generate"
 * samples from the trained weights; the user's images (picked or dropped; a corrupt one skipped) train rgb-32. On
 * WebGPU (Chromium's software adapter, SwiftShader) 10 steps keep the state in GPU buffers and agree with the Node
 * trainer within a looser tolerance.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { copyFile, link, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import sharp from 'sharp';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import * as ort from 'onnxruntime-node';
import type { BrowserContext, Page } from 'playwright-core';
import { unpackCheckpoint, type CheckpointFileContents } from '../src/train/checkpoint-file.ts';
import type { TrainConfig } from '../src/train/config.ts';
import { TrainingRun, type CheckpointContents } from '../src/train/run.ts';
import { SHIPPED_MODEL_DIR, prepareModel } from '../web/scripts/prepare-model.ts';
import { TRAIN_DATA_FILE } from '../web/scripts/prepare-train-data.ts';
import type { StaticServer } from '../web/scripts/serve.ts';
import { CHROMIUM, CHROMIUM_FLAGS, buildApp, openApp } from '../web/scripts/chromium.ts';
import { trainDataset } from '../web/src/train-data.ts';
import { runCli } from './cli-helpers.ts';

const TIMEOUT = 180_000;
/**
 * Browser (onnxruntime-web wasm) against Node (onnxruntime-node CPU) after 20 AdamW steps (lr up to 4e-4, so the
 * weights move by ~4e-4 a step): the kernels round differently (measured 2026-11-28: 1.5e-6 at most), and Adam's
 * normalised update can turn a last-bit gradient difference into a larger one where a gradient is near zero.
 */
const WEIGHT_ATOL = 1e-5;

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let mx = 0;
  for (let i = 0; i < a.length; i++) mx = Math.max(mx, Math.abs(a[i]! - b[i]!));
  return mx;
}

/** The app built with the shipped model, in a fresh headless Chromium that accepts downloads; all closed after `body`. */
async function withTrainApp(prefix: string, args: string[] | undefined, body: (a: { page: Page; origin: string; model: string; tmp: string }) => Promise<void>): Promise<void> {
  if (!existsSync(CHROMIUM)) assert.fail(`${CHROMIUM} not found (apt-get install -y --no-install-recommends chromium; .ci/run does this)`);
  const tmp = await mkdtemp(path.join(tmpdir(), prefix));
  let server: StaticServer | null = null;
  let ctx: BrowserContext | null = null;
  try {
    const model = path.join(tmp, 'model');
    await prepareModel(SHIPPED_MODEL_DIR, model);
    await buildApp(model, path.join(tmp, 'dist'));
    ({ server, ctx } = await openApp(path.join(tmp, 'dist'), path.join(tmp, 'profile'), { acceptDownloads: true, ...(args ? { args } : {}) }));
    const page = ctx.pages()[0] ?? (await ctx.newPage());
    await body({ page, origin: new URL(server.url).origin, model, tmp });
  } finally {
    await ctx?.close();
    await server?.close();
    await rm(tmp, { recursive: true, force: true });
  }
}

/** The page's checkpoint, downloaded into `dir` and read. */
async function downloadCheckpoint(page: Page, dir: string): Promise<{ file: string; c: CheckpointFileContents }> {
  const [download] = await Promise.all([page.waitForEvent('download'), page.click('#train-download')]);
  const file = path.join(dir, download.suggestedFilename());
  await download.saveAs(file);
  return { file, c: unpackCheckpoint(new Uint8Array(await readFile(file))) };
}

/** `n` steps of TrainingRun on onnxruntime-node with `config` on the shipped digits in `model`: losses and final state. */
async function nodeSteps(config: TrainConfig, model: string, n: number): Promise<{ losses: number[]; contents: CheckpointContents }> {
  const data = trainDataset(gunzipSync(await readFile(path.join(model, TRAIN_DATA_FILE))), TRAIN_DATA_FILE);
  const run = await TrainingRun.create(ort as never, config, data, {}, { threads: 1 });
  const losses: number[] = [];
  for (let i = 0; i < n; i++) losses.push((await run.next()).loss);
  const contents = run.contents();
  await run.release();
  return { losses, contents };
}

test('Train view in headless Chromium: 20 steps equal the Node trainer, the checkpoint loads in the CLI and continues in the page', { timeout: 600_000 }, async (t) => {
  await withTrainApp('ddpm-web-train-', undefined, async ({ page, origin, model, tmp }) => {
    const errors: string[] = [];
    const offsite: string[] = [];
    page.on('console', (m) => m.type() === 'error' && errors.push(`console.error: ${m.text()}`));
    page.on('pageerror', (e) => errors.push(`page error: ${e.message}`));
    page.context().on('request', (r) => {
      const u = new URL(r.url());
      if (u.protocol !== 'data:' && u.protocol !== 'blob:' && u.origin !== origin) offsite.push(r.url());
    });
    await page.goto(`${origin}/?ep=wasm&threads=1`);
    await page.waitForSelector('body[data-model=ready], body[data-model=error]', { timeout: TIMEOUT });
    assert.equal(await page.getAttribute('body', 'data-model'), 'ready', `model failed to load: ${await page.textContent('#error')}`);
    assert.deepEqual(await page.locator('#train-preset option').allTextContents(), ['mnist-small · 1×28×28', 'rgb-32 · 3×32×32']);

    // 1. 20 steps from seed 3, batch 8, a grid at step 20
    await page.selectOption('#train-preset', 'mnist-small');
    await page.selectOption('#train-data', 'mnist');
    await page.fill('#train-batch', '8');
    await page.fill('#train-seed', '3');
    await page.fill('#train-sample-every', '20');
    await page.fill('#train-stop-at', '20');
    const t0 = performance.now();
    await page.click('#train-start');
    await page.waitForSelector('body[data-training=paused], body[data-training=error]', { timeout: TIMEOUT });
    assert.equal(await page.getAttribute('body', 'data-training'), 'paused', `training failed: ${await page.textContent('#error')}`);
    assert.equal(await page.getAttribute('#train-status', 'data-step'), '20');
    const status = (await page.textContent('#train-status'))!;
    t.diagnostic(`20 steps in the page in ${((performance.now() - t0) / 1000).toFixed(1)} s (with compile): ${status.replace(/\n/g, ' | ')}`);
    assert.match(status, /mnist-small \(1x28x28, base 16.*\) · 10,000 MNIST training digits · compiled in [\d.]+ s · wasm · 1 thread/);
    await page.waitForSelector('#train-grid[data-step="20"]', { timeout: TIMEOUT });
    assert.match((await page.innerHTML('#train-loss'))!, /<polyline/);

    // 2. the checkpoint download: one safetensors file
    const { file, c: browser } = await downloadCheckpoint(page, tmp);
    assert.equal(path.basename(file), 'ddpm-mnist-small-step000020.safetensors');
    assert.equal(browser.state!.step, 20);
    assert.equal(browser.config.run.seed, 3);
    assert.equal(browser.config.data.batchSize, 8);

    // 3. the Node trainer, same config and data, 20 steps
    const { losses, contents: want } = await nodeSteps(browser.config, model, 20);
    const pageLosses = await page.evaluate(() => (globalThis as unknown as { ddpm: { train: { losses: number[] } } }).ddpm.train.losses);
    t.diagnostic(`losses: page ${pageLosses.slice(0, 3).map((v) => v.toFixed(6))}… node ${losses.slice(0, 3).map((v) => v.toFixed(6))}…; max |diff| ${maxAbsDiff(pageLosses, losses).toExponential(2)}`);
    assert.equal(pageLosses.length, 20);
    let worst = { name: '', diff: 0 };
    for (const [group, got, ref] of [
      ['params', browser.params!, want.params],
      ['ema', browser.ema, want.ema],
    ] as const) {
      for (const [k, v] of Object.entries(ref)) {
        const d = maxAbsDiff(got[k]!.data, v.data);
        if (d > worst.diff) worst = { name: `${group} ${k}`, diff: d };
      }
    }
    t.diagnostic(`browser vs node weights after 20 steps: max |diff| ${worst.diff.toExponential(2)} (${worst.name}); tolerance ${WEIGHT_ATOL}`);
    assert.ok(worst.diff <= WEIGHT_ATOL, `weights differ by ${worst.diff} at ${worst.name} (tolerance ${WEIGHT_ATOL})`);
    assert.deepEqual(browser.state!.loader, want.state.loader);
    assert.equal(browser.optimizer!.get('step')!.data[0], 20);

    // 4. the CLI reads the downloaded file
    const r = await runCli(['sample', '--checkpoint', file, '--n', '2', '--steps', '3', '--out', path.join(tmp, 's.png'), '--threads', '1']);
    assert.equal(r.code, 0, r.stderr);

    // 5. uploading it continues the run: from step 20 to 24
    await page.fill('#train-stop-at', '24');
    await page.setInputFiles('#train-upload', file);
    await page.waitForSelector('#train-status[data-step="24"]', { timeout: TIMEOUT });
    await page.waitForSelector('body[data-training=paused], body[data-training=error]', { timeout: TIMEOUT });
    assert.match((await page.textContent('#train-status'))!, /from step 20/);

    // 6. its EMA weights in the Generate view
    await page.click('#train-use');
    await page.waitForSelector('body[data-model=trained]', { timeout: TIMEOUT });
    assert.match((await page.textContent('#model-info'))!, /trained in this tab/);
    await page.fill('#n', '2');
    await page.fill('#steps', '4');
    await page.click('#generate-btn');
    await page.waitForSelector('body[data-sampling=done], body[data-sampling=error]', { timeout: TIMEOUT });
    assert.equal(await page.getAttribute('body', 'data-sampling'), 'done', `sampling failed: ${await page.textContent('#error')}`);

    // 7. your own images: RGB pictures of two sizes and a corrupt file, for rgb-32 (3x32x32); then the same dropped
    const pics: string[] = [];
    for (let i = 0; i < 5; i++) {
      const f = path.join(tmp, `pic${i}.png`);
      const [w, h] = i % 2 ? [40, 30] : [32, 32];
      await sharp({ create: { width: w, height: h, channels: 3, background: { r: 40 * i, g: 200 - 30 * i, b: 90 } } }).png().toFile(f);
      pics.push(f);
    }
    const bad = path.join(tmp, 'broken.png');
    await writeFile(bad, 'not a png');
    await page.selectOption('#train-preset', 'rgb-32');
    assert.equal(await page.inputValue('#train-data'), 'images', 'MNIST does not fit rgb-32: the data switches to your images');
    assert.equal(await page.inputValue('#train-batch'), '32');
    await page.fill('#train-batch', '4');
    await page.fill('#train-stop-at', '2');
    await page.fill('#train-sample-every', '0');
    await page.setInputFiles('#train-images', [...pics, bad]);
    await page.click('#train-start');
    await page.waitForSelector('body[data-training=paused], body[data-training=error]', { timeout: TIMEOUT });
    assert.equal(await page.getAttribute('body', 'data-training'), 'paused', `training on images failed: ${await page.textContent('#error')}`);
    assert.match((await page.textContent('#train-status'))!, /rgb-32 \(3x32x32.*5 images of yours, 3x32x32; left out: 1 unreadable image file \(broken\.png: not a readable image\)/);
    // dropped files (a DataTransfer built in the page) replace the picked ones
    const handle = await page.evaluateHandle(async (n) => {
      const dt = new DataTransfer();
      for (let i = 0; i < n; i++) {
        const c = document.createElement('canvas');
        c.width = c.height = 20;
        const ctx = c.getContext('2d')!;
        ctx.fillStyle = `rgb(${60 * i}, 100, 200)`;
        ctx.fillRect(0, 0, 20, 20);
        const blob = await new Promise<Blob>((res) => c.toBlob((b) => res(b!), 'image/png'));
        dt.items.add(new File([blob], `d${i}.png`, { type: 'image/png' }));
      }
      return dt;
    }, 3);
    await page.dispatchEvent('#train', 'drop', { dataTransfer: handle });
    await page.waitForFunction(() => /dropped: Start/.test(document.querySelector('#train-status')!.textContent!));
    assert.match((await page.textContent('#train-status'))!, /^3 images dropped: Start trains on them$/);
    await page.evaluate(() => (document.body.dataset.training = 'idle'));
    await page.click('#train-start');
    await page.waitForSelector('body[data-training=paused], body[data-training=error]', { timeout: TIMEOUT });
    assert.equal(await page.getAttribute('body', 'data-training'), 'paused', `training on dropped images failed: ${await page.textContent('#error')}`);
    assert.match((await page.textContent("#train-status"))!, /3 images of yours, 3x32x32 · compiled in [\d.]+ s · wasm · 1 thread · wasm requested · batch 3: the data has fewer images than batch 4/);
    // a picked folder: the same file under two names (a hard link) counts once, other files are counted
    const folder = path.join(tmp, 'folder');
    await mkdir(path.join(folder, 'sub'), { recursive: true });
    for (const f of pics.slice(0, 3)) await copyFile(f, path.join(folder, path.basename(f)));
    await link(path.join(folder, 'pic0.png'), path.join(folder, 'sub', 'pic0.png'));
    await writeFile(path.join(folder, 'notes.txt'), 'x');
    await page.setInputFiles('#train-folder', folder);
    await page.waitForFunction(() => /in the picked folder: Start/.test(document.querySelector('#train-status')!.textContent!));
    assert.equal(
      await page.textContent('#train-status'),
      '3 images; left out: 1 other file (.txt), 1 second path to a file already read (folder/sub/pic0.png) in the picked folder: Start trains on them',
    );

    assert.deepEqual(errors, []);
    assert.deepEqual(offsite, []);
  });
});

/** Steps and batch of the WebGPU test: SwiftShader (software WebGPU) takes ~7 s a step at batch 2 on 2 cores. */
const GPU_STEPS = 10;
const GPU_BATCH = 2;
/**
 * WebGPU (SwiftShader here) against onnxruntime-node after GPU_STEPS steps. Its kernels sum in other orders than the
 * CPU's (gradients agree to ~1e-5 relative), and where a gradient element is near zero Adam's normalised update
 * m/(√v + ε) turns that into a different step of up to ~lr (here ≤ 4e-5 a step).
 */
const GPU_WEIGHT_ATOL = 2e-4;
const GPU_LOSS_RTOL = 1e-4;

test('Train view on WebGPU (software adapter): the state stays in GPU buffers, 10 steps agree with the Node trainer', { timeout: 600_000 }, async (t) => {
  // WebGPU allowed: headless Chromium then offers its software adapter (SwiftShader) where there is no GPU
  const args = CHROMIUM_FLAGS.filter((f) => f !== '--disable-gpu').concat(['--enable-unsafe-webgpu']);
  await withTrainApp('ddpm-web-train-gpu-', args, async ({ page, origin, model, tmp }) => {
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(`page error: ${e.message}`));
    // a WebGPU validation error (a kernel that cannot run) is only a console line: fail on it
    page.on('console', (m) => /WebGPU validation error|Invalid ComputePipeline/i.test(m.text()) && errors.push(`console: ${m.text().slice(0, 300)}`));
    await page.goto(`${origin}/?ep=webgpu&threads=1`);
    await page.selectOption('#train-preset', 'mnist-small');
    await page.fill('#train-batch', String(GPU_BATCH));
    await page.fill('#train-seed', '3');
    await page.fill('#train-sample-every', '0');
    await page.fill('#train-stop-at', String(GPU_STEPS));
    const t0 = performance.now();
    await page.click('#train-start');
    await page.waitForSelector('body[data-training=paused], body[data-training=error]', { timeout: 540_000 });
    assert.equal(await page.getAttribute('body', 'data-training'), 'paused', `training failed: ${await page.textContent('#error')}`);
    const status = (await page.textContent('#train-status'))!;
    t.diagnostic(`${GPU_STEPS} steps in ${((performance.now() - t0) / 1000).toFixed(1)} s (with compile): ${status.replace(/\n/g, ' | ')}`);
    assert.doesNotMatch(status, /WebGPU failed/);
    assert.match(status, /compiled in [\d.]+ s · webgpu/);
    assert.match(status, /weights, moments and EMA stay on the GPU/);
    // every state tensor (weights, Adam moments and step, EMA) of the last step is a GPU buffer
    const debug = await page.evaluate(() => (globalThis as unknown as { ddpm: { train: { state: Record<string, number>; losses: number[] } } }).ddpm.train);
    const { c: browser } = await downloadCheckpoint(page, tmp);
    const nParams = Object.keys(browser.params!).length;
    assert.deepEqual(debug.state, { 'gpu-buffer': 3 * nParams + 1 + nParams });
    assert.equal(browser.state!.step, GPU_STEPS);

    const { losses, contents: want } = await nodeSteps(browser.config, model, GPU_STEPS);
    let lossRel = 0;
    debug.losses.forEach((l, i) => (lossRel = Math.max(lossRel, Math.abs(l - losses[i]!) / Math.abs(losses[i]!))));
    let worst = { name: '', diff: 0 };
    for (const [group, got, ref] of [
      ['params', browser.params!, want.params],
      ['ema', browser.ema, want.ema],
      ['optimizer', Object.fromEntries(browser.optimizer!), Object.fromEntries(want.optimizer)],
    ] as const) {
      for (const [k, v] of Object.entries(ref)) {
        const d = maxAbsDiff(got[k]!.data, v.data);
        if (d > worst.diff) worst = { name: `${group} ${k}`, diff: d };
      }
    }
    t.diagnostic(`WebGPU vs node after ${GPU_STEPS} steps (batch ${GPU_BATCH}): losses max rel diff ${lossRel.toExponential(2)} (tolerance ${GPU_LOSS_RTOL}); state max |diff| ${worst.diff.toExponential(2)} (${worst.name}; tolerance ${GPU_WEIGHT_ATOL})`);
    assert.equal(debug.losses.length, GPU_STEPS);
    assert.ok(lossRel <= GPU_LOSS_RTOL, `losses differ by ${lossRel} relative`);
    assert.ok(worst.diff <= GPU_WEIGHT_ATOL, `state differs by ${worst.diff} at ${worst.name}`);
    assert.deepEqual(browser.state!.loader, want.state.loader);
    assert.deepEqual(errors, []);
  });
});
