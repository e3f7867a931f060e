/**
 * Independent check of the U-Net: a ddpm-ts checkpoint must load into the PyTorch reference module (strict
 * state_dict) built from its config, and give the same ε_θ(x_t, t) as ddpm-ts on the same inputs; for a
 * class-conditional model ε_θ(x_t, t, y), on labels that include ∅ ("no class"). The reference is
 * python/ddpm_torch/unet.py. Needs Debian's python3-torch (apt-get install python3-torch), so it is a script, not a
 * CI test.
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
import { countParams } from '../src/models/unet.ts';
import { ort } from '../src/node/ort.ts';
import { Rng } from '../src/rng.ts';
import { loadModelDir } from '../src/train/checkpoint.ts';

const here = path.dirname(fileURLToPath(import.meta.url));
checkTorch('the cross-check');
const dir = process.argv[2] ?? path.join(here, '..', 'models', 'mnist-28');
const { config, weights, file } = await loadModelDir(dir);
const cfg = config.model;
const den = await compileDenoiser(ort, cfg, weights, { threads: 1 });
const T = config.diffusion.schedule.T;
const t = [0, Math.round(T / 4), Math.round(T / 2), T - 1];
// a conditional model: classes 0, 1, ... and the last image with ∅ (label numClasses)
const K = cfg.numClasses;
const y = K > 0 ? t.map((_, i) => (i === t.length - 1 ? K : i % K)) : undefined;
const x = new Rng(9).normalFloat32(t.length * cfg.inChannels * cfg.imageSize ** 2);
const out = y ? await den.predictClass(x, Int32Array.from(t), Int32Array.from(y)) : await den.predict(x, Int32Array.from(t));
await den.release();
const tmp = mkdtempSync(path.join(tmpdir(), 'ddpm-xcheck-'));
try {
  writeFileSync(path.join(tmp, 'unet.json'), JSON.stringify(cfg));
  writeFileSync(path.join(tmp, 'x.bin'), x);
  writeFileSync(path.join(tmp, 'y.bin'), out);
  const args = [path.join(here, 'crosscheck_torch.py'), path.join(tmp, 'unet.json'), file, path.join(tmp, 'x.bin'), t.join(','), path.join(tmp, 'y.bin')];
  if (y) args.push(y.join(','));
  const res = JSON.parse(execFileSync(PYTHON, args, { encoding: 'utf8' }).trim().split('\n').pop()!) as { max_abs_diff: number; params: number };
  const ok = res.max_abs_diff < 1e-4 && res.params === countParams(weights);
  console.log(JSON.stringify({ checkpoint: file, numClasses: K, t, y: y ?? null, paramsOurs: countParams(weights), ...res, ok }));
  if (!ok) process.exitCode = 1;
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
