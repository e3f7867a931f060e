/**
 * One convention for errors and outputs (issue 12, items 5-7): an unwritable or invalid output path is one line
 * naming the flag and the path, exit code 2, found before any work; outputs are written all or nothing; an --ep
 * that cannot run is one line without onnxruntime's or Dawn's own log lines.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, cp, mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { UserError } from '../src/cli/common.ts';
import { checkOutputFile, writeOutputs } from '../src/cli/output.ts';
import { conciseOrtMessage } from '../src/engine/runtime.ts';
import { encodePng } from '../src/io/image.ts';
import { assertUserError, runCli, tinyCheckpoint, type CliResult } from './cli-helpers.ts';
import { sniffBytes } from '../src/io/sniff.ts';
import { sniffPath } from '../src/io/sniff-file.ts';
import { parseSafetensors } from '../src/io/safetensors.ts';
import { readDenoiserFile } from '../src/sample/onnx-file.ts';

let dir: string;
let ckpt: string;
let aFile: string; // a regular file, used where a directory is expected
const at = (...p: string[]) => path.join(dir, ...p);
const sample = (...args: string[]) => runCli(['sample', '--checkpoint', ckpt, '--threads', '1', '--n', '2', '--steps', '2', ...args]);

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'ddpm-cli-errors-'));
  ckpt = await tinyCheckpoint(path.join(dir, 'run'));
  aFile = at('a-file');
  await writeFile(aFile, 'not a directory');
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Refused before the model ran: nothing was sampled. */
function assertNoWork(r: CliResult): void {
  assert.doesNotMatch(r.stdout, /sampling|done:|wrote/, `work started before the check:\n${r.stdout}`);
}

/**
 * A directory this process cannot create files in, or undefined. As root, permissions do not stop writes, so /sys
 * (read-only or root-proof in containers and on hosts alike) stands in; it is checked to really refuse a file.
 */
async function unwritableDir(): Promise<string | undefined> {
  if (process.getuid?.() !== 0) {
    const ro = at('read-only');
    await mkdir(ro, { recursive: true });
    await chmod(ro, 0o555);
    return ro;
  }
  if (!existsSync('/sys')) return undefined;
  try {
    await writeFile('/sys/.ddpm-write-test', '');
    await rm('/sys/.ddpm-write-test', { force: true });
    return undefined; // writable after all: no such directory here
  } catch {
    return '/sys';
  }
}

test('sample: --out that is a directory, under a file, or in an unwritable directory is one line, exit 2, before sampling', async () => {
  await mkdir(at('dir.png'));
  let r = await sample('--out', at('dir.png'));
  assertUserError(r, /^error: --out .*dir\.png: is a directory, expected a file$/m);
  assertNoWork(r);

  r = await sample('--out', path.join(aFile, 'x.png')); // ENOTDIR
  assertUserError(r, /^error: --out .*a-file[/\\]x\.png: .*a-file is not a directory$/m);
  assertNoWork(r);

  r = await sample('--out', path.join(aFile, 'deeper', 'x.png'));
  assertUserError(r, /a-file is not a directory$/m);

  const ro = await unwritableDir();
  if (ro === undefined) return;
  r = await sample('--out', path.join(ro, 'x.png'));
  assertUserError(r, /^error: --out .*x\.png: cannot create files in .*: (permission denied|read-only file system|operation not permitted) \(E[A-Z]+\)$/m);
  assertNoWork(r);
  r = await sample('--out', path.join(ro, 'new-dir', 'x.png'));
  assertUserError(r, /cannot create directories in .*: (permission denied|read-only file system|operation not permitted|no such file or directory)/);
});

test('sample: --out-dir naming a file and --trajectory under a file are refused before sampling; nothing is left behind', async () => {
  const grid = at('left-behind.png');
  let r = await sample('--out', grid, '--out-dir', aFile);
  assertUserError(r, /^error: --out-dir .*a-file: .*a-file is not a directory$/m);
  assertNoWork(r);
  assert.equal(existsSync(grid), false, 'the grid was written although --out-dir is unusable');

  r = await sample('--out', grid, '--trajectory', path.join(aFile, 't.gif'));
  assertUserError(r, /^error: --trajectory .*t\.gif: .*a-file is not a directory$/m);
  assert.equal(existsSync(grid), false);

  assertUserError(await sample('--out', grid, '--trajectory', grid), /--trajectory and --out name the same file/);
  assert.deepEqual((await readdir(dir)).filter((f) => f.startsWith('.')), [], 'no probe or temporary files');
});

