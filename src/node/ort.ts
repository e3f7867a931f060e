/**
 * onnxruntime for Node: the CPU binaries ship inside the npm package. WebGPU is bundled too (it needs a
 * GPU and drivers); CUDA is opt-in: install with `ONNXRUNTIME_NODE_INSTALL=cuda12 npm rebuild onnxruntime-node`
 * (see the README's GPU section). `--ep` picks the execution provider; an unavailable one is a clear error.
 */
import os from 'node:os';
import * as ortNode from 'onnxruntime-node';
import type { ExecutionProvider, OrtModule, RuntimeOptions } from '../engine/runtime.ts';

export const ort = ortNode as unknown as OrtModule;

export const EXECUTION_PROVIDERS: readonly ExecutionProvider[] = ['cpu', 'cuda', 'webgpu'];

/** Runtime options for the CLI: all cores by default. */
export function nodeRuntime(opts: { threads?: number; ep?: string } = {}): RuntimeOptions {
  const ep = (opts.ep ?? 'cpu') as ExecutionProvider;
  if (!EXECUTION_PROVIDERS.includes(ep)) throw new Error(`--ep must be one of ${EXECUTION_PROVIDERS.join(', ')}, got '${opts.ep}'`);
  return { executionProvider: ep, threads: opts.threads ?? os.availableParallelism() };
}
