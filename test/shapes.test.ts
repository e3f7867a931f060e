// The synthetic shapes (src/data/shapes.ts, scripts/make-shapes.ts), the shipped shape classifier
// (models/shapes-classifier) and the sample-quality measure built on it (scripts/measure-shapes.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as ort from 'onnxruntime-node';
import { MIN_LUMA_CONTRAST, MIN_VISIBLE_RGB_DISTANCE, SHAPE_KINDS, renderNotShapes, renderShape, renderShapes, shapeSpec } from '../src/data/shapes.ts';
import { DEFAULT_SHAPES_CLASSIFIER_DIR, loadClassifierDir } from '../src/eval/classifier-dir.ts';
import { accuracy, classifierScores, classify } from '../src/eval/fid.ts';
import { encodePng } from '../src/io/image.ts';
import { LeNet } from '../src/models/classifier.ts';
import { Rng } from '../src/rng.ts';
import { makeShapes } from '../scripts/make-shapes.ts';
import { runScript, tinyCheckpoint } from './cli-helpers.ts';

const unit = (u8: Uint8Array) => Float32Array.from(u8, (v) => v / 127.5 - 1);

test('shapes: the same seed gives the same bytes; image i depends on (seed, i) only; kinds are i mod 5', () => {
  const a = renderShapes(7, 0, 10, 32);
  const b = renderShapes(7, 0, 10, 32);
  assert.deepEqual(a.images, b.images);
  assert.deepEqual(renderShapes(7, 4, 3, 32).images, a.images.subarray(4 * 3072, 7 * 3072), 'a window of a set is the same images');
  assert.notDeepEqual(renderShapes(8, 0, 10, 32).images, a.images);
  assert.deepEqual([...a.labels], [0, 1, 2, 3, 4, 0, 1, 2, 3, 4]);
  for (const s of a.specs) {
    // the whole bounding box inside the image
    assert.ok(s.cx - s.size / 2 >= 1 - 1e-9 && s.cx + s.size / 2 <= 31 + 1e-9 && s.cy - s.size / 2 >= 1 - 1e-9 && s.cy + s.size / 2 <= 31 + 1e-9, JSON.stringify(s));
  }
  assert.throws(() => shapeSpec(0, 0, 8), /image size must be an integer in \[16, 256\], got 8/);
});

test("shapes: the data's colours keep a luma contrast >= 80; 'visible' colours only an RGB distance >= 48, at any luma contrast", () => {
  const luma = (c: readonly number[]) => 0.299 * c[0]! + 0.587 * c[1]! + 0.114 * c[2]!;
  const data = renderShapes(4, 0, 500, 32).specs;
  const visible = renderShapes(4, 0, 500, 32, 'visible').specs;
  for (const s of data) assert.ok(Math.abs(luma(s.fill) - luma(s.background)) >= MIN_LUMA_CONTRAST, JSON.stringify(s));
  for (const s of visible) assert.ok(Math.hypot(...s.fill.map((v, c) => v - s.background[c]!)) >= MIN_VISIBLE_RGB_DISTANCE, JSON.stringify(s));
  const low = visible.filter((s) => Math.abs(luma(s.fill) - luma(s.background)) < 40).length;
  assert.ok(low > 100, `visible colours include low luma contrast: ${low} of 500 below 40`);
  // only the fill differs: same kinds, backgrounds, positions and sizes
  assert.deepEqual(visible.map(({ fill: _, ...r }) => r), data.map(({ fill: _, ...r }) => r));
});

test('shapes: a circle is drawn where its spec says, anti-aliased, with the exact fill inside and background outside', () => {
  const spec = { kind: 'circle' as const, fill: [250, 10, 20] as [number, number, number], background: [0, 100, 200] as [number, number, number], cx: 16, cy: 16, size: 16 };
  const img = renderShape(spec, 32);
  const px = (x: number, y: number) => [...img.subarray((y * 32 + x) * 3, (y * 32 + x) * 3 + 3)];
  assert.deepEqual(px(16, 16), spec.fill);
  assert.deepEqual(px(0, 0), spec.background);
  assert.deepEqual(px(16, 3), spec.background, 'above the top of the circle');
  // partly covered pixels lie along the circumference (2πr ≈ 50 pixels)
  let blended = 0;
  for (let p = 0; p < 1024; p++) if (img[p * 3]! > 0 && img[p * 3]! < 250) blended++;
  assert.ok(blended >= 25 && blended <= 80, `${blended} anti-aliased pixels`);
  // the covered area ≈ π r², within the anti-aliasing error
  let area = 0;
  for (let p = 0; p < 1024; p++) area += img[p * 3]! / 250;
  assert.ok(Math.abs(area - Math.PI * 64) < 2, `area ${area} vs ${Math.PI * 64}`);
});

