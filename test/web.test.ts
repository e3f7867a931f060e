/**
 * The web app (web/) in real headless Chromium: Debian's `chromium` driven by playwright-core, kept
 * off the network, on the BUILT app served from 127.0.0.1 with COOP/COEP. The model is the shipped
 * `models/mnist-28/` when present, else a mnist-28 U-Net trained for one step here (the test must
 * not depend on a long run). A screenshot goes to test-artifacts/web.png.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as ort from 'onnxruntime-node';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import sharp from 'sharp';
import { build } from 'vite';
import { webConfig } from '../web/vite.config.ts';
import { mnistDataset } from '../src/data/mnist.ts';
import { GaussianDiffusion } from '../src/diffusion/index.ts';
import { DDPMPipeline } from '../src/pipeline/node.ts';
import { applyOptions, defaultTrainConfig } from '../src/train/config.ts';
import { Trainer } from '../src/train/trainer.ts';
import { DIGITS_FILE, digitsJson } from '../web/scripts/make-digits.ts';
import { SHIPPED_MODEL_DIR, prepareModel } from '../web/scripts/prepare-model.ts';
import { serveStatic, type StaticServer } from '../web/scripts/serve.ts';
import type { WebModelInfo } from '../web/src/protocol.ts';
import { assertClose } from './helpers.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const CHROMIUM = '/usr/bin/chromium';
const SCREENSHOT = path.join(ROOT, 'test-artifacts', 'web.png');
/** Headless, and nothing that talks to the network on its own. */
const CHROMIUM_FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
const LOAD_TIMEOUT = 90_000;

/**
 * The web model (model.onnx + model.json) in `tmp/model`: from the shipped models/mnist-28 when it
 * exists, else from a stand-in, mnist-28 trained here for 1 step at batch 2.
 */
async function prepareTestModel(tmp: string): Promise<{ dir: string; info: WebModelInfo }> {
  const dir = path.join(tmp, 'model');
  if (existsSync(SHIPPED_MODEL_DIR)) return { dir, info: await prepareModel(SHIPPED_MODEL_DIR, dir) };
  const cfg = applyOptions(defaultTrainConfig('mnist-28'), { 'batch-size': '2', steps: '1', 'log-every': '1', 'checkpoint-every': '1', 'sample-every': '0' });
  const tr = await Trainer.create(ort as never, cfg, path.join(tmp, 'run'), mnistDataset('test'), { threads: 1 });
  await tr.train();
  await tr.release();
  return { dir, info: await prepareModel(path.join(tmp, 'run', 'checkpoint'), dir) };
}

/** What `npm run build:web` does after preparing the model, into `outDir`, with the model in `modelDir`. */
async function buildApp(modelDir: string, outDir: string): Promise<void> {
  const cfg = webConfig(modelDir);
  await build({ ...cfg, configFile: false, logLevel: 'warn', build: { ...cfg.build, outDir } });
}

interface CanvasDigest {
  width: number;
  height: number;
  /** FNV-1a of the RGBA bytes */
  hash: number;
  /** distinct gray levels (R channel) */
  levels: number;
}

function canvasDigest(page: Page, id: string): Promise<CanvasDigest> {
  return page.evaluate((id) => {
    const c = document.getElementById(id) as HTMLCanvasElement;
    const d = c.getContext('2d')!.getImageData(0, 0, c.width, c.height).data;
    let h = 0x811c9dc5;
    const levels = new Set<number>();
    for (let i = 0; i < d.length; i++) {
      h = Math.imul(h ^ d[i]!, 0x01000193) >>> 0;
      if (i % 4 === 0) levels.add(d[i]!);
    }
    return { width: c.width, height: c.height, hash: h, levels: levels.size };
  }, id);
}

function pixel(page: Page, id: string, x: number, y: number): Promise<number[]> {
  return page.evaluate(([id, x, y]) => {
    const c = document.getElementById(id as string) as HTMLCanvasElement;
    return [...c.getContext('2d')!.getImageData(x as number, y as number, 1, 1).data];
  }, [id, x, y] as const);
}

async function generate(page: Page, form: { n: number; sampler: 'ddim' | 'ddpm'; steps: number; eta?: number; seed?: number }): Promise<void> {
  await page.fill('#n', String(form.n));
  await page.selectOption('#sampler', form.sampler);
  await page.fill('#steps', String(form.steps));
  if (form.sampler === 'ddim') await page.fill('#eta', String(form.eta ?? 0));
  await page.fill('#seed', String(form.seed ?? 0));
  await page.click('#generate-btn');
}

