/** Shared CLI plumbing: runtime flags, number parsing, errors that print without a stack. */
import { InvalidArgumentError, type Command } from 'commander';

/** An error meant for the user: printed as one line, exit code 2 (bad input) or 1. */
export class UserError extends Error {
  override name = 'UserError';
  constructor(message: string, readonly exitCode = 2) {
    super(message);
  }
}

export function parseIntArg(name: string, min = 0): (v: string) => number {
  return (v) => {
    const n = Number(v);
    if (v.trim() === '' || !Number.isInteger(n) || n < min) throw new InvalidArgumentError(`${name} must be an integer >= ${min}, got '${v}'`);
    return n;
  };
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
    .option('--threads <n>', 'onnxruntime intra-op threads (default: all cores)', parseIntArg('--threads', 1))
    .option('--ep <provider>', 'execution provider: cpu, cuda or webgpu', 'cpu');
}

export function formatDuration(sec: number): string {
  if (!Number.isFinite(sec)) return '?';
  const s = Math.round(sec);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  return h > 0 ? `${h}h${String(m).padStart(2, '0')}m` : m > 0 ? `${m}m${String(s % 60).padStart(2, '0')}s` : `${s}s`;
}