test('sample: missing parent directories are created at the end, and only then', async () => {
  const r = await sample('--out', at('new', 'deep', 'g.png'), '--out-dir', at('new', 'each'));
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual((await readdir(at('new'))).sort(), ['deep', 'each']);
  assert.deepEqual(await readdir(at('new', 'each')), ['sample_00000.png', 'sample_00001.png']);
});

test('writeOutputs: a failure while staging (here an injected ENOSPC) writes nothing, keeps old files, removes the directories it made', async () => {
  const old = at('keep.png');
  await writeFile(old, 'old content');
  const made = at('made', 'by', 'writeOutputs');
  const enospc = Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
  const outputs = [
    { flag: '--out', file: old, data: 'new grid' },
    { flag: '--out-dir', file: path.join(made, 'a.png'), data: 'a' },
    { flag: '--out-dir', file: path.join(made, 'b.png'), data: 'b', verify: () => Promise.reject(enospc) },
    { flag: '--trajectory', file: at('never.gif'), data: 'never' },
  ];
  await assert.rejects(writeOutputs(outputs), (e: unknown) => {
    assert.ok(e instanceof UserError, String(e));
    assert.match(e.message, /^--out-dir .*made[/\\]by[/\\]writeOutputs[/\\]b\.png: cannot write: no space left on device \(ENOSPC\)$/);
    return true;
  });
  assert.equal(await readFile(old, 'utf8'), 'old content');
  assert.equal(existsSync(at('made')), false, 'directories made by the failed write are removed');
  assert.equal(existsSync(at('never.gif')), false);
  assert.deepEqual((await readdir(dir)).filter((f) => f.startsWith('.')), [], 'no temporary files');

  // and when everything stages, everything is committed
  await writeOutputs(outputs.map((o) => ({ ...o, verify: undefined })));
  assert.equal(await readFile(old, 'utf8'), 'new grid');
  assert.equal(await readFile(path.join(made, 'b.png'), 'utf8'), 'b');
});

test('checkOutputFile refuses devices and paths ending in a separator, and names over-long file names', async () => {
  if (existsSync('/dev/null')) await assert.rejects(checkOutputFile('--out', '/dev/null'), /--out \/dev\/null: exists and is not a regular file/);
  await assert.rejects(checkOutputFile('--out', at('x') + path.sep), /names a directory, expected a file/);
  await assert.rejects(checkOutputFile('--out', at(`${'n'.repeat(300)}.png`)), /file name too long \(ENAMETOOLONG\)/);
});

test('noise: --out into a directory or under a file is one line, exit 2, before the image is read', async () => {
  const image = at('gray.png');
  await writeFile(image, await encodePng({ data: new Uint8Array(64).fill(128), width: 8, height: 8, channels: 1 }));
  await mkdir(at('strip.png'), { recursive: true });
  assertUserError(await runCli(['noise', '--image', image, '--T', '100', '--t', '0,5', '--out', at('strip.png')]), /^error: --out .*strip\.png: is a directory/m);
  assertUserError(await runCli(['noise', '--image', image, '--T', '100', '--t', '0,5', '--out', path.join(aFile, 's.png')]), /a-file is not a directory$/m);
  const r = await runCli(['noise', '--image', image, '--T', '100', '--t', '0,5', '--out', at('noise', 'ok.png')]);
  assert.equal(r.code, 0, r.stderr);
  assert.ok(existsSync(at('noise', 'ok.png')));
});

