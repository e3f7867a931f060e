/**
 * The package as a user gets it: `npm run build && npm pack`, then `npm install --ignore-scripts <tarball>` into an
 * empty project with no TypeScript, and three checks there:
 * - plain `node` imports `ddpm-ts` (ESM, compiled JavaScript) and samples 4 images from the shipped model
 *   through DDPMPipeline, bit for bit what the sources give;
 * - a minimal Vite app that imports the browser entry (`ddpm-ts/browser`, and `ddpm-ts` under the browser
 *   condition) builds, with nothing from `node:*` in it (this repository's vite, the app as its root);
 * - the installed `ddpm sample` writes samples.png from the shipped model, and `--checkpoint mnist-28-cond` finds the
 *   class-conditional one by name (so does `fromPretrained('mnist-28-cond')` above).
 * Then the same with npm 10.9 (the npm of Node 22; Node 20 has 10.8), fetched from the npm registry: the tarball
 * installs into another empty project, and a fresh copy of this checkout (its files as `git clone` of them would
 * give) installs with `npm ci` and runs `npx ddpm sample`, the README's first command. No install downloads
 * anything but npm packages (the CUDA binaries onnxruntime-node's install script fetches from NuGet stay absent)
 * or prints an npm warning; no ONNXRUNTIME_NODE_INSTALL is set, so it is the project's own .npmrc and the README's
 * command that keep the install script from running. The dependencies come from npm's cache or the npm registry
 * (--prefer-offline). Timings are printed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build, createLogger } from 'vite';
import { DDPMPipeline } from '../src/pipeline/node.ts';
import { imageSize } from './cli-helpers.ts';
import { assertClose } from './helpers.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const PKG = JSON.parse(await readFile(path.join(ROOT, 'package.json'), 'utf8')) as { name: string; version: string };

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs a program in `cwd` with an environment of a user's shell: none of the npm_* variables that `npm test`
 * sets (they would point npm at this repository), no NODE_OPTIONS (no TypeScript loader), no NODE_ENV (Vite's
 * build sets it to production, which makes npm leave out devDependencies), no ONNXRUNTIME_NODE_INSTALL (the
 * project, not this test, has to keep onnxruntime-node from downloading); `path_` goes in front of PATH.
 */
function run(file: string, args: string[], cwd: string, path_?: string): Promise<Run> {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!/^(npm_|ONNXRUNTIME_NODE_INSTALL$|NODE_OPTIONS$|NODE_ENV$)/i.test(k)) env[k] = v;
  if (path_) env.PATH = `${path_}${path.delimiter}${env.PATH ?? ''}`;
  return new Promise((resolve) => {
    execFile(file, args, { cwd, env, encoding: 'utf8', timeout: 300_000, maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
    });
  });
}

function ok(r: Run, what: string): void {
  assert.equal(r.code, 0, `${what} failed (exit ${r.code}):\n${r.stderr}\n${r.stdout}`);
}

/** npm's warnings in a run's output, less those about this machine's own npm config (~/.npmrc), which are not the project's. */
function npmWarnings(r: Run): string[] {
  return `${r.stdout}\n${r.stderr}`.split('\n').filter((l) => /^npm warn/i.test(l) && !/Unknown (user|global|builtin) config/.test(l));
}

/** Where onnxruntime-node's install script puts the CUDA provider it downloads from NuGet (Linux x64). */
function cudaProvider(project: string): string {
  return path.join(project, 'node_modules', 'onnxruntime-node', 'bin', 'napi-v6', 'linux', 'x64', 'libonnxruntime_providers_cuda.so');
}

/** The installs with no download and no warning: onnxruntime-node's install script did not run. */
function cleanInstall(r: Run, project: string, what: string): void {
  ok(r, what);
  assert.deepEqual(npmWarnings(r), [], `${what} warned`);
  assert.ok(!existsSync(cudaProvider(project)), `${what} downloaded the CUDA provider`);
}

/**
 * npm 10.9 from the npm registry, installed once into `dir`: the folder that puts its `npm` and `npx` first on
 * PATH (so that npx, and what npm runs, use it too).
 */
