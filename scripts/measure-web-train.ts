/**
 * A training run in a browser tab, timed by the wall clock, scored by LeNet (issue 18's measure): the built page in
 * headless Chromium (wasm, --threads threads, off the network), the Train view's defaults for `mnist-small` on the
 * shipped 10,000 MNIST digits (batch: the preset's unless --batch), Start, and after --minutes of wall time from the
 * click (data, compile and all) Pause; then one grid from the EMA weights (the page's own 16 DDIM-20 samples,
 * screenshotted), the checkpoint downloaded, and `ddpm eval --fid` on it for each --samplers entry: LeNet's fraction
 * of confident digits (max softmax > 0.9), FID-LeNet, classes.
 *
 * Writes <out-dir>/<name>.json (also the last line of stdout) and <out-dir>/<name>.png; progress on stderr.
 *
 *   node --import tsx scripts/measure-web-train.ts [--minutes 10] [--threads 2] [--batch N] [--eval-n 500]
 *       [--samplers ddim:50,ddpm:250] [--out-dir docs] [--name web-train-10min] [--keep-checkpoint FILE]
 */
import { execFile } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { buildApp, openApp } from '../web/scripts/chromium.ts';
import { SHIPPED_MODEL_DIR, prepareModel } from '../web/scripts/prepare-model.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { values: args } = parseArgs({
  options: {
    minutes: { type: 'string', default: '10' },
    threads: { type: 'string', default: '2' },
    batch: { type: 'string' },
    'eval-n': { type: 'string', default: '500' },
    samplers: { type: 'string', default: 'ddim:50,ddpm:250' },
    'out-dir': { type: 'string', default: 'docs' },
    name: { type: 'string', default: 'web-train-10min' },
    'keep-checkpoint': { type: 'string' },
  },
});
const log = (s: string) => process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${s}\n`);

function cli(argv: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, ['--import', 'tsx', path.join(ROOT, 'src/cli/bin.ts'), ...argv], { cwd: ROOT, maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`ddpm ${argv.join(' ')}: ${stderr || err.message}`));
      else resolve(stdout);
    });
  });
}

async function main(): Promise<void> {
  const minutes = Number(args.minutes);
  const threads = Number(args.threads);
  const tmp = await mkdtemp(path.join(tmpdir(), 'ddpm-web-train-'));
  const model = path.join(tmp, 'model');
  await prepareModel(SHIPPED_MODEL_DIR, model);
  await buildApp(model, path.join(tmp, 'dist'));
  const { server, ctx } = await openApp(path.join(tmp, 'dist'), path.join(tmp, 'profile'), { acceptDownloads: true });
  const outDir = path.resolve(ROOT, args['out-dir']!);
  await mkdir(outDir, { recursive: true });
  const result: Record<string, unknown> = { date: new Date().toISOString(), minutes, threads, chromium: ctx.browser()?.version() ?? null };
  try {
    const page = ctx.pages()[0] ?? (await ctx.newPage());
    await page.goto(`${server.url}?ep=wasm&threads=${threads}`);
    await page.selectOption('#train-preset', 'mnist-small');
    await page.selectOption('#train-data', 'mnist');
    if (args.batch) await page.fill('#train-batch', args.batch);
    await page.fill('#train-sample-every', '0');
    await page.fill('#train-stop-at', '0');
    const batch = Number(await page.inputValue('#train-batch'));
    const t0 = performance.now();
    await page.click('#train-start');
    await page.waitForSelector('body[data-training=running], body[data-training=error]', { timeout: 120_000 });
    if ((await page.getAttribute('body', 'data-training')) === 'error') throw new Error(`training failed: ${await page.textContent('#error')}`);
    for (let m = 1; m <= minutes; m++) {
      const wait = t0 + m * 60_000 - performance.now();
      if (wait > 0) await page.waitForTimeout(wait);
      log(`minute ${m}: ${(await page.textContent('#train-status'))!.split('\n')[0]}`);
    }
    await page.click('#train-pause');
    await page.waitForSelector('body[data-training=paused], body[data-training=error]', { timeout: 120_000 });
    const wallSec = (performance.now() - t0) / 1000;
    const status = (await page.textContent('#train-status'))!;
    const step = Number(await page.getAttribute('#train-status', 'data-step'));
    await page.click('#train-sample');
    await page.waitForSelector(`#train-grid[data-step="${step}"]`, { timeout: 300_000 });
    await page.locator('#train-grid').screenshot({ path: path.join(outDir, `${args.name}.png`) });
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#train-download')]);
    const ckpt = path.join(tmp, download.suggestedFilename());
    await download.saveAs(ckpt);
    if (args['keep-checkpoint']) await copyFile(ckpt, path.resolve(args['keep-checkpoint']));
    Object.assign(result, {
      preset: 'mnist-small',
      batch,
      steps: step,
      images: step * batch,
      wallSeconds: Number(wallSec.toFixed(1)),
      imgPerSecOverall: Number(((step * batch) / wallSec).toFixed(2)),
      status: status.replace(/\n/g, ' | '),
      grid: `${args.name}.png: the page's 16 DDIM-20 samples from the EMA weights at step ${step}`,
    });
    log(`trained ${step} steps (${step * batch} images) in ${wallSec.toFixed(0)} s; scoring`);
    const scores: Record<string, unknown>[] = [];
    for (const spec of args.samplers!.split(',')) {
      const [sampler, steps] = spec.split(':');
      // ddim with η = 0, as the published figures were measured (η's default is 1 since 2026-11-28)
      const eta = sampler === 'ddim' ? ['--eta', '0'] : [];
      const out = await cli(['eval', '--checkpoint', ckpt, '--fid', args['eval-n']!, '--sampler', sampler!, '--steps', steps!, ...eta, '--threads', String(threads), '--json']);
      const fid = (JSON.parse(out) as { fid: Record<string, unknown> & { classes: Record<string, unknown> } }).fid;
      const row = { sampler, steps: Number(steps), n: fid.n, confidentFraction: fid.classes.confidentFraction, meanConfidence: fid.classes.meanConfidence, classesCovered: fid.classes.classesCovered, fidLenet: fid.fidLenet, realDataFidLenet: fid.realDataFidLenet };
      log(`${sampler}-${steps}: ${JSON.stringify(row)}`);
      scores.push(row);
    }
    result.scores = scores;
  } finally {
    await ctx.close();
    await server.close();
    await rm(tmp, { recursive: true, force: true });
  }
  const json = JSON.stringify(result);
  await writeFile(path.join(outDir, `${args.name}.json`), JSON.stringify(result, null, 2) + '\n');
  console.log(json);
}

await main();