test('export: a bad --out is refused before exporting; a model that fails verification leaves no .onnx and an old one intact', async () => {
  await mkdir(at('dir.onnx'), { recursive: true });
  assertUserError(await runCli(['export', '--checkpoint', ckpt, '--threads', '1', '--out', at('dir.onnx')]), /^error: --out .*dir\.onnx: is a directory/m);
  assertUserError(await runCli(['export', '--checkpoint', ckpt, '--threads', '1', '--out', path.join(aFile, 'm.onnx')]), /a-file is not a directory$/m);

  // a checkpoint whose weights are all NaN (a diverged run): the staged file fails the check against the compiled forward
  const nan = at('nan-ckpt');
  await cp(ckpt, nan, { recursive: true });
  for (const name of await readdir(nan)) {
    if (!name.endsWith('.safetensors')) continue;
    const bytes = await readFile(path.join(nan, name));
    const data = 8 + Number(bytes.readBigUInt64LE(0)); // header length, then the header; float32 0xffffffff is NaN
    bytes.fill(0xff, data);
    await writeFile(path.join(nan, name), bytes);
  }
  const fresh = at('exports', 'nan.onnx');
  let r = await runCli(['export', '--checkpoint', nan, '--threads', '1', '--out', fresh]);
  assertUserError(r, /nan-ckpt.*: the model's output on the check batch is not finite .*--out .*nan\.onnx not written/);
  assert.equal(existsSync(fresh), false, 'an unverified .onnx was left behind');
  assert.equal(existsSync(at('exports')), false, 'the directory made for it is removed too');

  const old = at('old.onnx');
  await writeFile(old, 'a previous export');
  r = await runCli(['export', '--checkpoint', nan, '--threads', '1', '--out', old]);
  assert.equal(r.code, 2, r.stderr);
  assert.equal(await readFile(old, 'utf8'), 'a previous export');
  assert.deepEqual((await readdir(dir)).filter((f) => f.endsWith('.tmp')), []);
});

test('train: a bad --out is refused first; a start-up failure leaves no run directory', async () => {
  const images = at('images');
  await mkdir(images, { recursive: true });
  for (let i = 0; i < 4; i++) {
    await writeFile(path.join(images, `im${i}.png`), await encodePng({ data: new Uint8Array(64).fill(40 * i), width: 8, height: 8, channels: 1 }));
  }
  const base = ['--config', 'tiny', '--image-size', '8', '--channels', '1', '--batch-size', '4', '--T', '100', '--steps', '1', '--sample-every', '0', '--threads', '1', '--data', images];
  assertUserError(await runCli(['train', ...base, '--out', aFile]), /^error: --out .*a-file: .*a-file is not a directory$/m);
  assertUserError(await runCli(['train', ...base, '--out', path.join(aFile, 'run')]), /a-file is not a directory$/m);

  // --init-from fails inside the trainer's start-up, after the data are loaded: the run directory used to exist by then
  const run = at('runs', 'failed');
  const r = await runCli(['train', ...base, '--out', run, '--init-from', at('no-such-model')]);
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /no-such-model/);
  assert.equal(existsSync(at('runs')), false, 'a failed start-up left a run directory');

  const ok = await runCli(['train', ...base, '--out', run]);
  assert.equal(ok.code, 0, ok.stderr);
  assert.ok(existsSync(path.join(run, 'checkpoint', 'config.json')));
});

const BIN = fileURLToPath(new URL('../src/cli/bin.ts', import.meta.url));

/** `ddpm <args>` (the CLI from source, as bin/ddpm.js runs it from dist/) in a child process: its real stderr, with whatever native code writes to fd 2. */
function ddpm(args: string[]): Promise<CliResult> {
  return new Promise((resolve) => {
    const env = { ...process.env };
    delete env.DDPM_DEBUG;
    execFile(process.execPath, ['--import', 'tsx', BIN, ...args], { env, encoding: 'utf8', timeout: 120_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
    });
  });
}

const CUDA_LIBRARY = process.platform === 'win32' ? 'onnxruntime_providers_cuda.dll' : 'libonnxruntime_providers_cuda.so';
const ortBin = path.join(path.dirname(fileURLToPath(import.meta.resolve('onnxruntime-node'))), '..', 'bin', 'napi-v6', process.platform, process.arch);

test('--ep cuda without the CUDA provider: one line, no colour codes, no native log, exit 2, before any output is written', { skip: existsSync(path.join(ortBin, CUDA_LIBRARY)) && 'the CUDA provider is installed here' }, async () => {
  const out = at('cuda.png');
  const r = await ddpm(['sample', '--checkpoint', ckpt, '--n', '1', '--steps', '2', '--ep', 'cuda', '--out', out]);
  assert.equal(r.code, 2, r.stderr);
  // the install script itself, which npm rebuild skips where install scripts are off (as in this repository)
  const script = path.relative(process.cwd(), path.join(ortBin, '..', '..', '..', '..', 'script', 'install.js'));
  assert.ok(existsSync(script), script);
  assert.equal(
    r.stderr,
    `error: --ep cuda: the CUDA execution provider is not available in this onnxruntime-node build (${CUDA_LIBRARY} is not installed: install it with ` +
      `ONNXRUNTIME_NODE_INSTALL=cuda12 node ${script} (npm rebuild skips that script where install scripts are off); see the README section "GPU")\n`,
  );
  assert.doesNotMatch(r.stderr, /npm rebuild onnxruntime-node/, 'the advice that does nothing in a checkout');
  assert.equal(existsSync(out), false);
});