test('the shipped test digits are what web/scripts/make-digits.ts makes from MNIST', async () => {
  assert.equal(await readFile(DIGITS_FILE, 'utf8'), digitsJson(), 'web/src/assets/mnist-test-digits.json is stale: npm run web:digits');
});

test('web app in headless Chromium: sample on wasm, forward process, no errors', { timeout: 240_000 }, async (t) => {
  if (!existsSync(CHROMIUM)) {
    assert.fail(`${CHROMIUM} not found. The web test drives Debian's Chromium: apt-get install -y --no-install-recommends chromium (.ci/run does this)`);
  }
  const tmp = await mkdtemp(path.join(tmpdir(), 'ddpm-web-'));
  let server: StaticServer | null = null;
  let ctx: BrowserContext | null = null;
  try {
    const t0 = performance.now();
    const { dir: model, info } = await prepareTestModel(tmp);
    await buildApp(model, path.join(tmp, 'dist'));
    t.diagnostic(`model from ${info.source} (step ${info.step}); model + build ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    server = await serveStatic(path.join(tmp, 'dist'));
    const origin = new URL(server.url).origin;

    ctx = await chromium.launchPersistentContext(path.join(tmp, 'chromium-profile'), {
      executablePath: CHROMIUM,
      headless: true,
      args: CHROMIUM_FLAGS,
      viewport: { width: 1100, height: 1250 },
    });
    const page = ctx.pages()[0] ?? (await ctx.newPage());
    const errors: string[] = [];
    const offsite: string[] = [];
    page.on('console', (m) => {
      if (m.type() === 'error') errors.push(`console.error: ${m.text()}`);
    });
    page.on('pageerror', (e) => errors.push(`page error: ${e.message}`));
    page.on('requestfailed', (r) => errors.push(`request failed: ${r.url()} (${r.failure()?.errorText})`));
    page.on('response', (r) => {
      if (r.status() >= 400) errors.push(`HTTP ${r.status()}: ${r.url()}`);
    });
    ctx.on('request', (r) => {
      const u = new URL(r.url());
      if (u.protocol !== 'data:' && u.protocol !== 'blob:' && u.origin !== origin) offsite.push(r.url());
    });

    await t.test('the page loads the model on wasm (forced by ?ep=wasm), cross-origin isolated', async () => {
      const loadStart = performance.now();
      await page.goto(`${server!.url}?ep=wasm&threads=1`);
      await page.waitForSelector('body[data-model=ready], body[data-model=error]', { timeout: LOAD_TIMEOUT });
      assert.equal(await page.getAttribute('body', 'data-model'), 'ready', `model failed to load: ${await page.textContent('#error')}`);
      const backend = (await page.textContent('#backend'))!;
      assert.match(backend, /^backend: wasm · 1 thread · cross-origin isolated/);
      assert.match((await page.textContent('#model-info'))!, new RegExp(`model: ${info.name} U-Net`));
      t.diagnostic(`page ready in ${((performance.now() - loadStart) / 1000).toFixed(1)} s (${backend})`);
    });

    await t.test('DDIM-10 with 4 samples redraws x_t / x̂_0 every step; matches the same pipeline on onnxruntime-node', async () => {
      const before = await canvasDigest(page, 'xt-canvas');
      const timings: string[] = [];
      const digests: CanvasDigest[] = [];
      for (let run = 0; run < 2; run++) {
        await generate(page, { n: 4, sampler: 'ddim', steps: 10, eta: 0, seed: 7 });
        await page.waitForSelector('body[data-sampling=done], body[data-sampling=error]', { timeout: LOAD_TIMEOUT });
        assert.equal(await page.getAttribute('body', 'data-sampling'), 'done', `sampling failed: ${await page.textContent('#error')}`);
        assert.match((await page.textContent('#step-info'))!, /^step 10\/10 · t = 0 · /);
        timings.push((await page.textContent('#timings'))!);
        digests.push(await canvasDigest(page, 'xt-canvas'));
      }
      t.diagnostic(`wasm, 1 thread, DDIM-10, 4 samples: first run ${timings[0]}; second run ${timings[1]}`);
      const after = digests[0]!;
      // 2×2 grid of 28-px images with 2-px padding (62 px), drawn at 4×
      assert.deepEqual([after.width, after.height], [248, 248]);
      assert.notEqual(after.hash, before.hash, 'the x_t canvas did not change');
      assert.ok(after.levels > 2, `the samples are flat (${after.levels} gray levels)`);
      assert.ok((await canvasDigest(page, 'x0-canvas')).levels > 2, 'the x̂_0 canvas is flat');
      assert.equal(digests[1]!.hash, after.hash, 'DDIM (η = 0) with the same seed drew different samples');

      // the browser's samples are what the library's pipeline gives on onnxruntime-node (and `ddpm sample --seed 7`)
      const got = await page.evaluate(() => Array.from((globalThis as unknown as { ddpm: { lastSamples: Float32Array } }).ddpm.lastSamples));
      const pipe = await DDPMPipeline.fromPretrained(new Uint8Array(await readFile(path.join(model, 'model.onnx'))), { threads: 1 });
      const want = (await pipe.generate({ n: 4, sampler: 'ddim', steps: 10, eta: 0, seed: 7 })).samples;
      await pipe.release();
      t.diagnostic(`browser vs node samples: max |diff| = ${got.reduce((mx, v, i) => Math.max(mx, Math.abs(v - want[i]!)), 0).toExponential(2)}`);
      assertClose(got, want, { atol: 1e-3 }, 'browser (onnxruntime-web wasm) vs node (onnxruntime-node) samples');
    });

    await t.test('the forward-process slider redraws x_t and prints ᾱ_t, √ᾱ_t, √(1 − ᾱ_t)', async () => {
      const d = GaussianDiffusion.fromConfig(info.diffusion.schedule);
      const at0 = await canvasDigest(page, 'fwd-xt');
      await page.locator('#t-slider').fill('500');
      assert.notEqual((await canvasDigest(page, 'fwd-xt')).hash, at0.hash, 'x_t did not change with t');
      assert.equal(await page.textContent('#stat-t'), '500');
      const num = async (id: string) => Number(await page.textContent(`#${id}`));
      assertClose(await num('stat-abar'), d.alphasCumprod[500]!, { atol: 1e-4, rtol: 1e-3 }, 'ᾱ_500');
      assertClose(await num('stat-sqrt-abar'), Math.sqrt(d.alphasCumprod[500]!), { atol: 1e-4, rtol: 1e-3 }, '√ᾱ_500');
      assertClose(await num('stat-sqrt-1m-abar'), Math.sqrt(1 - d.alphasCumprod[500]!), { atol: 1e-4, rtol: 1e-3 }, '√(1 − ᾱ_500)');
      assert.equal(await page.locator('#schedule-plot svg polyline').count(), 4, 'ᾱ_t and SNR for linear and cosine');
    });

    await t.test('an uploaded image becomes x_0: 28×28 gray, inverted when light', async () => {
      // a black square on white paper, as one would draw a digit
      const png = await sharp({ create: { width: 84, height: 84, channels: 3, background: '#ffffff' } })
        .composite([{ input: { create: { width: 42, height: 42, channels: 3, background: '#000000' } }, left: 21, top: 21 }])
        .png()
        .toBuffer();
      await page.setInputFiles('#upload', { name: 'square.png', mimeType: 'image/png', buffer: png });
      await page.waitForFunction(() => document.getElementById('fwd-x0-caption')!.textContent!.includes('square.png'));
      assert.equal(await page.isChecked('#invert'), true, 'a light image should be inverted');
      // x_0 canvas: 28 px at 6×; centre is ink (white), corner is background (black)
      assert.deepEqual((await pixel(page, 'fwd-x0', 84, 84)).slice(0, 3), [255, 255, 255]);
      assert.deepEqual((await pixel(page, 'fwd-x0', 3, 3)).slice(0, 3), [0, 0, 0]);
    });

    await t.test('screenshot', async () => {
      await page.click('#digits button:nth-child(4)'); // the test-set 3
      await page.locator('#t-slider').fill('250');
      await mkdir(path.dirname(SCREENSHOT), { recursive: true });
      await page.screenshot({ path: SCREENSHOT, fullPage: true });
      t.diagnostic(`screenshot: ${path.relative(ROOT, SCREENSHOT)}`);
    });

    await t.test('the page stays responsive while sampling, and Stop cancels', async () => {
      await generate(page, { n: 4, sampler: 'ddpm', steps: 1000 });
      await page.waitForFunction(() => /^step [2-9]/.test(document.getElementById('step-info')!.textContent!), undefined, { timeout: LOAD_TIMEOUT });
      await page.locator('#t-slider').fill('100');
      assert.equal(await page.textContent('#stat-t'), '100');
      await page.click('#stop-btn');
      await page.waitForSelector('body[data-sampling=cancelled]', { timeout: LOAD_TIMEOUT });
      assert.match((await page.textContent('#step-info'))!, /stopped$/);
    });

    await t.test('no console errors, failed requests or requests leaving 127.0.0.1', () => {
      assert.deepEqual(errors, []);
      assert.deepEqual(offsite, []);
    });
  } finally {
    await ctx?.close();
    await server?.close();
    await rm(tmp, { recursive: true, force: true });
  }
});
