/**
 * Independent check of the U-Net: a ddpm-ts mnist-28 checkpoint must load into the PyTorch reference
 * module (strict state_dict) and give the same ε_θ(x_t, t) as ddpm-ts on the same inputs.
 * The reference is bench/peer/torch_unet.py. Needs Debian's python3-torch (apt-get install python3-torch), so it
 * is a script, not a CI test.
 *
 *   node --import tsx scripts/crosscheck-torch.ts [checkpoint dir, default models/mnist-28]
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { PYTHON, checkTorch } from '../bench/peer/python.ts';
import { compileDenoiser } from '../src/models/denoiser-compile.ts';
import { ort } from '../src/node/ort.ts';
import { Rng } from '../src/rng.ts';
import { loadModelDir } from '../src/train/checkpoint.ts';

const here = path.dirname(fileURLToPath(import.meta.url));
checkTorch('the cross-check');
const dir = process.argv[2] ?? path.join(here, '..', 'models', 'mnist-28');
const { config, weights, file } = await loadModelDir(dir);
if (config.preset !== 'mnist-28' || ![1, 2].includes(config.model.outChannels)) {
  throw new Error('the PyTorch reference is the mnist-28 config with one output channel (two with learned variances)');
}
const den = await compileDenoiser(ort, config.model, weights, { threads: 1 });
const t = [0, 250, 500, 999];
const x = new Rng(9).normalFloat32(t.length * 784);
const y = await den.predict(x, Int32Array.from(t));
await den.release();
const tmp = mkdtempSync(path.join(tmpdir(), 'ddpm-xcheck-'));
try {
  writeFileSync(path.join(tmp, 'x.bin'), x);
  writeFileSync(path.join(tmp, 'y.bin'), y);
  const out = execFileSync(PYTHON, [path.join(here, 'crosscheck_torch.py'), file, path.join(tmp, 'x.bin'), t.join(','), path.join(tmp, 'y.bin')], { encoding: 'utf8' });
  const res = JSON.parse(out.trim().split('\n').pop()!) as { max_abs_diff: number };
  console.log(JSON.stringify({ checkpoint: file, ...res, ok: res.max_abs_diff < 1e-4 }));
  if (!(res.max_abs_diff < 1e-4)) process.exitCode = 1;
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
