/**
 * The PyTorch peer's Python: Debian's /usr/bin/python3 with python3-torch (see bench/peer/README.md).
 * Used by `bench:unet --peer` and scripts/crosscheck-torch.ts, which check it before any work.
 */
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const PYTHON = '/usr/bin/python3';
export const PEER_DIR = path.dirname(fileURLToPath(import.meta.url));
export const TORCH_UNET = path.join(PEER_DIR, 'torch_unet.py');

/** Throws a one-line error naming the install command when PYTHON cannot import torch and numpy. */
export function checkTorch(what: string): void {
  try {
    execFileSync(PYTHON, ['-c', 'import torch, numpy'], { stdio: 'ignore' });
  } catch {
    throw new Error(`${what} needs ${PYTHON} with PyTorch: apt-get install python3-torch libopenblas0-pthread (Debian)`);
  }
}
