/** Shared CLI plumbing: runtime flags, number parsing, errors that print without a stack. */
import os from 'node:os';
import { InvalidArgumentError, Option, type Command } from 'commander';
import { MAX_THREADS } from '../limits.ts';
import { checkUNetMemory, type UNetConfig } from '../models/unet.ts';
import { EXECUTION_PROVIDERS } from '../node/ort.ts';
import { UserError } from '../errors.ts';

// The library's loaders throw it too (src/errors.ts); every command imports it from here.
export { UserError };

/** An integer flag in [min, max]; max defaults to the largest safe integer (so '1e300' is refused, not rounded). */
export function parseIntArg(name: string, min = 0, max = Number.MAX_SAFE_INTEGER): (v: string) => number {
  return (v) => {
    const n = Number(v);
    if (v.trim() === '' || !Number.isSafeInteger(n) || n < min || n > max) {
      throw new InvalidArgumentError(`${name} must be an integer in [${min}, ${max}], got '${v}'`);
    }
    return n;
  };
}

/** A script's integer flag (node:util parseArgs gives strings): `dflt` when absent, else an integer in [min, max]. */
export function intFlag(v: string | undefined, name: string, dflt: number, min: number, max: number): number {
  if (v === undefined) return dflt;
  const x = Number(v);
  if (v.trim() === '' || !Number.isSafeInteger(x) || x < min || x > max) throw new UserError(`--${name}: expected an integer in [${min}, ${max}], got '${v}'`);
  return x;
}

/**
 * Refuse, before any work, a model that cannot `mode` at `batch` images per call in this machine's memory
 * (checkUNetMemory's estimate against os.totalmem()). `where` names the file the config came from.
 */
export function checkModelFits(unet: UNetConfig, mode: 'train' | 'sample', batch: number, where: string): void {
  try {
    checkUNetMemory(unet, mode, batch, os.totalmem());
  } catch (e) {
    throw new UserError(`${where}: ${(e as Error).message}`);
  }
}

/** Refuse, before any work, outputs that need more than half of this machine's memory. */
export function checkOutputMemory(bytes: number, what: string): void {
  const allowed = os.totalmem() / 2;
  if (bytes > allowed) {
    throw new UserError(`${what} need ${(bytes / 1e9).toPrecision(2)} GB in memory, over the ${(allowed / 1e9).toFixed(1)} GB allowed (half of this machine's memory)`);
  }
}

export function parseFloatArg(name: string, min = -Infinity, max = Infinity): (v: string) => number {
  return (v) => {
    const n = Number(v);
    if (v.trim() === '' || !Number.isFinite(n) || n < min || n > max) throw new InvalidArgumentError(`${name} must be a number in [${min}, ${max}], got '${v}'`);
    return n;
  };
}

/** --threads and --ep, shared by every command that runs a model. */
export function addRuntimeOptions(cmd: Command): Command {
  return cmd
    .option('--threads <n>', 'onnxruntime intra-op threads (default: all cores)', parseIntArg('--threads', 1, MAX_THREADS))
    .addOption(new Option('--ep <provider>', 'execution provider (checked before any work)').choices(EXECUTION_PROVIDERS).default('cpu'));
}

export function formatDuration(sec: number): string {
  if (!Number.isFinite(sec)) return '?';
  const s = Math.round(sec);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  return h > 0 ? `${h}h${String(m).padStart(2, '0')}m` : m > 0 ? `${m}m${String(s % 60).padStart(2, '0')}s` : `${s}s`;
}
