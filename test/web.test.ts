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
import { mnistDataset } from '../src/data/mnist.ts';
import { GaussianDiffusion } from '../src/diffusion/index.ts';
import { inBatches, repeat } from '../src/cli/edit-shared.ts';
import { sdedit } from '../src/diffusion/edit.ts';
import { inpaint } from '../src/diffusion/inpaint.ts';
import { readImage, unitToUint8 } from '../src/io/image.ts';
import { DDPMPipeline } from '../src/pipeline/node.ts';
import { pipelineSampler } from '../src/pipeline/pipeline.ts';
import { initUNet, unetConfig } from '../src/models/unet.ts';
import { Rng } from '../src/rng.ts';
import { saveCheckpoint } from '../src/train/checkpoint.ts';
import { applyOptions, defaultTrainConfig, validateTrainConfig } from '../src/train/config.ts';
import { Trainer } from '../src/train/trainer.ts';
import { DIGITS_FILE, digitsJson } from '../web/scripts/make-digits.ts';
import { SHIPPED_COND_MODEL_DIR, SHIPPED_MODEL_DIR, prepareModel } from '../web/scripts/prepare-model.ts';
import { serveStatic, type StaticServer } from '../web/scripts/serve.ts';
import { CHROMIUM, CHROMIUM_FLAGS, buildApp } from '../web/scripts/chromium.ts';
import type { SamplerKind, WebModelInfo } from '../web/src/protocol.ts';
import { assertClose } from './helpers.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const SCREENSHOT = path.join(ROOT, 'test-artifacts', 'web.png');
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

interface EditState {
  image: number[];
  mask: number[];
  last: { kind: string; request: Record<string, unknown>; samples: number[]; shape: number[] } | null;
}

/** The Edit panel's debug handle (EditDebug in web/src/edit.ts), read in the page. */
function editState(page: Page): Promise<EditState> {
  return page.evaluate(() => {
    type Debug = { image(): number[]; mask(): number[]; last: { kind: string; request: Record<string, unknown>; samples: Float32Array; shape: number[] } | null };
    const e = (globalThis as unknown as { ddpm: { edit: Debug } }).ddpm.edit;
    const last = e.last && { ...e.last, samples: Array.from(e.last.samples) };
    return { image: e.image(), mask: e.mask(), last };
  });
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let mx = 0;
  for (let i = 0; i < a.length; i++) mx = Math.max(mx, Math.abs(a[i]! - b[i]!));
  return mx;
}

interface EditForm {
  n: number;
  sampler: SamplerKind;
  steps: number;
  seed: number;
}

