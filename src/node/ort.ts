/**
 * onnxruntime for Node: the CPU binaries ship inside the npm package. WebGPU is bundled too (it needs a
 * GPU and drivers); CUDA is opt-in: run onnxruntime-node's install script with ONNXRUNTIME_NODE_INSTALL=cuda12
 * (see the README's GPU section; `npm rebuild onnxruntime-node` skips it silently wherever install scripts are
 * off, as in this repository). `--ep` picks the execution provider; an unavailable one is
 * a clear error.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import * as ortNode from 'onnxruntime-node';
import { toOnnx } from '../engine/onnx.ts';
import { conciseOrtMessage, type ExecutionProvider, type LogLevel, type OrtModule, type RuntimeOptions } from '../engine/runtime.ts';
import { add, input } from '../engine/tensor.ts';

export const ort = ortNode as unknown as OrtModule;

export const EXECUTION_PROVIDERS: readonly ExecutionProvider[] = ['cpu', 'cuda', 'webgpu'];

/**
 * onnxruntime's own log lines (coloured, on stderr: e.g. a CUDA library that fails to load) are off unless
 * DDPM_DEBUG is set: every failure reaches the user as one error line instead. Read at the first session.
 */
const LOG_LEVEL: LogLevel = process.env.DDPM_DEBUG ? 'warning' : 'fatal';
ort.env.logLevel = LOG_LEVEL;

/** An `--ep` this machine cannot run: bad input, one line, exit code 2. */
export class ExecutionProviderError extends Error {
  override name = 'ExecutionProviderError';
}

/** Runtime options for the CLI: all cores by default. */
export function nodeRuntime(opts: { threads?: number; ep?: string } = {}): RuntimeOptions {
  const ep = (opts.ep ?? 'cpu') as ExecutionProvider;
  if (!EXECUTION_PROVIDERS.includes(ep)) throw new ExecutionProviderError(`--ep must be one of ${EXECUTION_PROVIDERS.join(', ')}, got '${opts.ep}'`);
  return { executionProvider: ep, threads: opts.threads ?? os.availableParallelism(), logLevel: LOG_LEVEL };
}

const require = createRequire(import.meta.url);
const ORT_ENTRY = require.resolve('onnxruntime-node');

/** The folder of onnxruntime-node's native binaries (where `npm rebuild` puts the CUDA provider). */
function ortBinDir(): string {
  return path.join(path.dirname(ORT_ENTRY), '..', 'bin', 'napi-v6', process.platform, process.arch);
}

const CUDA_LIBRARY = process.platform === 'win32' ? 'onnxruntime_providers_cuda.dll' : 'libonnxruntime_providers_cuda.so';

/**
 * How to install the CUDA provider: run onnxruntime-node's install script itself (needs NVIDIA drivers, CUDA 12 and
 * network access to NuGet). Not `npm rebuild onnxruntime-node`: npm skips the script, without a word, where install
 * scripts are off (package.json's allowScripts, or ignore-scripts in an .npmrc, as in this repository).
 */
function cudaHint(): string {
  const script = path.join(path.dirname(ORT_ENTRY), '..', 'script', 'install.js');
  const rel = path.relative(process.cwd(), script);
  const shown = rel.startsWith('..') || path.isAbsolute(rel) ? script : rel;
  return `install it with ONNXRUNTIME_NODE_INSTALL=cuda12 node ${shown} (npm rebuild skips that script where install scripts are off); see the README section "GPU"`;
}

// Opens a session for the model in argv[3] (base64) on the provider argv[2]; prints 'ok' or the error.
const PROBE_SCRIPT = `
const ort = require(process.argv[1]);
ort.env.logLevel = process.argv[4];
ort.InferenceSession.create(new Uint8Array(Buffer.from(process.argv[3], 'base64')), { executionProviders: [process.argv[2]] })
  .then((s) => s.release()).then(() => process.stdout.write('ok'), (e) => process.stdout.write(String((e && e.message) || e)));
`;
const PROBE_TIMEOUT_MS = 120_000;

/**
 * Open a one-node session on `ep` in a child process. Native libraries that fail to start (Dawn without Vulkan,
 * CUDA without a driver) print to the process's stderr, beyond JavaScript's reach: the child's is captured and
 * dropped (shown with DDPM_DEBUG). Resolves to undefined when the provider works, else to its error message.
 */
function probeProvider(ep: ExecutionProvider): Promise<string | undefined> {
  const x = input('x', [1]);
  const { bytes } = toOnnx({ y: add(x, 1) });
  const args = ['-e', PROBE_SCRIPT, ORT_ENTRY, ep, Buffer.from(bytes).toString('base64'), LOG_LEVEL];
  return new Promise((resolve) => {
    execFile(process.execPath, args, { timeout: PROBE_TIMEOUT_MS, encoding: 'utf8' }, (err, stdout, stderr) => {
      if (process.env.DDPM_DEBUG && stderr) process.stderr.write(stderr);
      if (stdout === 'ok') resolve(undefined);
      else if (stdout) resolve(conciseOrtMessage(stdout));
      else if (err?.killed) resolve(`no answer within ${PROBE_TIMEOUT_MS / 1000} s`);
      else resolve(`the provider crashed while starting (${err?.signal ?? `exit code ${err?.code}`})`);
    });
  });
}

const checked = new Map<ExecutionProvider, Promise<void>>();

/**
 * Before any work: make sure `--ep` can run on this machine, else throw one ExecutionProviderError line, e.g.
 * "--ep cuda: the CUDA execution provider is not available in this onnxruntime-node build (...)". Free for cpu;
 * for the others a one-node session is opened once per process in a child process (~0.5 s).
 */
export function ensureExecutionProvider(epFlag: string | undefined): Promise<void> {
  const ep = nodeRuntime({ ep: epFlag }).executionProvider!;
  if (ep === 'cpu') return Promise.resolve();
  let p = checked.get(ep);
  if (!p) {
    p = (async () => {
      const backends = ortNode.listSupportedBackends?.() ?? [];
      const name = ep === 'cuda' ? 'CUDA' : 'WebGPU';
      if (!backends.some((b) => b.name === ep)) {
        throw new ExecutionProviderError(`--ep ${ep}: this onnxruntime-node build has no ${name} execution provider (it has: ${backends.map((b) => b.name).join(', ')})`);
      }
      if (ep === 'cuda' && existsSync(ortBinDir()) && !existsSync(path.join(ortBinDir(), CUDA_LIBRARY))) {
        throw new ExecutionProviderError(`--ep cuda: the CUDA execution provider is not available in this onnxruntime-node build (${CUDA_LIBRARY} is not installed: ${cudaHint()})`);
      }
      const problem = await probeProvider(ep);
      if (problem === undefined) return;
      const needs = ep === 'cuda' ? 'it needs an NVIDIA GPU, its driver and the CUDA 12 libraries' : 'it needs a GPU with Vulkan (Linux), Metal (macOS) or D3D12 (Windows) drivers';
      throw new ExecutionProviderError(`--ep ${ep}: the ${name} execution provider cannot start on this machine (${problem}); ${needs}, or use --ep cpu`);
    })();
    checked.set(ep, p);
  }
  return p;
}