test('--ep webgpu: works, or fails as one line without Dawn or onnxruntime log lines', async () => {
  const r = await ddpm(['sample', '--checkpoint', ckpt, '--n', '1', '--steps', '2', '--ep', 'webgpu', '--out', at('webgpu.png')]);
  if (r.code === 0) return; // a machine with a GPU adapter
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /^error: --ep webgpu: the WebGPU execution provider cannot start on this machine \(.+\); .* or use --ep cpu\n$/);
  assert.doesNotMatch(r.stderr, /\x1b/);
});

test('conciseOrtMessage: colour codes, ORT_ENFORCE locations and trailing lines removed', () => {
  const raw =
    '\x1b[1;31m/onnxruntime_src/onnxruntime/core/providers/webgpu/webgpu_context.cc:136 onnxruntime::webgpu::WebGpuContext::Initialize(...)::<lambda()> ' +
    'adapter_result.status == wgpu::RequestAdapterStatus::Success was false. Failed to get a WebGPU adapter: No supported adapters\x1b[m\nstack';
  assert.equal(conciseOrtMessage(raw), 'Failed to get a WebGPU adapter: No supported adapters');
  assert.equal(conciseOrtMessage('[ONNXRuntimeError] : 1 : FAIL : Load model failed'), 'Load model failed');
});

/** A 8x8 grey PNG, a JSON file, a gzip file, an empty file and a folder: the wrong kinds of input of issue 32. */
async function wrongKinds(): Promise<Record<'png' | 'json' | 'gzip' | 'empty' | 'folder' | 'onnx' | 'safetensors', string>> {
  const files = {
    png: at('kinds', 'digit.png'), json: at('kinds', 'config.json'), gzip: at('kinds', 'data.gz'), empty: at('kinds', 'empty.onnx'),
    folder: at('kinds', 'a-folder'), onnx: path.join(ROOT, 'models', 'mnist-28', 'model.onnx'), safetensors: path.join(ckpt, 'ema.safetensors'),
  };
  await mkdir(files.folder, { recursive: true });
  await writeFile(files.png, await encodePng({ data: new Uint8Array(64).fill(200), width: 8, height: 8, channels: 1 }));
  await writeFile(files.json, '{"model": {}}\n');
  await writeFile(files.gzip, gzipSync('not a model'));
  await writeFile(files.empty, '');
  return files;
}

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

test('sniffBytes names PNG, JPEG, WebP, GIF, safetensors, ONNX, JSON, gzip, zip and empty files; anything else is unknown', async () => {
  const k = await wrongKinds();
  assert.equal(sniffBytes(await readFile(k.png)), 'png');
  assert.equal(sniffBytes(await readFile(k.json)), 'json');
  assert.equal(sniffBytes(await readFile(k.gzip)), 'gzip');
  assert.equal(sniffBytes(new Uint8Array(0)), 'empty');
  assert.equal(sniffBytes(await readFile(k.onnx)), 'onnx');
  assert.equal(sniffBytes(await readFile(k.safetensors)), 'safetensors');
  const ascii = (s: string) => Array.from(s, (c) => c.charCodeAt(0));
  assert.equal(sniffBytes(Uint8Array.of(0xff, 0xd8, 0xff, 0xe0)), 'jpeg');
  assert.equal(sniffBytes(Uint8Array.from([...ascii('RIFF'), 0, 0, 0, 0, ...ascii('WEBPVP8 ')])), 'webp');
  assert.equal(sniffBytes(Uint8Array.from(ascii('GIF89a\x01\x00'))), 'gif');
  assert.equal(sniffBytes(Uint8Array.of(0x50, 0x4b, 0x03, 0x04)), 'zip');
  assert.equal(sniffBytes(Uint8Array.from([0xef, 0xbb, 0xbf, ...ascii('  [1, 2]')])), 'json'); // after a UTF-8 byte order mark
  assert.equal(sniffBytes(Uint8Array.from(ascii('# README\n'))), 'unknown');
  // a safetensors header must fit in the file: a '{' at byte 8 after a huge length is not one
  assert.equal(sniffBytes(Uint8Array.from([0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0x7b, 0x7d])), 'unknown');
  assert.equal(await sniffPath(k.folder), 'directory');
  assert.equal(await sniffPath(at('kinds', 'nothing-here')), null);
  // the parsers say it too, for library users: a PNG handed to the safetensors and ONNX readers
  const png = new Uint8Array(await readFile(k.png));
  assert.throws(() => parseSafetensors(png), /^SafetensorsError: safetensors: a PNG image, not a safetensors file$/);
  assert.throws(() => readDenoiserFile(png), /^Error: not a valid ONNX file: a PNG image$/);
});

