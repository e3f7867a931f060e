import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as ort from 'onnxruntime-node';
import { uint8Dataset } from '../src/data/loader.ts';
import { loadMnist, mnistImages } from '../src/data/mnist.ts';
import { loadClassifierDir } from '../src/eval/classifier-dir.ts';
import { classify, featureStats, frechetDistance } from '../src/eval/fid.ts';
import { encodePng } from '../src/io/image.ts';
import { LeNet } from '../src/models/classifier.ts';
import { applyOptions, defaultTrainConfig } from '../src/train/config.ts';
import { Trainer } from '../src/train/trainer.ts';
import { assertUserError, runCli } from './cli-helpers.ts';
import { assertClose } from './helpers.ts';

test('ddpm eval: bad input exits 2 with a one-line message', async () => {
  const cases: [string[], RegExp][] = [
    [['eval'], /nothing to evaluate/],
    [['eval', '--samples', '/nonexistent/folder'], /--samples: image folder \/nonexistent\/folder cannot be read/],
    [['eval', '--samples', 'x', '--fid', '10'], /pick one/],
    [['eval', '--nll', '20000'], /10000 test images/],
    [['eval', '--fid', '10', '--checkpoint', '/nonexistent/ckpt'], /no such file or directory/],
  ];
  for (const [args, pattern] of cases) assertUserError(await runCli([...args, '--threads', '1']), pattern);
});

test('ddpm eval --samples scores PNGs exactly like the same MNIST images in memory', async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'ddpm-eval-png-'));
  try {
    const mnist = loadMnist('test');
    const n = 40;
    await mkdir(path.join(dir, 'sub'));
    for (let i = 0; i < n; i++) {
      const img = { data: mnist.images.slice(i * 784, (i + 1) * 784), width: 28, height: 28, channels: 1 as const };
      await writeFile(path.join(dir, i < 20 ? '' : 'sub', `${String(i).padStart(3, '0')}.png`), await encodePng(img));
    }
    const r = await runCli(['eval', '--samples', dir, '--json', '--threads', '1']);
    assert.equal(r.code, 0, r.stderr);
    const report = JSON.parse(r.stdout);
    assert.equal(report.fid.n, n);
    assert.equal(report.fid.source, dir);
    assert.ok(report.classifier.testAccuracy >= 0.99);
    const counts = report.fid.classes.counts as number[];
    assert.equal(counts.reduce((a, b) => a + b, 0), n);
    // in memory: the same 40 digits (the folder is read sorted: 000..019, then sub/020..039)
    const c = await loadClassifierDir();
    const net = await LeNet.create(ort as never, c.info.model, c.weights, { threads: 1 });
    const out = await classify(net, mnistImages('test', 0, n));
    const real = await classify(net, mnistImages('train', 0, n));
    await net.release();
    const want = frechetDistance(featureStats(out.features, n, 128), c.testStats).fid;
    assertClose(report.fid.fidLenet, want, { rtol: 1e-5 }, 'FID of PNGs vs in-memory MNIST');
    // the same-n real-data reference: MNIST train[0:40] vs the test set
    assert.equal(report.fid.realDataFidLenet.n, n);
    assertClose(report.fid.realDataFidLenet.fidLenet, frechetDistance(featureStats(real.features, n, 128), c.testStats).fid, { rtol: 1e-5 }, 'same-n reference FID');
    const labels = [...mnist.labels.subarray(0, n)];
    assert.deepEqual(counts, Array.from({ length: 10 }, (_, k) => labels.filter((l) => l === k).length), 'a 99% classifier gets these 40 right');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('ddpm eval on a 1-step 28x28 checkpoint: --nll and --fid (DDPM, fixedSmall) report finite numbers and their settings', async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'ddpm-eval-ckpt-'));
  try {
    // a tiny U-Net at MNIST size, cosine T = 10, trained for 1 step on 4 test digits
    const cfg = applyOptions(defaultTrainConfig('tiny'), {
      'image-size': '28', schedule: 'cosine', T: '10', 'batch-size': '4', steps: '1', 'log-every': '1', 'sample-every': '0', 'checkpoint-every': '1',
    });
    const m = loadMnist('test');
    const tr = await Trainer.create(ort as never, cfg, dir, uint8Dataset(m.images.slice(0, 4 * 784), { n: 4, channels: 1, height: 28, width: 28 }), { threads: 1 });
    await tr.train();
    await tr.release();
    const r = await runCli([
      'eval', '--checkpoint', path.join(dir, 'checkpoint'), '--nll', '3', '--fid', '6', '--sampler', 'ddpm', '--steps', '3',
      '--var-type', 'fixedSmall', '--batch-size', '4', '--seed', '5', '--json', '--threads', '1',
    ]);
    assert.equal(r.code, 0, r.stderr);
    const j = JSON.parse(r.stdout);
    assert.equal(j.model.step, 1);
    assert.deepEqual([j.nll.n, j.nll.T, j.nll.varType, j.nll.seed], [3, 10, 'fixedSmall', 5]);
    assert.ok(Number.isFinite(j.nll.meanBpd) && j.nll.meanBpd > 0 && Number.isFinite(j.nll.stderrBpd), JSON.stringify(j.nll));
    assert.deepEqual([j.fid.source, j.fid.n, j.fid.sampler, j.fid.steps, j.fid.varType, j.fid.seed], ['generated', 6, 'ddpm', 3, 'fixedSmall', 5]);
    assert.ok(Number.isFinite(j.fid.fidLenet) && j.fid.fidLenet > 0);
    assert.ok(j.classifier.testAccuracy >= 0.99);
    for (const k of ['seconds', 'imgStepsPerSec']) assert.ok(j.nll[k] > 0, k);
    for (const k of ['sampleSeconds', 'samplesPerSec', 'classifierSeconds']) assert.ok(j.fid[k] > 0, k);
    // the human-readable report
    const h = await runCli(['eval', '--checkpoint', path.join(dir, 'checkpoint'), '--fid', '4', '--steps', '2', '--threads', '1']);
    assert.equal(h.code, 0, h.stderr);
    assert.match(h.stdout, /FID-LeNet: \d+\.\d+ .* for 4 images/);
    assert.match(h.stdout, /classes: 0:\d+ 1:\d+/);
    // without --steps: all T steps for ddpm (as `ddpm sample`), 50 (capped at T) for ddim
    const d = await runCli(['eval', '--checkpoint', path.join(dir, 'checkpoint'), '--fid', '3', '--sampler', 'ddpm', '--json', '--threads', '1']);
    assert.equal(d.code, 0, d.stderr);
    assert.equal(JSON.parse(d.stdout).fid.steps, 10);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