/** Fill the Edit panel's sampler fields, click `button`, wait for the run to end. */
async function runEdit(page: Page, button: '#inpaint-btn' | '#sdedit-btn', form: EditForm): Promise<void> {
  await page.fill('#edit-n', String(form.n));
  await page.selectOption('#edit-sampler', form.sampler);
  await page.fill('#edit-steps', String(form.steps));
  await page.fill('#edit-seed', String(form.seed));
  await page.click(button);
  await page.waitForSelector('body[data-editing=done], body[data-editing=error], body[data-editing=cancelled]', { timeout: LOAD_TIMEOUT });
  assert.equal(await page.getAttribute('body', 'data-editing'), 'done', `the edit failed: ${await page.textContent('#edit-result-caption')}`);
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
      assert.equal(await page.isHidden('#class-controls'), true, 'an unconditional model has no class choice');
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

    await t.test('Edit: an upload becomes x_0 as the CLI reads it (shorter side to 28, centre crop, Rec. 601 luma); Stop cancels an inpaint', async (t) => {
      await page.waitForSelector('#inpaint-btn:not([disabled])', { timeout: LOAD_TIMEOUT });
      // 126×84 RGB: a pure blue centre square (luma 29) between white bands that the centre crop removes
      const png = await sharp({ create: { width: 126, height: 84, channels: 3, background: '#ffffff' } })
        .composite([{ input: { create: { width: 84, height: 84, channels: 3, background: '#0000ff' } }, left: 21, top: 0 }])
        .png()
        .toBuffer();
      await page.setInputFiles('#edit-upload', { name: 'notes.png', mimeType: 'image/png', buffer: Buffer.from('not a picture') });
      await page.waitForFunction(() => document.getElementById('edit-input-caption')!.textContent === 'could not read notes.png as an image');
      await page.setInputFiles('#edit-upload', { name: 'blue.png', mimeType: 'image/png', buffer: png });
      await page.waitForFunction(() => document.getElementById('edit-input-caption')!.textContent!.includes('blue.png'));
      assert.equal(await page.isChecked('#edit-invert'), false, 'a dark image is not inverted');
      const { image } = await editState(page);
      const cli = (await readImage(png, { channels: 1, size: 28 })).data; // what ddpm inpaint|edit --image reads
      const level = 1.01 / 127.5;
      const inner = (v: ArrayLike<number>) => Array.from(v).filter((_, i) => i % 28 !== 0 && i % 28 !== 27);
      assertClose(inner(image), inner(cli), { atol: level }, 'the upload in the page vs the CLI (sharp), [-1, 1], columns 1-26');
      assertClose(inner(image), new Array(26 * 28).fill(29 / 127.5 - 1), { atol: level }, 'the blue square as luma 29');
      // the first and last columns touch the cropped white bands: the resamplers (the browser's, sharp's lanczos3) differ there
      const edge = Math.max(...image.map((v, i) => Math.abs(v - cli[i]!)));
      t.diagnostic(`upload: max |page − CLI| = ${(edge * 127.5).toFixed(0)} levels (in the border columns)`);
      assertClose(image, cli, { atol: 24 / 127.5 }, 'the upload in the page vs the CLI, border columns included');

      // an empty mask, and a jump as long as the run (with the library's message), are refused in the page
      await page.click('#mask-clear');
      await page.click('#inpaint-btn');
      assert.match((await page.textContent('#edit-step-info'))!, /^cannot inpaint: the mask is empty/);
      await page.click('#mask-half');
      await page.fill('#edit-steps', '10');
      await page.fill('#jump', '10');
      await page.fill('#resample', '2');
      await page.click('#inpaint-btn');
      assert.match((await page.textContent('#edit-step-info'))!, /^cannot inpaint: RePaint jump length 10 must be below the number of steps 10$/);
      assert.equal(await page.getAttribute('body', 'data-editing'), 'idle');

      await page.selectOption('#edit-sampler', 'ddpm');
      await page.fill('#edit-steps', '500');
      await page.fill('#edit-n', '1');
      await page.click('#inpaint-btn');
      await page.waitForFunction(() => /^step [3-9]/.test(document.getElementById('edit-step-info')!.textContent!), undefined, { timeout: LOAD_TIMEOUT });
      assert.equal(await page.isDisabled('#generate-btn'), true, 'Generate waits while an inpaint runs');
      await page.click('#edit-stop');
      await page.waitForSelector('body[data-editing=cancelled]', { timeout: LOAD_TIMEOUT });
      assert.match((await page.textContent('#edit-step-info'))!, /stopped$/);
      assert.equal(await page.isDisabled('#generate-btn'), false);
    });

    await t.test('Edit: SDEdit, then a mask brushed with mouse and touch pointer events and Inpaint, equal `ddpm edit` / `ddpm inpaint`\'s computations on onnxruntime-node; the known pixels are kept exactly', async (t) => {
      const [C, S] = [info.unet.inChannels, info.unet.imageSize];
      assert.deepEqual([C, S], [1, 28], 'the test drives the shipped 28x28 gray model');
      const per = C * S * S;
      await page.click('#edit-digits button:nth-child(8)'); // the first test-set 7
      await page.waitForFunction(() => document.getElementById('edit-input-caption')!.textContent!.includes('(a 7)'));
      const { image } = await editState(page);
      // the starting image is the digit's bytes / 127.5 − 1 in float32, as `ddpm inpaint|edit --image` reads a PNG of it
      const digits = JSON.parse(await readFile(DIGITS_FILE, 'utf8')) as { digits: { label: number; pixels: string }[] };
      const bytes = Buffer.from(digits.digits[7]!.pixels, 'base64');
      assert.deepEqual(image, Array.from(bytes, (v) => Math.fround(v / 127.5 - 1)));
      const x0 = Float32Array.from(image);
      /** Tolerance against onnxruntime-node: the backends' float rounding (measured max |diff| 1e-6 to 3e-6 here). */
      const atol = 1e-4;

      const pipe = await DDPMPipeline.fromPretrained(new Uint8Array(await readFile(path.join(model, 'model.onnx'))), { threads: 1 });
      try {
        // 1. SDEdit at strength 0.5 with DPM-Solver++-10: two results of seed 3
        await page.locator('#strength').fill('0.5');
        assert.match((await page.textContent('#strength-out'))!, /^0\.50: the last \d+ of \d+ steps, from t = \d+/);
        const sd: EditForm = { n: 2, sampler: 'dpm++', steps: 10, seed: 3 };
        await runEdit(page, '#sdedit-btn', sd);
        assert.match((await page.textContent('#strength-out'))!, /^0\.50: the last 5 of 10 steps, from t = \d+$/);
        const edited = (await editState(page)).last!;
        assert.equal(edited.kind, 'sdedit');
        assert.deepEqual(edited.shape, [2, C, S, S]);
        assert.equal(Number(await page.getAttribute('#edit-timings', 'data-model-calls')), 5);
        t.diagnostic(`wasm, 1 thread: ${await page.textContent('#edit-timings')}`);
        const sdSampler = pipelineSampler(pipe.diffusion, { sampler: sd.sampler, steps: sd.steps });
        const wantSd = await inBatches(sd.n, 64, sd.seed, per, (B, rng) =>
          sdedit(sdSampler, pipe.denoiser.predict, { data: repeat(x0, B), shape: [B, C, S, S] }, rng, { strength: 0.5 }),
        );
        t.diagnostic(`sdedit, browser vs node: max |diff| = ${maxAbsDiff(edited.samples, wantSd).toExponential(2)}`);
        assertClose(edited.samples, wantSd, { atol }, 'SDEdit: browser (onnxruntime-web wasm) vs node (onnxruntime-node)');
        assert.ok(edited.samples.some((v, j) => v !== image[j % per]), 'SDEdit returned the input');

        // 2. the brush (radius 2 model pixels): a mouse drag along row 20 (x 4.5 → 23.5, model pixels), a touch stroke at row 5
        await page.click('#mask-clear');
        await page.fill('#brush', '4');
        const box = (await page.locator('#edit-input').boundingBox())!;
        const cell = box.width / S;
        const at = (x: number, y: number) => [box.x + x * cell, box.y + y * cell] as const;
        await page.mouse.move(...at(4.5, 20.5));
        await page.mouse.down();
        await page.mouse.move(...at(23.5, 20.5), { steps: 6 });
        await page.mouse.up();
        await page.evaluate(([S]) => {
          const c = document.getElementById('edit-input')!;
          const r = c.getBoundingClientRect();
          // (no named helper functions here: tsx would wrap them in its __name, unknown in the page)
          for (const [type, x, y] of [['pointerdown', 12.5, 5.5], ['pointermove', 15.5, 5.5], ['pointerup', 15.5, 5.5]] as const) {
            const init = { pointerId: 7, pointerType: 'touch', isPrimary: true, bubbles: true, cancelable: true, buttons: type === 'pointerup' ? 0 : 1 };
            c.dispatchEvent(new PointerEvent(type, { ...init, clientX: r.left + (x * r.width) / S!, clientY: r.top + (y * r.height) / S! }));
          }
        }, [S]);
        const { mask } = await editState(page);
        const on = (x: number, y: number) => mask[y * S + x];
        for (let x = 5; x <= 23; x++) assert.equal(on(x, 20), 1, `the mouse stroke misses (${x}, 20)`);
        for (let x = 13; x <= 15; x++) assert.equal(on(x, 5), 1, `the touch stroke misses (${x}, 5)`);
        // nothing further than the brush radius from either stroke (pixel centres, model pixels)
        const near = (x: number, y: number) => {
          const d = (ax: number, bx: number, yy: number) => Math.hypot(Math.max(ax - (x + 0.5), 0, x + 0.5 - bx), y + 0.5 - yy);
          return Math.min(d(4.5, 23.5, 20.5), d(12.5, 15.5, 5.5)) <= 2 + 1e-9;
        };
        const stray = mask.flatMap((v, i) => (v !== 0 && !near(i % S, Math.floor(i / S)) ? [i] : []));
        assert.deepEqual(stray, [], 'mask pixels away from the strokes');
        assert.ok(mask.every((v) => v === 0 || v === 1));
        assert.equal(Number(await page.getAttribute('#edit-input', 'data-mask-pixels')), mask.filter((v) => v === 1).length);

        // 3. Inpaint with the panel's defaults (DDPM-25, RePaint jump 5 × 2, four results) and seed 5
        await page.fill('#jump', '5');
        await page.fill('#resample', '2');
        const form: EditForm = { n: 4, sampler: 'ddpm', steps: 25, seed: 5 };
        await runEdit(page, '#inpaint-btn', form);
        const { last } = await editState(page);
        assert.equal(last?.kind, 'inpaint');
        assert.deepEqual(last.shape, [4, C, S, S]);
        assert.deepEqual(last.request.mask, mask);
        assert.equal(Number(await page.getAttribute('#edit-timings', 'data-model-calls')), 25 + 4 * 5, 'RePaint N=25 j=5 r=2: 25 steps + 4 jumps of 5');
        t.diagnostic(`wasm, 1 thread: ${await page.textContent('#edit-timings')}`);

        // (a) the known region is the input bit for bit, in [-1, 1] (so also its 8-bit values, quantised as the CLI writes PNGs)
        const changed: string[] = [];
        for (let i = 0; i < form.n; i++) {
          for (let j = 0; j < per; j++) {
            const v = last.samples[i * per + j]!;
            if (mask[j] === 0 && (v !== image[j] || unitToUint8(v) !== bytes[j])) changed.push(`result ${i} pixel ${j}: ${v} != ${image[j]}`);
          }
        }
        assert.deepEqual(changed.slice(0, 5), [], `${changed.length} kept pixels changed`);
        assert.ok(last.samples.some((v, j) => mask[j % per] === 1 && v !== image[j % per]), 'no masked pixel changed');

        // (b) the computation of `ddpm inpaint --sampler ddpm --steps 25 --jump 5 --resample 2 --n 4 --seed 5`, on onnxruntime-node
        const sampler = pipelineSampler(pipe.diffusion, { sampler: form.sampler, steps: form.steps });
        const m = Float32Array.from(mask);
        const want = await inBatches(form.n, 64, form.seed, per, (B, rng) =>
          inpaint(sampler, pipe.denoiser.predict, { data: repeat(x0, B), shape: [B, C, S, S] }, repeat(m, B), rng, { jumpLength: 5, jumpNSample: 2 }),
        );
        t.diagnostic(`inpaint, browser vs node: max |diff| = ${maxAbsDiff(last.samples, want).toExponential(2)}`);
        assertClose(last.samples, want, { atol }, 'inpainted: browser (onnxruntime-web wasm) vs node (onnxruntime-node)');
      } finally {
        await pipe.release();
      }
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

/**
 * A class-conditional web model in `tmp/cond-model`: the shipped models/mnist-28-cond with the shipped models/mnist-28
 * for "any" digit (the page's default build) when they exist, else a stand-in, mnist-28 with 10 classes at its random
 * init, alone (the test compares the browser with Node, not quality).
 */
async function prepareCondModel(tmp: string): Promise<{ dir: string; info: WebModelInfo }> {
  const dir = path.join(tmp, 'cond-model');
  if (existsSync(SHIPPED_COND_MODEL_DIR)) {
    const any = existsSync(SHIPPED_MODEL_DIR) ? SHIPPED_MODEL_DIR : undefined;
    return { dir, info: await prepareModel(SHIPPED_COND_MODEL_DIR, dir, { any }) };
  }
  const d = defaultTrainConfig('mnist-28');
  const config = validateTrainConfig({
    ...d,
    model: unetConfig({ ...d.model, numClasses: 10 }),
    data: { ...d.data, classCond: true, classNames: ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'] },
  });
  const params = initUNet(config.model, new Rng(0));
  const ckpt = path.join(tmp, 'cond-run');
  await saveCheckpoint(ckpt, { config, params, ema: params, optimizer: new Map(), state: { step: 0, loader: null, elapsedSec: 0, images: 0 } });
  return { dir, info: await prepareModel(ckpt, dir) };
}

test('web app with a class-conditional model: a digit (or any) and a guidance scale; a guided browser sample equals the same guided pipeline on onnxruntime-node; any digit samples the unconditional companion', { timeout: 360_000 }, async (t) => {
  if (!existsSync(CHROMIUM)) assert.fail(`${CHROMIUM} not found (apt-get install -y --no-install-recommends chromium)`);
  const tmp = await mkdtemp(path.join(tmpdir(), 'ddpm-web-cond-'));
  let server: StaticServer | null = null;
  let ctx: BrowserContext | null = null;
  try {
    const { dir: model, info } = await prepareCondModel(tmp);
    assert.equal(info.unet.numClasses, 10);
    assert.deepEqual(info.classNames, ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9']);
    await buildApp(model, path.join(tmp, 'dist'));
    t.diagnostic(`conditional model from ${info.source} (step ${info.step})`);
    server = await serveStatic(path.join(tmp, 'dist'));
    ctx = await chromium.launchPersistentContext(path.join(tmp, 'chromium-profile'), { executablePath: CHROMIUM, headless: true, args: CHROMIUM_FLAGS });
    const page = ctx.pages()[0] ?? (await ctx.newPage());
    const errors: string[] = [];
    const fetched: string[] = [];
    page.on('console', (m) => m.type() === 'error' && errors.push(`console.error: ${m.text()}`));
    page.on('pageerror', (e) => errors.push(`page error: ${e.message}`));
    ctx.on('request', (r) => fetched.push(new URL(r.url()).pathname));
    // class=7 and guidance=2 from the URL, as a link to "sevens" would set them
    await page.goto(`${server.url}?ep=wasm&threads=1&class=7&guidance=2`);
    await page.waitForSelector('body[data-model=ready], body[data-model=error]', { timeout: LOAD_TIMEOUT });
    assert.equal(await page.getAttribute('body', 'data-model'), 'ready', `model failed to load: ${await page.textContent('#error')}`);
    assert.equal(await page.isVisible('#class-controls'), true);
    assert.equal(await page.textContent('#class-label'), 'digit');
    assert.deepEqual(await page.locator('#class option').allTextContents(), ['any', ...info.classNames]);
    assert.equal(await page.inputValue('#class'), '7');
    assert.equal(await page.inputValue('#guidance'), '2');
    assert.match((await page.textContent('#model-info'))!, /class-conditional, 10 classes/);
    // no WebGPU here: the wasm-only onnxruntime-web build, not the JSEP one; the companion first, the digit model not yet
    assert.ok(fetched.some((f) => f.endsWith('/ort/ort-wasm-simd-threaded.wasm')), `fetched: ${fetched.join(', ')}`);
    assert.ok(!fetched.some((f) => f.endsWith('.jsep.wasm')), 'the JSEP .wasm was fetched for a wasm page');
    if (existsSync(SHIPPED_MODEL_DIR)) {
      assert.equal(info.any?.source, path.relative(ROOT, SHIPPED_MODEL_DIR), 'the page build pairs the shipped models');
      assert.match((await page.textContent('#model-info'))!, /any digit and Edit: the unconditional mnist-28/);
      assert.ok(fetched.some((f) => f.endsWith('/model/model-any.onnx')) && !fetched.some((f) => f.endsWith('/model/model.onnx')), `fetched: ${fetched.join(', ')}`);
    }
    assert.match((await page.textContent('#backend'))!, /model loaded in \d+ ms \(fetch \d+, session \d+, first call \d+\)/);
    // the form's defaults: DPM-Solver++ with 9 steps (within 5% of DDIM-50's FID-LeNet, docs/web-speed.md)
    assert.deepEqual([await page.inputValue('#sampler'), await page.inputValue('#steps')], ['dpm++', '9']);

    const pipe = await DDPMPipeline.fromPretrained(new Uint8Array(await readFile(path.join(model, 'model.onnx'))), { threads: 1 });
    // "any" digit: the unconditional companion when there is one, else the conditional model with label ∅
    const anyPipe = info.any ? await DDPMPipeline.fromPretrained(new Uint8Array(await readFile(path.join(model, info.any.file))), { threads: 1 }) : pipe;
    try {
      const runs: { label: string; classLabels?: number; guidanceScale?: number }[] = [
        { label: '7', classLabels: 7, guidanceScale: 2 },
        { label: 'any' }, // guidance is off (and disabled) for "any"
      ];
      for (const r of runs) {
        await page.selectOption('#class', r.label === 'any' ? 'any' : r.label);
        assert.equal(await page.isDisabled('#guidance'), r.label === 'any');
        await generate(page, { n: 4, sampler: 'ddim', steps: 10, eta: 0, seed: 7 });
        await page.waitForSelector('body[data-sampling=done], body[data-sampling=error]', { timeout: LOAD_TIMEOUT });
        assert.equal(await page.getAttribute('body', 'data-sampling'), 'done', `sampling failed: ${await page.textContent('#error')}`);
        const got = await page.evaluate(() => Array.from((globalThis as unknown as { ddpm: { lastSamples: Float32Array } }).ddpm.lastSamples));
        const { label: _, ...opts } = r;
        const want = (await (r.label === 'any' ? anyPipe : pipe).generate({ n: 4, sampler: 'ddim', steps: 10, eta: 0, seed: 7, ...opts })).samples;
        if (info.any && r.label === '7') assert.match((await page.textContent('#timings'))!, /of which \d+ ms loading the class-conditional model$/);
        t.diagnostic(`class ${r.label}: browser vs node max |diff| = ${maxAbsDiff(got, want).toExponential(2)}; ${await page.textContent('#timings')}`);
        assertClose(got, want, { atol: 1e-3 }, `class ${r.label}: browser (onnxruntime-web wasm) vs node (onnxruntime-node)`);
        await page.evaluate(() => (document.body.dataset.sampling = 'idle'));
      }
    } finally {
      await pipe.release();
      if (anyPipe !== pipe) await anyPipe.release();
    }
    assert.deepEqual(errors, []);

    // with a WebGPU adapter (headless Chromium's software one, SwiftShader, where there is no GPU) the page still
    // picks WebGPU, and so the JSEP build
    const gpu = await chromium.launchPersistentContext(path.join(tmp, 'gpu-profile'), {
      executablePath: CHROMIUM,
      headless: true,
      args: CHROMIUM_FLAGS.filter((f) => f !== '--disable-gpu').concat(['--enable-unsafe-webgpu']),
    });
    try {
      const gpuFetched: string[] = [];
      gpu.on('request', (r) => gpuFetched.push(new URL(r.url()).pathname));
      const p = gpu.pages()[0] ?? (await gpu.newPage());
      await p.goto(`${server.url}?threads=1`);
      await p.waitForSelector('body[data-model=ready], body[data-model=error]', { timeout: LOAD_TIMEOUT });
      const backend = (await p.textContent('#backend'))!;
      t.diagnostic(`with an adapter: ${backend}`);
      assert.match(backend, /^backend: webgpu · /);
      assert.ok(gpuFetched.some((f) => f.endsWith('/ort/ort-wasm-simd-threaded.jsep.wasm')) && !gpuFetched.some((f) => f.endsWith('/ort/ort.wasm.bundle.min.mjs')), `fetched: ${gpuFetched.join(', ')}`);
    } finally {
      await gpu.close();
    }
  } finally {
    await ctx?.close();
    await server?.close();
    await rm(tmp, { recursive: true, force: true });
  }
});
