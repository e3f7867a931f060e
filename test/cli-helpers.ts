/**
 * Helpers for the CLI tests: run `ddpm` in-process through `main(argv)` with stdout/stderr captured, a script of
 * scripts/ in a child process, train a tiny checkpoint (8x8, T = 100, a few steps), read image sizes.
 */
import assert from 'node:assert/strict';
import { AsyncLocalStorage } from 'node:async_hooks';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import * as ort from 'onnxruntime-node';
import { main } from '../src/cli/main.ts';
import { uint8Dataset } from '../src/data/loader.ts';
import { decodeImage } from '../src/io/image.ts';
import { applyOptions, defaultTrainConfig } from '../src/train/config.ts';
import { Trainer } from '../src/train/trainer.ts';

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

// Output of `main` is captured per call through AsyncLocalStorage: only writes made from inside a runCli
// call are diverted, so the test runner's own reports (written from other async contexts) still get out.
const capture = new AsyncLocalStorage<{ out: string[]; err: string[] }>();
function divert(stream: NodeJS.WriteStream, key: 'out' | 'err'): void {
  const write = stream.write.bind(stream);
  stream.write = ((chunk: string | Uint8Array, ...rest: unknown[]) => {
    const store = capture.getStore();
    if (!store) return (write as (...a: unknown[]) => boolean)(chunk, ...rest);
    store[key].push(typeof chunk === 'string' ? chunk : new TextDecoder().decode(chunk));
    return true;
  }) as typeof stream.write;
}
divert(process.stdout, 'out');
divert(process.stderr, 'err');

/** `ddpm <args>` in this process; its output is captured, not printed. */
export async function runCli(args: string[]): Promise<CliResult> {
  const store = { out: [] as string[], err: [] as string[] };
  const code = await capture.run(store, () => main(['node', 'ddpm', ...args]));
  return { code, stdout: store.out.join(''), stderr: store.err.join('') };
}

/** `node --import tsx scripts/<name> ...args` from the repository root, in a child process: exit code, stdout, stderr. */
export async function runScript(name: string, args: string[]): Promise<CliResult> {
  const root = path.resolve(import.meta.dirname, '..');
  try {
    const r = await promisify(execFile)(process.execPath, ['--import', 'tsx', path.join(root, 'scripts', name), ...args], { cwd: root });
    return { code: 0, ...r };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
}

/** The command failed as bad input: exit code 2, a message on stderr matching `pattern`, no stack trace. */
export function assertUserError(r: CliResult, pattern: RegExp): void {
  assert.equal(r.code, 2, `exit code (stderr: ${r.stderr})`);
  assert.match(r.stderr, pattern);
  assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
  assert.ok(r.stderr.trim().split('\n').length <= 2, `at most the message and a usage hint, got:\n${r.stderr}`);
}

/** 32 synthetic 8x8 "images": bright squares at varying positions. */
export function squares() {
  const n = 32;
  const img = new Uint8Array(n * 64);
  for (let i = 0; i < n; i++) {
    const x0 = i % 5;
    const y0 = (i * 3) % 5;
    for (let y = y0; y < y0 + 3; y++) for (let x = x0; x < x0 + 3; x++) img[i * 64 + y * 8 + x] = 255;
  }
  return uint8Dataset(img, { n, channels: 1, height: 8, width: 8 });
}

/** Train the `tiny` U-Net for `steps` steps on 8x8 squares (T = 100); returns `<dir>/checkpoint`. */
export async function tinyCheckpoint(dir: string, steps = 2): Promise<string> {
  const cfg = applyOptions(defaultTrainConfig('tiny'), {
    'batch-size': '8', T: '100', steps: String(steps), 'log-every': '1', 'checkpoint-every': '100', 'sample-every': '0', lr: '1e-3',
  });
  const tr = await Trainer.create(ort as never, cfg, dir, squares(), { threads: 1 });
  await tr.train();
  await tr.release();
  return path.join(dir, 'checkpoint');
}

/** Width and height of an image file. */
export async function imageSize(file: string): Promise<[number, number]> {
  const img = await decodeImage(file, { channels: 3 });
  return [img.width, img.height];
}

/** Width and height from a GIF's logical screen descriptor (after checking the signature). */
export function gifInfo(bytes: Uint8Array): { width: number; height: number } {
  assert.equal(new TextDecoder().decode(bytes.subarray(0, 6)), 'GIF89a');
  return { width: bytes[6] | (bytes[7] << 8), height: bytes[8] | (bytes[9] << 8) };
}