test('make:shapes writes <kind>/<index>.png and labels.json, the same bytes for the same flags; an existing --out is refused', async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'shapes-'));
  try {
    for (const out of ['a', 'b']) await makeShapes({ out: path.join(dir, out), n: 12, size: 32, seed: 5 });
    const labels = JSON.parse(await readFile(path.join(dir, 'a', 'labels.json'), 'utf8'));
    assert.deepEqual({ ...labels, images: undefined }, { generator: 'ddpm-ts scripts/make-shapes.ts', seed: 5, n: 12, size: 32, kinds: [...SHAPE_KINDS], images: undefined });
    assert.equal(labels.images.length, 12);
    assert.deepEqual(labels.images[7], { file: 'triangle/00007.png', ...shapeSpec(5, 7, 32) });
    assert.deepEqual((await readdir(path.join(dir, 'a'))).sort(), ['circle', 'cross', 'labels.json', 'square', 'star', 'triangle']);
    assert.deepEqual(await readdir(path.join(dir, 'a', 'star')), ['00004.png', '00009.png']);
    for (const im of labels.images) {
      const [a, b] = await Promise.all(['a', 'b'].map((d) => readFile(path.join(dir, d, im.file))));
      assert.deepEqual(a, b, im.file);
    }
    // the PNG holds exactly the rendered pixels
    const png = await readFile(path.join(dir, 'a', labels.images[3].file));
    assert.deepEqual(new Uint8Array(png), await encodePng({ data: renderShape(shapeSpec(5, 3, 32), 32), width: 32, height: 32, channels: 3 }));
    // the CLI: an existing folder and a bad flag are one line and exit 2, nothing written
    const again = await runScript('make-shapes.ts', ['--out', path.join(dir, 'a'), '--n', '3']);
    assert.equal(again.code, 2, again.stderr);
    assert.match(again.stderr, /^error: --out .*a: already exists; choose a new folder \(nothing was written\)\n$/);
    const bad = await runScript('make-shapes.ts', ['--out', path.join(dir, 'c'), '--size', '8']);
    assert.equal(bad.code, 2, bad.stderr);
    assert.equal(bad.stderr, "error: --size: expected an integer in [16, 256], got '8'\n");
    assert.deepEqual((await readdir(dir)).sort(), ['a', 'b'], 'no partial folder left behind');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('the shipped shape classifier puts held-out shapes in their class and noise in none', async () => {
  const c = await loadClassifierDir(DEFAULT_SHAPES_CLASSIFIER_DIR);
  assert.deepEqual(c.info.classes, [...SHAPE_KINDS, 'none']);
  assert.ok(c.info.testAccuracy >= 0.99, `recorded test accuracy ${c.info.testAccuracy}`);
  const net = await LeNet.create(ort as never, c.info.model, c.weights, { threads: 1 });
  try {
    const n = 300;
    const real = renderShapes(11, 0, n, 32); // a seed neither training (1) nor testing (2) used
    const out = await classify(net, unit(real.images));
    const acc = accuracy(out.logits, real.labels, 6);
    const scores = classifierScores(out.logits, 6, { rejectClass: 5 });
    const noise = classifierScores((await classify(net, unit(renderNotShapes(11, 0, 100, 32)))).logits, 6, { rejectClass: 5 });
    const uniform = new Rng(11).uniformFloat32(50 * 3072).map((u) => 2 * u - 1);
    const noiseOut = classifierScores((await classify(net, uniform)).logits, 6, { rejectClass: 5 });
    assert.ok(acc >= 0.98, `accuracy ${acc} on ${n} fresh shapes`);
    assert.ok(scores.confidentFraction >= 0.97, `confident on real shapes: ${scores.confidentFraction}`);
    assert.ok(noise.confidentFraction <= 0.05, `confident on not-shapes: ${noise.confidentFraction}`);
    assert.equal(noiseOut.confidentFraction, 0, 'uniform noise is never a confident shape');
    assert.equal(noiseOut.counts[5], 50, 'uniform noise is none');
    // a shape is a shape in any colours a person sees apart, not only at the data's luma contrast (the first
    // classifier called 97% of clean shapes of luma contrast 20-40 'none')
    const visible = renderShapes(11, 0, n, 32, 'visible');
    const vis = classifierScores((await classify(net, unit(visible.images))).logits, 6, { rejectClass: 5 });
    assert.ok(vis.confidentFraction >= 0.85, `confident on shapes in any visible colours: ${vis.confidentFraction}`);
  } finally {
    await net.release();
  }
});

test('measure:shapes: a folder of real shapes scores ~100%, a folder of noise 0%; a model of the wrong shape is one line, exit 2', async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'measure-shapes-'));
  try {
    await makeShapes({ out: path.join(dir, 'real'), n: 40, size: 32, seed: 12 });
    await import('node:fs/promises').then((f) => f.mkdir(path.join(dir, 'noise')));
    const rng = new Rng(12);
    for (let i = 0; i < 20; i++) {
      const data = new Uint8Array(32 * 32 * 3).map(() => rng.integer(256));
      await writeFile(path.join(dir, 'noise', `${i}.png`), await encodePng({ data, width: 32, height: 32, channels: 3 }));
    }
    const real = await runScript('measure-shapes.ts', [path.join(dir, 'real'), '--threads', '1']);
    assert.equal(real.code, 0, real.stderr);
    const r = JSON.parse(real.stdout);
    assert.equal(r.n, 40);
    assert.ok(r.confidentFraction >= 0.95, `real shapes: ${real.stdout}`);
    assert.deepEqual(r.classes, { circle: 8, square: 8, triangle: 8, cross: 8, star: 8, none: 0 });
    const noise = await runScript('measure-shapes.ts', [path.join(dir, 'noise'), '--threads', '1']);
    assert.equal(noise.code, 0, noise.stderr);
    const z = JSON.parse(noise.stdout);
    assert.equal(z.confidentFraction, 0, noise.stdout);
    assert.equal(z.classes.none, 20);

    const grey = await tinyCheckpoint(path.join(dir, 'run'));
    const wrong = await runScript('measure-shapes.ts', [grey, '--n', '4', '--threads', '1']);
    assert.equal(wrong.code, 2, wrong.stderr);
    assert.match(wrong.stderr, /^error: .*checkpoint: the model makes 1x8x8 images; the shape classifier takes 3x32x32\n$/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