async function npm10(dir: string): Promise<string> {
  await mkdir(dir);
  const r = await run('npm', ['install', '--prefix', dir, '--prefer-offline', '--no-audit', '--no-fund', '--ignore-scripts', 'npm@10.9'], dir);
  ok(r, 'npm install npm@10.9');
  const cli = path.join(dir, 'node_modules', 'npm', 'bin');
  const bin = path.join(dir, 'bin');
  await mkdir(bin);
  for (const name of ['npm', 'npx']) {
    await writeFile(path.join(bin, name), `#!/bin/sh\nexec "${process.execPath}" "${path.join(cli, `${name}-cli.js`)}" "$@"\n`, { mode: 0o755 });
  }
  const v = await run('npm', ['--version'], dir, bin);
  ok(v, 'npm --version');
  assert.match(v.stdout.trim(), /^10\.9\./);
  return bin;
}

/** This checkout's files as a fresh clone of them would have them (tracked and untracked, not ignored), copied into `dest`. */
async function copyCheckout(dest: string): Promise<void> {
  const r = await run('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], ROOT);
  ok(r, 'git ls-files');
  for (const f of new Set(r.stdout.split('\0').filter(Boolean))) {
    const from = path.join(ROOT, f);
    if (!existsSync(from)) continue; // deleted, not yet committed
    await mkdir(path.dirname(path.join(dest, f)), { recursive: true });
    await copyFile(from, path.join(dest, f));
  }
}

const timings: Record<string, number> = {};
async function timed<T>(name: string, f: () => Promise<T>): Promise<T> {
  const t0 = performance.now();
  try {
    return await f();
  } finally {
    timings[name] = +((performance.now() - t0) / 1000).toFixed(2);
  }
}

/** 4 images from the shipped model through the pipeline: DDIM, 10 steps, η = 0, seed 0, one thread (so the bits are reproducible). */
const SAMPLE_SCRIPT = `
import path from 'node:path';
import { DDPMPipeline } from 'ddpm-ts';
import * as browser from 'ddpm-ts/browser';

const pipe = await DDPMPipeline.fromPretrained(undefined, { threads: 1 });
const { samples: x0 } = await pipe.generate({ n: 4, sampler: 'ddim', steps: 10, eta: 0, seed: 0 });
await pipe.release();
// the shipped models by name, from wherever the package is installed (issue 32)
const named = [];
for (const name of ['mnist-28', 'mnist-28-cond']) {
  const p = await DDPMPipeline.fromPretrained(name, { threads: 1 });
  named.push(path.dirname(p.source.file));
  await p.release();
}
console.log(JSON.stringify({
  dir: path.dirname(pipe.source.file),
  named,
  x0: Buffer.from(x0.buffer, x0.byteOffset, x0.byteLength).toString('base64'),
  browserEntry: typeof browser.DDPMPipeline === 'function' && !('fromLoaded' in browser.DDPMPipeline) && !('loadModelDir' in browser),
}));
`;

async function sampleFromSources(): Promise<Float32Array> {
  const pipe = await DDPMPipeline.fromPretrained(undefined, { threads: 1 });
  const { samples } = await pipe.generate({ n: 4, sampler: 'ddim', steps: 10, eta: 0, seed: 0 });
  await pipe.release();
  return samples;
}

const VITE_MAIN = `
import { DDPMPipeline, DdimSampler, GaussianDiffusion, Rng } from 'ddpm-ts/browser';
import * as lib from 'ddpm-ts';
const diffusion = GaussianDiffusion.fromConfig({ kind: 'linear', T: 1000 });
const sampler = new DdimSampler(diffusion, { meanType: 'epsilon', eta: 0, timesteps: 'ddim10', clipDenoised: true });
document.body.textContent = [sampler.constructor.name, DDPMPipeline.name, new Rng(0).normalFloat32(2).join(' '), Object.keys(lib).length].join(' / ');
`;

test('npm pack, install the tarball into an empty project: node imports it and samples, a Vite app builds the browser entry, ddpm sample runs', { timeout: 900_000 }, async (t) => {
  const tmp = await mkdtemp(path.join(tmpdir(), 'ddpm-package-'));
  t.after(() => rm(tmp, { recursive: true, force: true }));
  const app = path.join(tmp, 'app');

  // 1. build and pack (the checkout's .npmrc turns npm's scripts off, `prepack` and `prepare` among them)
  ok(await timed('build', () => run('npm', ['run', '-s', 'build'], ROOT)), 'npm run build');
  const packed = await timed('pack', () => run('npm', ['pack', '--json', '--pack-destination', tmp], ROOT));
  ok(packed, 'npm pack');
  const info = (JSON.parse(packed.stdout.slice(packed.stdout.indexOf('['))) as { filename: string; size: number; unpackedSize: number; files: { path: string }[] }[])[0]!;
  const files = new Set(info.files.map((f) => f.path));
  for (const f of ['package.json', 'bin/ddpm.js', 'dist/index.js', 'dist/index.d.ts', 'dist/index.js.map', 'dist/browser.js', 'dist/browser.d.ts', 'dist/cli/bin.js',
    'models/mnist-28/config.json', 'models/mnist-28/ema.safetensors', 'models/lenet-mnist/weights.safetensors']) {
    assert.ok(files.has(f), `the tarball lacks ${f}`);
  }
  const stray = [...files].filter((f) => /^(test|runs|web|scripts|bench|docs|dev|node_modules)\//.test(f));
  assert.deepEqual(stray, [], 'the tarball holds files users do not need');

  // 2. install it where there is no TypeScript, as the README says
  await mkdir(app);
  await writeFile(path.join(app, 'package.json'), JSON.stringify({ name: 'app', private: true, type: 'module' }));
  const tarball = path.join(tmp, info.filename);
  const installed = await timed('install', () => run('npm', ['install', '--ignore-scripts', tarball, '--prefer-offline', '--no-audit', '--no-fund'], app));
  cleanInstall(installed, app, 'npm install --ignore-scripts of the tarball');
  for (const dev of ['typescript', 'tsx']) assert.ok(!existsSync(path.join(app, 'node_modules', dev)), `${dev} was installed with the package`);

  await t.test('plain node imports the package and samples 4 images from the shipped model, bit for bit as the sources do', async () => {
    await writeFile(path.join(app, 'sample.mjs'), SAMPLE_SCRIPT);
    const r = await timed('node sample', () => run(process.execPath, ['sample.mjs'], app));
    ok(r, 'node sample.mjs');
    const out = JSON.parse(r.stdout.trim().split('\n').pop()!) as { dir: string; named: string[]; x0: string; browserEntry: boolean };
    assert.equal(out.dir, path.join(app, 'node_modules', 'ddpm-ts', 'models', 'mnist-28'));
    assert.deepEqual(out.named, ['mnist-28', 'mnist-28-cond'].map((m) => path.join(app, 'node_modules', 'ddpm-ts', 'models', m)));
    assert.ok(out.browserEntry, 'ddpm-ts/browser: the diffusion core without the Node-only loaders');
    const b = Buffer.from(out.x0, 'base64');
    const got = new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4);
    assert.equal(got.length, 4 * 28 * 28);
    // digits: mostly black background, a few bright strokes (pure noise has ~16% of pixels below -0.9)
    for (let i = 0; i < 4; i++) {
      const img = got.subarray(i * 784, (i + 1) * 784);
      const background = img.filter((v) => v < -0.9).length / 784;
      const strokes = img.filter((v) => v > 0.5).length / 784;
      assert.ok(background > 0.6 && background < 0.97 && strokes > 0.02 && strokes < 0.3, `image ${i}: background ${background}, strokes ${strokes}`);
    }
    assertClose(got, await sampleFromSources(), { atol: 0 }, 'installed package vs sources');
  });

  await t.test('a Vite app importing the browser entry builds, with nothing from node:*', async () => {
    const web = path.join(app, 'web');
    await mkdir(web);
    await writeFile(path.join(web, 'index.html'), '<!doctype html><html><body><script type="module" src="./main.js"></script></body></html>\n');
    await writeFile(path.join(web, 'main.js'), VITE_MAIN);
    const warnings: string[] = [];
    const logger = createLogger('warn');
    logger.warn = (msg) => void warnings.push(msg);
    logger.warnOnce = logger.warn;
    const out = await timed('vite build', () =>
      build({ root: web, configFile: false, customLogger: logger, logLevel: 'warn', build: { outDir: path.join(web, 'dist'), emptyOutDir: true } }),
    );
    const chunks = (Array.isArray(out) ? out : [out]).flatMap((o) => ('output' in o ? o.output : [])).filter((o) => o.type === 'chunk');
    assert.ok(chunks.length > 0, 'no JavaScript was built');
    const code = chunks.map((c) => c.code).join('\n');
    assert.deepEqual(warnings.filter((w) => /externalized|node:/.test(w)), [], 'Vite had to externalize Node modules');
    assert.doesNotMatch(code, /(from|import\(|require\()\s*["']node:/, 'the bundle imports node:*');
    assert.doesNotMatch(code, /onnxruntime-node|sharp/, 'the bundle holds Node-only packages');
    timings['bundle KB'] = Math.round(code.length / 1024);
  });

  await t.test('the installed ddpm sample writes samples.png from the shipped model', async () => {
    const bin = path.join(app, 'node_modules', '.bin', 'ddpm');
    const version = await run(bin, ['--version'], app);
    ok(version, 'ddpm --version');
    assert.equal(version.stdout.trim(), PKG.version);
    const r = await timed('ddpm sample', () => run(bin, ['sample', '--n', '4', '--steps', '10', '--threads', '2'], app));
    ok(r, 'ddpm sample');
    assert.match(r.stdout, new RegExp(`model ${path.join(app, 'node_modules', 'ddpm-ts', 'models', 'mnist-28').replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`));
    const png = await readFile(path.join(app, 'samples.png'));
    assert.deepEqual([...png.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], 'samples.png is not a PNG');
    const [w, h] = await imageSize(path.join(app, 'samples.png'));
    assert.ok(w >= 2 * 28 && h >= 2 * 28, `samples.png is ${w}x${h}`);
    // the class-conditional model by its name, as the README and `ddpm sample --help` write it (issue 32)
    const cond = await timed('ddpm sample cond', () => run(bin, ['sample', '--checkpoint', 'mnist-28-cond', '--class', '3', '--n', '2', '--steps', '5', '--threads', '2', '--out', 'threes.png'], app));
    ok(cond, 'ddpm sample --checkpoint mnist-28-cond');
    assert.ok(cond.stdout.includes(`model ${path.join(app, 'node_modules', 'ddpm-ts', 'models', 'mnist-28-cond', 'ema.safetensors')}`), cond.stdout);
    assert.ok(existsSync(path.join(app, 'threes.png')));
  });

  // 3. npm 10.9, the npm of Node 22 (npm >= 11.16 reads package.json's allowScripts; 10.x knows no such field)
  const bin10 = await timed('npm 10.9 fetch', () => npm10(path.join(tmp, 'npm10')));

  await t.test('npm 10.9: the tarball installs into an empty project (npm install --ignore-scripts) and npx ddpm sample runs', async () => {
    const app10 = path.join(tmp, 'app10');
    await mkdir(app10);
    await writeFile(path.join(app10, 'package.json'), JSON.stringify({ name: 'app10', private: true, type: 'module' }));
    const r = await timed('npm 10.9 install', () => run('npm', ['install', '--ignore-scripts', tarball, '--prefer-offline', '--no-audit', '--no-fund'], app10, bin10));
    cleanInstall(r, app10, 'npm 10.9 install --ignore-scripts of the tarball');
    const s = await timed('npm 10.9 ddpm sample', () => run('npx', ['ddpm', 'sample', '--n', '4', '--steps', '10', '--threads', '2'], app10, bin10));
    ok(s, 'npx ddpm sample');
    assert.deepEqual(npmWarnings(s), []);
    assert.ok(existsSync(path.join(app10, 'samples.png')));
  });

  await t.test('npm 10.9: a fresh copy of the checkout installs with npm ci, and npx ddpm sample builds dist/ and runs', async () => {
    const clone = path.join(tmp, 'clone');
    await timed('copy checkout', () => copyCheckout(clone));
    assert.ok(existsSync(path.join(clone, '.npmrc')) && !existsSync(path.join(clone, 'dist')) && !existsSync(path.join(clone, 'node_modules')));
    const r = await timed('npm 10.9 ci', () => run('npm', ['ci', '--prefer-offline', '--no-audit', '--no-fund'], clone, bin10));
    cleanInstall(r, clone, 'npm 10.9 ci in a fresh checkout');
    const out = path.join(tmp, 'clone-samples.png');
    const s = await timed('npm 10.9 npx ddpm sample (builds dist/)', () => run('npx', ['ddpm', 'sample', '--n', '4', '--steps', '10', '--threads', '2', '--out', out], clone, bin10));
    ok(s, 'npx ddpm sample in the fresh checkout');
    assert.deepEqual(npmWarnings(s), []);
    assert.match(s.stderr, /building dist\//, 'the first run builds dist/');
    assert.ok(existsSync(path.join(clone, 'dist', 'cli', 'bin.js')) && existsSync(out));
  });

  const pkgInfo = { tarball_MB: +(info.size / 2 ** 20).toFixed(2), unpacked_MB: +(info.unpackedSize / 2 ** 20).toFixed(2), files: files.size };
  t.diagnostic(`package: ${JSON.stringify(pkgInfo)}; seconds: ${JSON.stringify(timings)}`);
  console.log(JSON.stringify({ package: pkgInfo, seconds: timings }));
});