test('every file input says what the file is and what was expected (issue 32, item 4)', async () => {
  const k = await wrongKinds();
  const cases: [string[], RegExp][] = [
    [['invert', '--decode', k.png, '--out', at('x.png')], /^error: --decode .*digit\.png is a PNG image, not a safetensors file \(--decode reads the x_T that ddpm invert --image wrote\)$/m],
    [['invert', '--decode', k.onnx, '--out', at('x.png')], /model\.onnx is an ONNX model, not a safetensors file/],
    [
      ['sample', '--checkpoint', k.png, '--n', '1'],
      /^error: --checkpoint .*digit\.png is a PNG image, not a model \(a checkpoint or run directory, a checkpoint \.safetensors, an \.onnx from ddpm export or a shipped model: mnist-28, mnist-28-cond\)$/m,
    ],
    [['sample', '--checkpoint', k.json, '--n', '1'], /config\.json is a JSON file, not a model/],
    [['sample', '--checkpoint', k.gzip, '--n', '1'], /data\.gz is a gzip file, not a model/],
    [['sample', '--checkpoint', k.empty, '--n', '1'], /empty\.onnx is an empty file, not a model/],
    [['sample', '--checkpoint', k.folder, '--n', '1'], /^error: --checkpoint .*a-folder: a directory without a model: expected config\.json and ema\.safetensors \(a checkpoint\), model\.onnx \(from ddpm export\) or checkpoint\/ \(a run directory\)$/m],
    [['eval', '--checkpoint', k.png, '--fid', '2'], /digit\.png is a PNG image, not a model/],
    [['export', '--checkpoint', k.json, '--out', at('m.onnx')], /config\.json is a JSON file, not a model \(a checkpoint or run directory, a checkpoint \.safetensors or a shipped model/],
    [['edit', '--image', k.folder, '--out', at('x.png')], /^error: --image .*a-folder is a directory, not a PNG, JPEG or WebP image$/m],
    [['inpaint', '--image', k.png, '--mask', k.safetensors, '--out', at('x.png')], /--mask .*ema\.safetensors is a safetensors file, not a PNG, JPEG or WebP image/],
    [['invert', '--image', k.gzip, '--out', at('x.safetensors')], /--image .*data\.gz is a gzip file, not a PNG, JPEG or WebP image/],
    [['noise', '--image', k.onnx, '--out', at('x.png')], /--image .*model\.onnx is an ONNX model, not a PNG, JPEG or WebP image/],
    [['eval', '--samples', k.png], /^error: --samples: image folder .*digit\.png is a PNG image, not a directory$/m],
    [['eval', '--fid', '2', '--classifier', k.png], /the FID classifier .*digit\.png is a PNG image, not a classifier directory/],
    [['train', '--data', k.png, '--out', at('never-run')], /^error: --data .*digit\.png is a PNG image, not a folder of images \(or 'mnist'\)$/m],
    [['train', '--init-from', k.png, '--out', at('never-run')], /^error: --init-from .*digit\.png is a PNG image, not a model, checkpoint or run directory/m],
    [['train', '--init-from', 'no-such-model', '--out', at('never-run')], /^error: --init-from: no such file or directory: no-such-model \(shipped models: mnist-28, mnist-28-cond\)$/m],
  ];
  await writeFile(at('kinds', 'png.json'), await readFile(k.png));
  cases.push([['train', '--config', at('kinds', 'png.json'), '--out', at('never-run')], /--config .*png\.json is a PNG image, not a config JSON file/]);
  for (const [args, pattern] of cases) assertUserError(await runCli(args[0] === 'noise' ? args : [...args, '--threads', '1']), pattern);
  assert.equal(existsSync(at('never-run')), false, 'train checked its inputs before making the run directory');
});
